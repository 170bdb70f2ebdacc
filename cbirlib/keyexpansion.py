"""Uniform random permutations from a keystream: MTCE key expansion, version 2.

One image's key is expanded from its AES-256-CTR keystream (:func:`cbirlib.keys.keystreams`),
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

Speed. Version 1 (:func:`cbirlib.cipher.expand` with ``expansion=1``) sorted one random 64-bit
key per value: 8 keystream bytes and an ``O(n log n)`` sort per value. Here a value costs two
keystream bytes, one multiplication and one swap in a compiled loop (numba, ``nogil`` so that
threads expand images in parallel); the index of the gather is written in the same pass.
"""

from __future__ import annotations

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


def _kernels():
    from . import _keyexpansion_kernels  # numba is imported here, on first use

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


def expand_image(words: np.ndarray, pool_start: int, base: np.ndarray, off: np.ndarray, start: int,
                 index: np.ndarray, order: np.ndarray, channels: np.ndarray, subst: np.ndarray,
                 strength: int) -> bool:
    """Run the compiled expansion of one image (see the module docstring); arrays are written in
    place: ``index`` (H*W*C,) int32 or int64 (value i of the ciphertext is value ``index[i]`` of the
    batch, whose image starts at ``start``), ``order`` (K,) int64, ``channels`` (K,) uint8 (0..5),
    ``subst`` (K*C,) uint8. Returns False if the overflow pool (``words[pool_start:]``) ran out."""
    return bool(_kernels().expand_image(words, pool_start, base, off, start, index, order, channels, subst,
                                        strength))


def encrypt_image(words: np.ndarray, pool_start: int, base: np.ndarray, off: np.ndarray, image: np.ndarray,
                  out: np.ndarray, order: np.ndarray, channels: np.ndarray, subst: np.ndarray,
                  strength: int) -> bool:
    """:func:`expand_image` for one image (H*W*C,) uint8, applied as it is drawn: ``out`` (same
    shape) receives ``out[i] = image[index[i]]`` (the substitution is not added) and no index is
    written. Returns False if the overflow pool ran out."""
    if image.shape != out.shape or image.dtype != np.uint8 or out.dtype != np.uint8:
        raise ValueError("image and out must be uint8 arrays of the same shape")
    return bool(_kernels().encrypt_image(words, pool_start, base, off, image, out, order, channels, subst,
                                         strength))


def gather(src: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = src[index[i]]`` for 1-D arrays (int32 or int64 ``index``), compiled; the
    caller guarantees the bounds (:func:`cbirlib.cipher.apply_schedule` checks the shapes)."""
    _kernels().gather(src, index, out)


def scatter(values: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[index[i]] = values[i]`` for 1-D arrays, compiled; bounds as for :func:`gather`."""
    _kernels().scatter(values, index, out)
