"""The compiled kernels of :mod:`cbirlib.keyexpansion`, and the gather and scatter that apply
an expanded schedule (numba; imported on first use, so that importing the cipher does not import
numba; compiled once and cached on disk).

The drawing functions return the next pool word, or -1 when the pool ran out (the two image
kernels return False then). The hot loops spell the draw out (a multiplication, a mask, a
comparison); only a rejection calls :func:`redraw16` or :func:`redraw32`. Nothing here checks
bounds: the callers in :mod:`cbirlib.keyexpansion` and :mod:`cbirlib.cipher` size the arrays.

:func:`expand_image` and :func:`encrypt_image` (and their per-block shuffles) are spelled out
twice on purpose: one body with a per-block switch between writing the index and gathering the
image measured 6-21 % slower at block sizes 1 and 8 (2026-12-02; at 16, 8 % faster for the index
and 3 % slower for the gather)."""

import numba
import numpy as np

from .keyexpansion import NARROW_BOUND

_jit = numba.njit(nogil=True, cache=True)
#: inlined into the caller by numba (a call per block costs more than a small block)
_inline = numba.njit(inline="always", cache=True)
_MASK16 = np.uint32(0xFFFF)
_MASK32 = np.uint64(0xFFFFFFFF)


@_jit
def redraw16(words, m, s, pool):
    """Lemire's rejection loop for a 16-bit draw with bound ``s`` whose word gave ``m`` (m mod
    2^16 < s): (result, next pool word), result -1 if the pool ran out."""
    t = np.uint32((65536 - s) % s)
    while (m & _MASK16) < t:
        if pool >= words.size:
            return -1, pool
        m = np.uint32(words[pool]) * np.uint32(s)
        pool += 1
    return np.int64(m >> np.uint32(16)), pool


@_jit
def redraw32(words, m, s, pool):
    """As :func:`redraw16` for a 32-bit draw (two words, low first)."""
    t = np.uint64(((1 << 32) - s) % s)
    while (m & _MASK32) < t:
        if pool + 1 >= words.size:
            return -1, pool
        m = (np.uint64(words[pool]) | (np.uint64(words[pool + 1]) << np.uint64(16))) * np.uint64(s)
        pool += 2
    return np.int64(m >> np.uint64(32)), pool


@_jit
def shuffle32(words, pos, pool, a):
    """Fisher-Yates shuffle of ``a`` in place, one 32-bit draw per step from ``words[pos:]``."""
    for i in range(a.size - 1, 0, -1):
        s = np.uint64(i + 1)
        m = (np.uint64(words[pos]) | (np.uint64(words[pos + 1]) << np.uint64(16))) * s
        pos += 2
        if (m & _MASK32) < s:
            j, pool = redraw32(words, m, i + 1, pool)
            if j < 0:
                return -1
        else:
            j = np.int64(m >> np.uint64(32))
        v = a[j]
        a[j] = a[i]
        a[i] = v
    return pool


@_jit
def draws16(words, pos, pool, bound, out):
    """``out[k]`` = the k-th 16-bit draw with ``bound`` from ``words[pos:]`` (a rejected word is
    replaced from the pool, in draw order)."""
    s = np.uint32(bound)
    for k in range(out.size):
        m = np.uint32(words[pos + k]) * s
        if (m & _MASK16) < s:
            v, pool = redraw16(words, m, bound, pool)
            if v < 0:
                return -1
            out[k] = v
        else:
            out[k] = m >> np.uint32(16)
    return pool

@_inline
def shuffle16_index(words, pos, pool, a, index, dst, off):
    """Fisher-Yates shuffle of ``a`` (from the back) with one 16-bit draw per step from
    ``words[pos:]``; as its slot i becomes final, the value is written to ``index[dst + off[i]]``."""
    for i in range(a.size - 1, 0, -1):
        s = np.uint32(i + 1)
        m = np.uint32(words[pos]) * s
        pos += 1
        if (m & _MASK16) < s:
            j, pool = redraw16(words, m, i + 1, pool)
            if j < 0:
                return -1
        else:
            j = np.int64(m >> np.uint32(16))
        v = a[j]
        a[j] = a[i]
        index[dst + off[i]] = v
    index[dst + off[0]] = a[0]
    return pool


