"""The jobs of the Snakemake workflow (``workflow/Snakefile``) and the driver that runs it.

Two kinds of work go through the same engine:

- **the book**: one job per chapter notebook (papermill), in parallel where the chapters'
  dependencies allow (:data:`UPSTREAM`), after jobs that compute the frozen-trunk features the
  chapters share (:func:`feature_groups`, :func:`chapter_features`, and the key-aware study's own
  job; cached by content, :mod:`cbirlib.features`);
- **sweeps**: a YAML file in ``workflow/sweeps/`` describes a grid of a chapter's parameters;
  every point of the grid is one job that writes its own folder of tidy results, and one
  aggregation job per sweep joins them into ``results/sweeps/<name>/`` with intervals. An
  interrupted sweep reruns only the points that are missing.

:func:`run` starts Snakemake on the machine's cores (or on a cluster through a workflow profile in
``workflow/profiles/``), keeps its log in ``build/logs/`` and prints what runs, how far each
chapter is and the time left, estimated from the last recorded run.

Sweep file::

    name: classification            # results/sweeps/<name>/
    chapter: 02_classification      # the chapter that reads the results
    kind: classification            # the point runner: classification or attacks (KINDS)
    label: sweep-cpu                # how the book labels these results
    description: ...
    fixed: {data: default, ...}     # parameters of every point
    resources: {threads: 1, mem_mb: 6000, runtime: 60}   # per job; gpu: 1 for a GPU
    arms:                           # sub-grids, each its own fixed values and grid
      - name: end-to-end ViT
        fixed: {model: vit, trainable: all}
        grid: {domain: [plain, 8, 1], key_mode: [per-image, shared], seed: [0], fold: all}

``fold: all`` means every fold of the point's split scheme; the plaintext domain has no key, so
its ``key_mode: shared`` copies are dropped.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import paths

#: chapters that read another chapter's tables must run after it
UPSTREAM = {"05_security": ("02_classification",), "06_key_aware": ("05_security",)}
#: the last chapter reads every other chapter's tables
SCORECARD = "99_scorecard"
#: which job Snakemake starts first when several are ready (higher first): the feature jobs that
#: the longest chains wait for, then the longest chapters, the short ones last to fill the gaps
PRIORITY = {"features vgg16 (paper's domains)": 70, "features vit (paper's domains)": 65, "04_quantization": 60,
            "features vgg16 (more block sizes)": 58, "features vit (more block sizes)": 56, "features key-aware": 52,
            "02_classification": 50, "05_security": 45, "06_key_aware": 40, "drr": 35, "00_data": 30,
            "03_retrieval": 20, "01_encryption": 10}
#: the domains of Tables VI-VII; the feature job of each model computes these first, in a job of its
#: own, so the chapters that read only them start before the other block sizes are done
PAPER_DOMAINS = ("plain", "8", "1")
#: the frozen-trunk features each chapter reads (from the feature jobs, which compute them
#: beforehand: the same arrays, hence the same cache entries) at its default parameters: "all"
#: (every model and domain of the classification profile), {model: domains}, or a function of the
#: profile that returns one of those
FEATURE_NEEDS = {"00_data": lambda profile: _check_set_features(profile),
                 "02_classification": "all",
                 "03_retrieval": {"vit": PAPER_DOMAINS},
                 "04_quantization": {"vgg16": ("8",)},
                 "06_key_aware": {"vit": ("plain",)}}
#: the stamp of the job that computes the key-aware chapter's features (its ciphertexts and
#: transformed models) beside the other jobs, so that the chapter itself, which must wait for the
#: security chapter, only reads them
KEY_AWARE_STAMP = "keyaware.done"


class WorkflowError(ValueError):
    """A sweep file or workflow request that cannot run; the message says why."""


def root() -> Path:
    return paths.project_root()


def snakefile() -> Path:
    return root() / "workflow" / "Snakefile"


# --------------------------------------------------------------------------- the book

def chapters() -> list[str]:
    """Notebook ids in book order (``notebooks/*.ipynb``)."""
    return sorted(p.stem for p in (root() / "notebooks").glob("*.ipynb"))


def upstream(nb: str) -> list[str]:
    """The chapters ``nb`` reads tables from."""
    if nb == SCORECARD:
        return [c for c in chapters() if c != SCORECARD]
    return list(UPSTREAM.get(nb, ()))


def feature_jobs(profile: str) -> list[tuple[str, str]]:
    """(model, domain) pairs whose frozen-trunk features the classification chapter computes at
    ``profile`` (none when the profile fine-tunes every weight)."""
    from . import profiles

    p = profiles.PROFILES["02_classification"][profile]
    if p["trainable"] != "head":
        return []
    from .models import MODEL_NAMES

    return [(m, str(d)) for m in MODEL_NAMES for d in p["domains"]]


def feature_groups(profile: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The feature jobs at ``profile``: (model, group, domains), per model one job for the paper's
    domains (:data:`PAPER_DOMAINS`) and one for any other block sizes (one torch import and model
    build per job)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for model, domain in feature_jobs(profile):
        group = "paper's domains" if domain in PAPER_DOMAINS else "more block sizes"
        groups.setdefault((model, group), []).append(domain)
    return [(m, g, tuple(d)) for (m, g), d in groups.items()]


def _check_set_features(profile: str) -> dict:
    """The data chapter trains its check-set models on the plaintext default data."""
    from . import profiles

    return {m: ("plain",) for m in profiles.PROFILES["00_data"][profile]["check_models"]}


def chapter_features(nb: str, profile: str) -> list[tuple[str, str]]:
    """The (model, domain) feature stamps chapter ``nb`` waits for (:data:`FEATURE_NEEDS`)."""
    need = FEATURE_NEEDS.get(nb)
    need = need(profile) if callable(need) else need
    jobs = feature_jobs(profile)
    if need == "all":
        return jobs
    return [(m, d) for m, d in jobs if need and d in need.get(m, ())]


def warm_features(profile: str, data: str, model: str, domains: list[str], seed: int = 0) -> dict[str, int]:
    """Compute (or find in the cache) the frozen-trunk features of every split of ``data`` for
    one model and each of ``domains``, exactly as the chapters will ask for them, in one process
    (one import of torch, one model build for all domains). The splits of a domain go through the
    network together (less padding of the last batch; the cache keeps rows, which do not depend
    on the other images of a batch). Returns the image count per domain."""
    import numpy as np

    from . import data as cbir_data, experimentconfig, features, models, train
    from .studies import classificationstudy

    cfg = classificationstudy.config_for(profile, model, data=data, seed=seed)
    dataset = cbir_data.open_dataset(cfg.data, seed=cfg.seed)
    bundle = models.build_model(cfg.model, len(dataset.classes), cfg.weights, cfg.image_size, cfg.seed)
    counts = {}
    for domain in domains:
        splits = train.prepare_splits(cfg, dataset, experimentconfig.Domain.parse(domain)).values()
        images = np.concatenate([split.images for split in splits])
        features.extract(bundle, images, batch_size=cfg.batch_size, device=train.device_for(cfg.device))
        counts[domain] = len(images)
    return counts


def warm_key_aware(profile: str, data: str) -> int:
    """Run the key-aware study at ``profile`` as its chapter will (its default parameters), so that
    every feature it needs is in the cache when the chapter runs. Returns the rows of its table."""
    from .studies import keyawarestudy

    return len(keyawarestudy.run(keyawarestudy.config_for(profile, data=data)).table)


def run_chapter(nb: str, out: Path, profile: str, data: str = "default", results_dir: str = "",
                parameters: dict | None = None) -> None:
    """Execute ``notebooks/<nb>.ipynb`` with papermill into ``out`` (kernel python3, progress in
    the job's log), then fold the injected-parameters cell."""
    import papermill as pm

    from . import book

    params = {"profile": profile} | ({"data": data} if data != "default" else {}) | (parameters or {})
    if results_dir:
        params["results_dir"] = results_dir
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(root() / "notebooks" / f"{nb}.ipynb"), str(out), parameters=params,
                        kernel_name="python3", cwd=str(root() / "notebooks"), progress_bar=True,
                        log_output=False, request_save_on_cell_execute=True)
    book.hide_injected_parameters(out)


# --------------------------------------------------------------------------- variant books

#: the files of book/ a variant book is built from (its executed chapters are its own)
BOOK_SOURCES = ("*.md", "*.yml", "_vendor", "_css", "_generated")


@dataclass(frozen=True)
class Variant:
    """A book of a non-default run (other data, or a chapter with other parameters): its own
    executed chapters, results and HTML under ``build/variants/<name>/``, so the default book and
    the committed ``results/`` are never touched."""

    name: str
    profile: str = "cpu"
    data: str = "default"

    @property
    def folder(self) -> Path:
        return root() / "build" / "variants" / self.name

    @property
    def executed(self) -> Path:
        return self.folder / "book" / "executed"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    @property
    def html(self) -> Path:
        return self.folder / "book" / "_build" / "html"

    def config(self) -> dict:
        return {"profile": self.profile, "data": self.data, "results_dir": str(self.results),
                "executed_dir": str(self.executed.relative_to(root()))}


def variant_name(nb: str | None, params: dict, data: str = "default") -> str:
    """A readable, stable folder name for a run: the data folder's name and/or the chapter and its
    parameters, with a short hash of all of them."""
    import hashlib

    digest = hashlib.sha256(json.dumps({"nb": nb, "params": params, "data": data}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    parts = ([f"data-{Path(data).name}"] if data != "default" else []) + ([nb] if nb else [])
    return "-".join(parts + [digest])


def _profile_of(executed: Path) -> str | None:
    try:
        return json.loads(executed.read_text())["metadata"]["papermill"]["parameters"].get("profile")
    except (OSError, ValueError, KeyError):
        return None


def seed_variant(variant: Variant) -> list[str]:
    """Copy the default book's executed chapters and committed results into a variant of the same
    profile and data (mtimes kept, so only what the variant changes reruns). Returns the chapters seeded."""
    import shutil

    if variant.data != "default":
        return []
    seeded = []
    variant.executed.mkdir(parents=True, exist_ok=True)
    for nb in chapters():
        src = root() / "book" / "executed" / f"{nb}.ipynb"
        dst = variant.executed / f"{nb}.ipynb"
        if src.exists() and not dst.exists() and _profile_of(src) == variant.profile:
            shutil.copy2(src, dst)
            seeded.append(nb)
            res = root() / "results" / nb
            if res.is_dir() and not (variant.results / nb).exists():
                shutil.copytree(res, variant.results / nb, copy_function=shutil.copy2)
    return seeded


def build_variant_book(variant: Variant) -> Path:
    """The variant's HTML book (Jupyter Book, ``-W -n``) from book/'s sources and its own chapters."""
    import shutil

    book_dir = variant.folder / "book"
    for pattern in BOOK_SOURCES:
        for src in (root() / "book").glob(pattern):
            dst = book_dir / src.name
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
    from . import book

    for nb in book_dir.glob("executed/*.ipynb"):
        book.hide_injected_parameters(nb)
    log = variant.folder / "build.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", "-W", "-n", "--keep-going",
                             str(book_dir)], stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise WorkflowError(f"the variant book did not build; see {log}:\n" + log.read_text()[-3000:])
    return variant.html / "index.html"


def run_notebook_variant(nb: str, params: dict, profile: str, data: str = "default", cores: int | None = None,
                         name: str | None = None) -> Path:
    """``make run``: check ``params`` (before any work), execute chapter ``nb`` with them into a
    variant book, rerun what reads its tables, build that book. Returns its index.html."""
    from .studies import parameters as cbparams

    values = cbparams.coerce(nb, dict(params) | {"profile": profile} | ({"data": data} if data != "default" else {}))
    cbparams.check_available(nb, values)
    values.pop("profile")
    variant = Variant(name or variant_name(nb, values, data), profile, data)
    seed_variant(variant)
    out = variant.executed / f"{nb}.ipynb"
    print(f"workflow: {nb} with {cbparams.describe(nb, values | {'profile': profile})} -> {out.relative_to(root())}",
          file=sys.stderr)
    run_chapter(nb, out, profile, data, str(variant.results), {k: v for k, v in values.items() if k != "data"})
    rc = run(["notebooks"], cores, variant.config())
    if rc != 0:
        raise WorkflowError(f"the chapters of {variant.name} did not run (exit {rc})")
    return build_variant_book(variant)


def run_data_variant(data: str, profile: str, cores: int | None = None) -> Path:
    """``make book DATA=<folder>``: every chapter on the folder, into its own variant book."""
    from . import data as cbir_data

    cbir_data.open_dataset(data)  # a clear error for a missing or malformed folder, before any work
    variant = Variant(variant_name(None, {}, str(Path(data).resolve())), profile, str(Path(data).resolve()))
    rc = run(["notebooks"], cores, variant.config())
    if rc != 0:
        raise WorkflowError(f"the chapters on {data} did not run (exit {rc})")
    return build_variant_book(variant)


# --------------------------------------------------------------------------- sweeps

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


def kind_module(kind: str):
    """The module that runs and aggregates the points of sweeps of ``kind``."""
    import importlib

    if kind not in KINDS:
        raise WorkflowError(f"unknown kind {kind!r}; choose one of {sorted(KINDS)}")
    return importlib.import_module(KINDS[kind])


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
    runner = kind_module(kind)
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
    return kind_module(kind).point_id({k: v for k, v in point.items() if not k.startswith("_")})


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
    from . import data as cbir_data, results

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
        written.append(results.write_table(table.assign(sweep=sweep.name, label=sweep.label), f"sweeps/{name}",
                                           table_name, {"sweep": sweep.name}, root() / "results", **record))
    return written


# --------------------------------------------------------------------------- the driver

def _timings_files(profile: str) -> list[Path]:
    return [root() / "build" / "timings" / f"{profile}.json", root() / "workflow" / "timings" / f"{profile}.json"]


def expected_seconds(profile: str) -> dict[str, float]:
    """Seconds each job took in the last recorded run at ``profile`` (this machine's record first,
    then the committed one)."""
    for f in _timings_files(profile):
        if f.exists():
            return json.loads(f.read_text())
    return {}


def _job_name(output: str) -> str:
    p = Path(output)
    if p.suffix == ".ipynb":
        return p.stem
    if p.parts[:2] == ("build", "features"):  # a feature job writes a stamp per domain
        if p.name == KEY_AWARE_STAMP:
            return "features key-aware"
        model, domain = p.stem.split("_", 1)
        return f"features {model} " + ("(paper's domains)" if domain in PAPER_DOMAINS else "(more block sizes)")
    if "points" in p.parts:
        return "point " + p.parent.name
    return output


def _with(cmd: list[str], *flags: str) -> list[str]:
    """``cmd`` with ``flags`` before its ``--config`` (which takes every word after it)."""
    i = cmd.index("--config") if "--config" in cmd else len(cmd)
    return cmd[:i] + list(flags) + cmd[i:]


def plan(cmd: list[str]) -> list[str]:
    """The outputs Snakemake would (re)make for ``cmd`` (from ``--summary``)."""
    proc = subprocess.run(_with(cmd, "--summary"), capture_output=True, text=True, cwd=root())
    if proc.returncode != 0:
        raise WorkflowError("snakemake could not plan the run:\n" + proc.stderr[-3000:])
    rows = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    if not rows:
        return []
    header = rows[0]
    i_out, i_plan = header.index("output_file"), header.index("plan")
    return [r[i_out] for r in rows[1:] if r[i_plan] != "no update"]


def _notebook_progress(path: Path) -> str:
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    done = sum(1 for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "completed")
    return f"cell {done}/{len(cells)}" if cells else ""


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    """Watches the planned outputs while Snakemake runs and prints one status line at a time."""

    def __init__(self, outputs: list[str], cores: int, expected: dict[str, float], stream=sys.stderr) -> None:
        # one output per job (a job with several outputs, e.g. a model's feature stamps, counts once)
        first: dict[str, str] = {}
        for o in outputs:
            first.setdefault(_job_name(o), o)
        self.outputs = list(first.values())
        self.cores, self.expected, self.stream = cores, expected, stream
        self.start = time.time()
        self.finished: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self._stop = threading.Event()

    def _state(self) -> tuple[list[str], list[str]]:
        running = []
        for out in self.outputs:
            name = _job_name(out)
            p = root() / out
            if name in self.finished:
                continue
            log = self._log_of(out)
            if p.exists() and p.stat().st_mtime >= self.start and not self._still_writing(out):
                self.finished[name] = time.time() - self.started.get(name, self.start)
            elif (log and log.exists() and log.stat().st_mtime >= self.start) or (p.exists() and p.stat().st_mtime >= self.start):
                self.started.setdefault(name, time.time())
                detail = _notebook_progress(p) if out.endswith(".ipynb") and p.exists() else ""
                running.append(f"{name}{f' ({detail})' if detail else ''}")
        return running, list(self.finished)

    def _log_of(self, out: str) -> Path | None:
        p = Path(out)
        if p.suffix == ".ipynb":
            return root() / "build" / "logs" / f"{p.parent.as_posix().replace('/', '_')}-{p.stem}.log"
        return None

    def _still_writing(self, out: str) -> bool:
        if not out.endswith(".ipynb"):
            return False
        text = _notebook_progress(root() / out)
        if not text:
            return True
        done, total = text.split()[1].split("/")
        return done != total

    def line(self) -> str:
        running, finished = self._state()
        left = 0.0
        for out in self.outputs:
            name = _job_name(out)
            if name in self.finished:
                continue
            est = self.expected.get(name, 30.0)
            left += max(est - (time.time() - self.started[name]), 5.0) if name in self.started else est
        eta = f", ~{_fmt(left / max(self.cores, 1))} left" if self.expected else ""
        run = f"; running: {', '.join(running)}" if running else ""
        return f"[{_fmt(time.time() - self.start)}] {len(finished)}/{len(self.outputs)} jobs done{eta}{run}"

    def watch(self, every: float = 15.0) -> None:
        last = ""
        while not self._stop.wait(every):
            text = self.line()
            if text != last:
                print(text, file=self.stream, flush=True)
                last = text

    def stop(self) -> None:
        self._stop.set()


def snakemake_command(targets: list[str], cores: int, config: dict, workflow_profile: str | None = None,
                      jobs: int | None = None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(snakefile()), "--directory", str(root()),
           "--rerun-triggers", "mtime", "--rerun-incomplete", "--cores", str(cores), "--nocolor"]
    if workflow_profile:
        prof = Path(workflow_profile)
        if not prof.is_dir():
            prof = root() / "workflow" / "profiles" / str(workflow_profile)
        if not (prof / "config.yaml").exists():
            raise WorkflowError(f"no workflow profile {workflow_profile!r} ({prof}/config.yaml missing)")
        cmd += ["--workflow-profile", str(prof)]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    cmd += list(extra or [])
    if config:  # last: --config takes every word after it
        cmd += ["--config", *[f"{k}={v}" for k, v in config.items()]]
    return cmd


def run(targets: list[str], cores: int | None = None, config: dict | None = None, workflow_profile: str | None = None,
        jobs: int | None = None, dry_run: bool = False, extra: list[str] | None = None, progress: bool = True) -> int:
    """Run Snakemake for ``targets``; its log goes to ``build/logs/snakemake.log`` and a status line
    (jobs done, what runs, how far each chapter is, time left) to stderr. Returns its exit code."""
    cores = cores or os.cpu_count() or 1
    config = dict(config or {})
    cmd = snakemake_command(targets, cores, config, workflow_profile, jobs, extra)
    if dry_run:
        return subprocess.run(_with(cmd, "--dry-run"), cwd=root()).returncode
    _clear_stale_lock(cmd)
    if any("results/sweeps/" in t for t in targets):
        _settle_finished_points()
    outputs = plan(cmd)
    logs = root() / "build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "snakemake.log"
    if not outputs:
        print("workflow: everything is up to date", file=sys.stderr)
        return 0
    profile = config.get("profile", "cpu")
    watcher = Progress(outputs, cores, expected_seconds(profile))
    names = list(dict.fromkeys(_job_name(o) for o in outputs))  # a job with several outputs once
    print(f"workflow: {len(names)} jobs on {cores} core(s): {', '.join(names[:12])}"
          f"{' ...' if len(names) > 12 else ''} (log: {log_path.relative_to(root())})", file=sys.stderr, flush=True)
    thread = threading.Thread(target=watcher.watch, daemon=True) if progress else None
    if thread:
        thread.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=root(), stdout=log, stderr=subprocess.STDOUT).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    watcher.stop()
    wall = time.time() - t0
    print(f"{watcher.line()}; {_fmt(wall)} wall, CPU {100 * cpu / max(wall, 1e-9):.0f} % on average",
          file=sys.stderr, flush=True)
    if rc != 0:
        print(f"workflow: snakemake failed (exit {rc}); the end of {log_path.relative_to(root())}:", file=sys.stderr)
        print("".join(log_path.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
        return rc
    _record_timings(profile, log_path)
    return 0


def _settle_finished_points() -> None:
    """A sweep point whose ``point.json`` exists is complete (its folder is renamed into place
    whole). A run killed after that rename but before Snakemake noticed leaves the point marked
    incomplete, and ``--rerun-incomplete`` would run it again: clear those marks."""
    marks = root() / ".snakemake" / "incomplete"
    if not marks.is_dir() or not any(marks.iterdir()):
        return
    done = [p.relative_to(root()).as_posix() for p in (root() / "results" / "sweeps").glob("*/points/*/point.json")]
    if done:
        subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile()), "--directory", str(root()),
                        "--cleanup-metadata", *done], cwd=root(), capture_output=True)


def _clear_stale_lock(cmd: list[str]) -> None:
    """A run that was killed leaves Snakemake's lock behind; remove it when no Snakemake process
    works in this directory any more (a live one keeps its lock, and Snakemake then says so)."""
    locks = root() / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return
    me = os.getpid()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) == me:
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            continue
        if b"snakemake" in b" ".join(args) and Path(cwd) == root() and b"--summary" not in args:
            return
    print("workflow: removing the lock a killed run left behind", file=sys.stderr)
    subprocess.run(_with(cmd, "--unlock"), cwd=root(), capture_output=True)


_LOG_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_seconds(snakemake_log: str) -> dict[str, float]:
    """Seconds each job of a Snakemake log ran, from its own start and finish stamps, by job name
    (:func:`_job_name` of its first output).

    >>> job_seconds("[Tue Dec  1 13:34:54 2026]\\nlocalrule features:\\n    output: build/x.done\\n    jobid: 7\\n"
    ...             "[Tue Dec  1 13:35:42 2026]\\nFinished jobid: 7 (Rule: features)\\n")
    {'build/x.done': 48.0}
    """
    from datetime import datetime

    stamp, started, outputs, seconds = None, {}, {}, {}
    current_output = None
    for line in snakemake_log.splitlines():
        m = _LOG_STAMP.match(line.strip())
        if m:
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        line = line.strip()
        if line.startswith("output: "):
            current_output = line[len("output: "):].split(", ")[0]
        elif line.startswith("jobid: ") and current_output and stamp:
            jid = line.split()[1]
            started[jid], outputs[jid], current_output = stamp, current_output, None
        elif line.startswith("Finished jobid: ") and stamp:
            jid = line.split()[2]
            if jid in started:
                seconds[_job_name(outputs[jid])] = (stamp - started[jid]).total_seconds()
    return seconds


def _record_timings(profile: str, log_path: Path) -> None:
    """Remember how long each job took (from Snakemake's log) for the next run's time-left estimate."""
    path = _timings_files(profile)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    known |= {k: round(v, 1) for k, v in job_seconds(log_path.read_text()).items() if not k.startswith("point ")}
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m cbirlib.workflow``: the commands the Snakefile's jobs run, and ``run``."""
    parser = argparse.ArgumentParser(prog="cbir workflow")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("run", help="run the workflow for targets (e.g. notebooks, sweep_classification)")
    p.add_argument("targets", nargs="*", default=["notebooks"])
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--jobs", type=int, default=None, help="parallel jobs on a cluster")
    p.add_argument("--profile", default="cpu", help="the book's parameter profile: ci | cpu | paper")
    p.add_argument("--data", default="default")
    p.add_argument("--results-dir", default="")
    p.add_argument("--cluster", default=None, help="a workflow profile in workflow/profiles (slurm, kubernetes)")
    p.add_argument("--sweep", default=None, help="run this sweep (workflow/sweeps/<name>.yaml): every missing point, then its tables")
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("chapter", help="execute one chapter notebook (a job of the book)")
    p.add_argument("nb")
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--results-dir", default="")
    p = sub.add_parser("features", help="compute the shared frozen-trunk features of one model and its domains")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--model", required=True)
    p.add_argument("--domain", nargs="+", required=True)
    p.add_argument("--stamp", nargs="+", required=True, help="one file per domain, written when all are done")
    p = sub.add_parser("keyaware-features", help="run the key-aware study once, so its chapter finds its features cached")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--stamp", required=True, help="written when done")
    p = sub.add_parser("point", help="run one point of a sweep")
    p.add_argument("sweep")
    p.add_argument("point")
    p = sub.add_parser("aggregate", help="join a sweep's points into its tables")
    p.add_argument("sweep")
    p = sub.add_parser("points", help="list a sweep's points and whether each has run")
    p.add_argument("sweep")
    p = sub.add_parser("notebook", help="make run: one chapter with other parameters, into a variant book")
    p.add_argument("nb")
    p.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter (the value is YAML: lists, numbers, booleans)")
    p.add_argument("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter taken as a string")
    p.add_argument("-y", "--yaml", action="append", default=[], help="parameters as a YAML mapping")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default="default")
    p.add_argument("--cores", type=int, default=None)
    p.add_argument("--name", default=None, help="the variant's folder name (default: from the chapter and parameters)")
    p = sub.add_parser("book", help="make book DATA=<folder>: every chapter on a folder, into a variant book")
    p.add_argument("--data", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--cores", type=int, default=None)
    args = parser.parse_args(argv)
    if args.action == "run":
        config = {"profile": args.profile, "data": args.data} | ({"results_dir": args.results_dir} if args.results_dir else {})
        targets, extra = args.targets, []
        if args.sweep:
            load_sweep(args.sweep)  # a clear error for an unknown or broken sweep file
            targets, extra = [aggregate_target(args.sweep)], ["--forcerun", "sweep_aggregate"]
        return run(targets, args.cores, config, args.cluster, args.jobs, args.dry_run, extra)
    if args.action == "chapter":
        run_chapter(args.nb, Path(args.out), args.profile, args.data, args.results_dir)
    elif args.action == "features":
        if len(args.stamp) != len(args.domain):
            raise WorkflowError(f"{len(args.stamp)} stamps for {len(args.domain)} domains")
        counts = warm_features(args.profile, args.data, args.model, args.domain)
        for domain, stamp in zip(args.domain, map(Path, args.stamp)):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps({"model": args.model, "domain": domain, "images": counts[domain]}) + "\n")
    elif args.action == "keyaware-features":
        rows = warm_key_aware(args.profile, args.data)
        stamp = Path(args.stamp)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"study": "06_key_aware", "rows": rows}) + "\n")
    elif args.action == "point":
        print(run_sweep_point(args.sweep, args.point))
    elif args.action == "aggregate":
        for path in aggregate_sweep(args.sweep):
            print(path.relative_to(root()))
    elif args.action in ("notebook", "book"):
        from .studies.parameters import ParameterError

        try:
            if args.action == "notebook":
                params = {k: v for k, v in args.parameters} | {k: v for k, v in args.raw}
                for text in args.yaml:
                    loaded = yaml.safe_load(text)
                    if not isinstance(loaded, dict):
                        raise ParameterError(f"-y takes a YAML mapping (name: value), got {text!r}")
                    params |= loaded
                raw = {k for k, _ in args.raw}
                index = run_notebook_variant(args.nb, {k: (str(v) if k in raw else v) for k, v in params.items()},
                                             args.profile, args.data, args.cores, args.name)
            else:
                index = run_data_variant(args.data, args.profile, args.cores)
        except (ParameterError, WorkflowError, ValueError) as e:
            print(f"workflow: error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # a chapter failed: papermill's error names the cell and the exception
            if type(e).__name__ != "PapermillExecutionError":
                raise
            print(f"workflow: error: {args.nb if args.action == 'notebook' else 'a chapter'} failed: "
                  f"{e.ename}: {e.evalue}", file=sys.stderr)
            return 2
        print(f"book: {index}")
    elif args.action == "points":
        sweep = load_sweep(args.sweep)
        for pid in sweep.points:
            done = (sweep_results(sweep.name) / "points" / pid / "point.json").exists()
            print(f"{'done   ' if done else 'missing'} {pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
