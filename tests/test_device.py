"""The transport of the bundled weights to a lent GPU machine: small enough, and faithful to within
the bound it records."""

import shutil

import pytest
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
