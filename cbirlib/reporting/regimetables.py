"""Tables VI-VII in a regime where plaintext reaches the paper's level: views of the committed
``encrypted-regime`` sweep and of the paper-scale GPU runs (``paper-gpu``).

A comparison of encrypted with plaintext accuracy means something only where plaintext itself
reaches the paper's level in the same regime (the same model, image size and training), so every
view here carries the regime and the plaintext accuracy of that regime beside each encrypted
number, and :func:`verdict` judges an encrypted row against the paper only when that plaintext
interval reaches the paper's plaintext value; otherwise the row is "not comparable here".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from . import sweeptables

SWEEP = "encrypted-regime"
GPU_SWEEP = "paper-gpu"
#: the image size of the main arms (the cipher, seeds, held-out patients)
MAIN_SIZE = 112
#: what identifies a configuration in these views
KEYS = ["model", "trainable", "domain", "key_mode", "split", "strength", "image_size", "regime"]
DOMAIN_ORDER = ("plaintext", "MTCE 16-px blocks", "MTCE 8-px blocks", "MTCE 1-px blocks")


def at_papers_level(value: float, n: int, paper: float, paper_n: int = sweeptables.PAPER_TEST_IMAGES) -> bool:
    """Whether our plaintext accuracy (``value`` over ``n`` images) is not significantly below the
    paper's (``paper`` over its ``paper_n`` test images): the upper end of the 95 % Newcombe interval
    of the difference, ours minus the paper's, reaches 0. The paper's value carries sampling noise
    of its own (300 test images), so a plaintext a little under it can still be at its level."""
    if any(np.isnan(v) for v in (value, paper)) or not n:
        return False
    return stats.newcombe_difference(round(value * n), n, round(paper * paper_n), paper_n)[1] >= 0


def verdict(paper: float, low: float, high: float, plain_at_level: bool, *, protocol: bool = True,
            value: float | None = None, n: int | None = None,
            paper_n: int = sweeptables.PAPER_TEST_IMAGES) -> str:
    """An encrypted row against the paper: ``not comparable here`` unless our plaintext in the same
    regime is at the paper's level (:func:`at_papers_level`); then ``reproduced`` when the
    difference from the paper is within noise, else ``differs``. Given our ``value`` over ``n``
    images, within noise means the 95 % Newcombe interval of the difference (ours minus the paper's,
    over its ``paper_n`` test images) contains 0 — the same allowance for the paper's own sampling
    noise as the plaintext rule; without them, the paper's value lies in our interval
    [``low``, ``high``]. A row outside the paper's protocol (one shared key) is a ``new result``.

    >>> verdict(0.913, 0.45, 0.52, True)
    'differs'
    >>> verdict(0.913, 0.45, 0.52, False)
    'not comparable here'
    >>> verdict(0.88, 0.826, 0.872, True, value=0.85, n=900)  # outside our interval, within the paper's noise
    'reproduced'
    """
    if not protocol:
        return "new result"
    if not plain_at_level or any(np.isnan(v) for v in (paper, low, high)):
        return "not comparable here"
    if value is not None and n and not np.isnan(value):
        lo, hi = stats.newcombe_difference(round(value * n), n, round(paper * paper_n), paper_n)
        return "reproduced" if lo <= 0 <= hi else "differs"
    return "reproduced" if low <= paper <= high else "differs"


def plaintext_verdict(value: float, n: int, low: float, high: float, paper: float) -> str:
    """A plaintext row: ``reproduced`` when the paper's value lies in our interval or our accuracy is
    at the paper's level (:func:`at_papers_level`), else ``not comparable here`` (our regime is not
    Table IV's, so a lower plaintext says that the regime falls short, not that the paper is wrong)."""
    return "reproduced" if low <= paper <= high or at_papers_level(value, n, paper) else "not comparable here"


def _fp32(acc: pd.DataFrame, **where) -> pd.DataFrame:
    a = acc[acc.variant == "fp32"]
    for k, v in where.items():
        a = a[a[k] == v]
    return a


def _order(t: pd.DataFrame) -> pd.DataFrame:
    """Rows by model, then domain (plaintext first, then larger blocks), then key mode."""
    rank = {d: i for i, d in enumerate(DOMAIN_ORDER)}
    t = t.assign(_o=t.domain.map(rank).fillna(len(rank)))
    return t.sort_values([c for c in ("model", "regime", "_o", "key_mode") if c in t.columns]).drop(columns="_o")


