"""The known-plaintext attack on MTCE under one shared key.

:func:`known_plaintext_attack` takes n plaintext–ciphertext pairs under ONE key: every ciphertext
value is ``plaintext[index[t]] + subst`` with the same index and byte for every image, so the
vector of a value across the n images, minus its first entry, is a fingerprint that survives the
substitution; fingerprints join ciphertext positions to plaintext positions, block votes fix the
block order, and the per-block substitution bytes follow. The recovered schedule then decrypts
ciphertexts it has never seen.

Vectorised with numpy; loops run over blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import keyexpansion


@dataclass(frozen=True)
class RecoveredKey:
    """What a known-plaintext attack recovered for one image shape.

    index[t] = recovered source position of ciphertext value t (image-flat; -1 unknown);
    offset[t] = recovered substitution byte added to value t."""

    index: np.ndarray
    offset: np.ndarray
    block_order: np.ndarray

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        """Decrypt (N, H, W, C) uint8 ciphertexts with the recovered schedule (unknown values 0)."""
        n = len(ciphertexts)
        flat = ciphertexts.reshape(n, -1)
        out = np.zeros_like(flat)
        known = self.index >= 0
        out[:, self.index[known]] = flat[:, known] - self.offset[known].astype(np.uint8)
        return out.reshape(ciphertexts.shape)


def _fingerprints(values: np.ndarray) -> np.ndarray:
    """(n, T) uint8 → (T,) int64 class ids of the columns' differences to their first row mod 256
    (ids comparable only within one call)."""
    diff = (values[1:].astype(np.int16) - values[:1]) % 256
    if len(diff) == 0:
        return np.zeros(values.shape[1], np.int64)
    _, ids = np.unique(diff.T.astype(np.uint8), axis=0, return_inverse=True)
    return ids.ravel().astype(np.int64)


def known_plaintext_attack(plaintexts: np.ndarray, ciphertexts: np.ndarray, block_size: int) -> RecoveredKey:
    """Recover a shared MTCE key's schedule from n plaintext–ciphertext pairs (N, H, W, C) uint8.

    1. Fingerprint every position: its n values minus the first, mod 256 (the substitution byte
       of a ciphertext value is the same in every image, so it cancels).
    2. Block order: destination block j takes the source block whose values share the most
       fingerprints with it (one-to-one, by linear assignment).
    3. Per destination block and channel, the substitution byte is the most common difference
       between a ciphertext value and a fingerprint-matched plaintext value (first image).
    4. Within each block pair, ciphertext values are matched to plaintext values of the same
       fingerprint and consistent byte; ties between identical values are broken in order.
    """
    from scipy.optimize import linear_sum_assignment

    if plaintexts.shape != ciphertexts.shape or plaintexts.ndim != 4:
        raise ValueError(f"need (N, H, W, C) pairs of one shape, got {plaintexts.shape} and {ciphertexts.shape}")
    n, h, w, c = plaintexts.shape
    b = block_size
    if h % b or w % b:
        raise ValueError(f"image {h}x{w} is not a whole number of {b}-px blocks")
    p_flat, c_flat = plaintexts.reshape(n, -1), ciphertexts.reshape(n, -1)
    ids = _fingerprints(np.concatenate([p_flat, c_flat], 1))
    t_total = h * w * c
    fp_p, fp_c = ids[:t_total], ids[t_total:]
    base, off = keyexpansion.block_offsets(h, w, c, b)
    k = len(base)
    block_pos = base[:, None] + off[None, :]                           # (K, n_b) image-flat positions
    cls_p, cls_c = fp_p[block_pos], fp_c[block_pos]                    # (K, n_b)

    # 2. votes: for each (dest block j, source block q), how many of j's values find a value of the
    #    same fingerprint in q (multiset overlap of the two fingerprint histograms)
    from scipy import sparse

    n_cls = int(ids.max()) + 1
    rows_k = np.repeat(np.arange(k), cls_p.shape[1])
    hist_p = sparse.csr_matrix((np.ones(cls_p.size), (rows_k, cls_p.ravel())), shape=(k, n_cls))
    hist_c = sparse.csr_matrix((np.ones(cls_c.size), (rows_k, cls_c.ravel())), shape=(k, n_cls))
    if n_cls * k <= 5e7:                                               # small: exact multiset overlap
        hp, hc = hist_p.toarray(), hist_c.toarray()
        score = np.stack([np.minimum(hc[j][None, :], hp).sum(1) for j in range(k)])
    else:                                                              # large: shared fingerprints only
        score = ((hist_c > 0).astype(np.float64) @ (hist_p > 0).astype(np.float64).T).toarray()
    _, block_order = linear_sum_assignment(-score)

    index = np.full(t_total, -1, np.int64)
    offset = np.zeros(t_total, np.int64)
    ch_of = off % c
    first_p, first_c = p_flat[0].astype(np.int64), c_flat[0].astype(np.int64)
    for j in range(k):
        q = block_order[j]
        tpos, spos = block_pos[j], block_pos[q]
        # 3. substitution byte per channel: the mode of (c - p) over fingerprint-matched pairs
        match = cls_c[j][:, None] == cls_p[q][None, :]                 # (n_b, n_b)
        diffs = (first_c[tpos][:, None] - first_p[spos][None, :]) % 256
        byte = np.zeros(c, np.int64)
        for ch in range(c):
            rows = ch_of == ch
            d = diffs[rows][match[rows]]
            byte[ch] = np.bincount(d, minlength=256).argmax() if d.size else 0
        # 4. one-to-one: a ciphertext value and a plaintext value match when their fingerprint and
        #    first-image value (less the substitution byte) agree; within a group of identical keys
        #    the i-th ciphertext value (by position) takes the i-th plaintext value
        key_c = cls_c[j] * 256 + (first_c[tpos] - byte[ch_of]) % 256
        key_p = cls_p[q] * 256 + first_p[spos]
        order_c, order_p = np.argsort(key_c, kind="stable"), np.argsort(key_p, kind="stable")
        sorted_c, sorted_p = key_c[order_c], key_p[order_p]
        rank = np.arange(len(sorted_c)) - np.searchsorted(sorted_c, sorted_c, "left")
        start = np.searchsorted(sorted_p, sorted_c, "left")
        found = rank < np.searchsorted(sorted_p, sorted_c, "right") - start
        t = order_c[found]
        index[tpos[t]] = spos[order_p[start[found] + rank[found]]]
        offset[tpos[t]] = byte[ch_of[t]]
    return RecoveredKey(index, offset, block_order)
