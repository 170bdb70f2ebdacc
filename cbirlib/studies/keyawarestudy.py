"""The key-aware chapter's experiments: plaintext, the paper's MTCE with per-image keys, the
key-aligned shared key with and without the model transform, wrong keys, and key-invariant
training — accuracy and retrieval mAP with the same frozen-trunk + linear-head recipe as the
classification chapter's CPU profiles, plus the three-party protocol with a key-aware server."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import paths, profiles, stats
from ..core import attacks, cipher, keys as cbkeys
from ..datasets import data as cbdata
from ..learning import evaluate, experimentconfig, features, fitting, keyaware, models, retrievalmetrics, train
from ..protocol import retrieval


@dataclass(frozen=True)
class StudyConfig(experimentconfig.ExperimentConfig):
    """The classification experiment's settings (validated the same way: data, weights, image size,
    epochs, batch size, learning rate, images per class, seed, profile) plus the key-aware ones.
    Only the ViT and the frozen-trunk + linear-head recipe are supported."""

    model: str = "vit"
    domains: tuple = ("plain",)
    image_size: int = 112
    trainable: str = "head"
    profile: str = "cpu"
    block_size: int = 14           # must equal the ViT's patch size
    negpos: bool = True            # invert a keyed subset of values too
    fresh_keys: int = 3            # key-invariant training: encryptions (fresh per-image keys) per image

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model != "vit":
            raise experimentconfig.ExperimentError("key-aware transforms exist for Vision Transformers only (model='vit'); "
                                        "VGG-16 can only learn invariance (see the key-invariant variant)")
        if self.trainable != "head":
            raise experimentconfig.ExperimentError("the key-aware study trains a linear head on the frozen trunk "
                                        "(trainable='head')")
        if not isinstance(self.fresh_keys, int) or self.fresh_keys < 1:
            raise experimentconfig.ExperimentError(f"fresh_keys must be a positive integer, got {self.fresh_keys!r}")
        if self.image_size % self.block_size:
            raise experimentconfig.ExperimentError(f"block size {self.block_size} does not divide image size {self.image_size}")

    def record(self) -> dict:
        """Parameters as run (both key modes always run, so no key_mode; no domain list)."""
        out = super().record()
        for unused in ("key_mode", "domains"):
            out.pop(unused)
        return out


@dataclass
class Study:
    """The chapter's results and what the protocol, the split by source and the notebook reuse."""

    table: pd.DataFrame                   # variant, class, metric, value, source
    identity: dict                        # the one-image identity check (logits per model)
    classes: list[str]
    images: dict[str, np.ndarray]         # split -> (N, S, S, 3) uint8 plaintext
    labels: dict[str, np.ndarray]         # split -> (N,) class indices
    ids: dict[str, list[str]]             # split -> image ids
    key: cbkeys.Key                       # the shared key-aligned key
    schedule: keyaware.AlignedSchedule    # its expansion
    aligned: dict[str, np.ndarray]        # split -> key-aligned ciphertexts
    master: cbkeys.Key                    # the paper's MTCE: master key of the per-image keys
    mtce: dict[str, np.ndarray]           # split -> MTCE ciphertexts under per-image keys
    bundle: models.ModelBundle            # the plain ViT
    transformed: models.ModelBundle       # the ViT transformed for ``key``
    head: fitting.LinearHead              # the plaintext head ...
    mean: torch.Tensor                    # ... and its feature standardisation (D,)
    std: torch.Tensor
    #: variant -> (features per split, mean, std): what each variant's retrieval ranks by
    retrieval_inputs: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]


def config_for(profile: str, *, model: str = "vit", weights: str = "auto", data: str = "default",
               block_size: int = 14, negpos: bool = True, fresh_keys: int | None = None,
               image_size: int | None = None, epochs: int | None = None, seed: int = 0) -> StudyConfig:
    """The chapter's configuration: the profile's values (:mod:`cbirlib.profiles`) where an
    argument is None, validated by :class:`StudyConfig`."""
    chosen = profiles.resolve("06_key_aware", profile, image_size=image_size, epochs=epochs, fresh_keys=fresh_keys,
                              train_per_class=None, val_per_class=None, test_per_class=None)
    return StudyConfig(model=model, weights=weights, data=data, image_size=chosen["image_size"],
                       block_size=block_size, negpos=negpos, fresh_keys=chosen["fresh_keys"], epochs=chosen["epochs"],
                       train_per_class=chosen["train_per_class"], val_per_class=chosen["val_per_class"],
                       test_per_class=chosen["test_per_class"], seed=seed, profile=profile)


