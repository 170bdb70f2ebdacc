"""Encrypted CBIR with three parties (the paper's Fig. 2); the indexes they search are in
:mod:`cbirlib.learning.indexes`, the retrieval metrics in :mod:`cbirlib.learning.retrievalmetrics`.

- :class:`DataOwner` holds the master secret, encrypts the database with per-image keys, exports
  the feature model Psi and releases per-image keys for requested ids only (logged).
- :class:`CloudServer` stores ciphertexts, Psi and a feature index on disk, and answers
  ``query(ciphertext, k)`` with ids and distances. It never holds a key or a plaintext: its API
  takes :class:`Ciphertexts` (made only by encrypting) and rejects keys and raw arrays, and its
  store has no place for either.
- :class:`QueryUser` encrypts a query with its own key, asks the server, fetches the keys of the
  returned ids from the owner and decrypts the results.

Keys meet ciphertexts only where they are checked: the server's store records each image's key
*fingerprint* (an HMAC of a constant under the key: public, useless for decryption), and a
released key whose fingerprint differs (the wrong owner key, a key for another image) is an
error naming the image before anything is decrypted or written.

A store is written atomically: into a temporary folder beside it, the manifest last, then renamed
into place, so an interrupted ``create`` leaves no store at all, never a half-written one; an
existing store is never overwritten. Stores are read with memory-mapped images, so queries and
fetches on large stores stay within bounded memory; :meth:`CloudServer.create_from_chunks` builds
one from batches (e.g. ``imagefiles.iter_encrypted``) without holding every ciphertext at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import cipher
from ..core.keys import CipherParams, Key
from ..learning.features import FeatureModel
from ..learning.indexes import RetrievalError, make_index

STORE_FORMAT = "cbirlib-server-store"
STORE_VERSION = 1


@dataclass(frozen=True)
class Ciphertexts:
    """Encrypted images with their ids and the (public) cipher parameters. Made by
    :meth:`DataOwner.encrypt_database` or :meth:`QueryUser.encrypt_query`; never holds a key."""

    ids: tuple[str, ...]
    images: np.ndarray  # (N, H, W, C) uint8 ciphertexts
    params: CipherParams
    size: tuple[int, int]  # original (H, W) before padding
    fingerprints: tuple[str, ...] | None = None  # public fingerprint of each image's key, when known

    def __post_init__(self) -> None:
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise RetrievalError("ciphertexts must be a uint8 array (N, H, W, C)")
        if len(self.ids) != len(self.images):
            raise RetrievalError(f"{len(self.ids)} ids for {len(self.images)} images")
        if self.fingerprints is not None and len(self.fingerprints) != len(self.ids):
            raise RetrievalError(f"{len(self.fingerprints)} key fingerprints for {len(self.ids)} images")


# --------------------------------------------------------------------------- the three parties

class DataOwner:
    """Holds the master secret; encrypts the database; releases per-image keys on request."""

    def __init__(self, master: Key) -> None:
        if not isinstance(master, Key) or master.kind != "master":
            raise RetrievalError("the data owner needs a master key (kind 'master')")
        self._master = master
        self._ids: set[str] = set()
        self.release_log: list[dict] = []

    @property
    def params(self) -> CipherParams:
        return self._master.params

    @property
    def fingerprint(self) -> str:
        return self._master.fingerprint()

    def encrypt_database(self, images: np.ndarray, ids: Sequence[str]) -> Ciphertexts:
        """Every image under its own key, derived from the master secret and its id."""
        ids = tuple(ids)
        if len(set(ids)) != len(ids):
            raise RetrievalError("image ids must be unique")
        keys = [self._master.for_image(i) for i in ids]
        enc = cipher.encrypt(images, keys, pad="pad")
        self._ids |= set(ids)
        return Ciphertexts(ids, enc, self.params, tuple(images.shape[1:3]), tuple(k.fingerprint() for k in keys))

    def register(self, ids: Sequence[str]) -> None:
        """Ids this owner uploaded earlier (e.g. reopening a store it built): keys for them may
        be released."""
        self._ids |= set(ids)

    def release_keys(self, ids: Sequence[str], requester: str = "query user") -> dict[str, Key]:
        """The per-image keys of ``ids`` (and only those); logged. Unknown ids are an error."""
        unknown = [i for i in ids if i not in self._ids]
        if unknown:
            raise RetrievalError(f"unknown image id(s): {unknown[:5]}")
        self.release_log.append({"time": time.time(), "requester": requester, "ids": list(ids)})
        return {i: self._master.for_image(i) for i in ids}


@dataclass
class QueryResult:
    ids: list[str]
    distances: np.ndarray


class CloudServer:
    """Stores ciphertexts, Psi and the index on disk; answers queries. No keys, no plaintexts."""

    def __init__(self, root: Path, ids: list[str], images: np.ndarray, features: np.ndarray,
                 model: FeatureModel, params: CipherParams, size: tuple[int, int], metric: str,
                 index_kind: str) -> None:
        self.root, self.ids, self.images, self.features = root, ids, images, features
        self.model, self.params, self.size, self.metric = model, params, size, metric
        self.index = make_index(features, metric, index_kind)
        self._pos = {i: n for n, i in enumerate(ids)}
        self.fingerprints: list[str | None] | None = None  # per id, public; set by open()

    @classmethod
    def create(cls, root: str | Path, database: Ciphertexts, model: FeatureModel,
               metric: str = "euclidean", index_kind: str = "auto") -> "CloudServer":
        """Upload: store the ciphertexts and Psi, extract features, build the index, write to disk."""
        if not isinstance(database, Ciphertexts):
            raise TypeError("the server accepts only Ciphertexts (encrypted images), not "
                            f"{type(database).__name__}")
        return cls.create_from_chunks(root, [database], len(database.ids), model, metric, index_kind)

    @classmethod
    def create_from_chunks(cls, root: str | Path, chunks, total: int, model: FeatureModel,
                           metric: str = "euclidean", index_kind: str = "auto", progress: bool = False
                           ) -> "CloudServer":
        """Build a store from an iterable of :class:`Ciphertexts` batches (``total`` images in all,
        same parameters and size): each batch is written into a memory-mapped array and its
        features extracted, so memory stays bounded by one batch. Atomic (see the module docstring)."""
        if not isinstance(model, FeatureModel):
            raise TypeError(f"the server's model must be a FeatureModel, got {type(model).__name__}")
        if total <= 0:
            raise RetrievalError("empty database: there are no ciphertexts to store")
        root = Path(root)
        if root.exists():
            raise RetrievalError(f"{root} already exists: a server store is never overwritten; remove it or "
                                 "choose another folder")
        root.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(root)
        tmp = root.parent / f".{root.name}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            from tqdm.auto import tqdm

            images = ids = fps = params = size = None
            feats, pos = [], 0
            with tqdm(total=total, desc="index", unit="image", disable=not progress) as bar:
                for chunk in chunks:
                    if not isinstance(chunk, Ciphertexts):
                        raise TypeError(f"the server accepts only Ciphertexts, not {type(chunk).__name__}")
                    if images is None:
                        params, size = chunk.params, chunk.size
                        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8,
                                                           (total, *chunk.images.shape[1:]))
                        ids, fps = [], []
                    if chunk.params != params or chunk.size != size or chunk.images.shape[1:] != images.shape[1:]:
                        raise RetrievalError("every batch of a store needs the same cipher parameters and size")
                    if pos + len(chunk.ids) > total:
                        raise RetrievalError(f"more than the announced {total} images")
                    images[pos:pos + len(chunk.ids)] = chunk.images
                    feats.append(model(chunk.images).numpy().astype(np.float32))
                    ids += list(chunk.ids)
                    fps += list(chunk.fingerprints) if chunk.fingerprints is not None else [None] * len(chunk.ids)
                    pos += len(chunk.ids)
                    bar.update(len(chunk.ids))
            if images is None or pos != total:
                raise RetrievalError(f"{pos} images arrived, {total} were announced")
            if len(set(ids)) != len(ids):
                raise RetrievalError("image ids must be unique")
            images.flush()
            del images
            features = np.concatenate(feats)
            np.save(tmp / "features.npy", features)
            model.save(tmp / "model.pt")
            manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "ids": ids,
                        "key_fingerprints": fps if any(f is not None for f in fps) else None,
                        "params": params.record(), "size": list(size), "metric": metric, "index": index_kind,
                        "model": model.meta,
                        "sha256": {f: _sha256(tmp / f) for f in ("images.npy", "features.npy", "model.pt")}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # last
            try:
                os.rename(tmp, root)
            except OSError:
                raise RetrievalError(f"{root} appeared while this store was being built (another index?); "
                                     "it was left as it is") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(root)

    @classmethod
    def open(cls, root: str | Path) -> "CloudServer":
        """Reopen a store; any missing, truncated or modified file is a :class:`RetrievalError`."""
        root = Path(root)
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except FileNotFoundError:
            raise RetrievalError(f"{root} is not a server store (no manifest.json)") from None
        except json.JSONDecodeError as e:
            raise RetrievalError(f"{root}/manifest.json is damaged ({e.msg})") from None
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise RetrievalError(f"{root}: not a {STORE_FORMAT} v{STORE_VERSION} store")
        for name, digest in manifest["sha256"].items():
            path = root / name
            if not path.exists() or _sha256(path) != digest:
                raise RetrievalError(f"{path} is missing or damaged (sha256 mismatch); rebuild the store")
        images = np.load(root / "images.npy", mmap_mode="r")
        features = np.load(root / "features.npy")
        if len(images) != len(manifest["ids"]) or len(features) != len(manifest["ids"]):
            raise RetrievalError(f"{root}: the store's files disagree on the number of images")
        model = FeatureModel.load(root / "model.pt")
        server = cls(root, manifest["ids"], images, features, model, CipherParams.from_record(manifest["params"]),
                     tuple(manifest["size"]), manifest["metric"], manifest["index"])
        server.fingerprints = manifest.get("key_fingerprints")
        return server

    def __len__(self) -> int:
        return len(self.ids)

    def query(self, query: Ciphertexts, k: int) -> list[QueryResult]:
        """Rank the database for each encrypted query; ids and distances of the k nearest."""
        if not isinstance(query, Ciphertexts):
            raise TypeError(f"queries must be Ciphertexts (encrypted), not {type(query).__name__}")
        if query.params != self.params:
            raise RetrievalError(f"query encrypted with {query.params}, the database with {self.params}")
        if query.images.shape[1:] != self.images.shape[1:]:
            raise RetrievalError(f"query shape {query.images.shape[1:]} does not match the database "
                                 f"{self.images.shape[1:]} (size and channels)")
        if not 1 <= k <= len(self):
            raise RetrievalError(f"k must be between 1 and the database size {len(self)}, got {k}")
        feats = self.model(query.images).numpy()
        idx, dist = self.index.search(feats, k)
        return [QueryResult([self.ids[j] for j in row], d) for row, d in zip(idx, dist)]

    def fetch(self, ids: Sequence[str]) -> Ciphertexts:
        """The stored ciphertexts of ``ids`` (what a user downloads)."""
        missing = [i for i in ids if i not in self._pos]
        if missing:
            raise RetrievalError(f"unknown image id(s): {missing[:5]}")
        rows = [self._pos[i] for i in ids]
        fps = None if self.fingerprints is None else tuple(self.fingerprints[r] for r in rows)
        return Ciphertexts(tuple(ids), np.asarray(self.images[rows]), self.params, self.size, fps)


class QueryUser:
    """Encrypts queries with its own key; decrypts results with keys released by the owner."""

    def __init__(self, key: Key) -> None:
        if not isinstance(key, Key) or key.kind == "master":
            raise RetrievalError("a query user encrypts with its own image or shared key")
        self._key = key

    def encrypt_query(self, image: np.ndarray, query_id: str = "query") -> Ciphertexts:
        batch = image[None] if image.ndim == 3 else image
        if batch.ndim != 4 or batch.shape[-1] not in (1, 3):
            raise RetrievalError(f"a query is (H, W, C) or (N, H, W, C) with C = 1 or 3, got {image.shape}")
        enc = cipher.encrypt(batch, self._key, pad="pad")
        ids = (query_id,) if len(batch) == 1 else tuple(f"{query_id}-{i}" for i in range(len(batch)))
        return Ciphertexts(ids, enc, self._key.params, tuple(batch.shape[1:3]))

    @staticmethod
    def decrypt_results(results: Ciphertexts, keys: dict[str, Key]) -> np.ndarray:
        """Decrypt fetched ciphertexts with the released keys. Every key is checked first — a
        missing key, a key of another image, or a key whose fingerprint differs from the one the
        store recorded (the wrong owner key) is an error naming the image — and nothing is
        decrypted unless all pass."""
        checked = []
        for n, i in enumerate(results.ids):
            key = keys.get(i)
            if not isinstance(key, Key):
                raise RetrievalError(f"no key released for {i!r}" if key is None else
                                     f"the key released for {i!r} is a {type(key).__name__}, not a Key")
            if key.image_id not in (None, i):
                raise RetrievalError(f"the key for {key.image_id!r} cannot decrypt {i!r}")
            recorded = None if results.fingerprints is None else results.fingerprints[n]
            if recorded is not None and key.fingerprint() != recorded:
                raise RetrievalError(f"the key released for {i!r} is not the key that encrypted it (fingerprint "
                                     f"{key.fingerprint()}, the store records {recorded}): is this the data "
                                     "owner's key?")
            checked.append(key)
        return np.stack([cipher.decrypt(img, key, size=results.size) for img, key in zip(results.images, checked)])


def _remove_stale_builds(root: Path) -> None:
    """Temporary folders of builds of ``root`` whose process is gone (a killed ``index``)."""
    for stale in root.parent.glob(f".{root.name}.building-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
