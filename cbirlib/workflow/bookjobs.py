"""The book's jobs: chapters in dependency order, the frozen-trunk feature jobs the chapters share,
and one chapter executed by papermill."""

from __future__ import annotations

import os
from pathlib import Path

from .. import paths

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
    from .. import profiles

    p = profiles.PROFILES["02_classification"][profile]
    if p["trainable"] != "head":
        return []
    from ..learning.experimentconfig import MODEL_NAMES

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
    from .. import profiles

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

    from ..datasets import data as cbir_data
    from ..learning import experimentconfig, features, models, train
    from ..studies import classificationstudy

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
    from ..studies import keyawarestudy

    return len(keyawarestudy.run(keyawarestudy.config_for(profile, data=data)).table)


#: matplotlib's warnings that a figure's labels did not fit (clipped or overlapping at the book's
#: width): errors in every chapter's kernel, so that such a figure fails the build (PYTHONWARNINGS)
LAYOUT_WARNINGS_AS_ERRORS = ",".join(f"error:{m}:UserWarning" for m in (
    "Tight layout not applied", "constrained_layout not applied", "The figure layout has changed to tight"))


def kernel_warnings(environ: dict | None = None) -> None:
    """Add :data:`LAYOUT_WARNINGS_AS_ERRORS` to ``PYTHONWARNINGS`` of ``environ`` (default: this
    process's, which the kernels it starts inherit)."""
    env = os.environ if environ is None else environ
    present = [w for w in env.get("PYTHONWARNINGS", "").split(",") if w]
    env["PYTHONWARNINGS"] = ",".join(dict.fromkeys(present + LAYOUT_WARNINGS_AS_ERRORS.split(",")))


def run_chapter(nb: str, out: Path, profile: str, data: str = "default", results_dir: str = "",
                parameters: dict | None = None) -> None:
    """Execute ``notebooks/<nb>.ipynb`` with papermill into ``out`` (kernel python3, progress in
    the job's log; matplotlib's layout warnings are errors there), then fold the
    injected-parameters cell."""
    import papermill as pm

    from ..reporting import book

    kernel_warnings()
    params = {"profile": profile} | ({"data": data} if data != "default" else {}) | (parameters or {})
    if results_dir:
        params["results_dir"] = results_dir
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(root() / "notebooks" / f"{nb}.ipynb"), str(out), parameters=params,
                        kernel_name="python3", cwd=str(root() / "notebooks"), progress_bar=True,
                        log_output=False, request_save_on_cell_execute=False)
    book.hide_injected_parameters(out)
