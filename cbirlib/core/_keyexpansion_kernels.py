"""The compiled kernels of :mod:`cbirlib.core.keyexpansion`, and the gather and scatter that apply
an expanded schedule (numba; imported on first use, so that importing the cipher does not import
numba; compiled once and cached on disk).

The drawing functions return the next pool word, or -1 when the pool ran out (the image kernel
returns False then). The hot loops spell the draw out (a multiplication, a mask, a comparison);
only a rejection calls :func:`redraw16` or :func:`redraw32`. Nothing here checks bounds: the
callers in :mod:`cbirlib.core.keyexpansion` and :mod:`cbirlib.core.cipher` size the arrays.

One kernel, :func:`permute_image`, writes either the permuted image or the gather index: numba
compiles the ``image is None`` case apart, so the choice costs nothing per block.

Speed, measured in one process on the same keys and images (2026-12-02, 224x224x3, one core,
this kernel against the one before it, per image, keystream included; encrypt / index):
block 8 0.48 -> 0.26 / 0.31 -> 0.24 ms, block 16 0.46 -> 0.28 / 0.29 -> 0.22 ms, block 1
0.97 -> 0.79 / 0.72 -> 0.71 ms. What gave it: array positions are unsigned (numba then skips the
wrap-around test of negative indices), a block is shuffled in a small buffer and copied out row
by row (no gather per draw), and the source rows of a block a few blocks ahead are prefetched
(the block order is random, so the hardware prefetcher cannot guess them; alone worth
0.34 -> 0.28 ms at block 8). Tried and not kept: interleaving two images' shuffles (15 % on the
shuffle alone, not worth a second code path), prefetching more than one block ahead at block 8."""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .keyexpansion import NARROW_BOUND

_jit = numba.njit(nogil=True, cache=True)
#: inlined into the caller by numba (a call per block costs more than a small block)
_inline = numba.njit(inline="always", cache=True)
_MASK16 = np.uint32(0xFFFF)
_MASK32 = np.uint64(0xFFFFFFFF)
_U = np.uintp  # unsigned array positions: no wrap-around test for negative indices


@intrinsic
def prefetch(typingctx, array, position):
    """Hint the CPU to load the cache line of ``array[position]`` (LLVM's prefetch: read, keep in
    all cache levels); no effect on results."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte = ir.IntType(8).as_pointer()
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte] + [ir.IntType(32)] * 3), "llvm.prefetch.p0")
        flag = [ir.Constant(ir.IntType(32), v) for v in (0, 3, 1)]  # read, high locality, data cache
        builder.call(hint, [builder.bitcast(builder.gep(data, [args[1]]), byte)] + flag)
        return context.get_dummy_value()

    return types.void(array, position), codegen


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
        m = (np.uint64(words[_U(pos)]) | (np.uint64(words[_U(pos + 1)]) << np.uint64(16))) * s
        pos += 2
        if (m & _MASK32) < s:
            j, pool = redraw32(words, m, i + 1, pool)
            if j < 0:
                return -1
        else:
            j = m >> np.uint64(32)
        v = a[_U(j)]
        a[_U(j)] = a[_U(i)]
        a[_U(i)] = v
    return pool


@_inline
def shuffle16(words, pos, pool, a):
    """As :func:`shuffle32` with one 16-bit draw per step (inlined: it runs once per block)."""
    for i in range(a.size - 1, 0, -1):
        s = np.uint32(i + 1)
        m = np.uint32(words[_U(pos)]) * s
        pos += 1
        if (m & _MASK16) < s:
            j, pool = redraw16(words, m, i + 1, pool)
            if j < 0:
                return -1
        else:
            j = m >> np.uint32(16)
        v = a[_U(j)]
        a[_U(j)] = a[_U(i)]
        a[_U(i)] = v
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
def permute_image(words, pool, base, b, stride, image, start, out, order, channels, subst, strength):
    """One image's expansion, sections 1-4 of :mod:`cbirlib.core.keyexpansion` in order. Block k of
    ``out`` (rows of b*C values, ``stride`` = W*C apart, first value at ``base[k]``) receives block
    ``order[k]``'s values in their drawn order: the image's values (``image`` (H*W*C,) uint8; the
    substitution is not added), or, with ``image`` None, their positions in the batch (``start`` +
    position in the image), which is the gather index. ``out`` (H*W*C,). Returns False if the
    pool ran out. (numba compiles the ``image is None`` case separately: no test per block.)"""
    nk = base.size
    row = out.size // (nk * b)  # b*C values per block row
    n = b * row
    ahead = max(1, 64 // n)  # blocks between a prefetch and its use (one block of 3 values is quick)
    pool = block_order(words, pool, order)
    if pool < 0:
        return False
    pos = 2 * (nk - 1)
    a = np.empty(n, out.dtype)
    for k in range(nk):
        src = base[order[k]]
        if image is None and b == 1:
            for x in range(row):
                a[_U(x)] = start + src + x
        elif image is None:
            for y in range(b):
                for x in range(row):
                    a[_U(y * row + x)] = start + src + y * stride + x
        else:
            if k + ahead < nk:
                nxt = base[order[k + ahead]]
                for y in range(b):
                    prefetch(image, _U(nxt + y * stride))
            for y in range(b):
                for x in range(row):
                    a[_U(y * row + x)] = image[_U(src + y * stride + x)]
        if n <= NARROW_BOUND:
            pool = shuffle16(words, pos, pool, a)
            pos += n - 1
        else:
            pool = shuffle32(words, pos, pool, a)
            pos += 2 * (n - 1)
        if pool < 0:
            return False
        dst = base[k]
        if b == 1:
            for x in range(row):
                out[_U(dst + x)] = a[_U(x)]
        else:
            for y in range(b):
                for x in range(row):
                    out[_U(dst + y * stride + x)] = a[_U(y * row + x)]
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
        out[i] = src[_U(index[i])]


@_jit
def scatter(values, index, out):
    """``out[index[i]] = values[i]`` (1-D arrays): inverting an expanded schedule."""
    for i in range(index.size):
        out[_U(index[i])] = values[i]
