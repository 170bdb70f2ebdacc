"""The scorecard's rules: the verdicts, the tolerances of quantities without sampling noise, the
significance level and margins, one :class:`Row` per claim, read-only access to a run's tables
(:class:`Results`), and how a measured rate is judged against our 95 % interval (:func:`rate_row`).
The claims themselves are in :mod:`cbirlib.reporting.claims`, the card in
:mod:`cbirlib.reporting.scorecard`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import results as cbresults, stats

VERDICTS = ("reproduced", "differs", "paper error", "not reproducible here", "not comparable here", "new result")
#: quantities without sampling noise: (kind, tolerance) — "rel" of the paper's value or "abs"
TOLERANCES = {"key space bits": ("rel", 0.01), "int8 / fp32 bytes": ("abs", 0.01)}
#: a known-plaintext attack on per-image keys "recovers nothing" while the upper 95 % bound of its
#: gain over an unrelated key (share of unseen foreground values decrypted) stays within this
RECOVERY_TOLERANCE = 0.01
#: significance level of the paired tests the scorecard reads
ALPHA = 0.05
#: an attack table without intervals (older runs): "above chance" means more than this above it
CHANCE_MARGIN = 0.05


@dataclass(frozen=True)
class Row:
    """One scorecard line. ``paper`` / ``ours`` are numbers or short texts; ``evidence`` is
    ``"<chapter>#<section title>"`` (the section title as it reads in the chapter)."""

    section: str
    item: str
    claim: str
    paper: float | str
    ours: float | str
    verdict: str
    note: str
    evidence: str
    unit: str = ""
    low: float | None = None  # our 95 % interval, when ours is a measured rate or mean
    high: float | None = None
    n: int | None = None  # images (or units) behind ours

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def difference(self) -> float | None:
        """ours − paper when both are numbers, else None."""
        if isinstance(self.paper, (int, float)) and isinstance(self.ours, (int, float)):
            return float(self.ours) - float(self.paper)
        return None


class Results:
    """Read-only access to the result tables of one run (``results_dir`` or the default root)."""

    def __init__(self, results_dir: str | Path | None = None):
        self.root = cbresults.results_root(results_dir)
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}
        self._provenance: dict[str, dict] = {}

    def table(self, notebook: str, name: str) -> pd.DataFrame:
        key = (notebook, name)
        if key not in self._cache:
            t = cbresults.read_table(notebook, name, self.root)
            if t is None:
                raise FileNotFoundError(
                    f"{self.root / notebook / (name + '.csv')} is missing: run notebooks/{notebook}.ipynb "
                    f"with the same results_dir first (make notebooks does them in order)")
            self._cache[key] = t
        return self._cache[key]

    def optional(self, notebook: str, name: str) -> pd.DataFrame | None:
        """The table, or None when this run did not write it."""
        try:
            return self.table(notebook, name)
        except FileNotFoundError:
            return None

    def parameters(self, notebook: str, name: str) -> dict:
        """The parameters the table was produced with (from provenance.json)."""
        if notebook not in self._provenance:
            self._provenance[notebook] = json.loads((self.root / notebook / "provenance.json").read_text())
        return self._provenance[notebook]["tables"][name]["parameters"]

    def dataset_name(self) -> str:
        """The data the data chapter ran on (``default``, or a folder)."""
        rec = self._table_record("00_data", "dataset_counts")
        return str((rec.get("dataset") or {}).get("name", rec.get("parameters", {}).get("data", "default")))

    def _table_record(self, notebook: str, name: str) -> dict:
        if notebook not in self._provenance:
            path = self.root / notebook / "provenance.json"
            self._provenance[notebook] = json.loads(path.read_text()) if path.exists() else {"tables": {}}
        return self._provenance[notebook]["tables"].get(name, {})

    def profiles(self) -> list[str]:
        """The profiles the training chapters ran at (classification and quantization)."""
        return sorted({self.parameters(nb, name).get("profile", "?") for nb, name in
                       (("02_classification", "table_vi_vii"), ("04_quantization", "table_viii"))})


SLACK = 1e-9  # so that a difference of exactly the tolerance counts as within it despite rounding


def tolerance_verdict(paper: float, ours: float, quantity: str) -> str:
    """A quantity without sampling noise against the paper's, with its tolerance in :data:`TOLERANCES`."""
    kind, tol = TOLERANCES[quantity]
    bound = tol * abs(paper) if kind == "rel" else tol
    return "reproduced" if abs(ours - paper) <= bound + SLACK else "differs"


def rate_row(section: str, item: str, claim: str, paper: float, ours: float, low: float, high: float, n: int,
              note: str, evidence: str, comparable: bool, what_differs: str = "", unit: str = "") -> Row:
    """A measured rate or mean judged against our interval; not judged when not comparable."""
    verdict = stats.verdict(paper, low, high, comparable)
    inside = low <= paper <= high
    text = f"{note}; " if note else ""
    if not comparable:
        text += (f"not the paper's setup: {what_differs}; the paper's value is "
                 f"{'inside' if inside else 'outside'} our interval")
    else:
        text += f"the paper's value is {'inside' if inside else 'outside'} our 95 % interval"
    return Row(section, item, claim, paper, ours, verdict, text, evidence, unit, low, high, n)


def profile_note(r: Results, notebook: str, name: str) -> str:
    p = r.parameters(notebook, name)
    parts = [f"profile {p.get('profile', '?')}"]
    if "image_size" in p:
        parts.append(f"{p['image_size']} px")
    if "trainable" in p:
        parts.append("frozen trunk + linear head" if p["trainable"] == "head" else "full fine-tuning")
    return ", ".join(parts)


def fmt(x) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
