"""Sweeps: a YAML file in ``workflow/sweeps/`` (see :mod:`cbirlib.workflow` for its keys) expanded
into points, one job per point, and the aggregate that joins finished points into tables."""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .bookjobs import WorkflowError, root


@dataclass
class Sweep:
    name: str
    chapter: str
    kind: str
    label: str
    description: str
    points: dict[str, dict] = field(default_factory=dict)  # id -> point
    resources: dict = field(default_factory=dict)
    source: str = ""

    def resources_for(self, point: dict) -> dict:
        """Snakemake resources of one point's job: threads, mem_mb, runtime (minutes), gpu."""
        r = {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0} | self.resources
        return r | point.get("_resources", {})


#: the point runners a sweep file's ``kind`` names: modules with ``check_point``, ``point_id``,
#: ``run_point``, ``aggregate`` and, where points have folds (``FOLDS``), ``folds_of``
KINDS = {"classification": "cbirlib.studies.classificationstudy", "attacks": "cbirlib.studies.attacksweep"}


#: where a kind's points are checked, named and counted (``check_point``, ``point_id``, ``folds_of``,
#: ``FOLDS``) without the runner's model libraries: planning a sweep (Snakemake, every run and
#: every dry run) then imports no torch
PLANNERS = {"classification": "cbirlib.studies.classificationpoints", "attacks": "cbirlib.studies.attacksweep"}


def kind_module(kind: str, *, planning: bool = False):
    """The module that runs and aggregates the points of sweeps of ``kind`` (``planning``: the one
    that only checks, names and counts them, :data:`PLANNERS`)."""
    import importlib

    if kind not in KINDS:
        raise WorkflowError(f"unknown kind {kind!r}; choose one of {sorted(KINDS)}")
    return importlib.import_module((PLANNERS if planning else KINDS)[kind])


def aggregate_target(name: str) -> str:
    """The file that stands for a sweep's aggregate (every aggregate rewrites it)."""
    return f"results/sweeps/{name}/provenance.json"


def sweeps_dir() -> Path:
    """``workflow/sweeps``, or ``$CBIR_SWEEPS_DIR`` (tests, private sweeps)."""
    env = os.environ.get("CBIR_SWEEPS_DIR")
    return Path(env) if env else root() / "workflow" / "sweeps"


def sweep_names() -> list[str]:
    return sorted(p.stem for p in sweeps_dir().glob("*.yaml"))


