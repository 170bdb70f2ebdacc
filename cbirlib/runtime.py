"""How many CPU threads this process may use, in one place; and how often Python's garbage
collector walks every object (:func:`tune_gc`, applied when cbirlib is imported).

A job of the workflow (:mod:`cbirlib.workflow`) runs with ``CBIR_THREADS`` set to the cores
Snakemake gave it, so that jobs running side by side do not oversubscribe the machine. Without
the variable, every core is used. :func:`limit_threads` applies the number to torch; the cipher's
worker threads, onnxruntime sessions and FAISS read :func:`threads`.
"""

from __future__ import annotations

import os

ENV = "CBIR_THREADS"


def threads() -> int:
    """``$CBIR_THREADS`` if set (a positive integer), else the number of CPUs."""
    value = os.environ.get(ENV)
    if value is None or value == "":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{ENV} must be a positive integer, got {value!r}")
    return n


def limit_threads() -> int:
    """Set torch's intra-op threads (and FAISS's OpenMP threads, when loaded) to :func:`threads`;
    returns the number. Safe to call more than once."""
    n = threads()
    try:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a hard dependency of the models
        pass
    import sys

    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n)
    return n


#: CPython's default garbage-collection thresholds, and ours: a full collection after 100 rather
#: than 10 collections of the middle generation; the young generations are collected as before
GC_DEFAULT_THRESHOLDS = (700, 10, 10)
GC_THRESHOLDS = (700, 10, 100)


def tune_gc() -> bool:
    """Make CPython's full garbage collections ten times rarer, unless this process already set
    thresholds of its own; returns whether it changed them.

    At the default thresholds, importing torch, timm, pandas and matplotlib (about a million
    objects) runs dozens of full collections, each walking every object: 10-15 % of the CPU of a
    chapter's process (measured with ``perf``), 0.4-0.6 s of every process that loads a model.
    Short-lived cycles are still collected as often as before, and no result depends on when
    garbage is collected.
    """
    import gc

    if gc.get_threshold() != GC_DEFAULT_THRESHOLDS:
        return False
    gc.set_threshold(*GC_THRESHOLDS)
    return True
