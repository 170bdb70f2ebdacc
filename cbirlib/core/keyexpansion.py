"""Uniform random permutations from a keystream: MTCE key expansion, version 2.

One image's key is expanded from its AES-256-CTR keystream (:func:`cbirlib.core.keys.keystreams`),
read as little-endian 16-bit words ``w[0], w[1], ...``, in this order:

1. **block order**: a Fisher-Yates shuffle of the K blocks (``order[i]`` for i = K-1 down to 1
   swaps with ``order[j]``, j uniform in 0..i): K-1 draws with bounds K, K-1, ..., 2, each from
   a 32-bit word (two 16-bit words, low first);
2. **values**: for every destination block k = 0..K-1 in turn, a Fisher-Yates shuffle of the
   block's n = b*b*C values: n-1 draws with bounds n, ..., 2, each from one 16-bit word when
   n <= 4096, else from a 32-bit word;
3. **channel orders**: K draws with bound 6 (one of the 3! orders), one 16-bit word each;
4. **substitution bytes**: K*C draws with bound ``strength + 1``, one 16-bit word each;
5. an **overflow pool**: every draw has its own word(s) in sections 1-4; a draw that its word
   rejects (below) takes replacement words from the pool, in the order the draws are made.

Why the permutations are uniform. A draw with bound s from an L-bit word x uses Lemire's
method (*Fast random integer generation in an interval*, ACM TOMACS 2019): with m = x*s, the
result is m >> L, and x is accepted only if m mod 2^L >= 2^L mod s. Each result 0..s-1 is then
produced by exactly floor(2^L / s) accepted words (tested exhaustively for every 16-bit bound),
so a uniform x gives an exactly uniform result; a rejected word (probability below s/2^L) is
replaced by a fresh one from the pool. Fisher-Yates with exactly uniform draws gives every one
of the n! orders with probability 1/n!. The words come from AES-256-CTR, which is
indistinguishable from uniform bits without the key; nothing is reduced modulo a bound, so
there is no modulo bias. Since the pool's place in the stream is fixed and CTR mode extends a
stream without changing its start, the result does not depend on the pool's size: a pool that
runs out (it is sized for ten times the expected rejections) is simply made larger.

Speed. Version 1 (:func:`cbirlib.core.schedule.expand` with ``expansion=1``) sorted one random 64-bit
key per value: 8 keystream bytes and an ``O(n log n)`` sort per value. Here a value costs two
keystream bytes, one multiplication and one swap in a compiled loop (numba, ``nogil`` so that
threads expand images in parallel): each block is copied into a small buffer, shuffled there and
copied to its place, either as the image's values (encryption while expanding: no index is
written) or as their positions (the gather index of a :class:`cbirlib.core.schedule.Schedule`); see
:mod:`cbirlib.core._keyexpansion_kernels` for what was measured.
"""

from __future__ import annotations

import functools

import numpy as np

#: bound up to which a draw uses one 16-bit word (rejection probability < 2^12 / 2^16)
NARROW_BOUND = 1 << 12
#: expected-rejection multiple that the first overflow pool holds
_POOL_MARGIN = 10


def stream_words(n_blocks: int, n_values: int, n_channels: int, *, pool: int) -> tuple[int, int]:
    """(words in sections 1-4, total words with a pool of ``pool`` words) for one image."""
    value_words = 1 if n_values <= NARROW_BOUND else 2
    fixed = 2 * (n_blocks - 1) + n_blocks * (n_values - 1) * value_words + n_blocks + n_blocks * n_channels
    return fixed, fixed + pool


def expected_rejections(n_blocks: int, n_values: int, strength: int) -> float:
    """Expected number of rejected draws for one image (an upper bound: s/2^L per draw)."""
    lv = 16 if n_values <= NARROW_BOUND else 32
    values = n_blocks * n_values * (n_values + 1) / 2 / 2.0 ** lv
    return n_blocks * n_blocks / 2 / 2.0 ** 32 + values + n_blocks * (6 + strength + 1) / 2.0 ** 16


