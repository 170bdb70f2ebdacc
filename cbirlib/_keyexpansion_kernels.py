"""The compiled kernels of :mod:`cbirlib.keyexpansion` (numba; imported on first use, so that
importing the cipher does not import numba; compiled once and cached on disk).

Every function returns the next pool word, or -1 when the pool ran out. The hot loops spell the
draw out (a multiplication, a mask, a comparison); only a rejection calls :func:`redraw16` or
:func:`redraw32`."""

import numba
import numpy as np

_jit = numba.njit(nogil=True, cache=True)
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
    """``out[k]`` = the k-th 16-bit draw with ``bound`` from ``words[pos:]``: a first pass without
    branches (vectorised by LLVM) notes whether any word could be rejected; only then a second
    pass, in draw order, replaces the rejected ones from the pool."""
    s = np.uint32(bound)
    suspect = False
    for k in range(out.size):
        m = np.uint32(words[pos + k]) * s
        out[k] = m >> np.uint32(16)
        suspect |= (m & _MASK16) < s
    if suspect:
        for k in range(out.size):
            m = np.uint32(words[pos + k]) * s
            if (m & _MASK16) < s:
                v, pool = redraw16(words, m, bound, pool)
                if v < 0:
                    return -1
                out[k] = v
    return pool


@_jit
def expand_image(words, pool, base, off, start, index, order, channels, subst, strength, narrow, image, out,
                 gather):
    """One image's expansion, sections 1-4 of :mod:`cbirlib.keyexpansion` in order; with
    ``gather``, ``out`` receives the permuted ``image`` instead of ``index`` the gather index.

    The value shuffles are written out here rather than called per block: a call that passes
    arrays costs reference counting, more than a block of 3 values (block size 1) itself."""
    nk = base.size
    n = off.size
    for i in range(nk):
        order[i] = i
    pool = shuffle32(words, 0, pool, order)
    if pool < 0:
        return False
    pos = 2 * (nk - 1)
    a = np.empty(n, np.int64)
    for k in range(nk):
        src = start + base[order[k]]
        dst = base[k]
        for t in range(n):
            a[t] = src + off[t]
        # Fisher-Yates from the back; slot i is final once drawn: write it at once
        for i in range(n - 1, 0, -1):
            if narrow:
                s16 = np.uint32(i + 1)
                m16 = np.uint32(words[pos]) * s16
                pos += 1
                if (m16 & _MASK16) < s16:
                    j, pool = redraw16(words, m16, i + 1, pool)
                    if j < 0:
                        return False
                else:
                    j = np.int64(m16 >> np.uint32(16))
            else:
                s32 = np.uint64(i + 1)
                m32 = (np.uint64(words[pos]) | (np.uint64(words[pos + 1]) << np.uint64(16))) * s32
                pos += 2
                if (m32 & _MASK32) < s32:
                    j, pool = redraw32(words, m32, i + 1, pool)
                    if j < 0:
                        return False
                else:
                    j = np.int64(m32 >> np.uint64(32))
            v = a[j]
            a[j] = a[i]
            if gather:
                out[dst + off[i]] = image[v]
            else:
                index[dst + off[i]] = v
        if gather:
            out[dst + off[0]] = image[a[0]]
        else:
            index[dst + off[0]] = a[0]
    pool = draws16(words, pos, pool, 6, channels)
    if pool < 0:
        return False
    pool = draws16(words, pos + nk, pool, strength + 1, subst)
    return pool >= 0


@_jit
def bounded16(words, s):
    """Every 16-bit word's draw with bound s alone: the result, or -1 where it is rejected."""
    out = np.empty(words.size, np.int64)
    t = np.uint32((65536 - s) % s)
    for i in range(words.size):
        m = np.uint32(words[i]) * np.uint32(s)
        out[i] = np.int64(m >> np.uint32(16)) if (m & _MASK16) >= t else -1
    return out
