"""Splitting images into train / validation / test without leaking neighbours.

Neighbouring slices of a scan are near-copies, so a random split leaks test images into
training. Everything here splits by position along each stack of slices — one (volume, plane) —
or by whole volumes (patients):

- :func:`slab_split`: one train | val | test layout per stack, the default dataset's ``split``
  column (the paper's 10:1:1 ratio).
- :func:`slab_folds`: k-fold over slabs: every image is a test image exactly once; in each fold
  the training and validation images keep ``gap_mm`` away from the fold's test slab (and from
  each other).
- :func:`volume_folds`: grouped k-fold by volume ("held-out patients"): a fold's test images come
  from volumes that never appear in its training set.
- :func:`stratified_folds`: the fallback for folders without slice positions (random, seeded;
  says so in its description).

A fold assignment is a table with one row per image and the columns ``fold`` (the fold whose
test set holds the image) — :func:`fold_roles` turns it into train / val / test / "" (dropped)
for one fold.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import paper

SPLITS = ("train", "val", "test")
#: the paper's split, 1000 : 100 : 100 images per class, as the ratio (10, 1, 1)
PAPER_RATIO = tuple(n // paper.DATASET_SPLIT["test"] for n in paper.DATASET_SPLIT.values())
STACK = ("volume", "plane")


class SplitError(ValueError):
    """A split that cannot be made from this table; the message says why."""


def slab_split(positions_mm: np.ndarray, gap_mm: float, ratio: tuple[int, int, int] = PAPER_RATIO
               ) -> np.ndarray:
    """Assign slices of one (volume, plane) to contiguous slabs.

    Layout along the slice axis: ``train | gap | val | gap | test | gap | train``, with val
    and test in the middle of the stack (the most typical anatomy). ``val`` and ``test`` get
    ``round(n * ratio_k / sum(ratio))`` slices each (at least 1); slices inside a gap are
    dropped. Stacks too short for three slabs go to train whole.

    Args:
        positions_mm: (n,) slice positions along the axis, in mm.
        gap_mm: minimum distance between slices of different splits.
        ratio: train : val : test proportions.

    Returns:
        (n,) object array of ``"train"``, ``"val"``, ``"test"`` or ``""`` (dropped), in the
        order of ``positions_mm``.

    >>> slab_split(np.arange(24) * 2.0, gap_mm=3.0).tolist().count("test")
    2
    """
    pos = np.asarray(positions_mm, dtype=float)
    n = pos.size
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    order = np.argsort(pos, kind="stable")
    p = pos[order]
    total = sum(ratio)
    n_val = max(1, round(n * ratio[1] / total))
    n_test = max(1, round(n * ratio[2] / total))
    start = (n - n_val - n_test) // 2
    labels = np.full(n, "", dtype=object)
    ok = start > 0
    if ok:
        val = np.arange(start, start + n_val)
        t0 = int(np.searchsorted(p, p[val[-1]] + gap_mm, side="left"))
        test = np.arange(t0, t0 + n_test)
        ok = test[-1] < n
    if not ok:
        out[:] = "train"
        return out
    labels[val] = "val"
    labels[test] = "test"
    labels[p <= p[val[0]] - gap_mm] = "train"
    labels[p >= p[test[-1]] + gap_mm] = "train"
    out[order] = labels
    return out


def min_cross_split_distance(table: pd.DataFrame, column: str = "split") -> float:
    """Smallest distance (mm) between two images of different (non-empty) roles in ``column``
    within the same (volume, plane)."""
    best = math.inf
    for _, g in table.groupby(list(STACK)):
        roles = [r for r in g[column].unique() if r]
        for i, a in enumerate(roles):
            for b in roles[i + 1:]:
                pa = g.loc[g[column] == a, "position_mm"].to_numpy()
                pb = g.loc[g[column] == b, "position_mm"].to_numpy()
                best = min(best, float(np.abs(pa[:, None] - pb[None, :]).min()))
    return best


def even_subsample(n: int, k: int) -> np.ndarray:
    """k distinct indices spread evenly over range(n) (k <= n); all of them when k >= n.

    >>> even_subsample(10, 3).tolist()
    [0, 5, 9]
    """
    if k >= n:
        return np.arange(n)
    return np.floor(np.linspace(0, n - 1, k) + 0.5).astype(int)


def stratified_split(labels: list[str], seed: int = 0, ratio: tuple[int, int, int] = PAPER_RATIO
                     ) -> np.ndarray:
    """Seeded per-class split in ``ratio`` (train : val : test); val and test get at least one
    image per class when the class has at least 3."""
    labels = np.asarray(labels)
    out = np.full(labels.size, "train", dtype=object)
    rng = np.random.default_rng(seed)
    total = sum(ratio)
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n = idx.size
        n_val = max(1 if n >= 3 else 0, round(n * ratio[1] / total))
        n_test = max(1 if n >= 3 else 0, round(n * ratio[2] / total))
        out[idx[:n_val]] = "val"
        out[idx[n_val:n_val + n_test]] = "test"
    return out


# --------------------------------------------------------------------------- k-fold

def has_positions(table: pd.DataFrame) -> bool:
    """Whether the table knows where each image sits in its scan (volume, plane, position_mm)."""
    return {"volume", "plane", "position_mm"} <= set(table.columns)


def slab_folds(table: pd.DataFrame, k: int = 5) -> np.ndarray:
    """Test fold of every image: each (volume, plane) stack is cut into ``k`` contiguous slabs of
    (nearly) equal counts along its positions; slab ``f`` is fold ``f``'s test set. A stack with
    fewer than ``k`` images leaves some of its slabs empty; when every stack does, some folds would
    test nothing, which is an error.

    Returns (n,) int array aligned with ``table``'s rows.
    """
    _check_k(k)
    if not has_positions(table):
        raise SplitError("slab folds need the columns volume, plane and position_mm")
    largest = int(table.groupby(list(STACK)).size().max()) if len(table) else 0
    if largest < k:  # every stack would leave the last folds empty
        raise SplitError(f"{k} slab folds need a stack of at least {k} images; the largest has {largest}")
    fold = np.zeros(len(table), dtype=int)
    for _, g in table.groupby(list(STACK), sort=True):
        rank = np.argsort(np.argsort(g.position_mm.to_numpy(), kind="stable"), kind="stable")
        fold[table.index.get_indexer(g.index)] = (rank * k) // len(g)
    return fold


def volume_folds(table: pd.DataFrame, k: int | None = None) -> tuple[np.ndarray, dict]:
    """Grouped k-fold by volume (held-out patients), in step across classes: ``k`` defaults to
    the smallest number of volumes of any class; each class's volumes are dealt to the folds,
    largest first to the fold with the fewest images of that class, so every fold's test set
    holds whole volumes of every class and no fold trains on them.

    Returns (folds (n,) int, a description: k, volumes per class, test volumes per fold).
    """
    if "volume" not in table.columns:
        raise SplitError("held-out-patient folds need a volume column (the default dataset has one)")
    per_class = table.groupby("label").volume.nunique()
    single = sorted(per_class[per_class < 2].index)
    if single:
        raise SplitError(f"held-out-patient folds need at least 2 volumes in every class; "
                         f"{', '.join(single)} has only one, so its test images would share a patient "
                         "with its training images")
    k = int(per_class.min()) if k is None else k
    _check_k(k)
    if k > per_class.min():
        raise SplitError(f"k={k} held-out-patient folds need {k} volumes per class; "
                         f"{per_class.idxmin()} has {per_class.min()}")
    fold_of_volume = {}
    for label, g in table.groupby("label", sort=True):
        sizes = g.volume.value_counts().sort_index().sort_values(ascending=False, kind="stable")
        load = np.zeros(k)
        for vol, n in sizes.items():
            f = int(np.argmin(load))
            fold_of_volume[vol] = f
            load[f] += n
    folds = table.volume.map(fold_of_volume).to_numpy(dtype=int)
    description = {"k": k, "volumes_per_class": {c: int(n) for c, n in per_class.items()},
                   "test_volumes": {f: sorted(v for v, ff in fold_of_volume.items() if ff == f) for f in range(k)}}
    return folds, description


def stratified_folds(labels, k: int = 5, seed: int = 0) -> np.ndarray:
    """Random stratified k-fold (seeded) for images without slice positions. Near-duplicate
    neighbours can then sit on both sides of a fold: use only when nothing better is known."""
    _check_k(k)
    labels = np.asarray(labels)
    fold = np.zeros(labels.size, dtype=int)
    rng = np.random.default_rng(seed)
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        fold[idx[rng.permutation(idx.size)]] = np.arange(idx.size) % k
    return fold


def fold_roles(table: pd.DataFrame, folds: np.ndarray, fold: int, gap_mm: float = 10.0,
               val_from: str = "next-fold") -> np.ndarray:
    """Roles of every image in fold ``fold``: ``test`` (its test slab or volumes), ``val``,
    ``train`` or ``""`` (dropped).

    ``val_from="next-fold"``: the validation images are fold ``fold + 1`` (mod k);
    ``"slab-split"``: the images the table's ``split`` column marks val or test among the
    non-test images (used with volume folds, whose training volumes keep their own slab split).
    With slice positions, a training image closer than ``gap_mm`` to a validation or test image
    of its own stack, and a validation image closer than that to a test image, are dropped; test
    images are never dropped, so across the folds every image is tested exactly once.
    """
    folds = np.asarray(folds)
    k = int(folds.max()) + 1
    if not 0 <= fold < k:
        raise SplitError(f"fold must be in 0..{k - 1}, got {fold}")
    roles = np.where(folds == fold, "test", "train").astype(object)
    if val_from == "next-fold":
        if k < 3:
            raise SplitError(f"k-fold with the next fold as validation needs k >= 3 (test, validation and "
                             f"training folds), got k={k}")
        roles[(folds == (fold + 1) % k) & (roles != "test")] = "val"
    elif val_from == "slab-split":
        if "split" not in table.columns:
            raise SplitError("val_from='slab-split' needs a split column")
        roles[(roles != "test") & table.split.isin(["val", "test"]).to_numpy()] = "val"
    else:
        raise SplitError(f"val_from must be 'next-fold' or 'slab-split', got {val_from!r}")
    if has_positions(table) and gap_mm > 0:
        roles = _drop_near_other_roles(table, roles, gap_mm)
    return roles


def _drop_near_other_roles(table: pd.DataFrame, roles: np.ndarray, gap_mm: float) -> np.ndarray:
    out = roles.copy()
    for _, g in table.groupby(list(STACK), sort=False):
        rows = table.index.get_indexer(g.index)
        pos = g.position_mm.to_numpy(dtype=float)
        r = roles[rows]
        drop = np.zeros(len(rows), dtype=bool)
        for role, away_from in (("train", ("val", "test")), ("val", ("test",))):
            mine = r == role
            others = np.sort(pos[np.isin(r, away_from)])
            if not mine.any() or others.size == 0:
                continue
            j = np.searchsorted(others, pos[mine])
            left = np.abs(pos[mine] - others[np.clip(j - 1, 0, others.size - 1)])
            right = np.abs(others[np.clip(j, 0, others.size - 1)] - pos[mine])
            drop[np.flatnonzero(mine)] = np.minimum(left, right) < gap_mm
        out[rows[drop]] = ""
    return out


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise SplitError(f"k must be an integer >= 2, got {k!r}")