def first_pool(n_blocks: int, n_values: int, strength: int) -> int:
    """Words of the overflow pool tried first (a larger one is used if it runs out)."""
    return 64 + int(_POOL_MARGIN * 2 * expected_rejections(n_blocks, n_values, strength))


@functools.lru_cache(maxsize=16)
def block_offsets(h: int, w: int, c: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Where block values lie in an image (H, W, C) flattened: value t of block k is at
    ``base[k] + off[t]`` (blocks row-major, values (row, column, channel) row-major inside a
    block). Returns base (K,) and off (b*b*C,), int64, read-only (cached per shape).

    >>> base, off = block_offsets(4, 4, 1, 2)
    >>> base.tolist(), off.tolist()
    ([0, 2, 8, 10], [0, 1, 4, 5])
    """
    by, bx = np.divmod(np.arange((h // b) * (w // b)), w // b)
    py, px, ch = np.unravel_index(np.arange(b * b * c), (b, b, c))
    base = ((by * b * w + bx * b) * c).astype(np.int64)
    off = ((py * w + px) * c + ch).astype(np.int64)
    base.flags.writeable = off.flags.writeable = False
    return base, off


def _kernels():
    from . import _keyexpansion_kernels

    return _keyexpansion_kernels


def bounded16(words: np.ndarray, bound: int) -> np.ndarray:
    """The draw with ``bound`` that each 16-bit word gives alone: (len(words),) int64, -1 where
    Lemire's method rejects the word (for tests of uniformity).

    >>> import numpy as np
    >>> counts = np.bincount(bounded16(np.arange(65536, dtype=np.uint16), 6) + 1)
    >>> int(counts[0]), sorted(set(counts[1:].tolist()))  # 4 rejected words; 10922 per result
    (4, [10922])
    """
    if not 1 <= bound <= 1 << 16:
        raise ValueError(f"a 16-bit draw needs a bound in 1..65536, got {bound}")
    return _kernels().bounded16(np.ascontiguousarray(words, dtype=np.uint16), int(bound))


def permute_image(words: np.ndarray, pool_start: int, *, block_size: int, image: np.ndarray | None,
                  start: int, out: np.ndarray, order: np.ndarray, channels: np.ndarray,
                  subst: np.ndarray, strength: int) -> bool:
    """Run the compiled expansion of one image (H, W, C) (see the module docstring); arrays are
    written in place. ``out`` (H, W, C) receives the image's values permuted (``image`` (H, W, C)
    uint8; the substitution is not added), or, with ``image`` None, the gather index (int32 or
    int64: value i of the ciphertext is value ``out[i]`` of the batch, whose image starts at
    ``start``). ``order`` (K,) int64, ``channels`` (K,) uint8 (0..5), ``subst`` (K*C,) uint8.
    Returns False if the overflow pool (``words[pool_start:]``) ran out."""
    h, w, c = out.shape
    if image is not None and (image.shape != out.shape or image.dtype != np.uint8 or out.dtype != np.uint8):
        raise ValueError("image and out must be uint8 arrays of the same shape")
    base, _ = block_offsets(h, w, c, block_size)
    flat = None if image is None else image.reshape(-1)
    return bool(_kernels().permute_image(words, pool_start, base, block_size, w * c, flat, start,
                                         out.reshape(-1), order, channels, subst, strength))


def gather(src: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = src[index[i]]`` for 1-D arrays (int32 or int64 ``index``), compiled; the
    caller guarantees the bounds (:func:`cbirlib.core.cipher.apply_schedule` checks the shapes)."""
    _kernels().gather(src, index, out)


def scatter(values: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[index[i]] = values[i]`` for 1-D arrays, compiled; bounds as for :func:`gather`."""
    _kernels().scatter(values, index, out)
