"""Results are data: every table a notebook shows is written as a tidy CSV with provenance.

Layout: ``<results_dir>/<notebook>/<table>.csv`` (long form, a ``source`` column saying
``paper`` or ``ours``) and ``<results_dir>/<notebook>/provenance.json`` (parameters, dataset,
weights, software versions, device, for every table of that notebook).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import paths, provenance

SOURCES = ("paper", "ours")


def results_root(results_dir: str | Path | None = None) -> Path:
    """``results_dir`` if given, else ``$CBIR_RESULTS_DIR``, else ``<project>/results``."""
    if results_dir:
        return Path(results_dir)
    env = os.environ.get("CBIR_RESULTS_DIR")
    return Path(env) if env else paths.results_dir()


def write_table(table: pd.DataFrame, notebook: str, name: str, parameters: dict,
                results_dir: str | Path | None = None, **records) -> Path:
    """Write ``table`` as ``<notebook>/<name>.csv`` and record its provenance.

    Args:
        table: tidy rows; must have a ``source`` column with values in ``paper`` / ``ours``.
        notebook: notebook id, e.g. ``"00_data"``.
        name: table id, e.g. ``"dataset_counts"``.
        parameters: the notebook's parameters as run.
        results_dir: override of the results root (see :func:`results_root`).
        records: further JSON-ready provenance (dataset=..., weights=...).

    Returns:
        The CSV path.
    """
    if "source" not in table.columns:
        raise ValueError(f"table {name!r} needs a 'source' column (paper | ours)")
    bad = set(table["source"]) - set(SOURCES)
    if bad:
        raise ValueError(f"table {name!r}: source values must be paper or ours, got {sorted(bad)}")
    out = results_root(results_dir) / notebook
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    _atomic_write(csv, table.to_csv(index=False, lineterminator="\n"))
    prov_path = out / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    prov["environment"] = provenance.environment()
    prov.setdefault("tables", {})[name] = {"csv": csv.name, "parameters": parameters, **records}
    _atomic_write(prov_path, json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n")
    return csv


def write_point(out: Path, parts: dict[str, pd.DataFrame], record: dict) -> Path:
    """Write one sweep point's folder ``out``: every table of ``parts`` as ``<name>.csv.gz``
    (gzip without a time stamp: a sweep has hundreds of points, all committed) and ``record`` as
    ``point.json``, built beside ``out`` and renamed into place whole (a killed run leaves no half
    point; its leftovers are removed by the next write). Returns the path of ``point.json``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*"):  # left by a run that was killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, table in parts.items():
            table.to_csv(tmp / f"{name}.csv.gz", index=False, lineterminator="\n",
                         compression={"method": "gzip", "mtime": 0})
        (tmp / "point.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "point.json"


def read_point_part(folder: Path, name: str) -> pd.DataFrame | None:
    """A table of a point folder written by :func:`write_point` (or None)."""
    for path in (folder / f"{name}.csv.gz", folder / f"{name}.csv"):
        if path.exists():
            return pd.read_csv(path)
    return None


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def side_by_side(tidy: pd.DataFrame, index: list[str], value: str) -> pd.DataFrame:
    """Pivot tidy rows so the paper's and our values stand in adjacent columns
    (``paper``, ``ours``; missing ones are NaN)."""
    wide = tidy.pivot_table(index=index, columns="source", values=value, aggfunc="first", sort=False)
    return wide.reindex(columns=[s for s in SOURCES if s in wide.columns])


class DisplayTable:
    """A table as the book shows it: HTML without pandas' row numbers (an index that names rows, as
    a pivot's does, becomes the first columns), and the same as plain text. ``frame`` is the
    displayed DataFrame (strings)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def _repr_html_(self) -> str:
        return self.frame.to_html(index=False, na_rep="", border=0)

    def __repr__(self) -> str:
        return self.frame.to_string(index=False, na_rep="")


def for_display(table: pd.DataFrame, digits: int = 4) -> DisplayTable:
    """The table for the page: float columns as strings of ``digits`` significant digits (stable
    for nbval, easy to read; the CSVs keep full precision), and no row-number column: a default or
    unnamed integer index is dropped, a meaningful one (named, or of several levels) becomes the
    first columns."""
    out = table.copy()
    index = out.index
    meaningful = isinstance(index, pd.MultiIndex) or index.name is not None or not pd.api.types.is_integer_dtype(index)
    out = out.reset_index() if meaningful else out.reset_index(drop=True)
    if isinstance(out.columns, pd.MultiIndex):  # a pivot's columns: one header line per level, joined
        out.columns = [" ".join(str(part) for part in c if str(part)) for c in out.columns]
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda x: "" if pd.isna(x) else f"{x:.{digits}g}")
    return DisplayTable(out)


def read_table(notebook: str, name: str, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """A results CSV if it exists (e.g. a GPU run's), else None."""
    path = results_root(results_dir) / notebook / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def read_provenance(notebook: str, results_dir: str | Path | None = None) -> dict:
    """``<notebook>/provenance.json`` as a dict ({} when absent)."""
    path = results_root(results_dir) / notebook / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else {}


def interval_text(row: pd.Series, fmt: str = ".3f") -> str:
    """"[low, high]" of a table row, or "" when it has none (one trial)."""
    low, high = row.get("ci_low", np.nan), row.get("ci_high", np.nan)
    return f" [{low:{fmt}}, {high:{fmt}}]" if np.isfinite(low) and np.isfinite(high) else ""


def interval_view(table: pd.DataFrame, index: Sequence[str], columns: str, metrics: Sequence[str] | None = None,
                  fmt: str = ".3f") -> pd.DataFrame:
    """Wide view for reading a table of means: rows ``index``, one column per value of ``columns``,
    cells "mean [low, high]" (the 95 % interval; the mean alone for one trial), and ``n`` (the
    trials behind each row's cells, a range when they differ)."""
    t = table if metrics is None else table[table.metric.isin(metrics)]
    cell = t.apply(lambda r: f"{r.value:{fmt}}{interval_text(r, fmt)}", axis=1)
    wide = t.assign(cell=cell).pivot_table(index=list(index), columns=columns, values="cell", aggfunc="first", sort=False)
    wide = wide[sorted(wide.columns)]
    wide.columns = [f"{c} px" if columns == "block_size" else str(c) for c in wide.columns]
    n = t.groupby(list(index), sort=False).n.agg(["min", "max"]).reindex(wide.index)
    wide["n"] = [f"{lo}" if lo == hi else f"{lo}–{hi}" for lo, hi in zip(n["min"], n["max"])]
    return wide
