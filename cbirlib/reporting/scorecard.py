"""The reproduction scorecard: every table, figure and numeric claim of the paper, the paper's
value beside ours, the difference and a verdict — computed from the ``results/`` CSVs that the
chapters wrote, never typed by hand.

A claim is a small function (:mod:`cbirlib.reporting.claims`) that reads result tables and returns
:class:`~cbirlib.reporting.verdicts.Row` s; the verdict rules sit next to the numbers they judge
(:mod:`cbirlib.reporting.verdicts`). Verdicts:

- ``reproduced``: the paper's value lies inside our 95 % interval (or within the tolerance of a
  quantity without sampling noise), or the claim holds;
- ``differs``: it does not, for a reason the note names (e.g. a CPU profile, other data);
- ``paper error``: the results show the paper's value cannot be what it says it is;
- ``not reproducible here``: it rests on something we do not have (the paper's private data);
- ``not comparable here``: our evidence is not the paper's setup (a CPU stand-in for Table IV's
  training, another block size, your own data, ...), so the claim is not judged; the note says what
  differs. A claim whose evidence is missing from a run reads the same, never a crash;
- ``new result``: beyond the paper — a measurement the paper does not make, reported as such.

Measured rates and means are judged against our 95 % interval (``low``, ``high``, over ``n``
images): ``reproduced`` when the paper's value lies inside it, ``differs`` when outside. Quantities
without sampling noise (counts of key bits, file sizes) are judged with the one tolerance each has
in :data:`~cbirlib.reporting.verdicts.TOLERANCES`. Every claim has one row: a table and the figure that plots the same numbers
(Table VI and Fig. 6, say) share it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from docutils.nodes import make_id

from .claims import CLAIMS
from .verdicts import VERDICTS, Results, Row, fmt

#: the settings of the paper each claim's evidence must have run with: (chapter, table) -> {parameter:
#: the paper's value}; a run with other values reads "not comparable here"
PAPER_SETTINGS = {
    "table_v": {("01_encryption", "table_v"): {"block_size": 8, "data": "default"}},
    "fig_4": {("01_encryption", "exactness"): {"data": "default"}},
    "key_space": {},
    "tables_vi_vii": {("02_classification", "table_vi_vii"): {"data": "default", "strength": 255, "key_mode": "per-image"}},
    "table_viii": {("04_quantization", "table_viii"): {"block_size": 8, "data": "default", "strength": 255}},
    "memory": {},
    "protocol": {("03_retrieval", "holdings"): {"key_mode": "per-image"}},
    "security": {("05_security", "jigsaw"): {"data": "default"}},
    "key_aware": {("06_key_aware", "variants"): {"data": "default"}},
    "dataset": {},
    "beyond": {("02_classification", "table_vi_vii"): {"data": "default"}},
}
_CLAIM_TITLES = {"table_v": ("Cipher", "Table V"), "fig_4": ("Cipher", "Fig. 4"), "key_space": ("Cipher", "eqs. (1)-(5)"),
                 "tables_vi_vii": ("Classification", "Tables VI-VII"), "table_viii": ("Quantization", "Table VIII"),
                 "memory": ("Quantization", "eq. (6)"), "protocol": ("Retrieval", "Fig. 2"),
                 "security": ("Security", "Sec. IV-D"), "key_aware": ("Beyond the paper", "key-aware ViT"),
                 "dataset": ("Data", "Sec. V"), "beyond": ("Beyond the paper", "Tables VI-VII in a working regime")}


def _differences(r: Results, name: str) -> list[str]:
    """What the evidence of claim ``name`` ran with that the paper did not (empty: comparable)."""
    out = []
    for (nb, table), wanted in PAPER_SETTINGS.get(name, {}).items():
        try:
            got = r.parameters(nb, table)
        except (OSError, KeyError, ValueError):
            continue
        for k, v in wanted.items():
            if k in got and got[k] != v and not (k == "data" and str(got[k]) == "default"):
                shown = f"your folder {Path(str(got[k])).name!r}" if k == "data" else repr(got[k])
                paper_value = "the default data" if k == "data" else repr(v)
                out.append(f"{nb} ran with {k} = {shown}; the claim is judged on {paper_value}")
    return out


def _not_comparable(name: str, reason: str) -> list[Row]:
    section, item = _CLAIM_TITLES.get(name, ("Other", name))
    return [Row(section, item, f"every claim of {item}", "", "", "not comparable here", reason, "")]


def _claim_rows(r: Results, claim: Callable[[Results], list[Row]]) -> list[Row]:
    name = claim.__name__
    differs = _differences(r, name)
    if differs:
        return _not_comparable(name, "; ".join(differs))
    try:
        return claim(r)
    except (KeyError, IndexError, ValueError, FileNotFoundError) as e:
        detail = str(e).replace(str(r.root), "<results>").split(": run ")[0][:120]
        return _not_comparable(name, f"the evidence is not in this run's tables ({detail})")


def build(results_dir: str | Path | None = None,
          claims: list[Callable[[Results], list[Row]]] | None = None) -> pd.DataFrame:
    """The scorecard as a DataFrame (one row per claim: section, item, claim, paper, ours,
    difference, unit, verdict, note, evidence). A claim whose evidence ran with other settings than
    the paper's, or is missing, becomes one "not comparable here" row saying why."""
    r = Results(results_dir)
    rows = [row for claim in (claims or CLAIMS) for row in _claim_rows(r, claim)]
    df = pd.DataFrame([asdict(x) | {"difference": x.difference} for x in rows])
    return df[["section", "item", "claim", "paper", "ours", "low", "high", "n", "difference", "unit", "verdict",
               "note", "evidence"]]


