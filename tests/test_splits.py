"""k-fold over slabs, held-out-patient folds, fold roles: every image tested once, gaps kept."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbirlib.datasets import splits
from cbirlib.datasets.splits import SplitError


def stacks(sizes, step=2.0, labels=None):
    rows = []
    for v, n in enumerate(sizes):
        for i in range(n):
            rows.append(dict(label=(labels or {}).get(v, f"c{v % 3}"), volume=f"v{v}", plane="axial",
                             position_mm=i * step, index=i))
    return pd.DataFrame(rows)


@given(sizes=st.lists(st.integers(5, 80), min_size=1, max_size=5), k=st.integers(3, 6),
       gap=st.sampled_from([0.0, 4.0, 10.0]))
@settings(max_examples=60, deadline=None)
def test_slab_folds_test_every_image_once_and_keep_gaps(sizes, k, gap):
    t = stacks(sizes)
    if max(sizes) < k:  # no stack fills every fold: a clear error, not an empty fold
        with pytest.raises(splits.SplitError, match="at least"):
            splits.slab_folds(t, k)
        return
    folds = splits.slab_folds(t, k)
    assert set(folds) == set(range(k))
    tested = []
    for f in range(k):
        roles = splits.fold_roles(t, folds, f, gap)
        tested += list(t.index[roles == "test"])
        for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
            for _, g in t.assign(role=roles).groupby("volume"):
                pa = g.position_mm[g.role == a].to_numpy()
                pb = g.position_mm[g.role == b].to_numpy()
                if pa.size and pb.size:
                    assert np.abs(pa[:, None] - pb[None, :]).min() >= gap - 1e-9, (a, b)
    assert sorted(tested) == list(t.index)  # each image is a test image exactly once


def test_slab_folds_are_contiguous_and_balanced():
    t = stacks([50])
    folds = splits.slab_folds(t, 5)
    assert (np.diff(folds) >= 0).all() and np.bincount(folds).tolist() == [10] * 5


def test_fold_roles_next_fold_is_validation():
    t = stacks([50])
    folds = splits.slab_folds(t, 5)
    roles = splits.fold_roles(t, folds, 4, gap_mm=0.0)
    assert (roles[folds == 4] == "test").all() and (roles[folds == 0] == "val").all()
    with pytest.raises(SplitError, match="k >= 3"):
        splits.fold_roles(t, np.arange(50) % 2, 0)
    with pytest.raises(SplitError, match="fold must be"):
        splits.fold_roles(t, folds, 7)


def test_volume_folds_hold_out_whole_volumes_of_every_class():
    t = stacks([30, 10, 20, 40, 25, 5], labels={0: "a", 1: "a", 2: "b", 3: "b", 4: "c", 5: "c"})
    folds, info = splits.volume_folds(t)
    assert info["k"] == 2
    for f in range(2):
        test_vols = set(t.volume[folds == f])
        assert test_vols == set(info["test_volumes"][f])
        assert {lab for lab in t.label[folds == f]} == {"a", "b", "c"}  # every class is tested
        train_vols = set(t.volume[folds != f])
        assert not test_vols & train_vols
    assert t.groupby("volume").apply(lambda g: len(set(folds[g.index])), include_groups=False).eq(1).all()


def test_volume_folds_refuse_a_class_with_one_volume():
    t = stacks([30, 10, 20], labels={0: "a", 1: "a", 2: "b"})
    with pytest.raises(SplitError, match="b has only one"):
        splits.volume_folds(t)
    with pytest.raises(SplitError, match="volume column"):
        splits.volume_folds(t.drop(columns="volume"))


def test_slab_split_roles_for_volume_folds():
    t = stacks([40, 40, 40, 40], labels={0: "a", 1: "a", 2: "b", 3: "b"})
    t["split"] = np.concatenate([splits.slab_split(g.position_mm.to_numpy(), 4.0) for _, g in t.groupby("volume")])
    folds, _ = splits.volume_folds(t)
    roles = splits.fold_roles(t, folds, 0, 4.0, val_from="slab-split")
    assert set(roles[folds == 0]) == {"test"} and {"train", "val"} <= set(roles[folds == 1])


def test_stratified_folds_cover_each_class():
    labels = ["a"] * 10 + ["b"] * 7
    f = splits.stratified_folds(labels, 3, seed=1)
    assert (f == splits.stratified_folds(labels, 3, seed=1)).all()
    for c in "ab":
        counts = np.bincount(f[np.array(labels) == c], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_bad_k():
    with pytest.raises(SplitError, match="k must be"):
        splits.slab_folds(stacks([10]), 1)
    with pytest.raises(SplitError, match="position"):
        splits.slab_folds(pd.DataFrame({"label": ["a"]}), 3)
