"""The cloud server's store as a long-running service: the store ``cbir index`` built, plus the
ciphertexts uploaded since, searched through a vector index (:mod:`cbirlib.protocol.vectorindex`).

Uploads are durable before they are acknowledged: each batch (ids, ciphertexts, key fingerprints,
features) is written to ``uploads/`` under a temporary name, flushed to disk (fsync), renamed into
place and the folder flushed; only then is it added to the index and the request answered. A
server killed at any moment therefore loses no acknowledged image, and the store opens again (a
half-written batch is a temporary file, removed at the next start). The store built by ``cbir
index`` is never modified.

Like :class:`~cbirlib.protocol.retrieval.CloudServer`, it never holds a key or a plaintext: it takes
:class:`~cbirlib.protocol.retrieval.Ciphertexts` whose cipher parameters and size are the
store's, and refuses anything else.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from ..learning.indexes import RetrievalError
from .retrieval import Ciphertexts, CloudServer
from .vectorindex import open_index

UPLOADS = "uploads"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ServiceStore:
    """A store built by ``cbir index`` plus its uploads, behind one lock (one writer or searcher
    at a time: the feature model and the indexes are not safe to share between threads)."""

    def __init__(self, root: str | Path, index: str = "faiss", **index_options) -> None:
        self.root = Path(root)
        self.base = CloudServer.open(self.root)  # checks every file of the store
        self.params, self.size, self.metric = self.base.params, self.base.size, self.base.metric
        self.model = self.base.model
        self.shape = tuple(self.base.images.shape[1:])
        self._lock = threading.RLock()
        self._uploads = self.root / UPLOADS
        self._extra_images: list[np.ndarray] = []
        self._extra_ids: list[str] = []
        self._extra_fps: dict[str, str | None] = {}
        self._where: dict[str, tuple[int, int]] = {i: (-1, n) for n, i in enumerate(self.base.ids)}
        features = [np.asarray(self.base.features, dtype=np.float32)]
        for batch in self._journal():
            ids = [str(i) for i in batch["ids"]]
            self._remember(ids, batch["images"], list(batch["fingerprints"]) or [None] * len(ids))
            features.append(batch["features"])
        every = np.concatenate(features)
        if index == "milvus":
            index_options.setdefault("reset", True)  # rebuilt from the store: the store is the truth
        self.index_kind = index
        self.index = open_index(index, every.shape[1], self.metric, **index_options)
        self.index.add(self.ids, every)

    # ------------------------------------------------------------------ reading

    @property
    def ids(self) -> list[str]:
        return list(self.base.ids) + self._extra_ids

    def __len__(self) -> int:
        return len(self.base.ids) + len(self._extra_ids)

    def info(self) -> dict:
        """What a client needs to know (all public): parameters, size, shape, count, metric, index."""
        return {"images": len(self), "params": self.params.record(), "size": list(self.size),
                "shape": list(self.shape), "metric": self.metric, "index": self.index_kind,
                "model": {k: v for k, v in self.model.meta.items() if k != "weights_sha256"}}

    def query(self, query: Ciphertexts, k: int) -> list[tuple[list[str], np.ndarray]]:
        """Ids and distances of the ``k`` nearest stored ciphertexts of each encrypted query."""
        self._check(query, "query")
        with self._lock:
            if not 1 <= k <= len(self):
                raise RetrievalError(f"k must be between 1 and the number of stored images {len(self)}, got {k}")
            return self.index.search(self.model(query.images).numpy(), k)

    def fetch(self, ids: Sequence[str]) -> Ciphertexts:
        """The stored ciphertexts of ``ids`` with their key fingerprints (what a user downloads)."""
        with self._lock:
            missing = [i for i in ids if i not in self._where]
            if missing:
                raise KeyError(f"unknown image id(s): {missing[:5]}")
            images, fps = [], []
            for i in ids:
                batch, row = self._where[i]
                if batch < 0:
                    images.append(np.asarray(self.base.images[row]))
                    fps.append(None if self.base.fingerprints is None else self.base.fingerprints[row])
                else:
                    images.append(self._extra_images[batch][row])
                    fps.append(self._extra_fps[i])
            return Ciphertexts(tuple(ids), np.stack(images), self.params, self.size,
                               tuple(fps) if any(f is not None for f in fps) else None)

    # ------------------------------------------------------------------ writing

    def add(self, upload: Ciphertexts) -> list[str]:
        """Store new ciphertexts durably (see the module docstring), then index them; returns their ids."""
        self._check(upload, "upload")
        ids = [str(i) for i in upload.ids]
        with self._lock:
            clash = sorted(set(ids) & set(self._where)) + sorted({i for i in ids if ids.count(i) > 1})
            if clash:
                raise RetrievalError(f"image id(s) already in the store or repeated: {clash[:5]}")
            features = self.model(upload.images).numpy().astype(np.float32)
            fps = list(upload.fingerprints) if upload.fingerprints is not None else []
            self._write_batch(ids, upload.images, fps, features)
            self.index.add(ids, features)  # before the ids are served: a failed index leaves them out everywhere
            self._remember(ids, upload.images, fps or [None] * len(ids))
        return ids

    def _check(self, c: Ciphertexts, what: str) -> None:
        if not isinstance(c, Ciphertexts):
            raise RetrievalError(f"an {what} must be Ciphertexts (encrypted images), not {type(c).__name__}")
        if c.params != self.params:
            raise RetrievalError(f"{what} encrypted with {c.params.record()}, the store with {self.params.record()}")
        if tuple(c.images.shape[1:]) != self.shape or tuple(c.size) != tuple(self.size):
            raise RetrievalError(f"{what} of shape {tuple(c.images.shape[1:])} (original {tuple(c.size)}), the "
                                 f"store's {self.shape} (original {tuple(self.size)})")

    def _write_batch(self, ids: list[str], images: np.ndarray, fps: list, features: np.ndarray) -> None:
        if not self._uploads.exists():
            self._uploads.mkdir()
            _fsync_dir(self._uploads.parent)  # the folder's own entry survives a power loss too
        name = f"{len(list(self._uploads.glob('*.npz'))):08d}-{uuid.uuid4().hex[:12]}.npz"
        fd, tmp = tempfile.mkstemp(dir=self._uploads, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, ids=np.array(ids, dtype=str), images=images,
                         fingerprints=np.array([x or "" for x in fps], dtype=str), features=features)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._uploads / name)
            _fsync_dir(self._uploads)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _journal(self):
        """The acknowledged upload batches, in order (half-written ones removed)."""
        if not self._uploads.exists():
            return
        for stale in self._uploads.glob(".tmp-*"):
            stale.unlink(missing_ok=True)
        for path in sorted(self._uploads.glob("*.npz")):
            try:
                with np.load(path) as z:
                    yield {k: z[k] for k in ("ids", "images", "fingerprints", "features")}
            except (OSError, ValueError, KeyError) as e:
                raise RetrievalError(f"{path} is damaged ({type(e).__name__}); the store cannot open") from None

    def _remember(self, ids: list[str], images: np.ndarray, fps: list) -> None:
        batch = len(self._extra_images)
        self._extra_images.append(np.asarray(images))
        for n, i in enumerate(ids):
            self._where[i] = (batch, n)
        self._extra_ids += ids
        self._extra_fps.update({i: f or None for i, f in zip(ids, fps)})

    def close(self) -> None:
        self.index.close()
