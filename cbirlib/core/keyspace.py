"""Key-space counting: the paper's eqs. (1)-(5) and what the cipher really has, in bits.

All counts are returned as log2 (bits); factorials via ``math.lgamma``.
"""

from __future__ import annotations

import math

import pandas as pd


def log2_factorial(n: int) -> float:
    """log2(n!)."""
    return math.lgamma(n + 1) / math.log(2)


def num_blocks(height: int, width: int, block_size: int) -> int:
    """Eq. (1): k = (M x N) / (m x n) for square blocks of side ``block_size``."""
    if height % block_size or width % block_size:
        raise ValueError(f"{height}x{width} is not a multiple of block size {block_size}")
    return (height // block_size) * (width // block_size)


def paper_bits(height: int, width: int, block_size: int) -> dict[str, float]:
    """The paper's counting, term by term: eq. (2) (m n)!^k, eq. (3) x k!, eq. (4) x 256^3 x 3!."""
    k = num_blocks(height, width, block_size)
    inblock = k * log2_factorial(block_size * block_size)
    blocks = log2_factorial(k)
    subst = 3 * 8.0
    swap = math.log2(6)
    return {"k": k, "in-block scramble": inblock, "block shuffle": blocks, "substitution": subst,
            "channel swap": swap, "total": inblock + blocks + subst + swap}


def cipher_bits(height: int, width: int, block_size: int, channels: int = 3, strength: int = 255,
                swap: bool = True) -> dict[str, float]:
    """Distinct encryption maps of the cipher as implemented (Algorithm 1 read literally):

    - step 1 permutes all b*b*C values of each block: ((b*b*C)!)^k, not (b*b)!^k;
    - substitution is per block and channel: (strength + 1)^(C*k), not 256^3 once;
    - the channel swap adds nothing: composed with a uniformly random in-block permutation it
      gives another one, so its 3!^k choices are already counted in step 1.
    """
    k = num_blocks(height, width, block_size)
    inblock = k * log2_factorial(block_size * block_size * channels)
    blocks = log2_factorial(k)
    subst = channels * k * math.log2(strength + 1)
    return {"k": k, "in-block scramble": inblock, "block shuffle": blocks, "substitution": subst,
            "channel swap": 0.0, "total": inblock + blocks + subst}


def key_entropy_bits(length: int, symbols: int) -> float:
    """Eq. (5): H(K) = L log2(N) for a key of L symbols with N values each."""
    return length * math.log2(symbols)


def keyspace_table(height: int = 224, width: int = 224, block_sizes=(1, 8), channels: int = 3,
                   strength: int = 255, key_bits: int = 256) -> pd.DataFrame:
    """Tidy rows (block_size, count, term, bits, source) comparing the paper's counting with the
    cipher's, plus the bound that matters: a key of ``key_bits`` bits."""
    rows = []
    for b in block_sizes:
        for count, terms in (("paper eq. (4)", paper_bits(height, width, b)),
                             ("cipher as implemented", cipher_bits(height, width, b, channels, strength))):
            for term in ("in-block scramble", "block shuffle", "substitution", "channel swap", "total"):
                rows.append(dict(block_size=b, count=count, term=term, bits=terms[term], source="ours"))
        rows.append(dict(block_size=b, count="effective key strength", term="total",
                         bits=min(key_bits, cipher_bits(height, width, b, channels, strength)["total"]),
                         source="ours"))
    return pd.DataFrame(rows)