@_inline
def shuffle16_gather(words, pos, pool, a, image, out, dst, off):
    """As :func:`shuffle16_index`, but the image value a slot points to is written:
    ``out[dst + off[i]] = image[a[i]]``."""
    for i in range(a.size - 1, 0, -1):
        s = np.uint32(i + 1)
        m = np.uint32(words[pos]) * s
        pos += 1
        if (m & _MASK16) < s:
            j, pool = redraw16(words, m, i + 1, pool)
            if j < 0:
                return -1
        else:
            j = np.int64(m >> np.uint32(16))
        v = a[j]
        a[j] = a[i]
        out[dst + off[i]] = image[v]
    out[dst + off[0]] = image[a[0]]
    return pool


@_jit
def block_order(words, pool, order):
    """Section 1: ``order`` (K,) as the Fisher-Yates shuffle of 0..K-1 (32-bit draws)."""
    for i in range(order.size):
        order[i] = i
    return shuffle32(words, 0, pool, order)


@_jit
def channels_and_substitution(words, pos, pool, channels, subst, strength):
    """Sections 3 and 4 from ``words[pos:]``: channel-order numbers (0..5), substitution bytes."""
    pool = draws16(words, pos, pool, 6, channels)
    if pool < 0:
        return -1
    return draws16(words, pos + channels.size, pool, strength + 1, subst)


@_jit
def expand_image(words, pool, base, off, start, index, order, channels, subst, strength):
    """One image's expansion, sections 1-4 of :mod:`cbirlib.keyexpansion` in order, into the
    gather index (value base[k]+off[t] of the ciphertext <- start + base[order[k]] + off[D_k[t]]).
    Returns False if the pool ran out. (The per-block shuffle is inlined: a call that passes
    arrays costs reference counting, more than a block of 3 values at block size 1.)"""
    nk = base.size
    n = off.size
    pool = block_order(words, pool, order)
    if pool < 0:
        return False
    pos = 2 * (nk - 1)
    a = np.empty(n, index.dtype)  # int32 or int64, as the index
    for k in range(nk):
        src = start + base[order[k]]
        for t in range(n):
            a[t] = src + off[t]
        if n <= NARROW_BOUND:
            pool = shuffle16_index(words, pos, pool, a, index, base[k], off)
            pos += n - 1
        else:
            pool = shuffle32(words, pos, pool, a)
            pos += 2 * (n - 1)
            for t in range(n):
                index[base[k] + off[t]] = a[t]
        if pool < 0:
            return False
    return channels_and_substitution(words, pos, pool, channels, subst, strength) >= 0


@_jit
def encrypt_image(words, pool, base, off, image, out, order, channels, subst, strength):
    """:func:`expand_image` applied as it is drawn: ``out`` (H*W*C,) uint8 receives ``image``
    permuted (``out[i] = image[index[i]]``, substitution not added); no index is written."""
    nk = base.size
    n = off.size
    pool = block_order(words, pool, order)
    if pool < 0:
        return False
    pos = 2 * (nk - 1)
    a = np.empty(n, np.int64)
    for k in range(nk):
        src = base[order[k]]
        for t in range(n):
            a[t] = src + off[t]
        if n <= NARROW_BOUND:
            pool = shuffle16_gather(words, pos, pool, a, image, out, base[k], off)
            pos += n - 1
        else:
            pool = shuffle32(words, pos, pool, a)
            pos += 2 * (n - 1)
            for t in range(n):
                out[base[k] + off[t]] = image[a[t]]
        if pool < 0:
            return False
    return channels_and_substitution(words, pos, pool, channels, subst, strength) >= 0


@_jit
def bounded16(words, s):
    """Every 16-bit word's draw with bound s alone: the result, or -1 where it is rejected."""
    out = np.empty(words.size, np.int64)
    t = np.uint32((65536 - s) % s)
    for i in range(words.size):
        m = np.uint32(words[i]) * np.uint32(s)
        out[i] = np.int64(m >> np.uint32(16)) if (m & _MASK16) >= t else -1
    return out


@_jit
def gather(src, index, out):
    """``out[i] = src[index[i]]`` (1-D arrays): applying an expanded schedule. numpy's ``take``
    first converts an int32 index to intp; this reads it as it is."""
    for i in range(index.size):
        out[i] = src[index[i]]


@_jit
def scatter(values, index, out):
    """``out[index[i]] = values[i]`` (1-D arrays): inverting an expanded schedule."""
    for i in range(index.size):
        out[index[i]] = values[i]
