"""The cloud server as a real service: the HTTP API on loopback with a real client, the whole
protocol through it, bad requests answered with 4xx while it stays up, a server killed during
an upload losing no acknowledged image, and the Milvus backend against a real Milvus server."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbirlib.core import keys
from cbirlib.core.keys import CipherParams
from cbirlib.learning import features, models
from cbirlib.learning.indexes import RetrievalError
from cbirlib.protocol import httpclient, httpserver, imagefiles, retrieval, service, vectorindex

SIZE = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(tmp_path):
    """An owner, 24 encrypted images in a store built as `cbir index` builds it, 4 more to upload."""
    rng = np.random.default_rng(0)
    images = np.stack([np.clip(rng.normal(lvl, 30, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                       for lvl in (40, 128, 215) for _ in range(8)])
    owner = retrieval.DataOwner(keys.from_seed(0, CipherParams(8)))
    ids = [f"{c}/{i}.png" for c in "ab" for i in range(8)] + [f"c/{i}.png" for i in range(7)] + ["c/odd #?%41.png"]
    psi = features.FeatureModel(models.vgg16(weights="none", image_size=SIZE, seed=0), "pooled")
    retrieval.CloudServer.create(tmp_path / "store", owner.encrypt_database(images, ids), psi)
    extra = np.clip(rng.normal(90, 30, (4, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return dict(root=tmp_path / "store", owner=owner, images=images, ids=ids,
                extra=owner.encrypt_database(extra, [f"d/{i}.png" for i in range(4)]), extra_plain=extra)


class Running:
    """A uvicorn server of ``app`` in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_the_whole_protocol_over_http_round_trips_bit_for_bit(world):
    store = service.ServiceStore(world["root"])
    with Running(httpserver.create_app(store, token="s3cret")) as url:
        client = httpclient.ServerClient(url, token="s3cret")
        assert client.health() == {"status": "ok", "images": 24}
        user = retrieval.QueryUser(keys.generate(client.params(), "image"))
        query = user.encrypt_query(world["images"][3], "q.png")
        reference = retrieval.CloudServer.open(world["root"]).query(query, 5)[0]  # in process, the built store
        before = client.query(query, 5)
        assert before[0] == reference.ids and np.allclose(before[1], reference.distances)
        assert client.upload(world["extra"]) == [f"d/{i}.png" for i in range(4)]
        assert client.info()["images"] == 28 and len(client.ids()) == 28
        ids, dist = client.query(query, 5)
        local = store.query(query, 5)[0]
        assert ids == local[0] and np.allclose(dist, local[1]) and np.all(np.diff(dist) >= 0)
        world["owner"].register(client.ids())
        plain = user.decrypt_results(client.fetch(ids), world["owner"].release_keys(ids))
        truth = {i: img for i, img in zip(world["ids"], world["images"])}
        truth |= {f"d/{i}.png": img for i, img in enumerate(world["extra_plain"])}
        assert all(np.array_equal(p, truth[i]) for i, p in zip(ids, plain))
        odd = world["ids"][-1]  # an id that is not URL-safe as it stands
        assert np.array_equal(client.fetch([odd]).images, store.fetch([odd]).images)
        schema = httpclient.ServerClient(url, token="s3cret")._http.get(f"{url}/openapi.json").json()
        assert {"/v1/query", "/v1/images", "/v1/store", "/v1/health"} <= set(schema["paths"])
        assert not any("key" in p for p in schema["paths"])  # no route takes a key


