import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbirlib.datasets import data, defaultdata, splits
from cbirlib.datasets.data import DatasetError


# --------------------------------------------------------------------------- slab split

@given(n=st.integers(0, 300), step=st.floats(0.5, 5.0), gap=st.floats(0.0, 30.0))
@settings(max_examples=200, deadline=None)
def test_slab_split_keeps_gap_and_contiguity(n, step, gap):
    pos = np.arange(n) * step
    labels = splits.slab_split(pos, gap)
    assert labels.shape == (n,)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        pa, pb = pos[labels == a], pos[labels == b]
        if pa.size and pb.size:
            assert np.abs(pa[:, None] - pb[None, :]).min() >= gap - 1e-9
    # val and test are each one contiguous run of the sorted stack
    for s in ("val", "test"):
        idx = np.flatnonzero(labels == s)
        if idx.size:
            assert np.all(np.diff(idx) == 1)


def test_slab_split_ratio_and_order_independence():
    pos = np.arange(120) * 2.0
    labels = splits.slab_split(pos, gap_mm=10.0)
    assert (labels == "val").sum() == 10 and (labels == "test").sum() == 10
    assert (labels == "").sum() == 3 * 4  # three gaps of 4 slices at 2 mm for a 10 mm gap
    perm = np.random.default_rng(1).permutation(120)
    assert list(splits.slab_split(pos[perm], 10.0)) == list(labels[perm])


def test_slab_split_short_stack_goes_to_train():
    assert set(splits.slab_split(np.arange(5) * 2.0, 10.0)) == {"train"}


@given(n=st.integers(1, 500), k=st.integers(0, 500))
def test_even_subsample_distinct_sorted(n, k):
    idx = splits.even_subsample(n, k)
    assert len(idx) == min(n, k)
    assert np.all(np.diff(idx) > 0)
    assert idx.size == 0 or (idx[0] >= 0 and idx[-1] < n)


def test_stratified_split_seeded_and_in_ratio():
    labels = ["a"] * 120 + ["b"] * 12 + ["c"] * 3
    s1 = splits.stratified_split(labels, seed=3)
    assert list(s1) == list(splits.stratified_split(labels, seed=3))
    assert list(s1) != list(splits.stratified_split(labels, seed=4))
    t = pd.DataFrame({"label": labels, "split": s1}).groupby(["label", "split"]).size()
    assert t["a", "val"] == 10 and t["a", "test"] == 10 and t["a", "train"] == 100
    assert t["c", "val"] == 1 and t["c", "test"] == 1


# --------------------------------------------------------------------------- image folders

def test_load_image_folder_normalises_to_rgb(image_folder):
    ds = data.load_image_folder(image_folder, seed=0)
    assert ds.classes == ["a", "b", "c"]
    images, labels, ids = ds.load(image_size=8)
    assert images.shape == (18, 8, 8, 3) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    grey = images[labels == 0]
    assert np.array_equal(grey[..., 0], grey[..., 1])  # grey -> three equal channels
    assert ds.counts().loc["a"].sum() == 6
    resized, _, _ = ds.load(split="train", image_size=16)
    assert resized.shape[1:] == (16, 16, 3)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        data.load_image_folder(tmp_path / "nope")


def test_fewer_than_two_classes(image_folder):
    import shutil

    shutil.rmtree(image_folder / "b")
    shutil.rmtree(image_folder / "c")
    with pytest.raises(DatasetError, match="need at least 2"):
        data.load_image_folder(image_folder)


def test_empty_class(image_folder):
    for f in (image_folder / "b").iterdir():
        f.unlink()
    (image_folder / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"class folder .*b contains no images"):
        data.load_image_folder(image_folder)


def test_corrupt_image_is_named(image_folder):
    bad = image_folder / "a" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        data.load_image_folder(image_folder)


def test_truncated_image_is_named_at_load(image_folder):
    good = (image_folder / "b" / "0.png").read_bytes()
    from PIL import Image

    big = image_folder / "b" / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(big)
    big.write_bytes(big.read_bytes()[:200])  # header intact, pixel data cut
    assert good  # the other files are untouched
    ds = data.load_image_folder(image_folder)
    with pytest.raises(DatasetError, match="big.png"):
        ds.load(image_size=8)


def test_mixed_sizes_policy(image_folder):
    from PIL import Image

    Image.new("RGB", (10, 12)).save(image_folder / "a" / "odd.png")
    with pytest.raises(DatasetError, match="different sizes"):
        data.load_image_folder(image_folder, resize="error")
    ds = data.load_image_folder(image_folder)  # default policy: resize
    images, _, _ = ds.load(image_size=8)
    assert images.shape[1:] == (8, 8, 3)
    with pytest.raises(DatasetError, match="resize"):
        data.load_image_folder(image_folder, resize="stretch")


