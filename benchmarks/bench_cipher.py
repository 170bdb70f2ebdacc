"""MTCE throughput against AES-CTR measured in the same run, on the same bytes.

Usage: .venv/bin/python benchmarks/bench_cipher.py [--images 64] [--dataset-images 3600]

Reports, for 224x224x3 uint8 images at block sizes 1, 8 and 16, on one core (workers=1), beside
two baselines timed in the same run on the same bytes (AES-128-CTR from ``cryptography``, and the
peer block-scrambling cipher of the Kiya lab's public demo, reimplemented from its description:
one shared key, block 16, no substitution, see :class:`PeerBlockScramble`; timed both with fresh
arrays and into reused buffers, and the faster of the two is the baseline of every ratio):
- "schedule precomputed": the per-image keys already expanded; encryption is one gather + one add;
- "incl. key derivation": from the master key: HKDF per image, AES-CTR key expansion, then
  encryption (the paper's protocol);
- "one shared key": one ``Key`` for the whole batch; "shared key, one per image": the same key
  given once per image (expanded once all the same);
- the key expansion alone, per image (:func:`cbirlib.core.cipher.expand`, the schedule of every image
  written out), into reused buffers and into fresh arrays, beside key expansion version 1
  (sorting random 64-bit keys; still used by version-1 key files) timed in the same run;
then the time to encrypt a paper-sized dataset (3,600 images, per-image keys) with one and with
the default worker threads (the second of two calls; the first, into memory fresh from the OS, is
printed beside it). ``ratio_vs_peer_<path>=`` lines give MTCE MB/s / peer MB/s (the faster peer) for
every path, ``ratio_vs_peer_fresh_arrays_<path>=`` the same against the peer with fresh arrays; the
last line is ``ratio_vs_aes_ctr_block8=<MTCE encrypt MB/s / AES-128-CTR MB/s, schedule
precomputed>``. Best of several repeats; wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import numpy as np
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cbirlib.core import cipher, keys, schedule

SHAPE = (224, 224, 3)


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def aes_ctr_mb_s(data: np.ndarray, key_bytes: int, repeats: int) -> float:
    key = bytes(range(key_bytes))
    src = memoryview(data.reshape(-1))
    out = bytearray(data.nbytes + 16)

    def run() -> None:
        Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update_into(src, out)

    return data.nbytes / best_of(run, repeats) / 1e6


class PeerBlockScramble:
    """The peer cipher's recipe, reimplemented from its description (not its code): one shared
    key; the image cut into b x b blocks; the blocks shuffled by one key-derived permutation and
    the b*b*C values inside every block shuffled by another (the same for every block); no
    substitution. Written as such a cipher is usually written in numpy: a reshape into blocks,
    two fancy-index gathers, a reshape back. The permutations come from the key once per
    cipher object (numpy's generator seeded with the key bytes: the peer's choice of RNG, not a
    cryptographic one)."""

    def __init__(self, key: bytes, shape: tuple[int, int, int], block_size: int = 16) -> None:
        h, w, c = shape
        self.shape, self.b = shape, block_size
        self.grid = (h // block_size, w // block_size)
        rng = np.random.default_rng(list(key))
        self.block_order = rng.permutation(self.grid[0] * self.grid[1])
        self.in_block = rng.permutation(block_size * block_size * c)

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        n, (h, w, c), b, (gh, gw) = len(images), self.shape, self.b, self.grid
        blocks = images.reshape(n, gh, b, gw, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, b * b * c)
        blocks = blocks[:, self.block_order][:, :, self.in_block]
        return blocks.reshape(n, gh, gw, b, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)

    def encrypt_into(self, images: np.ndarray, buffers: dict) -> np.ndarray:
        """The same gathers into buffers reused from call to call (no fresh pages to fault in):
        the peer at its best, so that the ratios below are not flattered by its allocations."""
        n, (h, w, c), b, (gh, gw) = len(images), self.shape, self.b, self.grid
        shape = (n, gh * gw, b * b * c)
        for name in ("blocks", "moved", "out"):
            if name not in buffers or buffers[name].shape != shape:
                buffers[name] = np.empty(shape, dtype=images.dtype)
        buffers["blocks"].reshape(n, gh, gw, b, b, c)[...] = images.reshape(n, gh, b, gw, b, c).transpose(0, 1, 3, 2, 4, 5)
        np.take(buffers["blocks"], self.block_order, axis=1, out=buffers["moved"])
        np.take(buffers["moved"], self.in_block, axis=2, out=buffers["out"])
        result = buffers.setdefault("image", np.empty_like(images))
        result.reshape(n, gh, b, gw, b, c)[...] = buffers["out"].reshape(n, gh, gw, b, b, c).transpose(0, 1, 3, 2, 4, 5)
        return result


def expansion_seconds(image_keys: list, chunk: int, repeats: int) -> dict[str, float]:
    """Seconds to expand every key, ``chunk`` keys at a time: into buffers reused from chunk to
    chunk (as encryption and decryption do) and into fresh arrays for every call (each new
    page is then faulted in on first touch, which costs this machine kind ~2 us per 4 KiB)."""
    ws = schedule.Workspace()
    starts = range(0, len(image_keys), chunk)
    return {"into reused buffers": best_of(lambda: [cipher.expand(image_keys[s:s + chunk], SHAPE, ws)
                                                    for s in starts], repeats),
            "fresh arrays": best_of(lambda: [cipher.expand(image_keys[s:s + chunk], SHAPE) for s in starts],
                                    repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per throughput measurement")
    parser.add_argument("--dataset-images", type=int, default=3600, help="paper-sized dataset test")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=4, help="images per expanded schedule")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, *SHAPE), dtype=np.uint8)
    ids = [f"img{i:05d}" for i in range(args.images)]
    mb = images.nbytes / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"numpy {np.__version__}; {default_backend().openssl_version_text()}")
    print(f"{args.images} images of {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} uint8 ({mb:.1f} MB), best of {args.repeats}")

    aes128 = aes_ctr_mb_s(images, 16, args.repeats)
    aes256 = aes_ctr_mb_s(images, 32, args.repeats)
    peer = PeerBlockScramble(bytes(range(16)), SHAPE, 16)
    peer_out = peer.encrypt(images)
    assert not np.array_equal(peer_out, images) and np.array_equal(np.sort(peer_out, axis=None), np.sort(images, axis=None))
    buffers: dict = {}
    assert np.array_equal(peer.encrypt_into(images, buffers), peer_out)
    peer_fresh = mb / best_of(lambda: peer.encrypt(images), args.repeats)
    peer_reused = mb / best_of(lambda: peer.encrypt_into(images, buffers), args.repeats)
    peer_mb_s = max(peer_fresh, peer_reused)  # the baseline of every ratio: the peer's better way
    print(f"peer block scramble, fresh arrays {peer_fresh:7.0f} MB/s, into reused buffers {peer_reused:7.0f} MB/s "
          f"(the faster is the baseline)")
    print(f"baseline AES-128-CTR {aes128:9.0f} MB/s   AES-256-CTR {aes256:9.0f} MB/s   "
          f"peer block scramble (shared key, block 16, no substitution) {peer_mb_s:7.0f} MB/s")
    ratios, ratios_fresh = {}, {}

    ratio_block8 = None
    for b in (1, 8, 16):
        master = keys.from_seed(0, keys.CipherParams(b, 255, True))
        image_keys = [master.for_image(i) for i in ids]
        chunks = [(slice(s, s + args.chunk), cipher.expand(image_keys[s:s + args.chunk], SHAPE))
                  for s in range(0, args.images, args.chunk)]
        out = np.empty_like(images)
        enc = cipher.encrypt(images, image_keys, workers=1)

        def pre_enc() -> None:
            for sl, sched in chunks:
                cipher.apply_schedule(images[sl], sched, out=out[sl])

        def pre_dec() -> None:
            for sl, sched in chunks:
                cipher.invert_schedule(enc[sl], sched, out=out[sl])

        t_pre_e, t_pre_d = best_of(pre_enc, args.repeats), best_of(pre_dec, args.repeats)
        t_full_e = best_of(lambda: cipher.encrypt(images, [master.for_image(i) for i in ids], workers=1),
                           args.repeats)
        t_full_d = best_of(lambda: cipher.decrypt(enc, [master.for_image(i) for i in ids], workers=1), args.repeats)
        shared = keys.Key(master.for_image("shared").secret, master.params, "shared")
        t_shared_e = best_of(lambda: cipher.encrypt(images, shared, workers=1), args.repeats)
        t_shared_list_e = best_of(lambda: cipher.encrypt(images, [shared] * len(images), workers=1), args.repeats)
        v1_keys = [k.with_params(replace(k.params, expansion=1)) for k in image_keys]
        t_expand, t_expand_v1 = (expansion_seconds(ks, args.chunk, args.repeats) for ks in (image_keys, v1_keys))
        assert np.array_equal(cipher.decrypt(enc, image_keys, workers=1), images)
        assert np.array_equal(cipher.encrypt(images, [shared] * len(images), workers=1),
                              cipher.encrypt(images, shared, workers=1))
        paths = (("schedule precomputed", t_pre_e, t_pre_d), ("incl. key derivation", t_full_e, t_full_d),
                 ("one shared key", t_shared_e, None), ("shared key, one per image", t_shared_list_e, None))
        for what, t_e, t_d in paths:
            dec = f"   decrypt {mb / t_d:7.0f} MB/s {args.images / t_d:8.0f} img/s" if t_d else ""
            print(f"block {b:2d} {what:26s} encrypt {mb / t_e:7.0f} MB/s {args.images / t_e:8.0f} img/s "
                  f"({mb / t_e / aes128:.3f} x AES-128-CTR, {mb / t_e / peer_mb_s:.2f} x peer){dec}")
            name = f"block{b}_{what.replace(' ', '_').replace('.', '').replace(',', '')}"
            ratios[name] = mb / t_e / peer_mb_s
            ratios_fresh[name] = mb / t_e / peer_fresh
        for (what, t2), (_, t1) in zip(t_expand.items(), t_expand_v1.items()):
            print(f"block {b:2d} key expansion ({what}, chunks of {args.chunk}): {t2 / args.images * 1e3:.3f} ms "
                  f"per image; version 1 {t1 / args.images * 1e3:.3f} ms ({t1 / t2:.1f}x slower)")
        if b == 8:
            ratio_block8 = mb / t_pre_e / aes128
            ratio_full8 = mb / t_full_e / aes128
            expand_ms8 = {what: t / args.images * 1e3 for what, t in t_expand.items()}

    n = args.dataset_images
    big = np.repeat(images, -(-n // args.images), axis=0)[:n]
    big_ids = [f"img{i:05d}" for i in range(n)]
    master = keys.from_seed(0, keys.CipherParams(8, 255, True))
    for workers in sorted({1, cipher.DEFAULT_WORKERS}):
        # the first call's output is memory fresh from the OS (page faults: on this machine kind
        # about 1.7 s for 540 MB, more than the cipher); the second reuses the freed memory
        t1, t2 = (best_of(lambda: cipher.encrypt(big, [master.for_image(i) for i in big_ids], workers=workers), 1)
                  for _ in range(2))
        print(f"paper-sized dataset: {n} images, block 8, per-image keys (derivation included), "
              f"{workers} worker(s): {t2:.2f} s ({t1:.2f} s on the first call, into memory fresh from the OS)")
    for name, r in ratios.items():
        print(f"ratio_vs_peer_{name}={r:.3f}")
    for name, r in ratios_fresh.items():  # the peer as usually written, its allocations included
        print(f"ratio_vs_peer_fresh_arrays_{name}={r:.3f}")
    print(f"key_expansion_ms_per_image_block8={expand_ms8['into reused buffers']:.4f}")
    print(f"key_expansion_ms_per_image_block8_fresh_arrays={expand_ms8['fresh arrays']:.4f}")
    print(f"ratio_vs_aes_ctr_block8_incl_key_derivation={ratio_full8:.4f}")
    print(f"ratio_vs_aes_ctr_block8={ratio_block8:.4f}")


if __name__ == "__main__":
    main()
