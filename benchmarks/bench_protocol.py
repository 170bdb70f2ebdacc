"""The protocol path at scale: `cbir encrypt` and `cbir index` of 10^4 images in bounded memory.

Makes N synthetic 56x56 RGB PNGs (smooth gradients and noise: compressible like scans), then runs
the command line as a user would, each step in its own process: encrypt the folder (per-image
keys), index it (ViT-S/14 pooled features, batches of --chunk ciphertexts), and query it. Prints
wall time, images per second and the peak resident memory of each step, beside the size of the
data it handled (all ciphertexts in memory at once would be N x 56 x 56 x 3 bytes plus their
features). Usage: python benchmarks/bench_protocol.py [--n 10000] [--chunk 256] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int, size: int = 56) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b, c = rng.random(3)
        base = (np.stack([a * yy + b * xx, b * yy + c * xx, c * yy + a * xx], -1) * 200).astype(np.int16)
        img = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        folder = root / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)


def step(name: str, *args: str) -> dict:
    """Run ``cbir <args>`` in its own process; its wall time and its own peak resident memory
    (the rusage of that one child, from wait4)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "cbirlib.cli", *args], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{name} failed:\n{err.read().decode()[-2000:]}")
    return {"step": name, "seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cbir-bench-"))
    try:
        t = time.perf_counter()
        make_images(work / "plain", args.n)
        print(f"made {args.n} synthetic 56x56 PNGs in {time.perf_counter() - t:.1f} s")
        subprocess.run([sys.executable, "-m", "cbirlib.cli", "keygen", str(work / "owner.key"), "--block-size", "8"],
                       check=True, capture_output=True)
        rows = [step("encrypt", "encrypt", str(work / "plain"), str(work / "enc"), "--key", str(work / "owner.key")),
                step("index", "index", str(work / "store"), "--encrypted", str(work / "enc"), "--model", "vit",
                     "--weights", "bundled", "--image-size", "56", "--chunk", str(args.chunk)),
                step("query", "query", str(work / "store"), str(work / "plain" / "c0" / "00000.png"), "--owner-key",
                     str(work / "owner.key"), "-k", "10", "--out", str(work / "found"))]
        raw_mib = args.n * 56 * 56 * 3 / 2 ** 20
        print(f"{args.n} images, ciphertexts {raw_mib:.0f} MiB in all; batches of {args.chunk} for the index")
        for r in rows:
            rate = f"{args.n / r['seconds']:8.0f} images/s" if r["step"] != "query" else " " * 17
            print(f"  {r['step']:8s} {r['seconds']:8.1f} s  {rate}  peak RSS {r['peak_rss_mib']:7.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