def shared_key(cfg: StudyConfig, role: str = "shared") -> cbkeys.Key:
    """The key-aligned shared key (or, with ``role="unrelated"``, a wrong one), derived from the
    seed (reproducible; says so in its record)."""
    params = cbkeys.CipherParams(block_size=cfg.block_size, strength=0, swap=False)
    return cbkeys.experiment_key(cfg.seed, role, params)


def _features(bundle, images, cfg, device) -> torch.Tensor:
    return features.extract(bundle, images, batch_size=cfg.batch_size, device=device)


def _head(cfg, feats: dict, labels: dict):
    z, mean, std = fitting.standardise(feats)
    head, _, _ = fitting.fit_linear_head(z, labels, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed)
    return head, mean, std


def _predict(head, mean, std, feats: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return head((feats - mean) / std).argmax(1).numpy()


def _map(feats: dict, labels: dict, mean, std) -> tuple[dict, np.ndarray]:
    """mAP with its bootstrap interval over the test queries and precision@10; and the queries'
    average precisions (for paired tests between variants)."""
    z = {s: ((f - mean) / std).numpy() for s, f in feats.items()}
    db = np.concatenate([z["train"], z["val"]])
    db_y = np.concatenate([labels["train"], labels["val"]])
    scores = retrievalmetrics.retrieval_metrics(z["test"], labels["test"], db, db_y, ks=(10,))
    t = scores.table
    ap = retrievalmetrics.per_query(retrievalmetrics.relevance(z["test"], labels["test"], db, db_y), 10).ap.to_numpy()
    low, high = stats.bootstrap_mean(ap)
    return ({"mAP": float(t.loc[t.metric == "mAP", "value"].iloc[0]), "mAP_ci_low": low, "mAP_ci_high": high,
             "precision@10": float(t.loc[(t.metric == "precision@k") & (t.k == 10), "value"].iloc[0])}, ap)


def run(cfg: StudyConfig, progress: bool = False) -> Study:
    """Every variant of the chapter on one dataset. Variants that reuse the plaintext head (the
    deployed model, not retrained) are marked so in their name."""
    device = train.device_for("auto")
    dataset = cbdata.open_dataset(cfg.data, seed=cfg.seed)
    classes = list(dataset.classes)
    splits = {s: dataset.load(s, cfg.image_size, getattr(cfg, f"{s}_per_class")) for s in ("train", "val", "test")}
    labels = {s: v[1] for s, v in splits.items()}
    images = {s: v[0] for s, v in splits.items()}
    ids = {s: list(v[2]) for s, v in splits.items()}
    bundle = models.build_model("vit", len(classes), models.resolve_weights("vit", cfg.weights, warn=False),
                                cfg.image_size, cfg.seed)  # the weights used are in the provenance record
    patch = bundle.model.patch_embed.proj.kernel_size[0]
    if cfg.block_size != patch:
        raise ValueError(f"block_size {cfg.block_size} must equal the ViT's patch size {patch}")
    shape = images["test"].shape[1:]
    key = shared_key(cfg)
    sched = keyaware.aligned_schedule(key, shape, cfg.negpos)
    wrong = keyaware.aligned_schedule(shared_key(cfg, "unrelated"), shape, cfg.negpos)
    transformed = keyaware.transform_model(bundle, sched)
    wrong_model = keyaware.transform_model(bundle, wrong)
    aligned = {s: keyaware.encrypt_aligned(x, sched) for s, x in images.items()}
    master = cbkeys.experiment_key(cfg.seed, "owner", cbkeys.CipherParams(cfg.block_size, cfg.strength, cfg.swap))
    mtce = {s: cipher.encrypt_with_ids(x, ids[s], master) for s, x in images.items()}

    rows = []
    retrieval_inputs = {}  # variant -> (features per split, standardisation), for retrieval_by_source

    predictions = {}  # variant -> (n_test,) predicted labels, for paired tests
    average_precisions = {}  # variant -> (n_test,) per-query AP, for paired tests of mAP

    def record(variant, y_pred, feats, mean, std, seconds):
        retrieval_inputs[variant] = (feats, mean, std)
        predictions[variant] = np.asarray(y_pred)
        rows.extend(evaluate.tidy_metrics(labels["test"], y_pred, classes, variant=variant).to_dict("records"))
        maps, average_precisions[variant] = _map(feats, labels, mean, std)
        for metric, value in maps.items():
            rows.append(dict(variant=variant, **{"class": "all"}, metric=metric, value=value, source="ours"))
        rows.append(dict(variant=variant, **{"class": "all"}, metric="seconds", value=seconds, source="ours"))

    t0 = time.perf_counter()
    plain = {s: _features(bundle, x, cfg, device) for s, x in images.items()}
    head_p, mean_p, std_p = _head(cfg, plain, labels)
    record("plaintext", _predict(head_p, mean_p, std_p, plain["test"]), plain, mean_p, std_p, time.perf_counter() - t0)

    t0 = time.perf_counter()
    f_mtce = {s: _features(bundle, x, cfg, device) for s, x in mtce.items()}
    h, m, sd = _head(cfg, f_mtce, labels)
    record(f"paper MTCE {cfg.block_size}-px, per-image keys", _predict(h, m, sd, f_mtce["test"]), f_mtce, m, sd,
           time.perf_counter() - t0)

    t0 = time.perf_counter()
    f_al = {s: _features(bundle, x, cfg, device) for s, x in aligned.items()}
    h, m, sd = _head(cfg, f_al, labels)
    record("key-aligned shared key, plain model, head retrained", _predict(h, m, sd, f_al["test"]), f_al, m, sd,
           time.perf_counter() - t0)
    record("key-aligned shared key, plain model, plaintext head", _predict(head_p, mean_p, std_p, f_al["test"]),
           f_al, mean_p, std_p, 0.0)

    t0 = time.perf_counter()
    f_tr = {s: _features(transformed, x, cfg, device) for s, x in aligned.items()}
    record("key-aligned shared key, transformed model, plaintext head",
           _predict(head_p, mean_p, std_p, f_tr["test"]), f_tr, mean_p, std_p, time.perf_counter() - t0)

    t0 = time.perf_counter()
    f_wr = {s: _features(wrong_model, x, cfg, device) for s, x in aligned.items()}
    record("key-aligned, model transformed with a wrong key, plaintext head",
           _predict(head_p, mean_p, std_p, f_wr["test"]), f_wr, mean_p, std_p, time.perf_counter() - t0)

    t0 = time.perf_counter()
    train_feats, train_labels = [f_mtce["train"]], [labels["train"]]
    for r in range(1, cfg.fresh_keys):
        fresh = cbkeys.experiment_key(cfg.seed, "fresh", master.params, index=r)
        train_feats.append(_features(bundle, cipher.encrypt_with_ids(images["train"], ids["train"], fresh), cfg, device))
        train_labels.append(labels["train"])
    aug = {"train": torch.cat(train_feats), "val": f_mtce["val"], "test": f_mtce["test"]}
    aug_labels = {"train": np.concatenate(train_labels), "val": labels["val"], "test": labels["test"]}
    h, m, sd = _head(cfg, aug, aug_labels)
    invariant = f"key-invariant training: MTCE per-image keys, {cfg.fresh_keys} fresh keys per training image"
    record(invariant, _predict(h, m, sd, f_mtce["test"]), f_mtce, m, sd, time.perf_counter() - t0)
    # the same test images under the same keys: an exact McNemar test against the paper's MTCE head
    truth = np.asarray(labels["test"])
    paired = stats.mcnemar(predictions[invariant] == truth,
                           predictions[f"paper MTCE {cfg.block_size}-px, per-image keys"] == truth)
    for metric, value in (("paired_p_vs_paper_mtce", paired["p_value"]), ("paired_only_right", paired["a_only"]),
                          ("paired_only_paper_mtce_right", paired["b_only"])):
        rows.append(dict(variant=invariant, **{"class": "all"}, metric=metric, value=float(value), source="ours"))

    for variant, ap in average_precisions.items():  # each variant's mAP against plaintext's, query by query
        if variant != "plaintext":
            p = stats.signed_rank_p(ap - average_precisions["plaintext"])
            rows.append(dict(variant=variant, **{"class": "all"}, metric="mAP_p_vs_plaintext", value=p, source="ours"))

    x0 = images["test"][:1]
    with torch.no_grad():
        plain_logits = bundle.model.eval()(bundle.preprocess(x0))
        enc_logits = transformed.model.eval()(transformed.preprocess(aligned["test"][:1]))
        untransformed = bundle.model(bundle.preprocess(aligned["test"][:1]))
        wrong_logits = wrong_model.model.eval()(wrong_model.preprocess(aligned["test"][:1]))
    identity = dict(image=ids["test"][0], plain=plain_logits[0].numpy(), transformed_on_encrypted=enc_logits[0].numpy(),
                    untransformed_on_encrypted=untransformed[0].numpy(), wrong_key=wrong_logits[0].numpy(),
                    max_abs_feature_difference=float((f_tr["test"] - plain["test"]).abs().max()),
                    feature_scale=float(plain["test"].abs().max()))
    return Study(pd.DataFrame(rows), identity, classes, images, labels, ids, key, sched, aligned, master, mtce,
                 bundle, transformed, head_p, mean_p, std_p, retrieval_inputs)


def intensity_histogram(images: np.ndarray, bins: int = 32) -> torch.Tensor:
    """(N, S, S, C) uint8 -> (N, bins) float32 histogram of the grey values (channels averaged):
    global intensity statistics with no spatial information and no network."""
    grey = images.reshape(len(images), -1, images.shape[-1]).mean(-1)  # (N, pixels), values in [0, 255]
    bin_of = np.minimum((grey * (bins / 256.0)).astype(np.int64), bins - 1) + bins * np.arange(len(images))[:, None]
    counts = np.bincount(bin_of.ravel(), minlength=bins * len(images)).reshape(len(images), bins)
    return torch.tensor(counts.astype(np.float32))  # one bincount for the batch, no loop over images


HISTOGRAM_VARIANT = "plaintext, 32-bin intensity histogram (no network)"


def retrieval_by_source(study: Study, dataset) -> pd.DataFrame | None:
    """Each variant's retrieval split by where the neighbours come from (see
    :func:`cbirlib.learning.retrievalmetrics.source_breakdown`; source = the scan an image was sliced from), beside
    a network-free baseline: the plaintext's intensity histogram. None when the data has no
    ``volume`` column (every image its own source). Tidy rows: variant, metric, value, source."""
    if "volume" not in dataset.table:
        return None
    vol = dataset.table.set_index("path")["volume"]
    src = {s: vol.loc[study.ids[s]].to_numpy() for s in ("train", "val", "test")}
    inputs = dict(study.retrieval_inputs)
    hist = {s: intensity_histogram(study.images[s]) for s in ("train", "val", "test")}
    _, h_mean, h_std = fitting.standardise(hist)
    inputs[HISTOGRAM_VARIANT] = (hist, h_mean, h_std)
    labels = study.labels
    db_y = np.concatenate([labels["train"], labels["val"]])
    db_src = np.concatenate([src["train"], src["val"]])
    rows = []
    for variant, (feats, mean, std) in inputs.items():
        z = {s: ((f - mean) / std).numpy() for s, f in feats.items()}
        r = retrievalmetrics.source_breakdown(z["test"], labels["test"], src["test"], np.concatenate([z["train"], z["val"]]),
                                       db_y, db_src, k=10)
        rows += [dict(variant=variant, metric=m, value=float(v), source="ours") for m, v in r.items() if m != "k"]
    return pd.DataFrame(rows)


def retrieval_source_finding(table: pd.DataFrame, variants: pd.DataFrame | None = None) -> str:
    """What the split by source shows, numbers filled in from it (the wording follows the numbers);
    with the study's ``variants`` table, each comparison with plaintext carries its paired test."""
    t = table.pivot_table(index="variant", columns="metric", values="value", sort=False)
    if variants is not None:
        tests = variants[(variants["class"] == "all") & (variants.metric == "mAP_p_vs_plaintext")]
        t = t.join(tests.set_index("variant").value.rename("mAP_p_vs_plaintext"))
    p, h = t.loc["plaintext"], t.loc[HISTOGRAM_VARIANT]
    un = t.loc["key-aligned shared key, plain model, plaintext head"]
    out = (f"Plaintext P@10 is {p['precision@k']:.3f} and {p['share_top_k_same_source']:.0%} of those ten come from the "
           f"query's own scan (neighbouring slices); with its own scan taken out of the database P@10 falls to "
           f"{p['precision@k_other_sources']:.3f} and mAP from {p['mAP']:.3f} to {p['mAP_other_sources']:.3f}, so "
           "part of the plaintext score is finding the same scan again. ")
    if h["mAP"] > p["mAP"]:
        out += (f"A 32-bin intensity histogram, with no network and no spatial information, reaches a higher mAP "
                f"({h['mAP']:.3f}; {h['mAP_other_sources']:.3f} across scans): in this data the classes differ most in "
                "their intensity statistics (a CT bone window, chest CT, MRI) — the class/scanner confound of the data "
                "chapter. ")
    else:
        out += f"A 32-bin intensity histogram reaches mAP {h['mAP']:.3f} ({h['mAP_other_sources']:.3f} across scans). "
    for variant, name in (("key-aligned shared key, plain model, plaintext head", "The untransformed model"),
                          ("key-aligned, model transformed with a wrong key, plaintext head", "The wrong key")):
        if variant not in t.index:
            continue
        v = t.loc[variant]
        test = (f", signed-rank p = {v['mAP_p_vs_plaintext']:.2g} against plaintext over the same queries"
                if "mAP_p_vs_plaintext" in v and np.isfinite(v["mAP_p_vs_plaintext"]) else "")
        if v["mAP"] > p["mAP"]:
            out += (f"{name}'s mAP ({v['mAP']:.3f}; {v['mAP_other_sources']:.3f} across scans{test}) exceeds "
                    "plaintext's; a conjecture, not tested here beyond the histogram above: scrambled patches keep "
                    "the intensity statistics and lose the anatomy, so in this data they rank by scanner — a "
                    "property of the data, not a strength of the cipher. ")
        else:
            out += f"{name}'s mAP ({v['mAP']:.3f}{test}) stays at or below plaintext's. "
    return out.strip()


def identity_table(identity: dict, classes: list[str]) -> pd.DataFrame:
    """The one-image identity: logits per class of the plain model on the plain image, the transformed
    model on its encryption, the untransformed model on it, and a model transformed with a wrong key."""
    rows = []
    for what in ("plain", "transformed_on_encrypted", "untransformed_on_encrypted", "wrong_key"):
        for c, v in zip(classes, identity[what]):
            rows.append(dict(model=what.replace("_", " "), **{"class": c}, logit=float(v), source="ours"))
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, macro F1, mAP with its 95 % bootstrap interval over the test queries and the
    Wilcoxon signed-rank p-value of the per-query APs against plaintext, and P@10, per variant
    (wide, for reading)."""
    wanted = ["accuracy", "macro_f1", "mAP", "mAP_ci_low", "mAP_ci_high", "mAP_p_vs_plaintext", "precision@10"]
    t = table[(table["class"] == "all") & table.metric.isin(wanted)]
    wide = t.pivot_table(index="variant", columns="metric", values="value", sort=False)
    return wide[[c for c in wanted if c in wide.columns]]


def probe_points(study: Study, cfg: StudyConfig) -> pd.DataFrame:
    """Ciphertext-only probe accuracy on key-aligned ciphertexts (the x axis of the frontier)
    beside the key-aware model's accuracy, for the frontier of the security chapter."""
    stat_b = max(cfg.block_size, 4)
    ftr = attacks.ciphertext_statistics(study.aligned["train"], stat_b)
    fte = attacks.ciphertext_statistics(study.aligned["test"], stat_b)
    probe = attacks.linear_probe(ftr, study.labels["train"], fte, study.labels["test"], cfg.seed)
    acc = study.table[(study.table["class"] == "all") & (study.table.metric == "accuracy")].set_index("variant")["value"]
    inv = [v for v in acc.index if v.startswith("key-invariant")][0]
    return pd.DataFrame([
        dict(label="key-aligned + transform (shared key)", model="vit", block_size=cfg.block_size,
             accuracy=float(acc["key-aligned shared key, transformed model, plaintext head"]),
             probe_accuracy=probe, source="ours"),
        dict(label="key-invariant training (per-image)", model="vit", block_size=cfg.block_size,
             accuracy=float(acc[inv]), probe_accuracy=np.nan, source="ours")])


@dataclass
class KeyAwareProtocol:
    server: retrieval.CloudServer
    query_ids: list[str]
    results: list
    exact: bool
    scores: pd.DataFrame
    #: the server's store when no folder was given (deleted with this object)
    scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False)


