"""MTCE on 16-bit images (medical pixels of 12-16 bits), exactly reversible.

A key of ``depth=16`` encrypts uint16 arrays with the same three steps as the 8-bit cipher: the
values of each block scrambled, the blocks shuffled, then one substitution value per block and
channel added, here drawn from 0..``strength`` (up to 65535) and added mod 2^16. The
permutations come from the 8-bit schedule of a key derived from it (:meth:`Key.derived`, so the
16-bit key's own keystream is never reused for them); the substitution values from the 16-bit
key's AES-256-CTR keystream, one 64-bit word each reduced mod (strength + 1) (a bias below 2^-47).
:func:`cbirlib.core.cipher.encrypt` and :func:`~cbirlib.core.cipher.decrypt` call :func:`expand`
for such keys; the gather, the add and their inverse are the 8-bit cipher's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Sequence

import numpy as np

from .keys import CipherParams, Key, keystreams
from .schedule import Schedule, Workspace, check_keys, expand as expand8, row_addend

PERMUTATION_LABEL = "mtce-16/permutations"


def permutation_params(params: CipherParams) -> CipherParams:
    """The 8-bit parameters whose schedule gives a 16-bit key's permutations (no substitution)."""
    return replace(params, depth=8, strength=0)


def expand(keys: Sequence[Key], shape: tuple[int, int, int], workspace: Workspace | None = None) -> Schedule:
    """Expand N 16-bit keys into a :class:`~cbirlib.core.schedule.Schedule` for uint16 images of
    ``shape`` (H, W, C): the permutations of their derived 8-bit keys, and uint16 substitution
    values (N, K, C)."""
    params = check_keys(keys, shape)
    if params.depth != 16:
        raise ValueError(f"cipher16 expands 16-bit keys, got depth {params.depth}")
    derived = [k.derived(PERMUTATION_LABEL, permutation_params(params)) for k in keys]
    s8 = expand8(derived, shape, workspace)
    h, w, c = shape
    b = params.block_size
    count = (h // b) * (w // b) * c
    label = b"mtce-16/substitution|" + json.dumps([params.record(), list(shape)], sort_keys=True).encode()
    words = keystreams([k.secret for k in keys], 8 * count, label).copy().view(np.uint64)
    subst = (words % np.uint64(params.strength + 1)).astype(np.uint16).reshape(len(keys), -1, c)
    return replace(s8, subst=subst, row_addend=row_addend(subst, shape, b))
