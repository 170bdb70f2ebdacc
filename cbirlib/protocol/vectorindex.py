"""Where the cloud server keeps its feature vectors: one interface, two engines.

- :class:`FaissVectorIndex` (the default): FAISS flat in this process, nothing to start. Exact
  nearest neighbours; distances are Euclidean (or cosine distance, 1 − cos).
- :class:`MilvusVectorIndex`: a Milvus server reached by URI (``http://host:19530``, a token when
  it asks for one), through pymilvus's ``MilvusClient``, for stores that outgrow one machine. A
  FLAT index (exact; its build parameters nested under ``params``, which pymilvus 3 otherwise
  drops without a word), strong consistency (a vector inserted is found by the next search), and
  the same distances as FAISS (Milvus's L2 is squared: the square root is taken). Optional:
  ``pip install .[milvus]`` (pymilvus).

Both take string ids and float vectors and answer ``search(vectors, k)`` with, per query, the ids
and distances of the k nearest, nearest first; equal distances may come in either order.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..learning.indexes import METRICS, RetrievalError

KINDS = ("faiss", "milvus")


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    if x.ndim != 2:
        raise RetrievalError(f"vectors must be 2-D (N, D), got shape {x.shape}")
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(x, dtype=np.float32)


def _to_distance(scores: np.ndarray, metric: str) -> np.ndarray:
    """Squared L2 (euclidean) or inner product of unit vectors (cosine) -> the distance."""
    return np.sqrt(np.maximum(scores, 0.0)) if metric == "euclidean" else 1.0 - scores


class FaissVectorIndex:
    """FAISS flat (exact) in this process; vectors can be added at any time."""

    def __init__(self, dim: int, metric: str = "euclidean") -> None:
        import faiss

        if metric not in METRICS:
            raise RetrievalError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dim, self.metric = int(dim), metric
        self.index = faiss.IndexFlatL2(self.dim) if metric == "euclidean" else faiss.IndexFlatIP(self.dim)
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        x = _prepare(vectors, self.metric)
        if len(ids) != len(x) or x.shape[1] != self.dim:
            raise RetrievalError(f"{len(ids)} ids for vectors of shape {x.shape}; the index holds {self.dim}-d vectors")
        self.index.add(x)
        self.ids += list(ids)

    def search(self, vectors: np.ndarray, k: int) -> list[tuple[list[str], np.ndarray]]:
        if not 1 <= k <= len(self):
            raise RetrievalError(f"k must be between 1 and the number of stored images {len(self)}, got {k}")
        scores, idx = self.index.search(_prepare(vectors, self.metric), k)
        dist = _to_distance(scores, self.metric)
        return [([self.ids[j] for j in row], d) for row, d in zip(idx, dist)]

    def close(self) -> None:
        pass


class MilvusVectorIndex:
    """The vectors in a collection of a Milvus server (see the module docstring). ``reset`` drops
    the collection first (the server rebuilds it from its store at start)."""

    def __init__(self, dim: int, metric: str = "euclidean", *, uri: str, token: str | None = None,
                 collection: str = "cbirlib_store", reset: bool = False, timeout: float = 30.0) -> None:
        try:
            from pymilvus import DataType, MilvusClient
        except ImportError:
            raise RetrievalError("the Milvus backend needs pymilvus: pip install '.[milvus]'") from None
        if metric not in METRICS:
            raise RetrievalError(f"metric must be one of {METRICS}, got {metric!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", collection):
            raise RetrievalError(f"a Milvus collection name is letters, digits and _, got {collection!r}")
        self.dim, self.metric, self.collection = int(dim), metric, collection
        try:
            self.client = MilvusClient(uri=uri, token=token or "", timeout=timeout)
            if reset and self.client.has_collection(collection):
                self.client.drop_collection(collection)
            if not self.client.has_collection(collection):
                schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
                params = self.client.prepare_index_params()
                params.add_index(field_name="vector", index_type="FLAT", metric_type=self._milvus_metric, params={})
                self.client.create_collection(collection, schema=schema, index_params=params,
                                              consistency_level="Strong")
            self.client.load_collection(collection)
            self._count = int(self.client.get_collection_stats(collection).get("row_count", 0))
        except RetrievalError:
            raise
        except Exception as e:  # pymilvus raises its own exception types for a server that is not there
            raise RetrievalError(f"cannot use Milvus at {_without_credentials(uri)} ({type(e).__name__}: "
                                 f"{str(e)[:160]})") from None

    @property
    def _milvus_metric(self) -> str:
        return "L2" if self.metric == "euclidean" else "IP"

    def __len__(self) -> int:
        return self._count

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        x = _prepare(vectors, self.metric)
        if len(ids) != len(x) or x.shape[1] != self.dim:
            raise RetrievalError(f"{len(ids)} ids for vectors of shape {x.shape}; the index holds {self.dim}-d vectors")
        for s in range(0, len(x), 1000):  # bounded messages
            self.client.insert(self.collection, [{"id": i, "vector": v.tolist()}
                                                 for i, v in zip(ids[s:s + 1000], x[s:s + 1000])])
        self._count += len(x)

    def search(self, vectors: np.ndarray, k: int) -> list[tuple[list[str], np.ndarray]]:
        if not 1 <= k <= len(self):
            raise RetrievalError(f"k must be between 1 and the number of stored images {len(self)}, got {k}")
        hits = self.client.search(self.collection, data=_prepare(vectors, self.metric).tolist(), limit=k,
                                  output_fields=["id"], consistency_level="Strong",
                                  search_params={"metric_type": self._milvus_metric, "params": {}})
        return [([h["id"] for h in row], _to_distance(np.array([h["distance"] for h in row]), self.metric))
                for row in hits]

    def close(self) -> None:
        self.client.close()


def open_index(kind: str, dim: int, metric: str = "euclidean", **options):
    """A :class:`FaissVectorIndex` (``faiss``) or :class:`MilvusVectorIndex` (``milvus``, with
    ``uri``, ``token``, ``collection``, ``reset``)."""
    if kind == "faiss":
        return FaissVectorIndex(dim, metric)
    if kind == "milvus":
        if not options.get("uri"):
            raise RetrievalError("the Milvus backend needs the server's URI (--uri http://host:19530)")
        return MilvusVectorIndex(dim, metric, **options)
    raise RetrievalError(f"unknown index backend {kind!r}; choose one of {KINDS}")


def _without_credentials(uri: str) -> str:
    """``uri`` with any user:password part masked, for messages.

    >>> _without_credentials("http://root:Milvus@db:19530")
    'http://***@db:19530'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))

