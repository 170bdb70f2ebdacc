"""Encrypt and decrypt image files and folders (PNG out, metadata in a PNG text chunk).

An encrypted PNG carries, in its ``cbirlib-mtce`` text chunk, what decryption needs besides the
key: the cipher parameters, the image id (for per-image keys), the original size and mode, and
the fingerprint of the key that encrypted it (so a wrong key is a clear error, not noise).
Grey images stay grey (one channel); every other mode is converted to RGB (alpha is dropped).

Every file is written atomically (a temporary name, then renamed), so an interrupted folder run
leaves only whole files; running it again skips the files already encrypted under the same key
(``resume``) and never writes over an input: the output folder may not be, or lie inside, the input
folder, and no output may have an input's path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core import cipher
from ..core.keys import CipherParams, Key, KeyUsageError
from . import imagereaders

META_KEY = "cbirlib-mtce"
#: how a decrypted image's values were read from its original (DICOM rescale, signed shift)
SOURCE_KEY = "cbirlib-source"
META_VERSION = 1


class ImageFileError(ValueError):
    """An input file or folder that cannot be encrypted or decrypted; the message says why."""


@dataclass(frozen=True)
class FileResult:
    source: Path
    target: Path
    image_id: str


def read_image(path: Path) -> tuple[np.ndarray, str]:
    """(H, W, C) uint8 or uint16 values of an image file without loss, and its mode ("L" or "RGB");
    see :mod:`cbirlib.protocol.imagereaders`."""
    image = _read(path)
    return image.pixels, image.mode


def _read(path: Path) -> imagereaders.PixelImage:
    try:
        return imagereaders.read(path)
    except imagereaders.ImageReadError as e:
        raise ImageFileError(str(e)) from None


def write_png(path: Path, arr: np.ndarray, mode: str, meta: dict | None = None, source: dict | None = None) -> None:
    """Write (H, W, C) uint8 or uint16 values as a PNG, atomically, with the encryption metadata
    (``meta``) and/or the record of how the original was read (``source``) in text chunks."""
    text = {}
    if meta is not None:
        text[META_KEY] = json.dumps(meta, sort_keys=True)
    if source:
        text[SOURCE_KEY] = json.dumps(source, sort_keys=True)
    imagereaders.write_png(path, arr, mode, text)


def _key_for(key: Key, image_id: str) -> Key:
    if key.kind == "master":
        return key.for_image(image_id)
    if key.kind == "image" and key.image_id not in (None, image_id):
        raise KeyUsageError(f"this key belongs to image {key.image_id!r}, not {image_id!r}")
    return key


def _inputs(src: Path, exts: set[str]) -> list[tuple[Path, str]]:
    """(file, image id) pairs: the id is the path relative to the input folder (or the name)."""
    if not src.exists():
        raise ImageFileError(f"{src} does not exist")
    if src.is_file():
        return [(src, src.name)]
    files = sorted(p for p in src.rglob("*") if p.is_file()
                   and (p.suffix.lower() in exts or (not p.suffix and imagereaders.is_dicom(p))))  # IM0001: DICOM
    if not files:
        raise ImageFileError(f"{src} contains no image files")
    return [(p, p.relative_to(src).as_posix()) for p in files]


def _target(src: Path, dst: Path, file: Path, single: bool) -> Path:
    if single:
        return dst if dst.suffix.lower() == ".png" else dst / (file.stem + ".png")
    return (dst / file.relative_to(src)).with_suffix(".png")


def _check_not_over_inputs(src: Path, dst: Path, pairs: list[tuple[Path, str]], single: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    if not single and (d == s or s in d.parents):
        raise ImageFileError(f"the output folder {dst} is inside the input folder {src}: choose a folder outside it")
    inputs = {f.resolve() for f, _ in pairs}
    clash = [t for f, _ in pairs if (t := _target(src, dst, f, single).resolve()) in inputs]
    if clash:
        raise ImageFileError(f"writing {clash[0]} would overwrite an input; choose another output")
    seen: dict[Path, Path] = {}
    for f, _ in pairs:
        t = _target(src, dst, f, single).resolve()
        if t in seen:
            raise ImageFileError(f"{seen[t].name} and {f.name} would both be written to {t.name}; rename one of them")
        seen[t] = f


def _already_done(target: Path, image_id: str, key: Key) -> bool:
    """Whether ``target`` is already this image encrypted under this key (an earlier, interrupted run)."""
    if not target.exists():
        return False
    try:
        meta = read_metadata(target)
    except ImageFileError:
        return False
    return meta["image_id"] == image_id and meta["key_fingerprint"] == key.fingerprint() and meta["params"] == key.params


def _check_all(pairs: list[tuple[Path, str]], key: Key, pad: str) -> None:
    """Read every input once and check it against the key (bit depth; size, unless padded), so
    that a bad file stops the run before any output is written."""
    b = key.params.block_size
    for file, _ in pairs:
        (h, w, _), bits = _probe(file)
        if bits != key.params.depth:
            raise ImageFileError(f"{file}: {bits}-bit values and {'an' if key.params.depth == 8 else 'a'} {key.params.depth}-bit key: "
                                 + ("make a 16-bit key (cbir keygen --depth 16)" if bits == 16 else
                                    "a 16-bit key encrypts 16-bit images"))
        if pad == "error" and (h % b or w % b):
            raise ImageFileError(f"{file}: {h}x{w} is not a multiple of the block size {b}; crop it, or pad it "
                                 "(pad='pad' here, --pad on the command line)")


def _probe(path: Path) -> tuple[tuple[int, int, int], int]:
    try:
        return imagereaders.probe(path)
    except imagereaders.ImageReadError as e:
        raise ImageFileError(str(e)) from None


def encrypt_path(src: str | Path, dst: str | Path, key: Key, pad: str = "error", resume: bool = True,
                 progress: bool = False) -> list[FileResult]:
    """Encrypt an image file, or every image under a folder (ids = relative paths), to PNGs,
    streaming one file at a time. With ``resume``, outputs already encrypted under this key by an
    earlier run are kept as they are."""
    if not isinstance(key, Key):
        raise KeyUsageError(f"expected a cbirlib.core.keys.Key, got {type(key).__name__}")
    from tqdm.auto import tqdm

    if pad not in cipher.PAD_POLICIES:
        raise ImageFileError(f"pad must be one of {cipher.PAD_POLICIES}, got {pad!r}")
    src, dst = Path(src), Path(dst)
    exts = {e.lower() for e, f in Image.registered_extensions().items() if f in Image.OPEN} | {".dcm"}
    pairs = _inputs(src, exts)
    if src.is_dir() and dst.suffix.lower() in exts:
        raise ImageFileError(f"{src} is a folder, so the output is a folder of PNGs; {dst} looks like a file name")
    _check_not_over_inputs(src, dst, pairs, src.is_file())
    _check_all(pairs, key, pad)  # every input readable and fit for the key before anything is written
    results = []
    for file, image_id in tqdm(pairs, desc="encrypt", unit="image", disable=not progress):
        k = _key_for(key, image_id)
        target = _target(src, dst, file, src.is_file())
        if resume and _already_done(target, image_id, k):
            results.append(FileResult(file, target, image_id))
            continue
        image = _read(file)
        arr, mode = image.pixels, image.mode
        try:
            enc = cipher.encrypt(arr, k, pad=pad)
        except cipher.CipherInputError as e:
            raise ImageFileError(f"{file}: {e}") from e
        meta = {"version": META_VERSION, "params": k.params.record(), "image_id": image_id,
                "size": list(arr.shape[:2]), "mode": mode, "key_fingerprint": k.fingerprint()}
        if image.source.get("format") == "DICOM":  # what the stored values mean (no identifying field)
            meta["source"] = image.source
        write_png(target, enc, mode, meta)
        results.append(FileResult(file, target, image_id))
    return results


def read_metadata(path: Path) -> dict:
    try:
        with Image.open(path) as im:
            text = im.text.get(META_KEY) if hasattr(im, "text") else None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageFileError(f"cannot read image {path}: {e}") from e
    if text is None:
        raise ImageFileError(f"{path} is not an MTCE-encrypted PNG (no {META_KEY} metadata)")
    try:
        meta = json.loads(text)
        if meta.get("version") != META_VERSION:
            raise ImageFileError(f"{path}: metadata version {meta.get('version')!r} is not {META_VERSION}")
        meta["params"] = CipherParams.from_record(meta["params"])
        return meta
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, ImageFileError):
            raise
        raise ImageFileError(f"{path}: damaged {META_KEY} metadata ({e})") from None


def decrypt_path(src: str | Path, dst: str | Path, key: Key) -> list[FileResult]:
    """Decrypt an encrypted PNG, or every PNG under a folder, back to the original pixels. Every
    file's key is checked against its recorded fingerprint before anything is written."""
    if not isinstance(key, Key):
        raise KeyUsageError(f"expected a cbirlib.core.keys.Key, got {type(key).__name__}")
    src, dst = Path(src), Path(dst)
    pairs = _inputs(src, {".png"})
    _check_not_over_inputs(src, dst, pairs, src.is_file())
    plan = []
    for file, _ in pairs:
        meta = read_metadata(file)
        if meta["params"] != key.params:
            raise KeyUsageError(f"{file} was encrypted with {meta['params']}, the key is for {key.params}")
        k = _key_for(key, meta["image_id"])
        if k.fingerprint() != meta["key_fingerprint"]:
            raise KeyUsageError(f"{file}: wrong key (fingerprint {k.fingerprint()} != {meta['key_fingerprint']})")
        plan.append((file, meta, k))
    results = []
    for file, meta, k in plan:
        arr, _ = read_image(file)
        dec = cipher.decrypt(arr, k, size=tuple(meta["size"]))
        target = _target(src, dst, file, src.is_file())
        write_png(target, dec, meta["mode"], source=meta.get("source"))
        results.append(FileResult(file, target, meta["image_id"]))
    return results