def load_sweep(name_or_path: str | Path) -> Sweep:
    """Read a sweep file (by name in ``workflow/sweeps/`` or by path) and expand its grid into points
    (memoized while the file is unchanged: Snakemake asks once per job and resource)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = sweeps_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise WorkflowError(f"no sweep {name_or_path!r}: {path} does not exist; sweeps: {', '.join(sweep_names())}")
    return _load_sweep(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_sweep(path_str: str, _mtime_ns: int) -> Sweep:
    path = Path(path_str)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise WorkflowError(f"{path.name}: not valid YAML ({e})") from None
    if not isinstance(spec, dict):
        raise WorkflowError(f"{path.name}: expected a mapping at the top")
    allowed = {"name", "chapter", "kind", "label", "description", "fixed", "resources", "arms"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise WorkflowError(f"{path.name}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("name", "chapter", "kind", "arms"):
        if key not in spec:
            raise WorkflowError(f"{path.name}: missing {key!r}")
    if spec["kind"] not in KINDS:
        raise WorkflowError(f"{path.name}: unknown kind {spec['kind']!r}; choose one of {sorted(KINDS)}")
    if spec["name"] != path.stem:
        raise WorkflowError(f"{path.name}: name {spec['name']!r} must equal the file name {path.stem!r}")
    sweep = Sweep(spec["name"], spec["chapter"], spec["kind"], spec.get("label", spec["name"]),
                  spec.get("description", ""), resources=dict(spec.get("resources") or {}), source=str(path))
    for arm in spec["arms"]:
        for point in _expand_arm(path.name, sweep.kind, spec.get("fixed") or {}, arm):
            point = {"sweep": sweep.name} | point
            pid = _point_id(sweep.kind, point)
            if pid not in sweep.points:
                sweep.points[pid] = point
    return sweep


def _expand_arm(source: str, kind: str, fixed: dict, arm: dict) -> list[dict]:
    runner = kind_module(kind, planning=True)
    unknown = sorted(set(arm) - {"name", "fixed", "grid", "exclude", "resources"})
    if unknown:
        raise WorkflowError(f"{source}: arm {arm.get('name', '?')!r}: unknown key(s) {unknown}")
    base = dict(fixed) | dict(arm.get("fixed") or {}) | {"arm": arm.get("name", "")}
    grid = dict(arm.get("grid") or {})
    for k, v in grid.items():
        if not isinstance(v, list) and v != "all":
            raise WorkflowError(f"{source}: grid values must be lists (or fold: all), got {k}: {v!r}")
    folded = getattr(runner, "FOLDS", True)
    if not folded and "fold" in grid:
        raise WorkflowError(f"{source}: arm {arm.get('name', '?')!r}: {kind} points have no folds")
    names = [k for k in grid if k != "fold"]
    out = []
    for values in itertools.product(*(grid[k] for k in names)):
        point = base | dict(zip(names, values))
        if str(point.get("domain", "plain")).lower() in ("plain", "plaintext") and point.get("key_mode") == "shared":
            continue  # the plaintext domain has no key
        if any(all(point.get(k) == v for k, v in ex.items()) for ex in arm.get("exclude") or []):
            continue
        folds = grid.get("fold", [point.get("fold", 0)]) if folded else [None]
        if folds == "all":
            folds = range(runner.folds_of(point))
        for f in folds:
            p = point | ({"fold": int(f)} if f is not None else {})
            if arm.get("resources"):
                p["_resources"] = dict(arm["resources"])
            try:
                runner.check_point({k: v for k, v in p.items() if not k.startswith("_")})
            except ValueError as e:
                raise WorkflowError(f"{source}: arm {arm.get('name', '?')!r}: {e}") from None
            out.append(p)
    return out


def _point_id(kind: str, point: dict) -> str:
    return kind_module(kind, planning=True).point_id({k: v for k, v in point.items() if not k.startswith("_")})


def sweep_results(name: str) -> Path:
    return root() / "results" / "sweeps" / name


def run_sweep_point(name: str, point_id: str, out: Path | None = None) -> Path:
    """Run one point of a sweep into ``results/sweeps/<name>/points/<id>/``."""
    sweep = load_sweep(name)
    if point_id not in sweep.points:
        raise WorkflowError(f"sweep {name!r} has no point {point_id!r}")
    point = {k: v for k, v in sweep.points[point_id].items() if not k.startswith("_")}
    return kind_module(sweep.kind).run_point(point, out or sweep_results(name) / "points" / point_id)


def aggregate_sweep(name: str) -> list[Path]:
    """Join every finished point of a sweep into ``results/sweeps/<name>/<table>.csv`` with
    provenance (the sweep file, its label, points run and missing)."""
    from .. import results
    from ..datasets import data as cbir_data

    sweep = load_sweep(name)
    folder = sweep_results(name)
    done = {p.parent.name for p in (folder / "points").glob("*/point.json")}
    planned = set(sweep.points)
    datasets = {p.get("data", "default") for p in sweep.points.values()}
    expected = len(cbir_data.open_dataset(next(iter(datasets))).table) if len(datasets) == 1 else None
    tables = kind_module(sweep.kind).aggregate(folder / "points", expected)
    keep = {pid for pid in done if pid in planned}
    record = {"sweep": sweep.name, "label": sweep.label, "chapter": sweep.chapter, "description": sweep.description,
              "data": sorted(datasets),
              "sweep_file": Path(sweep.source).relative_to(root()).as_posix() if Path(sweep.source).is_relative_to(root()) else sweep.source,
              "points_planned": len(planned), "points_done": len(keep), "points_missing": sorted(planned - done),
              "points_not_in_sweep_file": sorted(done - planned)}
    (folder / "provenance.json").unlink(missing_ok=True)  # a record of this aggregate's tables only
    written = []
    for table_name, table in tables.items():
        table = table[table.point.isin(keep)] if "point" in table.columns else table
        if {"point", "arm"} <= set(table.columns):  # arms are named by the sweep file now, not when the point ran
            table = table.assign(arm=table.point.map(lambda pid: sweep.points[pid].get("arm", "")))
        written.append(results.write_table(table.assign(sweep=sweep.name, label=sweep.label), f"sweeps/{name}",
                                           table_name, {"sweep": sweep.name}, root() / "results", **record))
    return written
