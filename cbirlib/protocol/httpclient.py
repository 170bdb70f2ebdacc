"""A client of the cloud server's HTTP API (:mod:`cbirlib.protocol.httpserver`), beside
:class:`~cbirlib.protocol.retrieval.QueryUser`: the data owner uploads ciphertexts with it, the
query user searches and fetches. Every refusal of the server is a
:class:`~cbirlib.learning.indexes.RetrievalError` carrying the server's one-line reason.
"""

from __future__ import annotations

from typing import Iterable, Sequence
from urllib.parse import quote

import numpy as np

from ..core.keys import CipherParams
from ..learning.indexes import RetrievalError
from . import imagefiles
from .retrieval import Ciphertexts


class ServerClient:
    """``ServerClient("http://127.0.0.1:8000", token=...)``: the cloud server over HTTP."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.url}/v1", headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kw):
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise RetrievalError(f"cannot reach the server at {self.url} ({type(e).__name__})") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:200]
            raise RetrievalError(f"the server refused ({r.status_code}): {detail}")
        return r

    def health(self) -> dict:
        return self._call("GET", "/health").json()

    def info(self) -> dict:
        """The store's public facts: ``params`` (a :class:`CipherParams` record), ``size``, ``shape``, ..."""
        return self._call("GET", "/store").json()

    def params(self) -> CipherParams:
        return CipherParams.from_record(self.info()["params"])

    def ids(self) -> list[str]:
        return self._call("GET", "/ids").json()["ids"]

    def upload(self, ciphertexts: Ciphertexts, batch: int = 64) -> list[str]:
        """Upload ciphertexts (a data owner's), ``batch`` images a request; returns the ids added."""
        added = []
        for s in range(0, len(ciphertexts.ids), batch):
            files = [("files", (f"{ciphertexts.ids[n]}.png", imagefiles.to_png_bytes(ciphertexts, n), "image/png"))
                     for n in range(s, min(s + batch, len(ciphertexts.ids)))]
            added += self._call("POST", "/images", files=files).json()["added"]
        return added

    def upload_files(self, paths: Iterable, batch: int = 64) -> list[str]:
        """Upload encrypted PNG files as ``cbir encrypt`` wrote them (their bytes, unchanged)."""
        paths, added = list(paths), []
        for s in range(0, len(paths), batch):
            files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths[s:s + batch]]
            added += self._call("POST", "/images", files=files).json()["added"]
        return added

    def query(self, query: Ciphertexts, k: int) -> tuple[list[str], np.ndarray]:
        """The ids and distances of the ``k`` stored images nearest to one encrypted query."""
        if len(query.ids) != 1:
            raise RetrievalError(f"one query at a time, got {len(query.ids)}")
        r = self._call("POST", "/query", params={"k": k},
                       files={"file": (f"{query.ids[0]}.png", imagefiles.to_png_bytes(query, 0), "image/png")})
        body = r.json()
        return body["ids"], np.asarray(body["distances"])

    def fetch(self, ids: Sequence[str]) -> Ciphertexts:
        """The stored ciphertexts of ``ids`` with their key fingerprints."""
        if not ids:
            raise RetrievalError("fetch: no image ids given")
        parts = [imagefiles.from_png_bytes(self._call("GET", f"/images/{quote(str(i), safe='/')}").content, i)
                 for i in ids]
        fps = [p.fingerprints[0] if p.fingerprints else None for p in parts]
        return Ciphertexts(tuple(ids), np.concatenate([p.images for p in parts]), parts[0].params, parts[0].size,
                           tuple(fps) if all(fps) else None)

    def close(self) -> None:
        self._http.close()
