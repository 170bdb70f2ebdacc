"""The cloud server as an HTTP service (FastAPI; ``cbir serve STORE`` runs it with uvicorn, one
worker). It only ever sees ciphertexts:

- ``GET  /v1/health``: alive, and how many images it holds;
- ``GET  /v1/store``: the public facts a client needs (cipher parameters, image size, metric, index);
- ``GET  /v1/ids``: the stored image ids;
- ``POST /v1/images``: upload encrypted PNGs (multipart, as ``cbir encrypt`` wrote them); each must
  carry MTCE metadata with the store's parameters and size, so a plaintext PNG, a key file or any
  other file is refused;
- ``POST /v1/query?k=5``: one encrypted PNG in, the ids and distances of the k nearest out;
- ``GET  /v1/images/{id}``: a stored ciphertext as an MTCE PNG (with its key fingerprint);
- ``GET  /openapi.json``: the schema.

There is no route that takes a key. A bad request is answered with a 4xx status and a one-line
``detail``, and the server stays up. With a token, every route but ``/v1/health`` asks for
``Authorization: Bearer <token>`` (401 otherwise); both the token and the size cap are checked
before a request body is read: a body over the cap is refused (413), and one without a
``Content-Length`` (chunked) too (411).
"""

from __future__ import annotations

import hmac

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..core.keys import KeyUsageError
from ..learning.indexes import RetrievalError
from . import imagefiles
from .service import ServiceStore

API_VERSION = "v1"
#: the default cap on a request body
MAX_UPLOAD_BYTES = 64 * 2 ** 20


def create_app(store: ServiceStore, *, token: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The service for ``store`` (see the module docstring)."""
    app = FastAPI(title="cbirlib cloud server", version=API_VERSION,
                  description="Encrypted CBIR, the cloud server of the paper's Fig. 2: ciphertexts in, ranked ids out.")

    def token_ok(request: Request) -> bool:
        sent = request.headers.get("authorization", "")
        return token is None or hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())

    @app.middleware("http")
    async def gate(request: Request, call_next):
        # FastAPI parses a multipart body before a route's dependencies run: the token and the size are
        # checked here, before any of it is read
        path = request.url.path
        if path.startswith(f"/{API_VERSION}/") and path != f"/{API_VERSION}/health" and not token_ok(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            return JSONResponse({"detail": "a request body needs a Content-Length (chunked bodies are not taken)"},
                                status_code=411)
        if length is not None and (not length.isdigit() or int(length) > max_upload_bytes):
            return JSONResponse({"detail": f"request body over the {max_upload_bytes}-byte limit"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}".strip(": ")}, status_code=422)

    @app.exception_handler(RetrievalError)
    @app.exception_handler(imagefiles.ImageFileError)
    @app.exception_handler(KeyUsageError)
    async def refused(_: Request, e: Exception):
        return JSONResponse({"detail": " ".join(str(e).split())}, status_code=400)

    def authorised(request: Request) -> None:  # the gate checked it already; here it is in the schema too
        if not token_ok(request):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    guard = [Depends(authorised)]

    @app.get(f"/{API_VERSION}/health")
    def health() -> dict:
        return {"status": "ok", "images": len(store)}

    @app.get(f"/{API_VERSION}/store", dependencies=guard)
    def info() -> dict:
        return store.info()

    @app.get(f"/{API_VERSION}/ids", dependencies=guard)
    def ids() -> dict:
        return {"ids": store.ids}

    async def read_limited(upload: UploadFile) -> bytes:
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{upload.filename}: over the {max_upload_bytes}-byte limit")
        if not data:
            raise HTTPException(400, f"{upload.filename}: an empty file")
        return data

    @app.post(f"/{API_VERSION}/images", dependencies=guard)
    async def upload(files: list[UploadFile] = File(...)) -> dict:
        import numpy as np

        from .retrieval import Ciphertexts

        parts = [imagefiles.from_png_bytes(await read_limited(f), f.filename or "upload") for f in files]
        first = parts[0]
        if any(p.params != first.params or p.images.shape != first.images.shape or p.size != first.size
               for p in parts):
            raise RetrievalError("every image of one upload needs the same cipher parameters and size")
        fps = [p.fingerprints[0] if p.fingerprints else None for p in parts]
        if any(fps) and not all(fps):
            raise RetrievalError("some images of this upload carry a key fingerprint and some do not: upload them "
                                 "separately")
        batch = Ciphertexts(tuple(p.ids[0] for p in parts), np.concatenate([p.images for p in parts]), first.params,
                            first.size, tuple(fps) if all(fps) else None)
        return {"added": store.add(batch), "images": len(store)}

    @app.post(f"/{API_VERSION}/query", dependencies=guard)
    async def query(file: UploadFile = File(...), k: int = Query(5, ge=1, le=1000)) -> dict:
        q = imagefiles.from_png_bytes(await read_limited(file), file.filename or "query")
        ids_, dist = store.query(q, k)[0]
        return {"ids": ids_, "distances": [float(d) for d in dist]}

    @app.get(f"/{API_VERSION}/images/{{image_id:path}}", dependencies=guard)
    def fetch(image_id: str) -> Response:
        try:
            c = store.fetch([image_id])
        except KeyError:
            raise HTTPException(404, f"unknown image id {image_id!r}") from None
        return Response(imagefiles.to_png_bytes(c, 0), media_type="image/png")

    return app
