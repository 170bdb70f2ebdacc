"""The classification chapter's runs: configurations from a profile, sweep points and their tables.

A *point* is one cell of a sweep grid (:mod:`cbirlib.workflow`): one model, domain, key mode, seed,
split scheme and fold, trained end to end or head-only. :func:`run_point` trains it, predicts
every test image of its fold, and, as asked, adds beside it

- the ciphertext-statistics probe (:func:`cbirlib.core.attacks.ciphertext_statistics` + logistic
  regression) on the same fold's ciphertexts,
- retrieval with the trained Psi (test images as queries, the fold's train + val images as the
  database; per-query average precision and precision at 10),
- Table VIII's quantization variants of the trained network.

It writes per-image predictions, per-query scores, the training curve and a ``point.json``
(configuration, timings, provenance) into one folder, atomically. :func:`aggregate` joins every
point of a sweep into tidy tables with ``n``, ``ci_low``, ``ci_high`` (Wilson for accuracies,
bootstrap over queries for mAP) and exact McNemar tests for paired comparisons.

Intervals describe the sampling of test images: each image is tested once per seed across the
folds, so ``n`` is the number of distinct images. Rows with ``seed = "mean"`` average the seeds'
accuracies and give the Wilson interval at that mean with the same ``n``; the seeds' spread is in
``seed_min`` / ``seed_max``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import profiles, provenance, results, stats
from ..core import attacks
from ..datasets import data as cbir_data, splits
from ..learning import models, retrievalmetrics, train
from ..learning.experimentconfig import Domain, ExperimentConfig, ExperimentError
from . import quantstudy
# the points of a sweep (torch-free, for planning), re-exported: the sweep engine runs them from here
from .classificationpoints import POINT_OPTIONS, check_point, folds_of, point_config, point_id  # noqa: F401


def config_for(profile: str, model: str, **overrides) -> ExperimentConfig:
    """The classification profile's training settings (image size, trainable part, epochs, images
    per class, ...) for ``model``, with the non-None ``overrides``; ``weights`` is resolved (``auto``
    warns once when it falls back to the bundled weights)."""
    if profile not in profiles.PROFILE_NAMES:
        raise ExperimentError(f"unknown profile {profile!r}; choose one of {profiles.PROFILE_NAMES}")
    if model not in models.MODEL_NAMES:  # before the weights are looked up for it
        raise ExperimentError(f"unknown model {model!r}; choose one of {models.MODEL_NAMES}")
    p = profiles.PROFILES["02_classification"][profile]
    base = {k: p[k] for k in ("image_size", "trainable", "epochs", "batch_size", "lr", "train_per_class",
                              "val_per_class", "test_per_class", "domains", "amp") if k in p}
    chosen = base | {k: v for k, v in overrides.items() if v is not None}
    chosen["domains"] = tuple(chosen["domains"])
    chosen["weights"] = models.resolve_weights(model, chosen.get("weights", "auto"), warn=False)
    return ExperimentConfig(model=model, profile=profile, **chosen)


def _probe(domain: Domain, sp: dict[str, train.SplitData], seed: int) -> np.ndarray:
    size = sp["train"].images.shape[1]
    wanted = (8, 7, 4, 2, 1) if domain.block_size is None else (max(domain.block_size, 4), domain.block_size)
    stat_b = next(b for b in wanted if size % b == 0)  # block statistics on >= 4-px windows where they fit
    f = {s: attacks.ciphertext_statistics(sp[s].images, stat_b) for s in ("train", "val", "test")}
    x = np.concatenate([f["train"], f["val"]])
    y = np.concatenate([sp["train"].labels, sp["val"].labels])
    return attacks.probe_predictions(x, y, f["test"], seed)


def _retrieval_rows(z: dict[str, torch.Tensor], sp: dict[str, train.SplitData], k: int = 10) -> pd.DataFrame:
    """Per-query scores of the fold's test images against its train + val images, ranked by the
    features ``z`` (Psi's output per split)."""
    db = np.concatenate([z["train"].numpy(), z["val"].numpy()])
    db_labels = np.concatenate([sp["train"].labels, sp["val"].labels])
    rel = retrievalmetrics.relevance(z["test"].numpy(), sp["test"].labels, db, db_labels)
    scores = retrievalmetrics.per_query(rel, k)
    return scores.assign(id=sp["test"].ids, label=sp["test"].labels, database=len(db))


def _psi_features(res: train.DomainResult, cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """Psi's features of every split: the standardised frozen-trunk features (head mode, already
    computed) or the fine-tuned network's penultimate layer."""
    kept = res.kept
    if cfg.trainable == "head":
        psi = kept.feature_model
        return {s: (f - psi.mean) / psi.std for s, f in kept.features.items()}
    return {s: kept.feature_model.embeddings(d.images, cfg.batch_size) for s, d in kept.splits.items()}


def _quantization(res: train.DomainResult, cfg: ExperimentConfig, penultimate: dict[str, torch.Tensor]
                  ) -> dict[str, np.ndarray]:
    if cfg.trainable != "all":
        raise ExperimentError("quantization points need an end-to-end trained network (trainable='all')")
    bundle, sp = res.kept.bundle, res.kept.splits
    device = train.device_for(cfg.device)
    y = {s: sp[s].labels for s in sp}

    def predict_images(net):
        return train.predict(models.ModelBundle(net, bundle.preprocess, bundle.provenance), sp["test"].images,
                             cfg.batch_size, device)

    return quantstudy.network_variants(bundle.model, penultimate, y, predict_images, batch_size=cfg.batch_size,
                                       lr=cfg.lr / 10, seed=cfg.seed)


def run_point(point: dict, out_dir: str | Path, progress: bool = False) -> Path:
    """Train and evaluate one sweep point; write ``predictions.csv.gz`` (one row per test image and
    variant), ``retrieval.csv.gz`` (per query, when asked), ``history.csv.gz`` and ``point.json`` into
    ``out_dir`` (replaced atomically). Returns the path of ``point.json``."""
    p = check_point(point)
    cfg = point_config(p)
    cfg = replace(cfg, weights=models.resolve_weights(cfg.model, cfg.weights, warn=False))
    domain = Domain.parse(p["domain"])
    start = time.perf_counter()
    dataset = cbir_data.open_dataset(cfg.data, seed=cfg.seed)
    res = train.run_domain(cfg, dataset, domain, progress=progress, keep_model=True)
    sp = res.kept.splits
    base = dict(id=res.test_ids, label=res.y_true, fold=cfg.fold)
    preds = {"fp32": res.y_pred}
    if p["probe"]:
        preds["ciphertext-statistics probe"] = _probe(domain, sp, cfg.seed)
    z = _psi_features(res, cfg) if p["retrieval"] or p["quantization"] else {}
    if p["quantization"]:
        preds |= _quantization(res, cfg, z)
    table = pd.concat([pd.DataFrame(base | {"variant": v, "pred": pr}) for v, pr in preds.items()], ignore_index=True)
    table["correct"] = table.pred == table.label
    parts = {"predictions": table, "history": res.history}
    if p["retrieval"]:
        parts["retrieval"] = _retrieval_rows(z, sp).assign(fold=cfg.fold)
    fold_ds = train.fold_dataset(cfg, dataset)
    record = {"point": p, "id": point_id(p), "config": cfg.record(), "differences_from_paper": cfg.differences_from_paper(),
              "split": fold_ds.provenance.get("split", "the dataset's slab split"),
              "counts": {s: int(len(d.labels)) for s, d in sp.items()}, "classes": dataset.classes,
              "best_epoch": res.best_epoch, "epochs_run": int(len(res.history)),
              "stopped_early": bool(res.stopped_early),
              "accuracy": float((res.y_pred == res.y_true).mean()), "seconds": time.perf_counter() - start,
              "weights": res.weights, "dataset": cbir_data.dataset_record(dataset),
              "device": str(train.device_for(cfg.device)), "threads": torch.get_num_threads(),
              "environment": provenance.environment()}
    return results.write_point(Path(out_dir), parts, record)


# --------------------------------------------------------------------------- aggregation

#: what identifies a configuration in the tables (seed, fold and variant come on top)
GROUP = ["model", "trainable", "domain", "key_mode", "split", "strength", "image_size", "lr", "regime"]


def regime_text(cfg: dict) -> str:
    """How a point's network was trained, in words (image size aside): end to end or head only,
    epochs, patience, learning rates, schedule, precision. Points of one regime share it."""
    if cfg["trainable"] == "head":
        return f"head only, {cfg['epochs']} epochs, lr {cfg['lr']:g}"
    head = cfg.get("head_epochs") or 0
    parts = [(f"head alone {head} epochs, then " if head else "") + f"end to end, {cfg['epochs']} epochs"]
    if cfg.get("patience"):
        parts.append(f"patience {cfg['patience']}")
    backbone = cfg.get("backbone_lr")
    parts.append(f"lr {cfg['lr']:g}" + (f" (pretrained {backbone:g})" if backbone not in (None, cfg["lr"]) else ""))
    if cfg.get("schedule", "constant") != "constant":
        parts.append(cfg["schedule"])
    if cfg.get("amp"):
        parts.append("bf16")
    return ", ".join(parts)


def load_points(points_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every finished point under ``points_dir``: (points, predictions, retrieval), each row
    carrying its point's identifying columns (model, trainable, domain, key_mode, split, seed, fold)."""
    rows, preds, retr = [], [], []
    for f in sorted(Path(points_dir).glob("*/point.json")):
        rec = json.loads(f.read_text())
        p, cfg = rec["point"], rec["config"]
        dom = Domain.parse(p["domain"])
        ident = dict(model=cfg["model"], trainable=cfg["trainable"], domain=dom.name,
                     key_mode="none" if dom.block_size is None else cfg["key_mode"], split=cfg["split"],
                     strength=int(cfg["strength"]), image_size=int(cfg["image_size"]), lr=float(cfg["lr"]),
                     regime=regime_text(cfg), seed=int(cfg["seed"]), fold=int(cfg["fold"]), arm=p.get("arm", ""), point=rec["id"])
        rows.append(ident | {"accuracy": rec["accuracy"], "seconds": rec["seconds"], "epochs_run": rec["epochs_run"],
                             "best_epoch": rec["best_epoch"], "stopped_early": rec["stopped_early"],
                             "n_test": rec["counts"]["test"],
                             "n_train": rec["counts"]["train"], "device": rec["device"]})
        t = results.read_point_part(f.parent, "predictions").assign(**{k: v for k, v in ident.items() if k != "fold"})
        preds.append(t)
        r = results.read_point_part(f.parent, "retrieval")
        if r is not None:
            retr.append(r.assign(**{k: v for k, v in ident.items() if k != "fold"}))
    if not rows:
        raise FileNotFoundError(f"no finished points under {points_dir}")
    return (pd.DataFrame(rows), pd.concat(preds, ignore_index=True),
            pd.concat(retr, ignore_index=True) if retr else pd.DataFrame())


def _accuracy_rows(g: pd.DataFrame) -> dict:
    n, k = len(g), int(g.correct.sum())
    lo, hi = stats.wilson(k, n)
    return dict(n=n, k=k, value=k / n if n else np.nan, ci_low=lo, ci_high=hi)


def accuracy_table(points: pd.DataFrame, preds: pd.DataFrame, expected_images: int | None = None) -> pd.DataFrame:
    """Accuracy per configuration, variant and seed over every tested image (all folds), with the
    Wilson interval; plus ``seed = "mean"`` rows (see the module docstring). ``complete`` says
    whether every fold ran (and, given ``expected_images``, every image was tested)."""
    keys = GROUP + ["variant", "seed"]
    folds_run = points.groupby(GROUP + ["seed"]).fold.nunique().rename("folds_run")
    out = []
    for key, g in preds.groupby(keys, sort=True):
        row = dict(zip(keys, key)) | _accuracy_rows(g)
        row["folds_run"] = int(folds_run.get(tuple(key[:len(GROUP)]) + (key[-1],), 0))
        row["images_unique"] = bool(g.id.is_unique)
        out.append(row)
    per_seed = pd.DataFrame(out)
    means = []
    for key, g in per_seed.groupby(GROUP + ["variant"], sort=True):
        g = g[g.n == g.n.max()]  # a seed with folds missing would average different images: left out
        n = int(g.n.min())
        m = float(g.value.mean())
        lo, hi = stats.wilson(round(m * n), n)
        means.append(dict(zip(GROUP + ["variant"], key)) | dict(seed="mean", n=n, k=round(m * n), value=m, ci_low=lo,
                                                                ci_high=hi, seeds=len(g), seed_min=g.value.min(),
                                                                seed_max=g.value.max(), folds_run=int(g.folds_run.min()),
                                                                images_unique=bool(g.images_unique.all())))
    table = pd.concat([per_seed.assign(seed=per_seed.seed.astype(str)), pd.DataFrame(means)], ignore_index=True)
    table["complete"] = table.images_unique & ((table.n == expected_images) if expected_images else True)
    table["metric"] = "accuracy"
    return table.assign(source="ours")


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    m = a[["id", "correct"]].merge(b[["id", "correct"]], on="id", suffixes=("_a", "_b"))
    t = stats.mcnemar(m.correct_a, m.correct_b)
    return t | dict(acc_a=float(m.correct_a.mean()) if len(m) else np.nan,
                    acc_b=float(m.correct_b.mean()) if len(m) else np.nan)


def paired_table(preds: pd.DataFrame) -> pd.DataFrame:
    """Exact McNemar tests on the same images and seed: shared vs per-image keys, plaintext vs
    each encrypted domain, end-to-end vs head-only, every two regimes of the same end-to-end run
    (kind ``regime``: ``a`` and ``b`` name the regimes; the row carries ``a``'s), the probe vs the
    network, and every quantization variant vs fp32. One row per test:
    the configuration of ``a`` (its GROUP columns and seed), ``kind``, what ``a`` and ``b`` are,
    n, discordant counts, both accuracies and the p-value."""
    rows = []
    fp = preds[preds.variant == "fp32"]
    idx = {k: g for k, g in fp.groupby(GROUP + ["seed"])}

    def add(k: dict, kind: str, a_name: str, ga: pd.DataFrame, b_name: str, gb: pd.DataFrame) -> None:
        rows.append(k | dict(kind=kind, a=a_name, b=b_name) | _paired(ga, gb))

    for key, g in idx.items():
        k = dict(zip(GROUP + ["seed"], key))
        if k["key_mode"] == "per-image":
            other = idx.get(tuple((k | {"key_mode": "shared"})[c] for c in GROUP + ["seed"]))
            if other is not None:
                add(k, "key mode", "shared", other, "per-image", g)
        if k["key_mode"] != "none":  # the plaintext run of the same model, regime, split and seed
            plain = idx.get(tuple((k | {"domain": "plaintext", "key_mode": "none"})[c] for c in GROUP + ["seed"]))
            if plain is not None:
                add(k, "domain", "plaintext", plain, k["domain"], g)
        if k["trainable"] == "all":  # the head-only run of the same model, domain, key, split and seed
            free = {"image_size": 0, "lr": 0, "regime": ""}
            heads = [v for kk, v in idx.items() if dict(zip(GROUP + ["seed"], kk)) | free
                     == k | {"trainable": "head"} | free]
            if heads:
                add(k, "training", "end-to-end", g, "head-only", heads[0])
    same = [c for c in GROUP if c not in ("regime", "lr")] + ["seed"]  # the same run but for its training
    for _, runs in pd.DataFrame([dict(zip(GROUP + ["seed"], key)) for key in idx]).groupby(same):
        if runs.trainable.iloc[0] != "all" or len(runs) < 2:
            continue
        ordered = runs.sort_values("regime").to_dict("records")
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                ga, gb = (idx[tuple(r[c] for c in GROUP + ["seed"])] for r in (a, b))
                add(a, "regime", a["regime"], ga, b["regime"], gb)
    for key, g in preds.groupby(GROUP + ["seed"]):
        k = dict(zip(GROUP + ["seed"], key))
        base = g[g.variant == "fp32"]
        for variant, gv in g[g.variant != "fp32"].groupby("variant"):
            add(k, "variant", variant, gv, "fp32", base)
    return pd.DataFrame(rows).assign(source="ours")


def retrieval_table(retr: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """mAP (mean per-query AP over every query of every fold) and precision@10 per configuration
    and seed, with percentile-bootstrap intervals over queries."""
    out = []
    for key, g in retr.groupby(GROUP + ["seed"], sort=True):
        for metric, col in (("mAP", "ap"), ("precision@10", "p_at_k")):
            lo, hi = stats.bootstrap_mean(g[col], seed=seed)
            out.append(dict(zip(GROUP + ["seed"], key)) | dict(metric=metric, n=len(g), value=float(g[col].mean()),
                                                               ci_low=lo, ci_high=hi,
                                                               index="trained Psi" if key[1] == "all" else "frozen trunk"))
    return pd.DataFrame(out).assign(source="ours")


def aggregate(points_dir: str | Path, expected_images: int | None = None) -> dict[str, pd.DataFrame]:
    """Every table of a sweep: ``points`` (one row per point: timings, epochs), ``accuracy``,
    ``paired``, and ``retrieval`` when any point measured it."""
    points, preds, retr = load_points(points_dir)
    out = {"points": points.assign(source="ours"), "accuracy": accuracy_table(points, preds, expected_images),
           "paired": paired_table(preds)}
    if len(retr):
        out["retrieval"] = retrieval_table(retr)
    return out


# --------------------------------------------------------------------------- the real radiograph check set

def checkset_predictions(profile: str, model: str, trained_on: str = "default", seed: int = 0) -> pd.DataFrame:
    """A head-only model of the classification profile trained on ``trained_on`` (plaintext, its
    train split) classifies every real radiograph of the check set. One row per image: model,
    trained_on, id, label, predicted, correct."""
    cfg = config_for(profile, model, data=trained_on, domains=("plain",), trainable="head", seed=seed,
                     test_per_class=None)
    train_ds = cbir_data.open_dataset(trained_on, seed=seed)
    fitted = train.run_domain(cfg, train_ds, "plain", progress=False, keep_model=True)
    check = cbir_data.open_dataset("checkset")
    images, _, ids = check.load("test", cfg.image_size)
    labels = check.table.set_index("path").loc[ids, "label"].tolist()
    with torch.no_grad():
        logits = fitted.kept.head(fitted.kept.feature_model(images))
    predicted = [train_ds.classes[i] for i in logits.argmax(1).tolist()]
    return pd.DataFrame(dict(model=model, trained_on=trained_on, id=ids, label=labels, predicted=predicted,
                             correct=[p == t for p, t in zip(predicted, labels)], image_size=cfg.image_size,
                             source="ours"))


def checkset_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy on the check set per model, training data and class (and all), with n and the
    Wilson interval."""
    rows = []
    for (model, trained_on), g in predictions.groupby(["model", "trained_on"], sort=False):
        for label, gl in [("all", g), *g.groupby("label")]:
            k, n = int(gl.correct.sum()), len(gl)
            lo, hi = stats.wilson(k, n)
            rows.append(dict(model=model, trained_on=trained_on, label=label, n=n, k=k, value=k / n, ci_low=lo,
                             ci_high=hi, most_predicted=gl.predicted.value_counts().idxmax(), metric="accuracy",
                             source="ours"))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the live run (chapter and GPU script)

def live_run(configs: list[ExperimentConfig], results_name: str, parameters: dict, results_dir=None,
             progress: bool = False) -> dict:
    """The classification chapter's live run: every model of ``configs`` on every domain, with
    Table IV beside the setup and Tables VI-VII beside the paper; writes setup, table_vi_vii,
    confusion and history under ``<results_dir>/<results_name>/``. Returns the experiments and
    tables (keys: experiments, setup, table, paper, confusion, history)."""
    from .. import paper
    from ..learning import evaluate, experimentconfig

    setup = pd.concat([experimentconfig.setup_table(c) for c in configs], ignore_index=True)
    results.write_table(setup, results_name, "setup", parameters, results_dir)
    experiments = [train.run_experiment(c, progress=progress) for c in configs]
    table = pd.concat([evaluate.experiment_table(e) for e in experiments], ignore_index=True)
    paper_rows = paper.table_vi_vii()
    record = dict(experiments=[e.provenance for e in experiments])
    results.write_table(pd.concat([table, paper_rows], ignore_index=True), results_name, "table_vi_vii",
                        parameters, results_dir, **record)
    confusion = pd.concat([evaluate.confusion_table(e) for e in experiments], ignore_index=True)
    results.write_table(confusion, results_name, "confusion", parameters, results_dir, **record)
    history = pd.concat([evaluate.history_table(e) for e in experiments], ignore_index=True)
    results.write_table(history, results_name, "history", parameters, results_dir, **record)
    return dict(experiments=experiments, setup=setup, table=table, paper=paper_rows, confusion=confusion,
                history=history)


def main(argv: list[str] | None = None) -> int:
    """``python -m cbirlib.studies.classificationstudy paper``: the paper profile's live run (Table IV) for
    the given models, without papermill (for a GPU machine), into ``--results-dir``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cbirlib.studies.classificationstudy")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("paper", help="Table IV: every weight trained, 224 px, 100 epochs, batch 32 (bf16 on CUDA)")
    p.add_argument("--models", nargs="+", default=["vgg16", "vit"])
    p.add_argument("--data", default="default")
    p.add_argument("--weights", default="bundled")
    p.add_argument("--results-dir", required=True)
    p.add_argument("--results-name", default="02_classification_paper")
    args = parser.parse_args(argv)
    configs = [config_for("paper", m, data=args.data, weights=args.weights) for m in args.models]
    parameters = configs[0].record() | {"models": args.models}
    start = time.perf_counter()
    out = live_run(configs, args.results_name, parameters, args.results_dir, progress=False)
    for e in out["experiments"]:
        print(f"{e.config.model}: {e.provenance['wall_seconds']:.0f} s on {e.provenance['device']}")
    acc = out["table"][(out["table"].metric == "accuracy") & (out["table"]["class"] == "all")]
    print(acc[["model", "domain", "value"]].to_string(index=False))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
