"""Scorecard rows from the classification chapter's regime evidence (issue 28): the regime sweep
where plaintext reaches the paper's level, the paper-scale runs on a GPU and the live run's
intervals. Every encrypted number carries its regime and the plaintext accuracy of that regime
in its note; the verdicts are the chapter's (:func:`cbirlib.reporting.regimetables.verdict`).
"""

from __future__ import annotations

import pandas as pd

from . import regimetables
from .verdicts import Results, Row

_NAMES = {"vit": "ViT", "vgg16": "VGG-16"}
_DOMAINS = {"plaintext": "plaintext", "MTCE 16-px blocks": "16-px blocks", "MTCE 8-px blocks": "8-px blocks",
            "MTCE 1-px blocks": "1-px blocks"}
EV_ANSWER = "02_classification#The answer: plaintext and encrypted, beside the paper"
EV_TREND = "02_classification#Does the gap close as images grow?"
EV_GPU = "02_classification#4. The paper scale on a GPU"
EV_LIVE = "02_classification#Tables VI and VII beside the paper"


def regime_note(row: pd.Series) -> str:
    """The regime of an answer row in words, with the plaintext accuracy of the same regime."""
    seeds = f", mean of {int(row.seeds)} seeds" if row.seeds > 1 else ", seed 0"
    return (f"{row.regime}, {int(row.image_size)} px, k-fold over the default data ({int(row.n)} images tested"
            f"{seeds}); plaintext in this regime {row.plaintext:.3f}")


def answer_rows(answer: pd.DataFrame, model: str) -> dict[str, pd.Series]:
    """The paper-protocol rows of ``model`` (plaintext and per-image keys) by domain."""
    g = answer[(answer.model == model) & answer.key_mode.isin(["none", "per-image"])]
    return {r.domain: r for _, r in g.iterrows()}


def regime_row(item: str, name: str, r: pd.Series) -> Row:
    """A Tables VI-VII row from the regime sweep's answer (the chapter's verdict)."""
    label = _DOMAINS.get(r.domain, r.domain)
    return Row("Classification", item, f"{name}, {label}: accuracy (overall; the confusion matrix's diagonal)",
               float(r.paper), float(r.value), r.verdict, regime_note(r), EV_ANSWER, "", float(r.ci_low),
               float(r.ci_high), int(r.n))


def beyond(r: Results) -> list[Row]:
    """What the regime evidence adds beyond Tables VI-VII: one shared key against a key per image,
    the image-size trend, Table IV itself on a GPU, and the live run with its intervals."""
    rows: list[Row] = []
    answer = r.optional("02_classification", "regime_answer")
    if answer is not None:
        for _, s in answer[(answer.key_mode == "shared")].iterrows():
            per = answer[(answer.model == s.model) & (answer.domain == s.domain) & (answer.key_mode == "per-image")]
            versus = (f"; a key per image {per.value.iloc[0]:.3f}, exact McNemar p = {s.p_shared_vs_per_image:.2g}"
                      if len(per) else "")
            rows.append(Row("Beyond the paper", "Tables VI–VII", f"{_NAMES.get(s.model, s.model)}, "
                            f"{_DOMAINS.get(s.domain, s.domain)} with ONE shared key (not the paper's protocol)",
                            "not in the paper", float(s.value), "new result", regime_note(s) + versus, EV_ANSWER, "",
                            float(s.ci_low), float(s.ci_high), int(s.n)))
    trend = r.optional("02_classification", "size_trend")
    if trend is not None and trend.image_size.nunique() > 1:
        per = trend[trend.series == "8-px blocks, per image keys"].set_index("image_size")
        plain = trend[trend.series == "plaintext"].set_index("image_size")
        sizes = sorted(set(per.index) & set(plain.index))
        if len(sizes) > 1:
            gaps = {s: float(plain.value[s] - per.value[s]) for s in sizes}
            big = sizes[-1]
            rows.append(Row("Beyond the paper", "Tables VI–VII", f"ViT: the gap from plaintext to 8-px blocks with a "
                            f"key per image at {big} px (and at {', '.join(f'{s}' for s in sizes[:-1])} px)",
                            "not in the paper", gaps[big], "new result",
                            "plaintext minus encrypted accuracy, seed 0, the main regime at each size (n: the "
                            "images tested): " + ", ".join(f"{s} px {g:+.3f} (n = {int(min(plain.n[s], per.n[s]))})"
                                                           for s, g in gaps.items()), EV_TREND))
    gpu = r.optional("02_classification", "gpu_table_iv")
    if gpu is not None:
        table_iv = gpu[gpu.regime.str.contains("100 epochs") & (gpu.domain == "plaintext")]
        for _, g in table_iv.iterrows():
            collapsed = bool(g.get("collapsed", False))
            rows.append(Row("Classification", "Table IV", f"{_NAMES.get(g.model, g.model)} trained as Table IV says "
                            "(Adam 0.001 on every weight, 100 epochs, batch 32): plaintext accuracy",
                            float(g.paper), float(g.value), "not reproducible here" if collapsed else g.verdict,
                            ("training collapsed to one class (loss ln 3) — the paper's rate does not train this "
                             "network here; " if collapsed else "") +
                            f"224 px on a lent GPU, bf16 autocast, the slab split's {int(g.n)} test images, our data "
                            "and bundled weights", EV_GPU, "", float(g.ci_low), float(g.ci_high), int(g.n)))
    live = r.optional("02_classification", "table_vi_vii")
    if live is not None:
        rows += _live_rows(r, live)
    return rows


def _live_rows(r: Results, t: pd.DataFrame) -> list[Row]:
    """The chapter's live run (its profile: at cpu a frozen trunk with a linear head at 112 px on the
    slab split), 8-px blocks with a key per image, with the Wilson interval over its test images."""
    p = r.parameters("02_classification", "table_vi_vii")
    live = regimetables.live_intervals(t)
    plain = live[live.domain == "plaintext"].set_index("model").accuracy
    how = "frozen trunk + linear head" if p.get("trainable") == "head" else "fine-tuned end to end"
    return [Row("Classification", "Tables VI–VII", f"{_NAMES.get(o.model, o.model)}, 8-px blocks: the live run of "
                f"this book's profile ({p.get('profile', '?')})", "see the rows above", float(o.accuracy),
                "not comparable here",
                f"{how}, {p.get('image_size', '?')} px, {p.get('key_mode', 'per-image')} keys, the slab split's {o.n} "
                f"test images; plaintext in this run {float(plain.get(o.model, float('nan'))):.3f}",
                EV_LIVE, "", o.ci_low, o.ci_high, o.n)
            for o in live[live.domain == "MTCE 8-px blocks"].itertuples()]
