"""Nearest-neighbour indexes over feature vectors: exact (numpy, float64 distances, stable ties)
and FAISS (exact or IVF), with one ``search(queries, k) -> (ids, distances)`` interface."""

from __future__ import annotations

import numpy as np

METRICS = ("euclidean", "cosine")


class RetrievalError(ValueError):
    """A request the protocol refuses (unknown id, wrong key, bad query, damaged store, ...)."""


class ExactIndex:
    """Exact nearest neighbours by brute force (float64 distances, stable ties)."""

    def __init__(self, features: np.ndarray, metric: str = "euclidean") -> None:
        if metric not in METRICS:
            raise RetrievalError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.features = _prepare(np.asarray(features, dtype=np.float64), metric)

    def __len__(self) -> int:
        return len(self.features)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> (indices (Q, k), distances (Q, k)), nearest first."""
        q = _prepare(np.atleast_2d(np.asarray(queries, dtype=np.float64)), self.metric)
        if self.metric == "euclidean":
            d2 = (q ** 2).sum(1)[:, None] + (self.features ** 2).sum(1)[None, :] - 2 * q @ self.features.T
            dist = np.sqrt(np.maximum(d2, 0.0))
        else:
            dist = 1.0 - q @ self.features.T
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(dist, order, axis=1)


class FaissIndex:
    """FAISS index (faiss-cpu): ``exact=True`` is IndexFlat (same neighbours as :class:`ExactIndex`
    up to float32 rounding of near-ties); ``exact=False`` an inverted-file index (IVF-Flat,
    about sqrt(N) lists trained by 10 k-means iterations on 39 points per list, searching 5 % of
    the lists, at least 8) for large databases: approximate, much faster."""

    def __init__(self, features: np.ndarray, metric: str = "euclidean", exact: bool = True,
                 probe_share: float = 0.05, seed: int = 0) -> None:
        import faiss

        if metric not in METRICS:
            raise RetrievalError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        x = np.ascontiguousarray(_prepare(np.asarray(features, dtype=np.float32), metric), dtype=np.float32)
        d = x.shape[1]
        faiss_metric = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        flat = faiss.IndexFlatL2(d) if metric == "euclidean" else faiss.IndexFlatIP(d)
        if exact:
            self.index = flat
        else:
            nlist = max(1, min(int(np.sqrt(len(x))), len(x) // 39))
            self.index = faiss.IndexIVFFlat(flat, d, nlist, faiss_metric)
            sample = np.random.default_rng(seed).permutation(len(x))[:39 * nlist]
            self.index.cp.seed = seed
            self.index.cp.niter = 10
            self.index.train(x[sample])
            self.index.nprobe = min(nlist, max(8, int(probe_share * nlist)))
            self._quantizer = flat  # keep it alive
        self.index.add(x)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(_prepare(np.atleast_2d(np.asarray(queries, dtype=np.float32)), self.metric),
                                 dtype=np.float32)
        scores, idx = self.index.search(q, k)
        dist = np.sqrt(np.maximum(scores, 0)) if self.metric == "euclidean" else 1.0 - scores
        return idx, dist


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    if x.ndim != 2:
        raise RetrievalError(f"features must be 2-D (N, D), got shape {x.shape}")
    if metric == "cosine":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def make_index(features: np.ndarray, metric: str = "euclidean", kind: str = "auto", large: int = 100_000):
    """``exact`` (numpy), ``faiss`` (exact FAISS), ``faiss-ivf`` (approximate), or ``auto``:
    exact below ``large`` vectors, FAISS IVF above."""
    if kind == "auto":
        kind = "exact" if len(features) < large else "faiss-ivf"
    if kind == "exact":
        return ExactIndex(features, metric)
    if kind in ("faiss", "faiss-ivf"):
        return FaissIndex(features, metric, exact=kind == "faiss")
    raise RetrievalError(f"unknown index kind {kind!r}: exact | faiss | faiss-ivf | auto")