def test_split_file(image_folder, tmp_path):
    ds = data.load_image_folder(image_folder)
    split_csv = tmp_path / "split.csv"
    t = ds.table[["path"]].assign(split=["train", "val", "test"] * 6)
    t.to_csv(split_csv, index=False)
    ds2 = data.load_image_folder(image_folder, split_file=split_csv)
    assert (ds2.table.split.value_counts() == 6).all()
    t.iloc[:-1].to_csv(split_csv, index=False)
    with pytest.raises(DatasetError, match="does not list 1 image"):
        data.load_image_folder(image_folder, split_file=split_csv)
    t.assign(split="holdout").to_csv(split_csv, index=False)
    with pytest.raises(DatasetError, match="unknown split names"):
        data.load_image_folder(image_folder, split_file=split_csv)
    t[["path"]].to_csv(split_csv, index=False)
    with pytest.raises(DatasetError, match="needs columns"):
        data.load_image_folder(image_folder, split_file=split_csv)


def test_unknown_split_name(image_folder):
    ds = data.load_image_folder(image_folder)
    with pytest.raises(DatasetError, match="unknown split"):
        ds.subset("testing")


def test_open_dataset_default_not_built(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_HOME", str(tmp_path))
    with pytest.raises(DatasetError, match="make data"):
        data.open_dataset("default")


def test_open_dataset_folder(image_folder):
    assert data.open_dataset(image_folder).classes == ["a", "b", "c"]


# --------------------------------------------------------------------------- the default dataset

def test_default_dataset_acceptance(default_dataset):
    ds = default_dataset
    t = ds.table
    assert set(defaultdata.MANIFEST_COLUMNS) <= set(t.columns)
    assert ds.classes == ["bone", "brain", "chest"]
    per_class = t.groupby("label").size()
    assert (per_class >= 200).all(), per_class
    patients = t.groupby("label").patient.nunique()
    assert patients["chest"] >= 3 and patients["brain"] >= 3 and patients["bone"] >= 2, patients
    # within a class the images are shared out between its patients: no volume has more than twice
    # the images of another unless it ran out of slices
    assert set(t.licence) and t.licence.notna().all()
    counts = ds.counts()
    assert (counts.nunique(axis=0) == 1).all(), "classes are balanced in every split"
    gap = ds.provenance["config"]["gap_mm"]
    assert splits.min_cross_split_distance(t) >= gap
    assert t.path.is_unique
    # the files are the ones the manifest describes
    from cbirlib.datasets.assets import sha256_file

    for row in t.iloc[::97].itertuples():
        assert sha256_file(ds.root / row.path) == row.sha256
    images, labels, _ = ds.load("test", image_size=224, per_class=2)
    assert images.shape == (6, 224, 224, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_default_dataset_build_is_deterministic(default_dataset, tmp_path):
    manifest = defaultdata.build_default_dataset(out_dir=tmp_path / "again", progress=False)
    assert manifest.read_bytes() == (default_dataset.root / "manifest.csv").read_bytes()
    info = json.loads((manifest.parent / "dataset.json").read_text())
    assert info["config_key"] == default_dataset.provenance["config_key"]
    # reuse: a second call with nothing changed rebuilds nothing
    mtime = manifest.stat().st_mtime_ns
    defaultdata.build_default_dataset(out_dir=tmp_path / "again", progress=False)
    assert manifest.stat().st_mtime_ns == mtime


def test_checkset_is_real_radiographs_only_for_testing():
    from cbirlib import paths

    if not (paths.data_dir() / "checkset" / "manifest.csv").exists():
        pytest.skip("check set not built: make data")
    ds = data.open_dataset("checkset")
    t = ds.table
    assert set(t.split) == {"test"} and not t.simulated.any()
    assert set(t.label) == {"bone", "chest"} and (t.label == "chest").sum() >= 16
    assert t.licence.notna().all()
    images, _, _ = ds.load("test", image_size=64)
    assert images.shape[1:] == (64, 64, 3)


def test_with_split_replaces_roles_and_drops_empty(image_folder):
    ds = data.load_image_folder(image_folder)
    roles = np.array(["train", "val", "test", ""] * 4 + ["train", "train"], dtype=object)
    ds2 = ds.with_split(roles, "by hand")
    assert len(ds2.table) == 18 - 4 and ds2.classes == ds.classes and ds2.provenance["split"] == "by hand"
    with pytest.raises(DatasetError, match="unknown split names"):
        ds.with_split(np.array(["holdout"] * 18, dtype=object), "x")
    with pytest.raises(DatasetError, match="roles for"):
        ds.with_split(roles[:3], "x")


# --------------------------------------------------------------------------- balancing between patients

def test_water_fill_shares_evenly_and_respects_sizes():
    q = defaultdata._water_fill(np.array([100, 5, 40, 40]), 60)
    assert q.sum() == 60 and q[1] == 5 and (q <= [100, 5, 40, 40]).all()
    assert abs(q[0] - q[2]) <= 1 and abs(q[2] - q[3]) <= 1
    assert defaultdata._water_fill(np.array([3, 4]), 100).tolist() == [3, 4]


def test_balance_equal_classes_and_cap():
    rows = []
    for label, vols in (("a", {"v1": 50, "v2": 10}), ("b", {"w1": 30, "w2": 30, "w3": 30})):
        for v, n in vols.items():
            rows += [dict(label=label, volume=v, plane="axial", index=i, split="train") for i in range(n)]
    t = defaultdata.balance(pd.DataFrame(rows).assign(split="train"), max_per_class=None, ratio=(1, 0, 0))
    per = t.groupby("label").size()
    assert per["a"] == per["b"] == 60
    per_vol = t[t.label == "b"].groupby("volume").size()
    assert (per_vol == 20).all()
