"""The process settings cbirlib applies: the thread budget and the garbage collector's thresholds."""

import subprocess
import sys

import pytest

from cbirlib import runtime


def test_threads_reads_the_budget_and_rejects_a_bad_one(monkeypatch):
    monkeypatch.setenv(runtime.ENV, "3")
    assert runtime.threads() == 3
    monkeypatch.delenv(runtime.ENV)
    assert runtime.threads() >= 1
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv(runtime.ENV, bad)
        with pytest.raises(ValueError, match="positive integer"):
            runtime.threads()


def _thresholds_after_import(before: str = "", package: str = "cbirlib") -> tuple[int, ...]:
    code = f"import gc\n{before}\nimport {package}\nprint(tuple(gc.get_threshold()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return tuple(int(x) for x in out.strip("()\n").split(","))


def test_importing_cbirlib_makes_full_collections_rarer_but_keeps_thresholds_someone_set():
    interpreter_default = _thresholds_after_import(package="os")
    tuned = runtime.GC_THRESHOLDS if interpreter_default == runtime.GC_DEFAULT_THRESHOLDS else interpreter_default
    assert _thresholds_after_import() == tuned
    assert runtime.GC_THRESHOLDS[:2] == runtime.GC_DEFAULT_THRESHOLDS[:2], "young generations as before"
    assert _thresholds_after_import("gc.set_threshold(1000, 5, 5)") == (1000, 5, 5)
    assert runtime.tune_gc() is False, "already applied in this process: nothing to change"