def encrypted_files(src: str | Path) -> list[Path]:
    """The PNG files under ``src`` (or ``src`` itself), sorted."""
    return [f for f, _ in _inputs(Path(src), {".png"})]


def iter_encrypted(src: str | Path, chunk: int = 256):
    """Every MTCE PNG under ``src`` as :class:`cbirlib.protocol.retrieval.Ciphertexts` batches of at most
    ``chunk`` images (what a server receives: ciphertexts, ids, public parameters and key
    fingerprints). All must share parameters and size."""
    from .retrieval import Ciphertexts

    files = encrypted_files(src)
    params = size = shape = None
    for s in range(0, len(files), chunk):
        images, ids, fps = [], [], []
        for file in files[s:s + chunk]:
            meta = read_metadata(file)
            arr, _ = read_image(file)
            if params is None:
                params, size, shape = meta["params"], tuple(meta["size"]), arr.shape
            if meta["params"] != params or tuple(meta["size"]) != size or arr.shape != shape:
                raise ImageFileError(f"{file}: parameters or size differ from the rest of {src}")
            images.append(arr)
            ids.append(meta["image_id"])
            fps.append(meta["key_fingerprint"])
        yield Ciphertexts(tuple(ids), np.stack(images), params, size, tuple(fps))


def load_encrypted(src: str | Path):
    """Every MTCE PNG under ``src`` as one :class:`cbirlib.protocol.retrieval.Ciphertexts` (see
    :func:`iter_encrypted`)."""
    return next(iter_encrypted(src, chunk=1 << 30))


