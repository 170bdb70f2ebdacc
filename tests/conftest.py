"""Shared fixtures. Tests use tiny inputs and never the network.

Tests that need the fetched assets (the bundled weights, the default dataset) skip when they
are missing, unless CBIR_REQUIRE_ASSETS=1 (set by `make test`), where missing assets fail.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cbirlib import paths
from cbirlib.datasets import assets


def _require(condition: bool, what: str) -> None:
    if condition:
        return
    msg = f"{what} missing: run `make assets data`"
    if os.environ.get("CBIR_REQUIRE_ASSETS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def weights_assets():
    _require(all(assets.ASSETS[n].path().exists() for n in assets.WEIGHT_ASSETS), "bundled weights")


@pytest.fixture
def default_dataset():
    _require((paths.default_dataset_dir() / "manifest.csv").exists(), "default dataset")
    from cbirlib.datasets import data

    return data.open_dataset("default")


@pytest.fixture
def image_folder(tmp_path):
    """A tiny 3-class folder: grey, RGB and RGBA PNGs of 8x8 px, 6 images per class."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    modes = {"a": "L", "b": "RGB", "c": "RGBA"}
    for cls, mode in modes.items():
        (root / cls).mkdir(parents=True)
        for i in range(6):
            shape = (8, 8) if mode == "L" else (8, 8, len(mode))
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")
    return root