def tidy(card: pd.DataFrame) -> pd.DataFrame:
    """Long form for ``results/``: one row per (claim, source) with the value, our interval and
    count on the ``ours`` rows, plus the verdict."""
    keys = ["section", "item", "claim", "unit", "verdict", "note", "evidence"]
    long = card.melt(id_vars=keys + ["low", "high", "n"], value_vars=["paper", "ours"], var_name="source",
                     value_name="value")
    long.loc[long.source == "paper", ["low", "high", "n"]] = None
    return long[["section", "item", "claim", "source", "value", "low", "high", "n", "unit", "verdict", "note",
                 "evidence"]]


def counts(card: pd.DataFrame) -> pd.DataFrame:
    """How many claims got each verdict (every verdict listed, zeros included)."""
    c = card["verdict"].value_counts().reindex(list(VERDICTS), fill_value=0)
    return c.rename_axis("verdict").reset_index(name="claims")


def evidence_href(evidence: str) -> str:
    """``"01_encryption#Table V beside the paper"`` → ``"01_encryption.html#table-v-beside-the-paper"``
    (the id Sphinx gives the section)."""
    page, _, section = evidence.partition("#")
    return f"{page}.html" + (f"#{make_id(section)}" if section else "")


_COLOURS = {"reproduced": "#d8f0d8", "differs": "#fbeecb", "paper error": "#f6d3d3",
            "not reproducible here": "#e4e4e4", "not comparable here": "#dde6f3", "new result": "#e6dcf2"}


def _interval_html(r) -> str:
    if r.low is None or r.high is None or not np.isfinite(r.low):
        return ""
    n = f", n&nbsp;=&nbsp;{int(r.n)}" if r.n is not None and np.isfinite(r.n) else ""
    return f'<br><small class="interval">[{fmt(r.low)}, {fmt(r.high)}]{n}</small>'


#: the scorecard's columns, in reading order: what is claimed, the two numbers, the verdict first;
#: the difference and the link to the evidence after
COLUMNS = ("claim", "paper", "ours", "verdict", "ours − paper", "evidence")


