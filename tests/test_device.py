"""The transport of the bundled weights to a lent GPU machine: small enough, and faithful to within
the bound it records."""

import shutil

import pytest
import pandas as pd
import torch

from cbirlib import device, paths
from cbirlib.learning import models


@pytest.mark.parametrize("model", ["vgg16", "vit"])
def test_pack_unpack_round_trip(model, weights_assets, tmp_path, monkeypatch):
    original = torch.load(device._cache_file(model), weights_only=True)
    home = tmp_path / "machine"
    (home / "data" / "cache").mkdir(parents=True)
    # pack here (weights only: the wheels need the registry), unpack "there" (an empty project)
    monkeypatch.setattr(device, "WHEELS", ())
    monkeypatch.setattr(device.subprocess, "run", lambda *a, **k: None)
    packed = device.pack((model,))
    size = (packed / model / "weights.pt").stat().st_size
    assert size < 30 * 2 ** 20, size  # fits a call beside the 16 MB dataset and the wheels
    monkeypatch.setenv("CBIR_HOME", str(home))
    (home / ".device").mkdir()
    shutil.copytree(packed / model, home / ".device" / model)
    record = device.unpack(model)
    assert paths.cache_dir() == home / "data" / "cache"
    restored = torch.load(device._cache_file(model), weights_only=True)
    worst = max(float((restored[k] - original[k]).abs().max()) for k in original)
    assert worst <= record["max_abs_error_bound"] + 1e-9
    bundle = models.build_model(model, 3, "bundled", 28 if model == "vit" else 32)  # loads from the cache
    assert bundle.provenance.weights == "bundled"


TINY_PLAN = """\
name: tiny-gpu
chapter: 02_classification
kind: classification
label: tiny-gpu
fixed: {data: default, weights: none, batch_size: 8, image_size: 56, trainable: all, amp: true, probe: true,
        retrieval: true, seed: 0, train_per_class: 4, val_per_class: 2, test_per_class: 2, epochs: 1, lr: 0.001}
arms:
  - name: first
    fixed: {split: slab}
    grid: {model: [vit, vgg16], domain: [plain, 8], key_mode: [per-image, shared]}
  - name: folds
    fixed: {split: kfold, folds: 3}
    grid: {model: [vit], domain: [8, plain], key_mode: [per-image], fold: all}
"""


@pytest.fixture
def tiny_plan(tmp_path, monkeypatch, default_dataset):
    sweeps_dir = tmp_path / "sweeps"
    sweeps_dir.mkdir()
    (sweeps_dir / "tiny-gpu.yaml").write_text(TINY_PLAN)
    project = tmp_path / "project"
    project.mkdir()
    for name in ("data", "pyproject.toml"):
        (project / name).symlink_to(paths.project_root() / name)
    monkeypatch.setenv("CBIR_SWEEPS_DIR", str(sweeps_dir))
    return project


def test_plan_orders_one_models_points_arm_by_arm_and_fold_by_fold(tiny_plan):
    order = [(p["arm"], str(p["domain"]), p.get("key_mode"), p.get("fold", 0))
             for _, p in device.plan_points("tiny-gpu", "vit")]
    assert order == [("first", "plain", "per-image", 0), ("first", "8", "per-image", 0), ("first", "8", "shared", 0),
                     ("folds", "8", "per-image", 0), ("folds", "plain", "per-image", 0),
                     ("folds", "8", "per-image", 1), ("folds", "plain", "per-image", 1),
                     ("folds", "8", "per-image", 2), ("folds", "plain", "per-image", 2)]
    with pytest.raises(SystemExit, match="no point of model"):
        device.plan_points("tiny-gpu", "resnet")


def test_the_gpu_plan_runs_on_cpu_to_its_deadline_and_its_tar_is_received(tiny_plan, tmp_path, monkeypatch):
    """The device's entry point, as the GPU script calls it, on the CPU with one epoch and a few
    images: points run in order and are packed after each; none starts past the deadline (the
    first always does); a second call resumes; ``receive`` unpacks and aggregates."""
    import subprocess
    import sys
    import tarfile

    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "cbirlib.device", "plan", "vit", "--sweep", "tiny-gpu", "--out", str(out),
           "--work", str(work)]
    env = dict(__import__("os").environ, CBIR_THREADS="1")
    first = subprocess.run(cmd + ["--deadline", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "1 points done, 8 skipped, 0 failed" in first.stdout
    with tarfile.open(out / "points-vit.tar") as tar:
        assert {m.name.split("/")[0] for m in tar.getmembers()} == {device.plan_points("tiny-gpu", "vit")[0][0]}
    second = subprocess.run(cmd + ["--deadline", "600"], capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "9 points done, 0 skipped, 0 failed" in second.stdout and second.stdout.count("done vit-") == 8
    monkeypatch.setenv("CBIR_HOME", str(tiny_plan))
    written = device.receive(out / "points-vit.tar", "tiny-gpu")
    assert {p.name for p in written} >= {"accuracy.csv", "paired.csv", "points.csv"}
    points = pd.read_csv(tiny_plan / "results" / "sweeps" / "tiny-gpu" / "points.csv")
    assert len(points) == 9 and set(points.model) == {"vit"}
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(work / "points" / points.point[0], arcname="not-a-point-of-this-sweep")
    with pytest.raises(SystemExit, match="not in sweep"):
        device.receive(bad, "tiny-gpu")