def run_protocol(study: Study, k: int = 5, n_queries: int = 4, store: str | Path | None = None) -> KeyAwareProtocol:
    """Fig. 2 with a key-aware server: the owner encrypts the database (train + val) with the
    shared key-aligned key and uploads it with the transformed Psi (pooled features, the plaintext
    head's standardisation); the user — who must hold the SAME key — encrypts queries; the server
    ranks ciphertexts it cannot read; the user decrypts the results with the shared key. No per-id
    key release remains: whoever holds the key reads every image."""
    sched = study.schedule
    db_ids = study.ids["train"] + study.ids["val"]
    db = np.concatenate([study.aligned["train"], study.aligned["val"]])
    params = cbkeys.CipherParams(block_size=sched.block_size, strength=0, swap=False)
    database = retrieval.Ciphertexts(tuple(db_ids), db, params, tuple(db.shape[1:3]))
    psi = features.FeatureModel(study.transformed, "pooled", study.mean, study.std)
    scratch = None if store else paths.scratch_dir("cbir-keyaware-")  # removed with the returned protocol
    store = Path(store) if store else Path(scratch.name) / "store"
    server = retrieval.CloudServer.create(store, database, psi)
    test = study.aligned["test"]
    q = retrieval.Ciphertexts(tuple(study.ids["test"]), test, params, tuple(test.shape[1:3]))
    pick = np.linspace(0, len(test) - 1, min(n_queries, len(test))).round().astype(int)
    shown = retrieval.Ciphertexts(tuple(q.ids[i] for i in pick), test[pick], params, q.size)
    results = server.query(shown, k)
    exact = all(np.array_equal(keyaware.decrypt_aligned(server.fetch(r.ids).images, sched),
                               np.stack([_plain_of(study, i) for i in r.ids])) for r in results)
    qf = server.model(q.images).numpy()
    db_labels = np.concatenate([study.labels["train"], study.labels["val"]])
    scores = retrievalmetrics.retrieval_metrics(qf, study.labels["test"], server.features, db_labels, ks=(1, 5, 10))
    table = scores.table.assign(domain="key-aligned shared key, transformed Psi", source="ours")
    return KeyAwareProtocol(server, list(shown.ids), results, exact, table, scratch)


