"""MTCE keys expanded into schedules: what each destination value of a ciphertext takes from the
plaintext (one gather index per image) and the bytes added to it (see :mod:`cbirlib.core.cipher` for
the cipher, :mod:`cbirlib.core.keyexpansion` for how version 2 draws the permutations).

:func:`expand` gives a :class:`Schedule` for N keys; :func:`encrypt_while_expanding` permutes each
image as its key is expanded (version 2, per-image keys: no index is written). Buffers that one
chunk of images leaves for the next live in a :class:`Workspace`.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import keyexpansion
from .keys import CipherParams, Key, KeyUsageError, keystream, keystream_row_bytes, keystreams

_PERMS3 = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], dtype=np.uint8)


class CipherInputError(ValueError):
    """An image, batch or key that the cipher cannot take; the message says why."""


@dataclass(frozen=True)
class Schedule:
    """Expanded keys for N images of one (padded) shape, in block-major layout.

    Attributes:
        shape: (H, W, C), H and W multiples of ``block_size``.
        block_size: b.
        index: (N, H*W*C) int32 (int64 for key expansion 1, or where N*H*W*C >= 2^31):
            ciphertext value i of image r is value index[r, i] of the batch flattened as a whole
            (image r's values start at r*H*W*C).
        subst: (N, K, C) uint8: substitution byte per destination block and channel.
        row_addend: (N, H/b, W*C) uint8: ``subst`` laid out along one pixel row of each block
            row (the same for the b pixel rows of a block row), for a fast broadcast add.
        order: (N, K) int64: destination block j holds source block order[j].
        channel_codes: (N, K) uint8: which of the 3! channel orders destination block j has
            (:attr:`channels`; unused where ``swap`` is off or C = 1).
        swap: whether the channels are permuted.
    """

    shape: tuple[int, int, int]
    block_size: int
    index: np.ndarray
    subst: np.ndarray
    row_addend: np.ndarray
    order: np.ndarray
    channel_codes: np.ndarray
    swap: bool

    @property
    def channels(self) -> np.ndarray:
        """(N, K, C) uint8: the channel order sigma_j of destination block j (the identity
        where ``swap`` is off or the images are grey). Computed on demand: encryption never
        needs it, since step 1's uniform in-block permutation already contains it."""
        n, k = self.channel_codes.shape
        c = self.shape[2]
        if self.swap and c == 3:
            return _PERMS3[self.channel_codes]
        return np.broadcast_to(np.arange(c, dtype=np.uint8), (n, k, c))


def _block_view(flat: np.ndarray, h: int, w: int, c: int, b: int) -> np.ndarray:
    """(N, H*W*C) array seen as (N, H/b, W/b, b, b, C) blocks (a view, no copy)."""
    return flat.reshape(len(flat), h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)


def to_blocks(batch: np.ndarray, b: int) -> np.ndarray:
    """(N, H, W, C) -> (N, K, b*b, C) block-major copy (blocks in row-major order)."""
    n, h, w, c = batch.shape
    return _block_view(batch.reshape(n, -1), h, w, c, b).reshape(n, (h // b) * (w // b), b * b, c)


def from_blocks(blocks: np.ndarray, h: int, w: int, b: int) -> np.ndarray:
    """Inverse of :func:`to_blocks`: (N, K, b*b, C) -> (N, H, W, C)."""
    n, _, _, c = blocks.shape
    out = np.empty((n, h * w * c), dtype=blocks.dtype)
    _block_view(out, h, w, c, b)[...] = blocks.reshape(n, h // b, w // b, b, b, c)
    return out.reshape(n, h, w, c)


class Workspace:
    """Buffers reused from one chunk of images to the next. Fresh large allocations are
    page-faulted in on first touch, which on virtual machines costs more than the cipher itself."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = self._buffers[name] = np.empty(size, dtype=np.uint8)
        return buf[:size].view(dtype).reshape(shape)


_THREAD = threading.local()


def _scratch() -> Workspace:
    """This thread's buffers for what no result keeps (keystreams): reused from call to call."""
    ws = getattr(_THREAD, "workspace", None)
    if ws is None:
        ws = _THREAD.workspace = Workspace()
    return ws


def _low_word(keys64: np.ndarray, largest: int) -> np.ndarray:
    """A view of the least significant 16 bits (32 if ``largest`` needs them) of each int64."""
    dtype = np.uint16 if largest < 1 << 16 else np.uint32
    words = 8 // np.dtype(dtype).itemsize
    lsb = 0 if sys.byteorder == "little" else words - 1
    return keys64.view(dtype)[..., lsb::words]


def _stream_label(params: CipherParams, shape: tuple[int, int, int]) -> bytes:
    record = params.record()
    if params.expansion == 1:  # version 1 labels its stream without the field, as it always did
        record.pop("expansion")
    return b"mtce-expand|" + json.dumps([record, list(shape)], sort_keys=True).encode()


def check_keys(keys: Sequence[Key], shape: tuple[int, int, int]) -> CipherParams:
    """The parameters of a batch's keys, after checking that they can encrypt images of ``shape``."""
    if not keys:
        raise CipherInputError("no keys given")
    params = keys[0].params
    for k in keys:
        if not isinstance(k, Key):
            raise CipherInputError(f"expected cbirlib.core.keys.Key, got {type(k).__name__}")
        if k.kind == "master":
            raise KeyUsageError("a master key does not encrypt images: use key.for_image(image_id) "
                                "(per-image keys) or a key of kind 'shared'")
        if k.params != params:
            raise KeyUsageError(f"all keys of one batch need the same parameters: {k.params} != {params}")
    h, w, _ = shape
    if h % params.block_size or w % params.block_size:
        raise CipherInputError(f"{h}x{w} is not a multiple of block size {params.block_size}")
    return params


def expand(keys: Sequence[Key], shape: tuple[int, int, int], workspace: Workspace | None = None) -> Schedule:
    """Expand N keys (same parameters) into one :class:`Schedule` for images of ``shape``
    (H, W, C), with the keys' expansion version (:mod:`cbirlib.core.keyexpansion`)."""
    params = check_keys(keys, shape)
    h, w, c = shape
    b = params.block_size
    ws = workspace or Workspace()
    index, order, channel_codes, subst = (_expand_v1 if params.expansion == 1 else _expand_v2)(keys, shape, ws)
    return Schedule((h, w, c), b, index, subst, row_addend(subst, shape, b), order, channel_codes, params.swap)


def row_addend(subst: np.ndarray, shape: tuple[int, int, int], b: int) -> np.ndarray:
    """(N, K, C) substitution bytes laid out along one pixel row of each block row: (N, H/b, W*C)."""
    h, w, c = shape
    n = len(subst)
    if b == 1:
        return subst.reshape(n, h, w * c)
    return np.repeat(subst.reshape(n, h // b, w // b, 1, c), b, axis=3).reshape(n, h // b, w * c)


def _expand_v2(keys: Sequence[Key], shape: tuple[int, int, int], ws: Workspace,
               images: np.ndarray | None = None, out: np.ndarray | None = None):
    """Key expansion 2: Fisher-Yates shuffles driven by 16-bit keystream words
    (:mod:`cbirlib.core.keyexpansion`). Returns index (N, H*W*C), order (N, K), channel-order codes
    (N, K) and substitution bytes (N, K, C). With ``images`` and ``out`` (N, H, W, C) uint8, each
    image is permuted into ``out`` as its key is expanded (no index is written; index is None)."""
    params = keys[0].params
    h, w, c = shape
    b = params.block_size
    nk, n, nimg = (h // b) * (w // b), b * b * c, len(keys)
    total = nk * n
    pool = keyexpansion.first_pool(nk, n, params.strength)
    fixed, nwords = keyexpansion.stream_words(nk, n, c, pool=pool)
    label = _stream_label(params, shape)
    # one image's stream at a time, made just before it is used: it is then still in the cache
    stream = _scratch().get("stream", (1, keystream_row_bytes(2 * nwords)), np.uint8)
    gather = images is not None
    # int32 halves the bytes the kernel writes (a third faster); int64 where a batch is too big
    index = None if gather else ws.get("index", (nimg, h, w, c), np.int32 if nimg * total < 2 ** 31 else np.int64)
    order = np.empty((nimg, nk), dtype=np.int64)
    codes = np.empty((nimg, nk), dtype=np.uint8)
    subst = np.empty((nimg, nk * c), dtype=np.uint8)
    for r in range(nimg):
        words, more = _words(keystreams([keys[r].secret], 2 * nwords, label, out=stream)[0]), pool
        while not keyexpansion.permute_image(
                words, fixed, block_size=b, image=images[r] if gather else None, start=r * total,
                out=out[r] if gather else index[r], order=order[r], channels=codes[r], subst=subst[r],
                strength=params.strength):
            more = 4 * more + 64  # the pool ran out: a longer stream has the same start, so the same result
            words = _words(keystream(keys[r].secret, 2 * (fixed + more), label))
    if index is not None:
        index = index.reshape(nimg, total)
    return index, order, codes, subst.reshape(nimg, nk, c)


def _words(stream: np.ndarray) -> np.ndarray:
    """Keystream bytes as little-endian 16-bit words (native uint16 for the compiled kernel)."""
    words = stream.view("<u2")
    return words if sys.byteorder == "little" else words.astype(np.uint16)


def _expand_v1(keys: Sequence[Key], shape: tuple[int, int, int], ws: Workspace):
    """Key expansion 1 (key files of version 1): the block order sorts K random 64-bit keys and
    each block's values sort n random keys that carry the value's index in their low bits."""
    params = keys[0].params
    h, w, c = shape
    b = params.block_size
    nk, n, nimg = (h // b) * (w // b), b * b * c, len(keys)
    total = nk * n
    # keystream per image: value sort keys (i64, K*n) | block sort keys (u64, K)
    #                      | channel orders (u32, K) | substitution bytes (u32, K*C)
    sizes = np.array([8 * total, 8 * nk, 4 * nk, 4 * nk * c])
    offs = np.concatenate([[0], np.cumsum(sizes)])
    nbytes = int(offs[-1])
    streams = keystreams([k.secret for k in keys], nbytes, _stream_label(params, shape),
                         out=ws.get("stream", (nimg, keystream_row_bytes(nbytes)), np.uint8))

    def part(i: int, dtype) -> np.ndarray:  # a view: row stride is a multiple of 16 bytes
        return streams[:, offs[i]:offs[i + 1]].view(dtype)

    order = np.argsort(part(1, np.uint64), axis=1)  # (N, K): destination j <- source block order[j]
    base, off = keyexpansion.block_offsets(h, w, c, b)  # image-flat index of block k's value t = base[k] + off[t]
    # Sort keys: random high bits, the value's in-block offset off[t] in the low 16 (or 32) bits,
    # written through a narrow view (one pass, no read-modify-write); the keys are then distinct.
    keys64 = part(0, np.int64).reshape(nimg, nk, n)
    low = _low_word(keys64, int(off[-1]))
    low[...] = off
    keys64.sort(axis=2)  # ties need equal random high bits: probability < n^2 / 2^(64 - low bits) per block
    # Destination value t of block j lives at base[j] + off[t]; its source is base[order[j]] + the
    # sorted offset (+ the image's start in the batch): one add from the low words into the index.
    start = base[order] + (np.arange(nimg, dtype=np.int64) * total)[:, None]
    index = ws.get("index", (nimg, total), np.int64)
    np.add(low.reshape(nimg, h // b, w // b, b, b, c), start.reshape(nimg, h // b, w // b, 1, 1, 1),
           out=_block_view(index, h, w, c, b), dtype=np.int64)
    codes = (part(2, np.uint32) % 6).astype(np.uint8)
    subst = (part(3, np.uint32).reshape(nimg, nk, c) % (params.strength + 1)).astype(np.uint8)
    return index, order, codes, subst


def encrypt_while_expanding(batch: np.ndarray, keys: list[Key], shape: tuple[int, int, int], ws: Workspace,
                out: np.ndarray) -> None:
    """Per-image keys of expansion 2: each image is permuted while its key is expanded (no gather
    index is materialised), then the substitution bytes are added. Same ciphertext as
    ``apply_schedule(batch, expand(keys, shape))``."""
    b = keys[0].params.block_size
    _, _, _, subst = _expand_v2(keys, shape, ws, images=batch, out=out)
    h, w, c = shape
    rows = out.reshape(len(out), h // b, b, w * c)  # a view: out is a contiguous slice
    rows += row_addend(subst, shape, b)[:, :, None, :]
