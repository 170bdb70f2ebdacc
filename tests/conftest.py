"""Shared fixtures. Tests use tiny inputs and never the network.

Tests that need the fetched assets (the bundled weights, the default dataset) skip when they
are missing, unless CBIR_REQUIRE_ASSETS=1 (set by `make test`), where missing assets fail.

Side by side (``make test`` runs ``pytest -n CORES``, pytest-xdist): every worker writes results
into a folder of its own under ``$CBIR_RESULTS_DIR`` and gives torch its share of the cores;
tests that must run in one process stay together (:func:`pytest_xdist_make_scheduler`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cbirlib import paths
from cbirlib.datasets import assets

NOTEBOOK_GROUP = "reference-notebooks"


def pytest_configure(config):
    """matplotlib's layout warnings are errors in the notebook kernels nbval starts, as in the book's
    build; on an xdist worker also its own results folder and its share of the cores (set before
    any test or notebook kernel starts, so both inherit them)."""
    from cbirlib.workflow import bookjobs

    bookjobs.kernel_warnings()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    base = os.environ.get("CBIR_RESULTS_DIR")
    if base:
        own = os.path.join(base, worker)
        os.makedirs(own, exist_ok=True)
        os.environ["CBIR_RESULTS_DIR"] = own
    if "CBIR_THREADS" not in os.environ:
        os.environ["CBIR_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))


#: the order in which work starts: the reference notebooks (the longest unit), then the rerun
#: tests (each a minute or more, in a shared prepared copy of the project), then everything else
FIRST = (NOTEBOOK_GROUP, "tests/test_rerun.py")


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling with our units: every cell of the reference notebooks is one unit
    (one kernel runs them in order, and the scorecard reads the tables the chapters before it
    wrote); every other test is a unit of its own. Decided from node ids on the controller
    (``--dist loadgroup`` silently stops grouping with pytest 9.2: pytest-xdist issue 1386). The
    longest work starts first (:data:`FIRST`), so the short tests fill the gaps at the end."""
    from xdist.scheduler import LoadScopeScheduling

    def rank(scope: str) -> int:
        path = scope.split("::", 1)[0]
        return FIRST.index(path) if path in FIRST else len(FIRST)

    class Scheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return NOTEBOOK_GROUP if nodeid.split("::", 1)[0].endswith(".ipynb") else nodeid

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the queue is complete before the first unit leaves it
                self._ordered = True
                for scope in sorted(self.workqueue, key=rank):
                    self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return Scheduling(config, log)


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