def _plain_of(study: Study, image_id: str) -> np.ndarray:
    for s in ("train", "val", "test"):
        if image_id in study.ids[s]:
            return study.images[s][study.ids[s].index(image_id)]
    raise KeyError(image_id)


def findings(table: pd.DataFrame, identity: dict) -> list[str]:
    """Plain statements of what the table shows, numbers filled in from it."""
    acc = table[(table["class"] == "all") & (table.metric == "accuracy")].set_index("variant")["value"]
    mp = table[(table["class"] == "all") & (table.metric == "mAP")].set_index("variant")["value"]
    plain = acc["plaintext"]
    paper = [v for v in acc.index if v.startswith("paper MTCE")][0]
    inv = [v for v in acc.index if v.startswith("key-invariant")][0]
    tr = "key-aligned shared key, transformed model, plaintext head"
    return [
        f"Transformed model on key-aligned ciphertexts: accuracy {acc[tr]:.3f}, mAP {mp[tr]:.3f} — plaintext "
        f"{plain:.3f}, mAP {mp['plaintext']:.3f}; features agree to float32 rounding "
        f"({'below' if identity['max_abs_feature_difference'] < 1e-5 * identity['feature_scale'] else 'ABOVE'} "
        "1e-5 of their scale).",
        f"Untransformed model with the plaintext head: {acc['key-aligned shared key, plain model, plaintext head']:.3f}; "
        f"transformed with a wrong key: {acc['key-aligned, model transformed with a wrong key, plaintext head']:.3f}. "
        f"A head retrained on key-aligned ciphertexts with the untransformed model reaches "
        f"{acc['key-aligned shared key, plain model, head retrained']:.3f}: one consistent key keeps much of the "
        "structure a frozen trunk needs, even without the transform.",
        f"The paper's MTCE with per-image keys at the same block size: {acc[paper]:.3f} (mAP {mp[paper]:.3f}); "
        f"key-invariant training: {acc[inv]:.3f} ({acc[inv] - acc[paper]:+.3f}).",
    ]
