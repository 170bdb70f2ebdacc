"""The security chapter's sweep points (``kind: attacks`` in ``workflow/sweeps/``): the jigsaw and
known-plaintext attacks of :mod:`cbirlib.studies.securitystudy` on more images than a chapter run can
afford, one point per attack, block size, strength and seed. A point writes its tidy trials (one
row per image or group of images and metric); :func:`aggregate` joins the trials of every point
into the tables the chapter reads, each mean with ``n`` and its 95 % interval.

A point (every key but ``attack`` optional)::

    {attack: jigsaw, data: default, image_size: 224, block_size: 8, strength: 255,
     per_class: 8, shared_images: 4, candidates: 4, seed: 0}
    {attack: known-plaintext, data: default, image_size: 224, block_size: 8, strength: 255,
     pairs: [1, 2, 5, 10], per_class: 8, seed: 0}

``per_class`` test images of every class are attacked (spread over each class's scans); the
known-plaintext attacker's pairs are training images. Keys come from ``seed`` (experiments only).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd

from .. import provenance, results
from ..datasets import data as cbir_data
from . import securitystudy as ss

#: the attacks a point can run and each one's parameters with their defaults
OPTIONS = {
    "jigsaw": {"data": "default", "image_size": 224, "block_size": 8, "strength": 255, "per_class": 8,
               "shared_images": 4, "candidates": 4, "seed": 0},
    "known-plaintext": {"data": "default", "image_size": 224, "block_size": 8, "strength": 255,
                        "pairs": [1, 2, 5, 10], "per_class": 8, "seed": 0},
}
#: the points of this kind have no folds (the sweep engine adds none)
FOLDS = False


def check_point(point: dict) -> dict:
    """``point`` with its attack's defaults filled in; an unknown attack or key, or a block size
    that does not divide the image size, is a clear error."""
    attack = point.get("attack")
    if attack not in OPTIONS:
        raise ValueError(f"attack must be one of {sorted(OPTIONS)}, got {attack!r}")
    unknown = sorted(set(point) - set(OPTIONS[attack]) - {"attack", "arm", "sweep"})
    if unknown:
        raise ValueError(f"unknown point parameter(s) {unknown} for the {attack} attack; known: "
                         f"{sorted(OPTIONS[attack])}")
    p = OPTIONS[attack] | dict(point)
    if int(p["image_size"]) % int(p["block_size"]):
        raise ValueError(f"image_size {p['image_size']} is not a multiple of block_size {p['block_size']}")
    return p


def point_id(point: dict) -> str:
    """A readable, unique folder name: attack, block size, strength, image size and seed, plus a
    hash of every parameter."""
    p = check_point(point)
    digest = hashlib.sha256(json.dumps({k: v for k, v in p.items() if k != "arm"}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    return f"{p['attack']}-b{p['block_size']}-s{p['strength']}-{p['image_size']}px-seed{p['seed']}-{digest}"


def run_point(point: dict, out_dir: str | Path) -> Path:
    """Run one attack point; write ``trials.csv.gz`` and ``point.json`` into ``out_dir``
    (replaced atomically). Returns the path of ``point.json``."""
    p = check_point(point)
    start = time.perf_counter()
    dataset = cbir_data.open_dataset(p["data"])
    n = int(p["per_class"]) * len(dataset.classes)
    size, b, s, seed = int(p["image_size"]), int(p["block_size"]), int(p["strength"]), int(p["seed"])
    if p["attack"] == "jigsaw":
        images, ids = ss.jigsaw_images(dataset, size, [b], n)
        trials, _ = ss.jigsaw_trials(images, ids, [b], [s], seed, int(p["shared_images"]), int(p["candidates"]))
        counts = {"test images": len(ids)}
    else:
        known, test, ids = ss.kpa_images(dataset, size, max(p["pairs"]), n, seed)
        trials = ss.kpa_trials(known, test, ids, b, s, list(p["pairs"]), seed)
        counts = {"known pairs": len(known), "test images": len(ids)}
    record = {"point": p, "id": point_id(p), "counts": counts, "test_ids": list(ids),
              "seconds": time.perf_counter() - start, "dataset": cbir_data.dataset_record(dataset),
              "keys": f"derived from seed {seed} (experiment keys, not secret)", "environment": provenance.environment()}
    return results.write_point(Path(out_dir), {"trials": trials.assign(image_size=size)}, record)


def aggregate(points_dir: str | Path, expected_images: int | None = None) -> dict[str, pd.DataFrame]:
    """Every table of an attacks sweep from its finished points: ``jigsaw`` and
    ``known_plaintext`` (means with n and intervals, :func:`securitystudy.jigsaw_means` /
    :func:`securitystudy.kpa_means`) and ``points`` (one row per point); the trials stay in the
    points' folders.
    ``expected_images`` is not used (every point says how many images it attacked)."""
    rows, trials = [], {"jigsaw": [], "known-plaintext": []}
    for f in sorted(Path(points_dir).glob("*/point.json")):
        rec = json.loads(f.read_text())
        p = check_point(rec["point"])
        t = results.read_point_part(f.parent, "trials")
        trials[p["attack"]].append(t.assign(point=rec["id"]))
        rows.append(dict(point=rec["id"], attack=p["attack"], block_size=p["block_size"], strength=p["strength"],
                         image_size=p["image_size"], seed=p["seed"], arm=p.get("arm", ""), seconds=rec["seconds"],
                         **{k.replace(" ", "_"): v for k, v in rec["counts"].items()}))
    if not rows:
        raise FileNotFoundError(f"no finished points under {points_dir}")
    out = {"points": pd.DataFrame(rows).assign(source="ours")}
    if trials["jigsaw"]:
        jt = pd.concat(trials["jigsaw"], ignore_index=True).sort_values(["block_size", "strength"], kind="stable",
                                                                        ignore_index=True)
        out["jigsaw"] = ss.jigsaw_means(jt, ["image_size"])
    if trials["known-plaintext"]:
        kt = pd.concat(trials["known-plaintext"], ignore_index=True).sort_values(["block_size", "strength", "seed"],
                                                                                 kind="stable", ignore_index=True)
        out["known_plaintext"] = ss.kpa_means(kt, ["image_size"])
    return out
