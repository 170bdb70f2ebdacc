"""Key-aware models (Kiya, Iijima, AprilPyone, Kinoshita 2023): a block cipher aligned with a Vision
Transformer's patches, and the model transformation that makes the ViT compute on encrypted images
exactly what it computes on plain ones.

The **key-aligned cipher** cuts an image into blocks of the ViT's patch size b (14 for the bundled
ViT-S/14), then, with ONE key shared by all images:

1. shuffles the blocks (block order ``block_order``);
2. permutes the b·b·C values inside every block with the SAME permutation ``in_block`` (channel
   orders are a special case of it);
3. optionally inverts a keyed subset of value positions, v → 255 − v ("negative–positive", ``flip``),
   the same positions in every block.

No additive substitution mod 256: its wrap-around is not an affine map, so no weight can absorb it.

:func:`transform_vit` absorbs all three into the model: the patch-embedding weights are permuted
(and sign-flipped) by ``in_block`` with the per-channel normalisation folded into weights and bias,
and the position-embedding rows of the patches (not the CLS row) are permuted by ``block_order``.
The transformed model on encrypted images equals the plain model on plain images up to float
rounding. Per-block or per-image keys break the identity (every block would need its own patch
embedding); convolutional networks (VGG-16) have no such structure.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import numpy as np
import torch

from ..core import cipher
from ..core.keys import Key, KeyUsageError, keystream
from .models import ModelBundle, Preprocessing


@dataclass(frozen=True)
class AlignedSchedule:
    """Expanded key-aligned key for one image shape (H, W, C).

    block_order[j]: source block shown at block position j; in_block[t]: source value (index
    (py*b + px)*C + c inside the block) shown at value t of every block; flip[t]: value t inverted."""

    shape: tuple[int, int, int]
    block_size: int
    block_order: np.ndarray
    in_block: np.ndarray
    flip: np.ndarray


def _permutation(random_bytes: np.ndarray, n: int) -> np.ndarray:
    keys64 = random_bytes[: 8 * n].view(np.uint64)
    return np.argsort(keys64, kind="stable").astype(np.int64)


def aligned_schedule(key: Key, shape: tuple[int, int, int], negpos: bool = True) -> AlignedSchedule:
    """Expand a shared key for images of ``shape`` (H, W, C) with blocks of ``key.params.block_size``."""
    if key.kind != "shared":
        raise KeyUsageError(f"the key-aligned cipher needs ONE key shared by all images (kind 'shared'), "
                            f"got a {key.kind!r} key")
    h, w, c = shape
    b = key.params.block_size
    if h % b or w % b:
        raise cipher.CipherInputError(f"image size {h}x{w} is not a multiple of the block (patch) size {b}")
    k, n = (h // b) * (w // b), b * b * c
    label = b"aligned|" + json.dumps([b, list(shape), bool(negpos)]).encode()
    stream = keystream(key.secret, 8 * k + 8 * n + n, label)
    order = _permutation(stream[: 8 * k].copy(), k)
    in_block = _permutation(stream[8 * k: 8 * k + 8 * n].copy(), n)
    flip = (stream[8 * k + 8 * n: 8 * k + 8 * n + n] & 1).astype(bool) if negpos else np.zeros(n, bool)
    return AlignedSchedule((h, w, c), b, order, in_block, flip)


def _check(images: np.ndarray, schedule: AlignedSchedule) -> np.ndarray:
    batch = images[None] if images.ndim == 3 else images
    if batch.dtype != np.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != schedule.shape:
        raise cipher.CipherInputError(f"expected uint8 images of shape (N, {', '.join(map(str, schedule.shape))}), "
                                      f"got {images.dtype} {images.shape}")
    return batch


def encrypt_aligned(images: np.ndarray, schedule: AlignedSchedule) -> np.ndarray:
    """(N, H, W, C) or (H, W, C) uint8 → ciphertexts of the same shape."""
    batch = _check(images, schedule)
    b, (h, w, c) = schedule.block_size, schedule.shape
    blocks = cipher.to_blocks(batch, b).reshape(len(batch), -1, b * b * c)
    out = blocks[:, schedule.block_order][:, :, schedule.in_block]
    out[:, :, schedule.flip] = 255 - out[:, :, schedule.flip]
    result = cipher.from_blocks(out.reshape(len(batch), -1, b * b, c), h, w, b)
    return result if images.ndim == 4 else result[0]


def decrypt_aligned(ciphertexts: np.ndarray, schedule: AlignedSchedule) -> np.ndarray:
    """Exact inverse of :func:`encrypt_aligned`."""
    batch = _check(ciphertexts, schedule)
    b, (h, w, c) = schedule.block_size, schedule.shape
    y = cipher.to_blocks(batch, b).reshape(len(batch), -1, b * b * c).copy()
    y[:, :, schedule.flip] = 255 - y[:, :, schedule.flip]
    x = np.empty_like(y)
    x[:, schedule.block_order[:, None], schedule.in_block[None, :]] = y
    result = cipher.from_blocks(x.reshape(len(batch), -1, b * b, c), h, w, b)
    return result if ciphertexts.ndim == 4 else result[0]


def transform_vit(model: torch.nn.Module, schedule: AlignedSchedule, preprocess: Preprocessing) -> torch.nn.Module:
    """A copy of a timm ViT that computes on key-aligned ciphertexts what ``model`` computes on
    plaintexts (both through ``preprocess``: scale to [0, 1], then per-channel mean/std).

    Patch embedding: with u = in_block[t], c(t) the channel of value t, s and m the
    normalisation's std and mean, the weight of input value t becomes ±W[u]·s[c(t)]/s[c(u)] and the
    bias gains Σ_t W[u]·(μ[c(t)] − μ[c(u)])/s[c(u)] (unflipped) or W[u]·(1 − μ[c(t)] − μ[c(u)])/s[c(u)]
    (flipped). Position embedding: patch rows permuted by block_order."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if proj is None or not hasattr(model, "pos_embed"):
        raise TypeError(f"{type(model).__name__} is not a timm Vision Transformer: no key transform exists "
                        "for it (a CNN such as VGG-16 has no patch embedding to absorb the key)")
    b = schedule.block_size
    if tuple(proj.kernel_size) != (b, b) or tuple(proj.stride) != (b, b):
        raise ValueError(f"block size {b} must equal the patch size {tuple(proj.kernel_size)}")
    h, w, c = schedule.shape
    k = (h // b) * (w // b)
    if preprocess.image_size != h or h != w:
        raise ValueError(f"images must enter the model unresized: image size {h}x{w}, model {preprocess.image_size}")
    extra = model.pos_embed.shape[1] - k
    if extra not in (0, 1) or getattr(model, "num_reg_tokens", 0):
        raise ValueError(f"position embedding has {model.pos_embed.shape[1]} rows for {k} patches")
    out = copy.deepcopy(model)
    weight = proj.weight.detach().double()                             # (D, C, b, b)
    d = weight.shape[0]
    wt = weight.permute(0, 2, 3, 1).reshape(d, -1)                     # (D, n), t = (py*b+px)*C + ch
    n = wt.shape[1]
    ch = torch.arange(n) % c
    u = torch.as_tensor(schedule.in_block)
    flip = torch.as_tensor(schedule.flip)
    mu = torch.tensor(preprocess.mean, dtype=torch.float64)[:c]
    sd = torch.tensor(preprocess.std, dtype=torch.float64)[:c]
    scale = sd[ch] / sd[ch[u]]
    sign = torch.where(flip, -1.0, 1.0).double()
    new_wt = wt[:, u] * (sign * scale)[None, :]
    shift = torch.where(flip, 1.0 - mu[ch] - mu[ch[u]], mu[ch] - mu[ch[u]]) / sd[ch[u]]
    bias_gain = (wt[:, u] * shift[None, :]).sum(1)
    with torch.no_grad():
        out.patch_embed.proj.weight.copy_(new_wt.reshape(d, b, b, c).permute(0, 3, 1, 2).float())
        bias = proj.bias.detach().double() if proj.bias is not None else torch.zeros(d, dtype=torch.float64)
        if out.patch_embed.proj.bias is None:
            raise ValueError("the patch embedding has no bias to absorb the normalisation shift")
        out.patch_embed.proj.bias.copy_((bias + bias_gain).float())
        pos = model.pos_embed.detach().clone()
        order = torch.as_tensor(schedule.block_order)
        pos[:, extra:] = model.pos_embed[:, extra + order]
        out.pos_embed.copy_(pos)
    return out


def transform_model(bundle: ModelBundle, schedule: AlignedSchedule) -> ModelBundle:
    """:func:`transform_vit` on a :class:`~cbirlib.learning.models.ModelBundle`; provenance says so."""
    model = transform_vit(bundle.model, schedule, bundle.preprocess)
    prov = copy.deepcopy(bundle.provenance)
    prov.notes = list(prov.notes) + [f"patch and position embeddings transformed with a key-aligned shared key "
                                     f"(block {schedule.block_size}, negative-positive {bool(schedule.flip.any())})"]
    return ModelBundle(model, bundle.preprocess, prov)
