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


#: the rerun tests: all but two need the project's copy, which the first of them builds (under a
#: lock, about 2 minutes); they go first to one worker (the builder), to the others once it is built
RERUN = "tests/test_rerun.py"
#: the rerun tests in the order they start: a short one that needs the copy first (its end says the
#: copy is built), then the longest; the rest in file order
RERUN_FIRST = ("test_paper_run_without_a_gpu_says_so", "test_make_book_on_a_folder_and_back_to_the_defaults")
#: the other tests of 12 s or more (`--durations`, 2026-12-04), longest first: they start right after
#: the reference notebooks, so that the short tests fill the end of the run
LONG = ("tests/test_workflow.py::test_tiny_sweep_runs_resumes_after_a_kill_and_tests_every_image_once",
        "tests/test_benchmarks.py::test_benchmark_runs",
        "tests/test_protocol_reliability.py::test_parallel_queries_equal_serial",
        "tests/test_device.py::test_the_gpu_plan_runs_on_cpu_to_its_deadline_and_its_tar_is_received",
        "tests/test_train.py::test_full_fine_tuning_runs",
        "tests/test_workflow.py::test_slurm_profile_submits_the_resources_each_point_asks_for",
        "tests/test_classificationstudy.py::test_regimes_are_told_apart_and_encrypted_runs_are_paired_with_plaintext",
        "tests/test_service.py::test_milvus_by_uri_agrees_with_faiss_flat",
        "tests/test_train.py::test_head_epochs_train_the_new_layers_alone_first")


def start_rank(scope: str) -> tuple[int, int]:
    """Where a unit of work stands in the queue (lower starts first): for the rerun tests, and for
    the others (the reference notebooks, then :data:`LONG`, then the rest)."""
    test = scope.split("::", 1)[1].split("[", 1)[0] if "::" in scope else ""
    if scope.startswith(RERUN + "::"):
        return (0, RERUN_FIRST.index(test)) if test in RERUN_FIRST else (1, 0)
    if scope == NOTEBOOK_GROUP:
        return (0, 0)
    base = scope.split("[", 1)[0]
    return (1, LONG.index(base)) if base in LONG else (2, 0)


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling with our units and order: every cell of the reference notebooks is
    one unit (one kernel runs them in order, and the scorecard reads the tables the chapters before
    it wrote); every other test is a unit of its own. Decided from node ids on the controller
    (``--dist loadgroup`` silently stops grouping with pytest 9.2: pytest-xdist issue 1386).

    The first worker to ask takes the rerun tests (it builds their copy of the project); the others
    take the notebooks and the long tests meanwhile, and rerun tests only once the builder has
    finished one of them (the copy is built: nobody waits for its lock) or nothing else is left.
    Long work first (:func:`start_rank`), so the short tests fill the gaps at the end."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        builder = None
        built = False

        def _split_scope(self, nodeid: str) -> str:
            return NOTEBOOK_GROUP if nodeid.split("::", 1)[0].endswith(".ipynb") else nodeid

        def _assign_work_unit(self, node) -> None:
            rerun = sorted((s for s in self.workqueue if s.startswith(RERUN + "::")), key=start_rank)
            other = sorted((s for s in self.workqueue if not s.startswith(RERUN + "::")), key=start_rank)
            if rerun and (node is self.builder or self.builder is None or self.built or not other):
                self.builder = self.builder or node
                scope = rerun[0]
            else:
                scope = other[0]
            self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

        def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:
            if node is self.builder and self.registered_collections[node][item_index].startswith(RERUN + "::"):
                self.built = True
            super().mark_test_complete(node, item_index, duration)

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