def to_png_bytes(ciphertexts, n: int = 0) -> bytes:
    """Image ``n`` of :class:`~cbirlib.protocol.retrieval.Ciphertexts` as an MTCE PNG (the bytes
    ``cbir encrypt`` writes: pixels plus the metadata a server and a decrypting user read)."""
    import io

    img = ciphertexts.images[n]
    mode = "L" if img.shape[-1] == 1 else "RGB"
    meta = {"version": META_VERSION, "params": ciphertexts.params.record(), "image_id": ciphertexts.ids[n],
            "size": list(ciphertexts.size), "mode": mode,
            "key_fingerprint": None if ciphertexts.fingerprints is None else ciphertexts.fingerprints[n]}
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(META_KEY, json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if mode == "L" else img, mode).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def from_png_bytes(data: bytes, name: str = "upload"):
    """One MTCE PNG (bytes, as ``cbir encrypt`` writes them) as
    :class:`~cbirlib.protocol.retrieval.Ciphertexts` of one image; a PNG without MTCE metadata (a
    plaintext), another format, or damage is an :class:`ImageFileError` naming ``name``."""
    import io

    from .retrieval import Ciphertexts

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            text = getattr(im, "text", {}).get(META_KEY)
            if im.format != "PNG" or text is None:
                raise ImageFileError(f"{name} is not an MTCE-encrypted PNG (no {META_KEY} metadata): the server "
                                     "takes ciphertexts only")
            meta = json.loads(text)
            if meta.get("version") != META_VERSION:
                raise ImageFileError(f"{name}: metadata version {meta.get('version')!r} is not {META_VERSION}")
            params = CipherParams.from_record(meta["params"])
            if params.depth != 8:
                raise ImageFileError(f"{name}: {params.depth}-bit ciphertexts; retrieval takes 8-bit ones (the "
                                     "models read 8 bits)")
            arr = np.asarray(im.convert(meta["mode"]), dtype=np.uint8)
    except ImageFileError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, KeyError, TypeError) as e:
        raise ImageFileError(f"{name}: not a readable MTCE PNG ({type(e).__name__})") from None
    arr = arr[..., None] if arr.ndim == 2 else arr
    fp = meta.get("key_fingerprint")
    return Ciphertexts((str(meta["image_id"]),), arr[None], params, tuple(meta["size"]),
                       (fp,) if fp else None)
