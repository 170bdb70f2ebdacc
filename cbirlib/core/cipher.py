"""MTCE, the paper's block-wise image cipher (Algorithm 1), exactly reversible.

For an image of H x W pixels and C channels cut into K = (H/b)(W/b) blocks of b x b pixels
(n = b*b*C values per block), encryption

1. scrambles the positions of the n values inside each block (its own permutation per block),
2. shuffles the K blocks,
3. per block, at its new position: permutes the C channels (one of the 3! orders, ``swap``) and
   adds one substitution byte per channel, drawn from 0..``strength``, mod 256.

Implementation. Keys are expanded with an AES-256-CTR keystream (:mod:`cbirlib.core.keys`; the
cipher parameters are part of the stream's label). Each destination block j gets: the source
block ``order[j]``, a channel order sigma_j, substitution bytes, and a uniformly random
arrangement D_j of the source block's n values. Key expansion 2 (the default) draws the block
order and every D_j with Fisher-Yates shuffles (:mod:`cbirlib.core.keyexpansion`: unbiased bounded
integers from 16-bit keystream words, compiled); expansion 1 (keys of version-1 key files)
sorted random 64-bit keys, two to four times slower (``benchmarks/bench_cipher.py``). The step-1 permutation of the source block is
defined as D_j o sigma_j^-1, so steps 1-3 compose exactly into "destination value t of block j =
source value D_j[t] of block order[j], plus the substitution byte": ONE gather and ONE byte add
per image (:class:`Schedule`), with no Python loop over pixels or blocks.
:func:`encrypt_steps` applies the three steps one after another (for figures and as a test
oracle); it gives the same ciphertext.

Note: since step 1 already permutes all b*b*C values of a block uniformly at random, composing
it with a channel permutation is again a uniformly random permutation: the channel swap adds no
key space. Eq. (4) of the paper counts it anyway (and counts substitution once per image, not
per block); see :mod:`cbirlib.core.keyspace`.

Arrays are uint8 ``(H, W, C)`` or ``(N, H, W, C)`` with C = 1 or 3 (numpy or torch; a torch
tensor comes back as a tensor on its device), or uint16 with a 16-bit key (``depth=16``:
:mod:`cbirlib.core.cipher16`); 16-bit values are never converted to 8 bits silently. Sizes that are not multiples of the block size are
an error (``pad="error"``) or zero-padded at the bottom/right (``pad="pad"``); give the original
``size=(H, W)`` to :func:`decrypt` to crop the padding away.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from . import cipher16, keyexpansion
from .keys import Key
from .schedule import (CipherInputError, Schedule, Workspace, check_keys, encrypt_while_expanding, expand, from_blocks,
                       to_blocks)

PAD_POLICIES = ("error", "pad")
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def encrypt_steps(image: np.ndarray, key: Key) -> dict[str, np.ndarray]:
    """Algorithm 1 one step at a time on one (H, W, C) uint8 image (sizes multiples of b).

    Returns the image after ``"1 scramble in blocks"``, ``"2 shuffle blocks"``,
    ``"3a swap channels"`` and ``"3b substitute"`` (the ciphertext, equal to :func:`encrypt`).
    """
    batch, _, _ = _as_batch(image)
    h, w, c = batch.shape[1:]
    s = expand([key], (h, w, c))
    b, n = s.block_size, s.block_size ** 2 * c
    blocks = to_blocks(batch, b)[0].reshape(-1, n)  # (K, n)
    nk = blocks.shape[0]
    src = to_blocks(s.index[0].reshape(1, h, w, c), b)[0].reshape(nk, n)  # image-flat sources by (j, t)
    base, off = keyexpansion.block_offsets(h, w, c, b)
    local = np.searchsorted(off, src - base[s.order[0]][:, None])  # D_j: in-block source positions
    # step-1 permutation of source block order[j]: pi = D_j o sigma_j^-1 (on channel triples)
    inv = np.argsort(s.channels[0], axis=1)  # sigma_j^-1
    slot = (np.arange(b * b)[None, :, None] * c + inv[:, None, :]).reshape(nk, n)
    pi = np.empty_like(local)
    pi[s.order[0]] = np.take_along_axis(local, slot, axis=1)
    step1 = np.take_along_axis(blocks, pi, axis=1)  # source block k scrambled by pi_k
    step2 = step1[s.order[0]]  # destination j <- source block order[j]
    step3a = np.take_along_axis(step2.reshape(nk, b * b, c), s.channels[0][:, None, :], axis=2)
    step3b = step3a + s.subst[0][:, None, :]
    shape4 = (1, nk, b * b, c)
    return {name: from_blocks(x.reshape(shape4), h, w, b)[0] for name, x in
            (("1 scramble in blocks", step1), ("2 shuffle blocks", step2),
             ("3a swap channels", step3a), ("3b substitute", step3b))}


# --------------------------------------------------------------------------- array handling

def _as_batch(images) -> tuple[np.ndarray, bool, object]:
    """-> (N, H, W, C) uint8 numpy, whether the input was a single image, torch device or None."""
    device = None
    if type(images).__module__.startswith("torch"):
        import torch

        if not isinstance(images, torch.Tensor):
            raise CipherInputError(f"expected an array or tensor, got {type(images).__name__}")
        device = images.device
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise CipherInputError(f"expected a numpy array or torch tensor, got {type(images).__name__}")
    if images.dtype not in (np.uint8, np.uint16):  # uint16 stays 16-bit: it needs a 16-bit key
        if images.dtype.kind not in "iu":
            raise CipherInputError(f"expected uint8 (or uint16) pixel values, got dtype {images.dtype}")
        if images.size and (images.min() < 0 or images.max() > 255):
            raise CipherInputError(f"pixel values must lie in 0..255, got {images.min()}..{images.max()}; "
                                   "16-bit values go in a uint16 array, with a 16-bit key")
        images = images.astype(np.uint8)
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise CipherInputError(f"expected (H, W, C) or (N, H, W, C) with C = 1 or 3, got shape "
                               f"{tuple(images.shape) if not single else tuple(images.shape[1:])}")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise CipherInputError(f"empty image of shape {tuple(images.shape[1:])}")
    return images, single, device


def _restore(out: np.ndarray, single: bool, device):
    if single:
        out = out[0]
    if device is not None:
        import torch

        return torch.from_numpy(out).to(device)
    return out


def _keys_for(key, n: int) -> list[Key]:
    if n == 0:
        raise CipherInputError("empty batch: there are no images to encrypt or decrypt")
    if isinstance(key, Key):
        return [key]  # one schedule broadcast over the batch
    if key is None or isinstance(key, (str, bytes)) or not hasattr(key, "__iter__"):
        raise CipherInputError(f"key must be a cbirlib.core.keys.Key or a sequence of one Key per image, "
                               f"got {type(key).__name__}")
    keys = list(key)
    bad = [type(k).__name__ for k in keys if not isinstance(k, Key)]
    if bad:
        raise CipherInputError(f"every key must be a cbirlib.core.keys.Key, got {bad[0]}")
    if len(keys) != n:
        raise CipherInputError(f"{len(keys)} keys for {n} images: give one key per image or one key")
    if all(k == keys[0] for k in keys[1:]):
        return keys[:1]  # one key given per image (a shared key): expanded once, broadcast
    return keys


def _substitution_view(flat: np.ndarray, schedule: Schedule) -> tuple[np.ndarray, np.ndarray]:
    """(output seen as (N, H/b, b, W*C), substitution bytes broadcastable onto it)."""
    h, w, c = schedule.shape
    b = schedule.block_size
    return flat.reshape(len(flat), h // b, b, w * c), schedule.row_addend[:, :, None, :]


def _check_schedule(batch: np.ndarray, schedule: Schedule, out: np.ndarray | None, what: str) -> None:
    """The compiled gather and scatter do not check bounds: check the shapes here."""
    n = len(batch)
    if tuple(batch.shape[1:]) != schedule.shape:
        raise CipherInputError(f"a schedule for images of shape {schedule.shape} cannot {what} images of shape "
                               f"{tuple(batch.shape[1:])}")
    if len(schedule.index) not in (1, n):
        raise CipherInputError(f"a schedule for {len(schedule.index)} images cannot {what} {n}")
    if out is not None and (out.shape != batch.shape or out.dtype != batch.dtype or not out.flags.c_contiguous):
        raise CipherInputError(f"out must be a C-contiguous {batch.dtype} array of shape {batch.shape}")
    if schedule.row_addend.dtype != batch.dtype:
        raise CipherInputError(f"a schedule for {schedule.row_addend.dtype} values cannot {what} {batch.dtype} images")


def _move(src: np.ndarray, index: np.ndarray, dst: np.ndarray, kernel) -> None:
    """Gather (``dst = src[index]``) or scatter (``dst[index] = src``) the (N, T) rows, with one
    index for every row or one absolute index (into the flattened batch) per row."""
    if len(index) == 1:
        for r in range(len(src)):
            kernel(src[r], index[0], dst[r])
    else:
        kernel(src.ravel(), index.ravel(), dst.ravel())


def apply_schedule(batch: np.ndarray, schedule: Schedule, out: np.ndarray | None = None) -> np.ndarray:
    """Encrypt (N, H, W, C) uint8 with an expanded schedule of 1 or N images: one gather and one
    byte add. The input is not modified; ``out`` (same shape and dtype) receives the result."""
    _check_schedule(batch, schedule, out, "encrypt")
    n = len(batch)
    flat = np.ascontiguousarray(batch).reshape(n, -1)
    res = np.empty_like(flat) if out is None else out.reshape(n, -1)
    _move(flat, schedule.index, res, keyexpansion.gather)
    view, subst = _substitution_view(res, schedule)
    view += subst
    return res.reshape(batch.shape)


def invert_schedule(ciphertext: np.ndarray, schedule: Schedule, out: np.ndarray | None = None) -> np.ndarray:
    """Exact inverse of :func:`apply_schedule`: one subtraction, one scatter. The input is not
    modified; ``out`` (same shape and dtype) receives the result."""
    _check_schedule(ciphertext, schedule, out, "decrypt")
    n = len(ciphertext)
    values = ciphertext.reshape(n, -1).copy()
    view, subst = _substitution_view(values, schedule)
    view -= subst
    res = np.empty_like(values) if out is None else out.reshape(n, -1)
    _move(values, schedule.index, res, keyexpansion.scatter)
    return res.reshape(ciphertext.shape)


def _run_chunks(batch: np.ndarray, keys: list[Key], shape: tuple[int, int, int], chunk: int,
                workers: int | None, step) -> np.ndarray:
    """Apply ``step`` (apply_schedule or invert_schedule) chunk by chunk, reusing buffers; with
    ``workers`` > 1 chunks run in threads (numpy, numba and OpenSSL release the GIL). Per-image
    keys of expansion 2 encrypt while they expand (:func:`cbirlib.core.schedule.encrypt_while_expanding`). Results do not depend on
    ``chunk`` or ``workers``."""
    params = check_keys(keys, shape)  # all of them at once, not chunk by chunk
    _check_depth(batch, params)
    batch = np.ascontiguousarray(batch)  # rows are reshaped into views below
    out = np.empty(batch.shape, dtype=batch.dtype)
    expand_ = cipher16.expand if params.depth == 16 else expand
    if len(keys) == 1:
        return step(batch, expand_(keys, shape), out=out)
    starts = list(range(0, len(batch), chunk))
    workers = max(1, min(workers or DEFAULT_WORKERS, len(starts)))
    fused = step is apply_schedule and params.expansion == 2 and params.depth == 8

    def run(part: list[int]) -> None:
        ws = Workspace()
        for s in part:
            sl = slice(s, s + chunk)
            if fused:
                encrypt_while_expanding(batch[sl], keys[sl], shape, ws, out[sl])
            else:
                step(batch[sl], expand_(keys[sl], shape, ws), out=out[sl])

    if workers == 1:
        run(starts)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [starts[i::workers] for i in range(workers)]))
    return out


def _check_depth(batch: np.ndarray, params) -> None:
    """uint8 images need an 8-bit key, uint16 images a 16-bit key: never a silent conversion."""
    bits = 16 if batch.dtype == np.uint16 else 8
    if bits != params.depth:
        hint = ("make a 16-bit key (cbir keygen --depth 16) or convert the values explicitly (a window)"
                if bits == 16 else "a 16-bit key encrypts uint16 images")
        raise CipherInputError(f"{bits}-bit images and {'an' if params.depth == 8 else 'a'} {params.depth}-bit key: {hint}")


def padded_size(h: int, w: int, block_size: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``block_size``."""
    return -(-h // block_size) * block_size, -(-w // block_size) * block_size


def encrypt(images, key: Key | Sequence[Key], pad: str = "error", chunk: int = 4,
            workers: int | None = None):
    """Encrypt one image (H, W, C) or a batch (N, H, W, C) of uint8 values (uint16 with a 16-bit key).

    Args:
        images: numpy array or torch uint8 tensor.
        key: one key (kind ``image`` or ``shared``) for all images, or one key per image.
        pad: ``"error"`` (sizes must be multiples of the block size) or ``"pad"`` (zero-pad at the
            bottom/right; pass the original size to :func:`decrypt`).
        chunk: images expanded and encrypted at a time (memory vs Python overhead).
        workers: threads for per-image keys (default: the machine's cores, at most 4).

    Returns:
        The ciphertext, same type and dtype, shape (N, H', W', C) with H', W' padded.
    """
    batch, single, device = _as_batch(images)
    keys = _keys_for(key, len(batch))
    params = keys[0].params
    if pad not in PAD_POLICIES:
        raise CipherInputError(f"pad must be one of {PAD_POLICIES}, got {pad!r}")
    n, h, w, c = batch.shape
    hp, wp = padded_size(h, w, params.block_size)
    if (hp, wp) != (h, w):
        if pad == "error":
            raise CipherInputError(f"image size {h}x{w} is not a multiple of block size "
                                   f"{params.block_size}; crop it, or pad it (pad='pad'; cbir encrypt --pad)")
        batch = np.pad(batch, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
    out = _run_chunks(batch, keys, (hp, wp, c), chunk, workers, apply_schedule)
    return _restore(out, single, device)


def decrypt(ciphertext, key: Key | Sequence[Key], size: tuple[int, int] | None = None, chunk: int = 4,
            workers: int | None = None):
    """Invert :func:`encrypt` exactly. ``size=(H, W)`` crops padding added by ``pad="pad"``.

    A wrong key does not raise: it returns a different scrambling (not the plaintext).
    """
    batch, single, device = _as_batch(ciphertext)
    keys = _keys_for(key, len(batch))
    n, h, w, c = batch.shape
    b = keys[0].params.block_size
    if h % b or w % b:
        raise CipherInputError(f"ciphertext size {h}x{w} is not a multiple of block size {b}: "
                               "wrong key parameters, or not an MTCE ciphertext")
    out = _run_chunks(batch, keys, (h, w, c), chunk, workers, invert_schedule)
    if size is not None:
        oh, ow = size
        if not (0 < oh <= h and 0 < ow <= w):
            raise CipherInputError(f"size {size} does not fit inside the ciphertext {h}x{w}")
        out = np.ascontiguousarray(out[:, :oh, :ow])
    return _restore(out, single, device)


def _master(master) -> Key:
    if not isinstance(master, Key) or master.kind != "master":
        raise CipherInputError(f"per-image keys are derived from a master key (a cbirlib.core.keys.Key of kind "
                               f"'master'), got {getattr(master, 'kind', type(master).__name__)!r}")
    return master


def encrypt_with_ids(images, ids: Sequence[str], master: Key, pad: str = "error"):
    """The paper's protocol: every image under its own key, derived from ``master`` and its id."""
    return encrypt(images, [_master(master).for_image(i) for i in ids], pad=pad)


def decrypt_with_ids(ciphertext, ids: Sequence[str], master: Key, size: tuple[int, int] | None = None):
    return decrypt(ciphertext, [_master(master).for_image(i) for i in ids], size=size)


__all__ = ["Key", "Schedule", "expand", "encrypt", "decrypt", "encrypt_steps",
           "encrypt_with_ids", "decrypt_with_ids", "apply_schedule", "invert_schedule", "padded_size", "to_blocks", "from_blocks",
           "CipherInputError"]