def test_bad_requests_get_a_4xx_and_one_line_and_the_server_stays_up(world, tmp_path):
    import httpx

    store = service.ServiceStore(world["root"])
    plain_png = tmp_path / "plain.png"
    Image.fromarray(world["images"][0]).save(plain_png)
    key_file = keys.save(keys.from_seed(1, CipherParams(8)), tmp_path / "owner.key")
    other = retrieval.DataOwner(keys.from_seed(5, CipherParams(4))).encrypt_database(world["images"][:1], ["x.png"])
    good = imagefiles.to_png_bytes(world["extra"], 0)
    with Running(httpserver.create_app(store, token="t", max_upload_bytes=200_000)) as url:
        h = {"Authorization": "Bearer t"}
        cases = [
            (dict(method="POST", url="/v1/images", files={"files": ("p.png", plain_png.read_bytes())}), 400, "not an MTCE"),
            (dict(method="POST", url="/v1/images", files={"files": ("k.png", key_file.read_bytes())}), 400,
             "not a readable MTCE PNG"),
            (dict(method="POST", url="/v1/images", files={"files": ("o.png", imagefiles.to_png_bytes(other, 0))}), 400,
             "the store with"),
            (dict(method="POST", url="/v1/images", files={"files": ("t.png", good[:200])}), 400, "t.png"),
            (dict(method="POST", url="/v1/images", files={"files": ("e.png", b"")}), 400, "empty"),
            (dict(method="POST", url="/v1/images", files={"files": ("big.png", b"0" * 300_000)}), 413, "limit"),
            (dict(method="POST", url="/v1/query?k=0", files={"file": ("q.png", good)}), 422, "k"),
            (dict(method="POST", url="/v1/query?k=99", files={"file": ("q.png", good)}), 400, "k must be"),
            (dict(method="GET", url="/v1/images/nope.png"), 404, "unknown image id"),
        ]
        with httpx.Client(base_url=url, headers=h) as c:
            for request, status, text in cases:
                r = c.request(**request)
                assert r.status_code == status and text in r.json()["detail"], (request["url"], r.text)
                assert "\n" not in r.json()["detail"]
            assert c.get("/v1/health").json()["images"] == 24  # still up, nothing was added
            assert httpx.get(f"{url}/v1/store").status_code == 401  # no token
            assert httpx.get(f"{url}/v1/store", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.post("/v1/images", files={"files": ("d.png", good)}).status_code == 200
            assert c.post("/v1/images", files={"files": ("d.png", good)}).status_code == 400  # a repeated id
            chunked = c.post("/v1/images", content=iter([b"--x\r\n", b"0" * 1000]),
                             headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]
            # without the token, a body is refused before it is read, whatever its size
            anonymous = httpx.post(f"{url}/v1/images", files={"files": ("big.png", b"0" * 150_000)})
            assert anonymous.status_code == 401
            assert c.get("/v1/health").json()["images"] == 25


def test_a_token_is_required_beyond_this_machine(world, capsys):
    from cbirlib import cli

    os.environ.pop("CBIR_SERVER_TOKEN", None)
    assert cli.main(["serve", str(world["root"]), "--host", "0.0.0.0"]) == 2
    assert "needs a token" in capsys.readouterr().err


def test_a_server_killed_during_an_upload_loses_no_acknowledged_image(world, tmp_path):
    """A real `cbir serve` process, uploads acknowledged one by one while it is killed (SIGKILL)
    at some point: every acknowledged id is there after a restart, and the store opens."""
    port = free_port()
    cmd = [sys.executable, "-m", "cbirlib.cli", "serve", str(world["root"]), "--port", str(port)]
    env = os.environ | {"CBIR_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        client = httpclient.ServerClient(f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                client.health()
                break
            except RetrievalError:
                time.sleep(0.2)
        rng = np.random.default_rng(3)
        acknowledged = []
        total = 400  # far more than are sent before the kill, on any machine
        images = np.clip(rng.normal(100, 40, (total, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        batch = world["owner"].encrypt_database(images, [f"u/{i}.png" for i in range(total)])
        killer = threading.Timer(0.05, lambda: os.killpg(proc.pid, signal.SIGKILL))
        for n in range(total):
            if n == 5:
                killer.start()  # lands during one of the next uploads
            one = retrieval.Ciphertexts(batch.ids[n:n + 1], batch.images[n:n + 1], batch.params, batch.size,
                                        batch.fingerprints[n:n + 1])
            try:
                acknowledged += client.upload(one)
            except RetrievalError:
                break  # the server is gone
        killer.join()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 5 <= len(acknowledged) < total, "the kill should land during the uploads"
    reopened = service.ServiceStore(world["root"])  # opens, a half-written batch left behind or not
    assert set(acknowledged) <= set(reopened.ids) and len(reopened) >= 24 + len(acknowledged)
    back = reopened.fetch(acknowledged)
    assert np.array_equal(back.images, batch.images[:len(acknowledged)])


def test_milvus_by_uri_agrees_with_faiss_flat(tmp_path):
    """A real Milvus server from the PyPI `milvus` wheel (started here, about 7 s): the same ids
    and distances as FAISS flat on the same vectors, including vectors added after the first."""
    try:
        from milvus import MilvusServer
    except ImportError:
        pytest.skip("the PyPI `milvus` server is not installed (pip install '.[milvus]')")
    server = MilvusServer()
    server.set_base_dir(str(tmp_path / "milvus"))
    server.listen_port = free_port()
    try:
        server.start()
    except Exception as e:  # the server cannot run here (no permissions, no ports): say why
        pytest.skip(f"the Milvus server did not start here: {type(e).__name__}: {str(e)[:120]}")
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 16)).astype(np.float32)
        ids = [f"img{i}" for i in range(300)]
        for metric in ("euclidean", "cosine"):
            faiss_ = vectorindex.FaissVectorIndex(16, metric)
            milvus_ = vectorindex.MilvusVectorIndex(16, metric, uri=f"http://127.0.0.1:{server.listen_port}",
                                                    collection=f"t_{metric}", reset=True)
            for index in (faiss_, milvus_):
                index.add(ids[:200], x[:200])
                index.add(ids[200:], x[200:])
            q = rng.normal(size=(20, 16)).astype(np.float32)
            for (fi, fd), (mi, md) in zip(faiss_.search(q, 10), milvus_.search(q, 10)):
                assert fi == mi and np.allclose(fd, md, atol=1e-4), metric
            assert len(milvus_) == 300
            milvus_.close()
        with pytest.raises(RetrievalError, match="cannot use Milvus"):
            vectorindex.MilvusVectorIndex(16, uri=f"http://127.0.0.1:{free_port()}", timeout=2)
    finally:
        server.stop()