def main_regime(acc: pd.DataFrame, model: str = "vit") -> str:
    """The regime of the cipher arms: the regime of ``model``'s 8-px, per-image-key k-fold rows at
    :data:`MAIN_SIZE` px."""
    rows = _fp32(acc, model=model, domain="MTCE 8-px blocks", key_mode="per-image", split="kfold",
                 image_size=MAIN_SIZE)
    if rows.empty:
        raise KeyError(f"the sweep has no 8-px per-image k-fold rows of {model} at {MAIN_SIZE} px yet")
    return rows.regime.value_counts().idxmax()


def regimes_view(acc: pd.DataFrame, points: pd.DataFrame, paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every regime tried, on plaintext (seed 0, every image once): accuracy with its 95 % Wilson
    interval, the epochs run and the cost (seconds per fold, CPU-hours for the 5 folds on these
    machines, one thread per run). ``main`` marks the regime of the cipher arms; with ``paired``,
    ``p_vs_main`` is the exact McNemar p-value of each regime against it on the same images."""
    plain = _fp32(acc, domain="plaintext", split="kfold", seed="0")
    pts = points[(points.domain == "plaintext") & (points.split == "kfold") & (points.seed.astype(str) == "0")]
    cost = pts.groupby(["model", "image_size", "regime"]).agg(seconds_per_fold=("seconds", "mean"),
                                                             cpu_hours=("seconds", lambda s: s.sum() / 3600),
                                                             epochs_run=("epochs_run", "mean"),
                                                             folds=("fold", "nunique"))
    out = plain.merge(cost.reset_index(), on=["model", "image_size", "regime"], how="left")
    try:
        main = main_regime(acc)
    except KeyError:
        main = None
    out["main"] = (out.regime == main) & (out.image_size == MAIN_SIZE)
    if paired is not None and main is not None:
        r = paired[(paired.kind == "regime") & (paired.domain == "plaintext") & (paired.split == "kfold")
                   & (paired.seed.astype(str) == "0") & ((paired.a == main) | (paired.b == main))]
        other = r.a.where(r.b == main, r.b)
        p_main = pd.DataFrame({"model": r.model, "image_size": r.image_size, "regime": other, "p_vs_main": r.p_value})
        out = out.merge(p_main, on=["model", "image_size", "regime"], how="left")
    else:
        out["p_vs_main"] = np.nan
    cols = ["model", "image_size", "regime", "main", "n", "value", "ci_low", "ci_high", "p_vs_main", "folds",
            "epochs_run", "seconds_per_fold", "cpu_hours"]
    return out[cols].sort_values(["model", "main", "image_size", "value"], ascending=[False, False, True, False]
                                 ).reset_index(drop=True)


def _with_paper(t: pd.DataFrame) -> pd.DataFrame:
    paper = sweeptables.paper_accuracy()
    plain = paper[paper.domain == "plaintext"][["model", "paper"]].rename(columns={"paper": "paper_plaintext"})
    return t.merge(paper, on=["model", "domain"], how="left").merge(plain, on="model", how="left")


def answer_view(acc: pd.DataFrame, paired: pd.DataFrame, *, split: str = "kfold",
                image_size: int = MAIN_SIZE) -> pd.DataFrame:
    """The chapter's answer: per model, domain and key mode of the main regime, our accuracy over
    every image (the seeds' mean where several ran, with their range), its 95 % interval and n, the
    ciphertext-statistics probe on the same folds, the plaintext accuracy of the same regime, the
    paper's value, the exact McNemar p-values against plaintext and between the key modes (seed 0),
    and the verdict of :func:`verdict`."""
    regime = main_regime(acc)
    a = acc[(acc.split == split) & (acc.image_size == image_size) & (acc.regime == regime)
            & (acc.strength == sweeptables.DEFAULT_STRENGTH)]
    several = a[(a.seed == "mean") & (a.seeds > 1)]
    single = a[a.seed == "0"].merge(several[KEYS + ["variant"]], on=KEYS + ["variant"], how="left", indicator=True)
    a = pd.concat([several, single[single._merge == "left_only"].drop(columns="_merge")], ignore_index=True)
    net = a[a.variant == "fp32"]
    probe = a[a.variant == "ciphertext-statistics probe"][KEYS + ["value", "ci_low", "ci_high"]].rename(
        columns={"value": "probe", "ci_low": "probe_low", "ci_high": "probe_high"})
    out = _with_paper(net.merge(probe, on=KEYS, how="left"))
    plain = out[out.domain == "plaintext"][["model", "value", "n"]].rename(
        columns={"value": "plaintext", "n": "plaintext_n"})
    out = out.merge(plain, on="model", how="left")
    p = paired[(paired.split == split) & (paired.image_size == image_size) & (paired.regime == regime)
               & (paired.seed.astype(str) == "0")]
    vs_plain = p[p.kind == "domain"][["model", "domain", "key_mode", "p_value"]].rename(
        columns={"p_value": "p_vs_plaintext"})
    modes = p[p.kind == "key mode"][["model", "domain", "p_value"]].rename(columns={"p_value": "p_shared_vs_per_image"})
    out = out.merge(vs_plain, on=["model", "domain", "key_mode"], how="left").merge(modes, on=["model", "domain"],
                                                                                    how="left")
    out["plaintext_at_papers_level"] = [at_papers_level(r.plaintext, r.plaintext_n, r.paper_plaintext)
                                        for r in out.itertuples()]
    out["verdict"] = [
        plaintext_verdict(r.value, r.n, r.ci_low, r.ci_high, r.paper) if r.domain == "plaintext"
        else verdict(r.paper, r.ci_low, r.ci_high, r.plaintext_at_papers_level, protocol=r.key_mode == "per-image",
                     value=r.value, n=r.n)
        for r in out.itertuples()]
    out.loc[out.paper.isna() & (out.domain != "plaintext") & (out.key_mode == "per-image"), "verdict"] = "new result"
    out["seeds"] = out.seeds.fillna(1).astype(int)
    cols = ["model", "domain", "key_mode", "image_size", "regime", "n", "seeds", "value", "ci_low", "ci_high",
            "seed_min", "seed_max", "probe", "probe_low", "probe_high", "plaintext", "plaintext_at_papers_level",
            "paper", "p_vs_plaintext",
            "p_shared_vs_per_image", "verdict"]
    return _order(out[cols]).reset_index(drop=True)


def size_trend(acc: pd.DataFrame, model: str = "vit") -> pd.DataFrame:
    """Accuracy against image size (seed 0, every image once) for plaintext and 8-px blocks in
    both key modes: one row per size, domain and key mode, with the 95 % interval. The regimes
    differ only in the image size (the main regime's text without it)."""
    regime = main_regime(acc, model)
    a = _fp32(acc, model=model, split="kfold", seed="0", regime=regime)
    a = a[a.domain.isin(["plaintext", "MTCE 8-px blocks"])]
    label = np.where(a.domain == "plaintext", "plaintext", "8-px blocks, " + a.key_mode.str.replace("-", " ") + " keys")
    out = a.assign(series=label)[["series", "image_size", "n", "value", "ci_low", "ci_high"]]
    return out.sort_values(["series", "image_size"]).reset_index(drop=True)


def held_out_view(acc: pd.DataFrame) -> pd.DataFrame:
    """Held-out patients (grouped folds by volume) in the main regime: accuracy with interval and n."""
    regime = main_regime(acc)
    a = _fp32(acc, split="volume", seed="0", regime=regime)
    return _order(a[["model", "domain", "key_mode", "image_size", "n", "value", "ci_low", "ci_high"]]).reset_index(
        drop=True)


def gpu_view(acc: pd.DataFrame, collapse: pd.DataFrame | None = None,
             points: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper-scale runs on a GPU (Table IV and the arms after it): per model, regime, domain
    and key mode, accuracy on the slab split's test images with the Wilson interval, the
    plaintext accuracy of the same regime, the paper's value and the verdict of :func:`verdict`;
    with ``collapse`` (:func:`collapsed_runs`) and the sweep's ``points`` table, whether every
    run of each configuration collapsed."""
    a = _fp32(acc, seed="0")
    out = _with_paper(a[KEYS + ["n", "value", "ci_low", "ci_high"]])
    plain = out[out.domain == "plaintext"][["model", "split", "regime", "value", "n"]].rename(
        columns={"value": "plaintext", "n": "plaintext_n"})
    out = out.merge(plain, on=["model", "split", "regime"], how="left")
    level = [at_papers_level(r.plaintext, r.plaintext_n, r.paper_plaintext) for r in out.itertuples()]
    out["verdict"] = [
        plaintext_verdict(r.value, r.n, r.ci_low, r.ci_high, r.paper) if r.domain == "plaintext"
        else verdict(r.paper, r.ci_low, r.ci_high, lv, protocol=r.key_mode == "per-image", value=r.value, n=r.n)
        for r, lv in zip(out.itertuples(), level)]
    cols = ["model", "regime", "split", "domain", "key_mode", "n", "value", "ci_low", "ci_high", "plaintext", "paper",
            "verdict"]
    if collapse is not None and points is not None and len(collapse):
        where = ["model", "domain", "key_mode", "regime", "split"]
        c = collapse[["point", "collapsed"]].merge(points[["point"] + where], on="point")
        out = out.merge(c.groupby(where).collapsed.all().reset_index(), on=where, how="left")
        out["collapsed"] = out.collapsed.fillna(False).astype(bool)
        cols.append("collapsed")
    return _order(out[cols]).reset_index(drop=True)


def _ci(r) -> str:
    return f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def answer_text(view: pd.DataFrame, trend: pd.DataFrame | None = None) -> str:
    """A few sentences from :func:`answer_view` (and :func:`size_trend`): plaintext against the
    paper in this regime, then each key mode at 8-px blocks, with intervals, n and the tests."""
    out = []
    for model, g in view.groupby("model", sort=False):
        plain = g[g.domain == "plaintext"]
        if plain.empty:
            continue
        p = plain.iloc[0]
        level = bool(p.plaintext_at_papers_level)
        name = {"vit": "ViT-S/14", "vgg16": "VGG-16"}.get(model, model)
        text = (f"**{name}** ({p.regime}, {int(p.image_size)} px): plaintext {_ci(p)} over {int(p.n)} test images, "
                f"the paper {p.paper:.3f} over its 300 — " +
                ("at the paper's level (not significantly below it), so its encrypted rows are judged against the "
                 "paper" if level else "significantly below the paper's level, so no encrypted row of this regime "
                 "is judged against the paper"))
        for key, what in (("per-image", "a key per image (the paper's protocol)"), ("shared", "one shared key")):
            r = g[(g.domain == "MTCE 8-px blocks") & (g.key_mode == key)]
            if r.empty:
                continue
            r = r.iloc[0]
            seeds = f", mean of {int(r.seeds)} seeds ({r.seed_min:.3f}–{r.seed_max:.3f})" if r.seeds > 1 else ""
            text += (f"; 8-px blocks with {what}: {_ci(r)}{seeds}, against plaintext p = {r.p_vs_plaintext:.2g} "
                     f"(exact McNemar, seed 0)")
            if key == "per-image" and not np.isnan(r.paper):
                text += f", the paper {r.paper:.3f} ({r.verdict})"
            if not np.isnan(r.probe):
                text += (f", the ciphertext-statistics probe on the same folds {r.probe:.3f} "
                         f"[{r.probe_low:.3f}, {r.probe_high:.3f}]"
                         + (" — the network learns less than a linear model on intensity statistics"
                            if r.ci_high < r.probe_low else ""))
        shared = g[(g.domain == "MTCE 8-px blocks") & (g.key_mode == "shared")]
        if len(shared) and not np.isnan(shared.iloc[0].p_shared_vs_per_image):
            text += f"; shared against per-image keys p = {shared.iloc[0].p_shared_vs_per_image:.2g}"
        out.append(text + ".")
    if trend is not None and len(trend):
        gaps = []
        for size, g in trend.groupby("image_size"):
            plain, per = g[g.series == "plaintext"], g[g.series == "8-px blocks, per image keys"]
            if len(plain) and len(per):
                gaps.append((int(size), plain.value.iloc[0] - per.value.iloc[0], int(min(plain.n.iloc[0], per.n.iloc[0]))))
        if len(gaps) > 1:
            out.append("Plaintext minus 8-px per-image-key accuracy by image size: "
                       + ", ".join(f"{s} px {d:+.3f} (n = {k})" for s, d, k in gaps)
                       + (" — the gap narrows as images grow." if gaps[-1][1] < gaps[0][1] - 0.05 else
                          " — the gap stays wide as images grow." if gaps[-1][1] > 0.1 else
                          " — the gap is small at every size.")
                       + ("" if len({k for *_, k in gaps}) == 1 else
                          " The sizes were not all tested on every image (n differs), so read the gaps with their intervals in the figure."))
            big = trend[(trend.series == "8-px blocks, per image keys") & (trend.image_size == gaps[-1][0])].iloc[0]
            paper = view[(view.domain == "MTCE 8-px blocks") & (view.key_mode == "per-image")].paper
            if len(paper) and not np.isnan(paper.iloc[0]):
                where = ("below" if big.ci_high < paper.iloc[0] else "above" if big.ci_low > paper.iloc[0]
                         else "around")
                out[-1] += (f" At {gaps[-1][0]} px, 8-px blocks with a key per image reach {_ci(big)} (n = {int(big.n)}), "
                            f"{where} the paper's {paper.iloc[0]:.3f}.")
    return "\n\n".join(out)


def points_dir(name: str):
    """The committed point folders of sweep ``name`` (``results/sweeps/<name>/points``)."""
    from .. import paths

    return paths.results_dir() / "sweeps" / name / "points"


def collapsed_runs(points_dir) -> pd.DataFrame:
    """Per point of a sweep: whether training collapsed (every test prediction one class, and the
    training loss of the last epoch within 0.01 of ln 3, the loss of a constant guess over three
    balanced classes), from when the loss stayed there, and the final loss."""
    import json
    from pathlib import Path

    from .. import results

    rows = []
    for f in sorted(Path(points_dir).glob("*/point.json")):
        rec = json.loads(f.read_text())
        hist = results.read_point_part(f.parent, "history")
        pred = results.read_point_part(f.parent, "predictions")
        pred = pred[pred.variant == "fp32"]
        flat = (hist.train_loss - np.log(3)).abs() < 0.01
        since = int(hist.epoch[~flat].max() + 1) if (~flat).any() else 1
        rows.append(dict(model=rec["config"]["model"], domain=str(rec["point"]["domain"]),
                         key_mode=rec["config"]["key_mode"], point=rec["id"],
                         one_class=pred.pred.nunique() == 1, final_loss=float(hist.train_loss.iloc[-1]),
                         flat_since_epoch=since if bool(flat.iloc[-1]) else None, epochs=len(hist)))
    out = pd.DataFrame(rows)
    out["collapsed"] = out.one_class & out.flat_since_epoch.notna()
    return out


def gpu_text(view: pd.DataFrame, collapse: pd.DataFrame) -> str:
    """What the GPU runs show, from their tables: which models collapsed at Table IV's rates, and
    whether plaintext reached the paper's level (so whether the encrypted rows can be judged)."""
    out = []
    for model, g in collapse.groupby("model", sort=False):
        name = {"vit": "ViT-S/14", "vgg16": "VGG-16"}.get(model, model)
        if g.collapsed.all():
            first = int(g.flat_since_epoch.max())
            out.append(f"**{name} does not train at Table IV's rates here**: in all {len(g)} runs every test "
                       f"prediction is one class and the training loss stays at ln 3 ≈ {np.log(3):.3f} (a constant "
                       f"guess) from epoch {first} at the latest. Adam at 0.001 on every weight of a pretrained "
                       "VGG-16 destroys its features; the paper's 99.3 % suggests its VGG-16 was not trained as "
                       "Table IV says (a lower rate, frozen layers or another optimiser), which the paper does not "
                       "let us check.")
        elif g.collapsed.any():
            out.append(f"{name}: {int(g.collapsed.sum())} of {len(g)} runs collapsed to one class.")
    for model, g in view.groupby("model", sort=False):
        plain = g[g.domain == "plaintext"]
        if plain.empty or collapse[(collapse.model == model)].collapsed.all():
            continue
        p = plain.iloc[0]
        name = {"vit": "ViT-S/14", "vgg16": "VGG-16"}.get(model, model)
        level = at_papers_level(p.value, p.n, p.paper)
        text = (f"{name} trains at that rate: plaintext {_ci(p)} (n = {int(p.n)}) against the paper's "
                f"{p.paper:.3f} — " + ("the paper's level." if level else
                                       "below the paper's level, so its encrypted rows are not comparable."))
        c = collapse[collapse.model == model]
        losses = [("plaintext" if d == "plain" else f"{d}-px blocks, {k} keys") + f" {loss:.3f}"
                  for d, k, loss in zip(c.domain, c.key_mode, c.final_loss)]
        text += (f" Training loss after the last of {int(c.epochs.max())} epochs (ln 3 ≈ {np.log(3):.3f} is a "
                 f"constant guess): {'; '.join(losses)}.")
        out.append(text)
    return "\n\n".join(out)


def live_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """The live run's overall accuracy per model and domain with its 95 % Wilson interval over the
    run's test images (the per-class supports), beside its macro F1."""
    ours = table[table.source == "ours"] if "source" in table else table
    rows = []
    for (model, domain), g in ours.groupby(["model", "domain"], sort=False):
        acc = g[(g["class"] == "all") & (g.metric == "accuracy")].value
        if acc.empty:
            continue
        n = int(g[(g["class"] != "all") & (g.metric == "support")].value.sum())
        low, high = stats.wilson(round(float(acc.iloc[0]) * n), n)
        f1 = g[(g["class"] == "all") & (g.metric == "macro_f1")].value
        rows.append(dict(model=model, domain=domain, n=n, accuracy=float(acc.iloc[0]), ci_low=low, ci_high=high,
                         macro_f1=float(f1.iloc[0]) if len(f1) else np.nan))
    return pd.DataFrame(rows)
