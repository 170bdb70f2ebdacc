"""Nearest-neighbour search: exact numpy vs FAISS (exact and IVF), measured in the same run.

Usage: .venv/bin/python benchmarks/bench_search.py [--max-n 1000000] [--queries 200]

Synthetic feature vectors (Gaussian clusters, float32) at the ViT's feature size (384) for
10^3 ... 10^6 vectors and at VGG-16's fc7 size (4096) up to 10^5 (vectors stay under ~4 GB).
Reports queries per second (k = 10) and recall@10 against exact search, plus index build time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import faiss
import numpy as np

from cbirlib.learning.indexes import ExactIndex, FaissIndex


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (64, d)).astype(np.float32)
    return (centres[rng.integers(0, 64, n)] + rng.normal(0, 0.5, (n, d)).astype(np.float32)).astype(np.float32)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}; "
          f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)")
    print(f"{'dim':>5} {'vectors':>9} {'method':>12} {'build s':>8} {'queries/s':>10} {'recall@10':>9}")
    cases = [(384, n) for n in (10**3, 10**4, 10**5, 10**6)] + [(4096, n) for n in (10**3, 10**4, 10**5)]
    for d, n in cases:
        if n > args.max_n or n * d * 4 > 4e9:
            continue
        x = clustered(n, d, seed=n + d)
        q = clustered(args.queries, d, seed=1)
        exact, t_build = timed(lambda: ExactIndex(x))
        (ref, _), t = timed(lambda: exact.search(q, args.k))
        print(f"{d:5d} {n:9d} {'numpy exact':>12} {t_build:8.2f} {args.queries / t:10.0f} {1.0:9.3f}")
        del exact
        for name, exact_flag in (("faiss flat", True), ("faiss ivf", False)):
            index, t_build = timed(lambda: FaissIndex(x, exact=exact_flag))
            (got, _), t = timed(lambda: index.search(q, args.k))
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ref, got)])
            print(f"{d:5d} {n:9d} {name:>12} {t_build:8.2f} {args.queries / t:10.0f} {recall:9.3f}")
            del index


if __name__ == "__main__":
    main()
