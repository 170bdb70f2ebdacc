"""The cloud server over HTTP under load and faults, on loopback only, bounded in count and time.

Usage: .venv/bin/python benchmarks/bench_server.py [--images 10000] [--clients 8] [--queries 500]

Builds a store of ``--images`` MTCE ciphertexts (32 px, VGG-16 trunk features with random weights:
the model's speed, not its accuracy, is what is measured), serves it with ``cbir serve`` in its own
process, then:

1. **serial**: one client, every query once: the baseline latency and the answers;
2. **load**: ``--clients`` concurrent clients, each ``--queries`` queries (the same query images):
   throughput, p50/p99 latency, errors, and whether every answer equals the serial one — the ratio
   of throughput to the serial run is reported beside it;
3. **bad inputs**: a plaintext PNG, a wrong size, wrong cipher parameters, a truncated body, an
   oversize body, k out of range, a missing token: each must get a 4xx while the server answers;
4. **a kill during an upload**: SIGKILL while a client uploads one image per request; the
   acknowledged images must all be there after a restart, and the store must open.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cbirlib.core import keys
from cbirlib.core.keys import CipherParams
from cbirlib.learning import features, models
from cbirlib.learning.indexes import RetrievalError
from cbirlib.protocol import httpclient, imagefiles, retrieval

SIZE = 32
TOKEN = "bench-token"


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(store: Path, p: int, token_file: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "cbirlib.cli", "serve", str(store), "--port", str(p),
                             "--token-file", str(token_file), "--max-upload-mb", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = httpclient.ServerClient(f"http://127.0.0.1:{p}", TOKEN)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            client.health()
            return proc
        except RetrievalError:
            time.sleep(0.2)
    raise SystemExit("the server did not start within 5 minutes")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--distinct", type=int, default=20, help="distinct query images, cycled")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; store of {args.images} ciphertexts at {SIZE} px")
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    owner = retrieval.DataOwner(keys.from_seed(0, CipherParams(8)))
    images = rng.integers(0, 256, (args.images, SIZE, SIZE, 3), dtype=np.uint8)
    ids = [f"img{i:06d}.png" for i in range(args.images)]
    psi = features.FeatureModel(models.vgg16(weights="none", image_size=SIZE, seed=0), "pooled")
    t = time.perf_counter()
    chunks = (owner.encrypt_database(images[s:s + 512], ids[s:s + 512]) for s in range(0, args.images, 512))
    retrieval.CloudServer.create_from_chunks(work / "store", chunks, args.images, psi)
    print(f"store built in {time.perf_counter() - t:.1f} s")
    token_file = work / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    p = port()
    proc = start(work / "store", p, token_file)
    url = f"http://127.0.0.1:{p}"
    try:
        user = retrieval.QueryUser(keys.generate(CipherParams(8), "image"))
        queries = [user.encrypt_query(img, f"q{n}.png") for n, img in enumerate(images[:args.distinct])]
        client = httpclient.ServerClient(url, TOKEN)
        for q in queries[:3]:  # warm-up: the server's first queries load and compile
            client.query(q, 10)
        t = time.perf_counter()
        serial = [client.query(q, 10)[0] for q in queries]
        serial_s = (time.perf_counter() - t) / len(queries)
        print(f"serial: {1 / serial_s:.1f} queries/s ({serial_s * 1e3:.1f} ms each, {len(queries)} queries)")

        latencies, errors, mismatches = [], [0], [0]
        lock = threading.Lock()

        def one_client(c: int) -> None:
            mine = httpclient.ServerClient(url, TOKEN)
            for n in range(args.queries):
                q = (c + n) % len(queries)
                t0 = time.perf_counter()
                try:
                    got = mine.query(queries[q], 10)[0]
                except RetrievalError:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    mismatches[0] += got != serial[q]
            mine.close()

        t = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one_client, range(args.clients)))
        wall = time.perf_counter() - t
        lat = np.array(latencies) * 1e3
        total = args.clients * args.queries
        print(f"load: {args.clients} clients x {args.queries} queries = {total} in {wall:.1f} s: "
              f"{total / wall:.1f} queries/s ({total / wall * serial_s:.2f}x the serial rate), "
              f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, errors {errors[0]}, "
              f"answers differing from the serial ones {mismatches[0]}")

        import httpx

        good = imagefiles.to_png_bytes(queries[0], 0)
        plain = Path(work / "plain.png")
        Image.fromarray(images[0]).save(plain)
        other = retrieval.DataOwner(keys.from_seed(9, CipherParams(4))).encrypt_database(images[:1], ["o.png"])
        small = retrieval.QueryUser(keys.generate(CipherParams(8), "image")).encrypt_query(images[0][:16, :16], "s.png")
        h = {"Authorization": f"Bearer {TOKEN}"}
        bad = {
            "non-PNG": dict(method="POST", url="/v1/query", files={"file": ("x.png", b"not a png")}, headers=h),
            "plaintext PNG": dict(method="POST", url="/v1/query", files={"file": ("p.png", plain.read_bytes())}, headers=h),
            "wrong size": dict(method="POST", url="/v1/query", files={"file": ("s.png", imagefiles.to_png_bytes(small, 0))},
                               headers=h),
            "wrong cipher parameters": dict(method="POST", url="/v1/query",
                                            files={"file": ("o.png", imagefiles.to_png_bytes(other, 0))}, headers=h),
            "truncated body": dict(method="POST", url="/v1/query", files={"file": ("t.png", good[: len(good) // 2])},
                                   headers=h),
            "oversize body": dict(method="POST", url="/v1/images", files={"files": ("big.png", b"0" * (2 << 20))},
                                  headers=h),
            "k out of range": dict(method="POST", url=f"/v1/query?k={args.images + 1}", files={"file": ("q.png", good)},
                                   headers=h),
            "missing token": dict(method="POST", url="/v1/query", files={"file": ("q.png", good)}),
        }
        with httpx.Client(base_url=url) as c:
            for name, request in bad.items():
                status = c.request(**request).status_code
                alive = c.get("/v1/health").status_code == 200
                print(f"bad input, {name}: {status} ({'4xx' if 400 <= status < 500 else 'NOT 4xx'}), "
                      f"server {'answering' if alive else 'DOWN'}")

        acknowledged = []
        uploads = owner.encrypt_database(rng.integers(0, 256, (200, SIZE, SIZE, 3), dtype=np.uint8),
                                         [f"up{i:04d}.png" for i in range(200)])
        killer = threading.Timer(1.5, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        for n in range(200):
            one = retrieval.Ciphertexts(uploads.ids[n:n + 1], uploads.images[n:n + 1], uploads.params, uploads.size,
                                        uploads.fingerprints[n:n + 1])
            try:
                acknowledged += client.upload(one)
            except RetrievalError:
                break
        killer.join()
        proc.wait()
        proc = start(work / "store", p, token_file)
        there = set(httpclient.ServerClient(url, TOKEN).ids())
        lost = [i for i in acknowledged if i not in there]
        print(f"kill during upload: {len(acknowledged)} acknowledged before the kill, {len(lost)} lost after a "
              f"restart; the store opened with {len(there)} images")
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
