"""The points of a classification sweep, without running them: a point's checked parameters, its
:class:`~cbirlib.learning.experimentconfig.ExperimentConfig`, its folder name and its number of
folds. Free of torch, so that planning a sweep (Snakemake reads every point's id) costs no model
library import; :mod:`cbirlib.studies.classificationstudy` runs the points."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import fields

from ..datasets import data as cbir_data, splits
from ..learning.experimentconfig import Domain, ExperimentConfig, ExperimentError

#: keys a sweep point may set besides those of :class:`~cbirlib.learning.experimentconfig.ExperimentConfig`
POINT_OPTIONS = {"domain": "plain", "probe": True, "retrieval": False, "quantization": False}
_CONFIG_FIELDS = {f.name for f in fields(ExperimentConfig)} - {"domains", "profile"}


def check_point(point: dict) -> dict:
    """``point`` with the options' defaults filled in; an unknown key is a clear error."""
    unknown = sorted(set(point) - _CONFIG_FIELDS - set(POINT_OPTIONS) - {"arm", "sweep"})
    if unknown:
        raise ExperimentError(f"unknown point parameter(s) {unknown}; known: "
                              f"{sorted(_CONFIG_FIELDS | set(POINT_OPTIONS))}")
    return POINT_OPTIONS | point


def point_config(point: dict) -> ExperimentConfig:
    """The :class:`~cbirlib.learning.experimentconfig.ExperimentConfig` of a point (one domain)."""
    p = check_point(point)
    kw = {k: v for k, v in p.items() if k in _CONFIG_FIELDS}
    return ExperimentConfig(domains=(p["domain"],), profile=p.get("sweep", "sweep"), **kw)


#: parameters added after points were recorded, at the value those points ran with: a point that
#: sets one to this value is the same computation as before, so it keeps its name
_ADDED_LATER = {"key_expansion": 1, "head_epochs": 0}


def point_id(point: dict) -> str:
    """A readable, unique folder name: model, trainable part, domain, key mode, seed, split and
    fold, plus a hash of every parameter (so changing any of them makes a new point)."""
    p = check_point(point)
    digest = hashlib.sha256(json.dumps({k: v for k, v in p.items() if k != "arm" and not
                                        (k in _ADDED_LATER and v == _ADDED_LATER[k])},
                                       sort_keys=True, default=str).encode()).hexdigest()[:8]
    key = "na" if Domain.parse(p["domain"]).block_size is None else p.get("key_mode", "per-image")
    return (f"{p.get('model', 'vgg16')}-{p.get('trainable', 'all')}-{Domain.parse(p['domain']).tag}-{key}-"
            f"s{p.get('seed', 0)}-{p.get('split', 'slab')}{p.get('fold', 0)}-{digest}")


def folds_of(point: dict) -> int:
    """How many folds the point's split scheme has (the held-out-patient split depends on the
    data: the smallest number of volumes of any class)."""
    p = check_point(point)
    split = p.get("split", "slab")
    if split == "slab":
        return 1
    if split == "kfold":
        return int(p.get("folds", 5))
    return _volume_fold_count(str(p.get("data", "default")))


@functools.lru_cache(maxsize=8)
def _volume_fold_count(data: str) -> int:
    ds = cbir_data.open_dataset(data)
    return splits.volume_folds(ds.table.reset_index(drop=True))[1]["k"]