def to_html(card: pd.DataFrame) -> str:
    """The scorecard as an HTML table in its own scroll box (``div.scorecard-box``), one header row
    per section: the claim (its item above in small type, its note beneath), paper, ours with our
    interval, the verdict coloured, the difference (numbers to 4 significant digits) and a link to
    the chapter section with the evidence (relative to the chapter pages). The columns size to
    their content (no fixed layout, so nothing overprints); the book's CSS styles the classes."""
    from html import escape

    head = "".join(f"<th>{h}</th>" for h in COLUMNS)
    body = []
    for section, rows in card.groupby("section", sort=False):
        body.append(f'<tr class="section"><th colspan="{len(COLUMNS)}">{escape(section)}</th></tr>')
        for r in rows.itertuples(index=False):
            unit = f" ({escape(r.unit)})" if r.unit else ""
            verdict = f'<span class="verdict" style="background:{_COLOURS[r.verdict]}">{r.verdict}</span>'
            link = (f'<a href="{evidence_href(r.evidence)}">{escape(r.evidence.partition("#")[2] or r.evidence)}</a>'
                    if r.evidence else "")
            body.append(
                f'<tr><td class="claim"><small class="item">{escape(r.item)}</small><br>{escape(r.claim)}{unit}<br>'
                f'<small class="note">{escape(r.note)}</small></td>'
                f'<td class="number">{escape(fmt(r.paper))}</td>'
                f'<td class="number">{escape(fmt(r.ours))}{_interval_html(r)}</td>'
                f"<td>{verdict}</td><td class=\"number\">{escape(fmt(r.difference))}</td>"
                f'<td class="evidence"><small>{link}</small></td></tr>')
    return (f'<div class="scorecard-box"><table class="scorecard"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


#: the intro's short version: (item, start of the claim) of the headline rows, in reading order
HEADLINES = (("Fig. 4", "decryption restores"), ("Table V", "AES entropy"), ("Eqs. (1)–(4)", "key space"),
             ("Table VI, Fig. 6", "ViT, plaintext"), ("Table VI, Fig. 6", "ViT, 8-px blocks"),
             ("Tables VI–VII", "ViT, 8-px blocks with ONE shared key"), ("Table IV", "VGG-16 trained as Table IV"),
             ("Table VIII, Fig. 8(c), abstract", "VGG-16, 8-px blocks, last layer (99%)"),
             ("Table VIII, Fig. 8(d)", "fully quantized"), ("Eq. (6), Sec. IV", "int8 cuts"),
             ("Sec. IV.C", "local and global features"), ("Sec. IV.C, eqs. (2)–(5)", "per-image keys resist"),
             ("Sec. IV.C", "the encrypted image reveals nothing"))


def headlines_markdown(tidy_card: pd.DataFrame) -> str:
    """The intro's short version: the :data:`HEADLINES` rows of the scorecard (its tidy CSV) as a
    Markdown table — the claim, the paper's value, ours with its 95 % interval and n, the verdict.
    Rows a run did not produce are left out."""
    ours = tidy_card[tidy_card.source == "ours"]
    paper = tidy_card[tidy_card.source == "paper"]
    lines = ["| claim | paper | ours | verdict |", "|---|---|---|---|"]
    for item, start in HEADLINES:
        hit = ours[(ours["item"] == item) & ours.claim.str.startswith(start)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        p = paper[(paper["item"] == item) & (paper.claim == r.claim)]
        value = _cell(r.value)
        if pd.notna(r.low) and pd.notna(r.high):
            value += f" [{fmt(float(r.low))}, {fmt(float(r.high))}]"
        if pd.notna(r.n):
            value += f", n = {int(r.n)}"
        claim = r.claim.split(" (overall")[0] + (f" ({r.unit})" if isinstance(r.unit, str) and r.unit else "")
        paper_value = _cell(p.value.iloc[0]) if len(p) else ""
        lines.append(f"| {item}: {claim} | {paper_value} | {value} | {r.verdict} |".replace("\n", " "))
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    try:
        return fmt(float(v))
    except (TypeError, ValueError):
        return str(v).replace("|", "\\|")
