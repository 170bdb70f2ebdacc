"""Attacks on block-scrambling ciphers, run on real MTCE ciphertexts.

The paper argues security by counting keys (eqs. 2–5). The field attacks such ciphers instead:

- :func:`solve_jigsaw` — **ciphertext only**: reassemble the block order from block compatibility,
  as a jigsaw puzzle (Chuman, Kurihara, Kiya 2017 and later). Pieces are compared either on their
  edges (``features="edges"``: pixels in place, as in block scrambling without step 1) or, for MTCE,
  on what survives in-block scrambling, the channel swap and the per-channel substitution: each
  block's value distribution, centred per channel on its circular mode so that an unknown additive
  byte cancels (``features="stats"``). Placement is a Kruskal-style greedy assembly (Gallagher 2012):
  the most confident pair relations first, clusters merged when they do not collide and fit the
  frame, then leftover slots filled by best fit. Scores: :func:`direct_comparison` (share of pieces
  in their true place) and :func:`neighbour_comparison` (share of true adjacencies kept).
- :func:`cbirlib.core.knownplaintext.known_plaintext_attack` — n plaintext–ciphertext pairs under ONE
  key (its own module).
- :func:`ciphertext_statistics` + :func:`linear_probe` — what leaks with no pair at all: simple
  statistics of the ciphertext predict the image class.

All are vectorised with numpy (no Python loop over pixels); loops run over blocks or merge steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cipher

FEATURES = ("edges", "stats")


# ----------------------------------------------------------------------------- jigsaw puzzle

def pieces(images: np.ndarray, block_size: int) -> np.ndarray:
    """(N, H, W, C) or (H, W, C) uint8 → (N, K, b, b, C) float32 blocks in row-major block order."""
    batch = images[None] if images.ndim == 3 else images
    n, h, w, c = batch.shape
    if h % block_size or w % block_size:
        raise ValueError(f"image {h}x{w} is not a whole number of {block_size}-px blocks")
    b = block_size
    return cipher.to_blocks(batch, b).reshape(n, -1, b, b, c).astype(np.float32)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, d), (K, d) → (K, K) squared Euclidean distances, float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _edge_dissimilarity(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction-based edge dissimilarity of pieces p (K, b, b, C): D_lr[i, j] is the cost of j
    right of i, D_tb[i, j] of j below i (each edge extrapolated one pixel by its gradient)."""
    k, b = len(p), p.shape[1]

    def pair(first_in, second_in, first_next, second_next):
        # first_next: predicted column/row just beyond piece i; compared with j's first
        return _sq_dist(first_next.reshape(k, -1), second_in.reshape(k, -1)) + \
            _sq_dist(first_in.reshape(k, -1), second_next.reshape(k, -1))

    if b > 1:
        right, left = p[:, :, -1], p[:, :, 0]
        beyond_right, before_left = 2 * p[:, :, -1] - p[:, :, -2], 2 * p[:, :, 0] - p[:, :, 1]
        bottom, top = p[:, -1], p[:, 0]
        beyond_bottom, before_top = 2 * p[:, -1] - p[:, -2], 2 * p[:, 0] - p[:, 1]
    else:
        right = left = beyond_right = before_left = p[:, :, 0]
        bottom = top = beyond_bottom = before_top = p[:, 0]
    d_lr = pair(right, left, beyond_right, before_left)
    d_tb = pair(bottom, top, beyond_bottom, before_top)
    return d_lr, d_tb


def circular_centre(values: np.ndarray) -> np.ndarray:
    """Values (..., n) in 0..255, shifted mod 256 so that their circular spread is smallest and
    then centred on 128: an unknown byte added mod 256 to all of them cancels out.
    Returns float32 (..., n)."""
    v = values.astype(np.int16)
    shifts = np.arange(256, dtype=np.int16)
    # variance of (v - s) mod 256 for every s, vectorised over shifts
    shifted = (v[..., None, :] - shifts[:, None]) % 256                     # (..., 256, n)
    var = shifted.astype(np.float32).var(-1)
    best = var.argmin(-1)                                                   # (...,)
    out = np.take_along_axis(shifted, best[..., None, None], -2)[..., 0, :].astype(np.float32)
    return out - out.mean(-1, keepdims=True) + 128.0


def block_statistics(p: np.ndarray, substituted: bool, quantiles: int = 9) -> np.ndarray:
    """Order-free features of pieces p (K, b, b, C): the quantiles of each block's values.

    With ``substituted`` the values of each channel are first centred on their circular mode
    (:func:`circular_centre`), so only the shape and spread of the distribution remain; the
    channel features are then averaged (channels are swapped per block). Returns (K, quantiles)."""
    k, b, _, c = p.shape
    q = np.linspace(0, 1, quantiles)
    if substituted:
        per_channel = p.reshape(k, b * b, c).transpose(0, 2, 1)             # (K, C, b*b)
        centred = circular_centre(per_channel.astype(np.uint8))
        return np.quantile(centred, q, axis=-1).mean(-1).T.astype(np.float32)  # (K, quantiles)
    return np.quantile(p.reshape(k, -1), q, axis=-1).T.astype(np.float32)


def dissimilarity(p: np.ndarray, features: str = "edges", substituted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(D_lr, D_tb), each (K, K): cost of piece j right of / below piece i (diagonal = inf)."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if features == "edges":
        d_lr, d_tb = _edge_dissimilarity(p)
    else:
        f = block_statistics(p, substituted)
        d_lr = _sq_dist(f, f)
        d_tb = d_lr.copy()
    for d in (d_lr, d_tb):
        np.fill_diagonal(d, np.inf)
    return d_lr, d_tb


@dataclass(frozen=True)
class JigsawSolution:
    """placement[r, c] = index of the piece placed at block row r, column c."""

    placement: np.ndarray
    clusters_merged: int


def _confidences(d: np.ndarray, candidates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top candidate pairs of a dissimilarity matrix with a ratio confidence (lower = better):
    d[i, j] / second-best d[i, ·]."""
    k = len(d)
    m = min(candidates, k - 1)
    best = np.argpartition(d, m, axis=1)[:, :m + 1]
    vals = np.take_along_axis(d, best, 1)
    order = np.argsort(vals, 1, kind="stable")
    best, vals = np.take_along_axis(best, order, 1), np.take_along_axis(vals, order, 1)
    second = vals[:, 1:2] if vals.shape[1] > 1 else vals[:, :1]
    ratio = vals[:, :m] / (second + 1e-9)
    i = np.repeat(np.arange(k), m)
    return i, best[:, :m].ravel(), ratio.ravel()


def solve_jigsaw(d_lr: np.ndarray, d_tb: np.ndarray, grid: tuple[int, int], candidates: int = 4) -> JigsawSolution:
    """Place K = rows x cols pieces on the grid from their pairwise dissimilarities.

    Kruskal-style: candidate relations (j right of i, j below i; ``candidates`` best per piece and
    direction, both directions of each matrix) sorted by confidence; each one merges two clusters
    when their pieces do not collide and the merged cluster still fits the grid. The largest
    cluster is placed at the top-left of its feasible window, leftover slots are filled greedily
    with the remaining piece that best fits its placed neighbours."""
    rows, cols = grid
    k = rows * cols
    if d_lr.shape != (k, k) or d_tb.shape != (k, k):
        raise ValueError(f"dissimilarities must be ({k}, {k}) for a {rows}x{cols} grid")
    edges = []
    for d, (dr, dc) in ((d_lr, (0, 1)), (d_tb, (1, 0))):
        i, j, w = _confidences(d, candidates)               # j after i
        edges.append((w, i, j, np.full(len(i), dr), np.full(len(i), dc)))
        j2, i2, w2 = _confidences(d.T, candidates)          # i before j, seen from j
        edges.append((w2, i2, j2, np.full(len(i2), dr), np.full(len(i2), dc)))
    w, ei, ej, edr, edc = (np.concatenate(x) for x in zip(*edges))
    # best buddies first: j is i's best follower and i is j's best predecessor in that direction
    best_after = {0: d_lr.argmin(1), 1: d_tb.argmin(1)}
    best_before = {0: d_lr.argmin(0), 1: d_tb.argmin(0)}
    kind = edr.astype(int)                                   # 0: horizontal, 1: vertical
    buddy = np.zeros(len(w), bool)
    for kk in (0, 1):
        sel = kind == kk
        buddy[sel] = (best_after[kk][ei[sel]] == ej[sel]) & (best_before[kk][ej[sel]] == ei[sel])
    order = np.lexsort((w, ~buddy))

    cluster_of = np.arange(k)
    pos = np.zeros((k, 2), np.int64)                        # position within its cluster
    members = {c: [c] for c in range(k)}
    occupied = {c: {(0, 0): c} for c in range(k)}
    box = {c: (0, 0, 0, 0) for c in range(k)}               # min row, max row, min col, max col
    merged = 0
    for e in order:
        a, b = int(ei[e]), int(ej[e])
        ca, cb = cluster_of[a], cluster_of[b]
        if ca == cb:
            continue
        shift = pos[a] + (edr[e], edc[e]) - pos[b]          # cluster b's coordinates move by shift
        if len(members[ca]) < len(members[cb]):             # move the smaller cluster
            ca, cb, shift = cb, ca, -shift
        (r0, r1, c0, c1), (s0, s1, t0, t1) = box[ca], box[cb]
        merged_box = (min(r0, s0 + shift[0]), max(r1, s1 + shift[0]), min(c0, t0 + shift[1]), max(c1, t1 + shift[1]))
        if merged_box[1] - merged_box[0] >= rows or merged_box[3] - merged_box[2] >= cols:
            continue
        moved = pos[members[cb]] + shift
        if any((int(r), int(c)) in occupied[ca] for r, c in moved):
            continue
        for piece, (r, c) in zip(members[cb], moved):
            pos[piece] = (r, c)
            cluster_of[piece] = ca
            occupied[ca][(int(r), int(c))] = piece
        members[ca] += members.pop(cb)
        occupied.pop(cb)
        box[ca] = tuple(int(x) for x in merged_box)
        box.pop(cb)
        merged += 1
        if len(members[ca]) == k:
            break

    main = max(members, key=lambda c: len(members[c]))
    placement = np.full((rows, cols), -1, np.int64)
    mp = pos[members[main]]
    origin = mp.min(0)
    for piece, (r, c) in zip(members[main], mp - origin):
        placement[r, c] = piece
    _fill(placement, d_lr, d_tb)
    return JigsawSolution(placement, merged)


def _fill(placement: np.ndarray, d_lr: np.ndarray, d_tb: np.ndarray) -> None:
    """Fill the empty slots (-1) with unplaced pieces, slot by slot: the empty slot with most placed
    neighbours first, each taking the unplaced piece of least summed dissimilarity."""
    rows, cols = placement.shape
    unplaced = np.setdiff1d(np.arange(rows * cols), placement[placement >= 0])
    while len(unplaced):
        placed = np.pad(placement >= 0, 1)
        neighbours = placed[:-2, 1:-1].astype(int) + placed[2:, 1:-1] + placed[1:-1, :-2] + placed[1:-1, 2:]
        neighbours[placement >= 0] = -1
        r, c = np.unravel_index(int(np.argmax(neighbours)), placement.shape)
        cost = np.zeros(len(unplaced))
        if c > 0 and placement[r, c - 1] >= 0:
            cost += d_lr[placement[r, c - 1], unplaced]
        if c + 1 < cols and placement[r, c + 1] >= 0:
            cost += d_lr[unplaced, placement[r, c + 1]]
        if r > 0 and placement[r - 1, c] >= 0:
            cost += d_tb[placement[r - 1, c], unplaced]
        if r + 1 < rows and placement[r + 1, c] >= 0:
            cost += d_tb[unplaced, placement[r + 1, c]]
        best = int(np.argmin(np.where(np.isfinite(cost), cost, np.finfo(float).max)))
        placement[r, c] = unplaced[best]
        unplaced = np.delete(unplaced, best)


def same_content(p: np.ndarray) -> np.ndarray:
    """(K, ...) pieces → (K,) ids equal for pieces with identical values (e.g. blank background),
    which any solver may swap without changing the picture."""
    _, ids = np.unique(p.reshape(len(p), -1), axis=0, return_inverse=True)
    return ids.ravel()


def direct_comparison(placement: np.ndarray, truth: np.ndarray, content: np.ndarray | None = None) -> float:
    """Share of slots holding the piece that belongs there (``truth[r, c]`` = true piece). With
    ``content`` (:func:`same_content` per piece), a piece identical to the true one counts too."""
    if content is None:
        return float((placement == truth).mean())
    return float((content[placement] == content[truth]).mean())


def neighbour_comparison(placement: np.ndarray, truth: np.ndarray, content: np.ndarray | None = None) -> float:
    """Share of the true horizontal and vertical adjacencies (a left of b, a above b) that the
    placement keeps, wherever in the frame they are (as multisets of content ids when ``content``
    is given, so swapping identical pieces costs nothing)."""
    from collections import Counter

    ids = (lambda g: g) if content is None else (lambda g: content[g])

    def pairs(grid):
        g = ids(grid)
        return (Counter(zip(g[:, :-1].ravel().tolist(), g[:, 1:].ravel().tolist())),
                Counter(zip(g[:-1].ravel().tolist(), g[1:].ravel().tolist())))
    th, tv = pairs(truth)
    ph, pv = pairs(placement)
    kept = sum((th & ph).values()) + sum((tv & pv).values())
    return kept / (sum(th.values()) + sum(tv.values()))


def chance_scores(truth: np.ndarray, content: np.ndarray | None = None, trials: int = 20,
                  seed: int = 0) -> tuple[float, float]:
    """(direct, neighbour) comparison of random placements, averaged over ``trials``: the floor
    an attack has to beat."""
    rng = np.random.default_rng(seed)
    scores = [(direct_comparison(g, truth, content), neighbour_comparison(g, truth, content))
              for g in (rng.permutation(truth.ravel()).reshape(truth.shape) for _ in range(trials))]
    return tuple(float(x) for x in np.mean(scores, 0))


def true_grid(order: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """From a cipher schedule's ``order`` (destination block j holds source block order[j]): the
    grid of which ciphertext piece belongs at each source position."""
    truth = np.empty(len(order), np.int64)
    truth[order] = np.arange(len(order))
    return truth.reshape(grid)


def circular_spread(values: np.ndarray) -> np.ndarray:
    """Circular standard deviation of byte values (..., n) on the 256-level circle, in grey levels:
    ``256 / 2π · sqrt(−2 ln R)`` with R the mean resultant length. Adding a byte mod 256 rotates
    the values and leaves it unchanged. Returns float32 (...)."""
    angle = values.astype(np.float32) * np.float32(2 * np.pi / 256)
    r = np.hypot(np.cos(angle).mean(-1), np.sin(angle).mean(-1))
    return (256 / (2 * np.pi) * np.sqrt(-2 * np.log(np.clip(r, 1e-6, 1.0)))).astype(np.float32)


def piece_view(p: np.ndarray, substituted: bool) -> np.ndarray:
    """What an attacker can paint from order-free pieces (K, b, b, C): the block mean when there is
    no substitution, else the block's circular spread (:func:`circular_spread`, averaged over
    channels) — a contrast map. Returns (K,) float32."""
    k, b, _, c = p.shape
    if not substituted:
        return p.reshape(k, -1).mean(1)
    return circular_spread(p.reshape(k, b * b, c).transpose(0, 2, 1)).mean(-1)


# ----------------------------------------------------------------------------- ciphertext-only

def ciphertext_statistics(images: np.ndarray, block_size: int, bins: int = 16) -> np.ndarray:
    """Features an attacker computes from ciphertexts alone, per image (N, H, W, C) uint8 →
    (N, F) float32: the global value histogram (``bins`` bins), mean and standard deviation,
    horizontal and vertical correlation of adjacent values, and the histogram of per-block
    circular spreads (:func:`circular_spread`), which no additive byte can hide."""
    n = len(images)
    x = images.astype(np.float32)
    hist = np.stack([np.histogram(im, bins=bins, range=(0, 256))[0] for im in images]).astype(np.float32)
    hist /= hist.sum(1, keepdims=True)

    def corr(a, b):
        a = a.reshape(n, -1) - a.reshape(n, -1).mean(1, keepdims=True)
        b = b.reshape(n, -1) - b.reshape(n, -1).mean(1, keepdims=True)
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-9)

    ch = corr(x[:, :, :-1], x[:, :, 1:])
    cv = corr(x[:, :-1], x[:, 1:])
    p = pieces(images, block_size)
    spreads = circular_spread(p.reshape(*p.shape[:2], -1, p.shape[-1]).transpose(0, 1, 3, 2)).mean(-1)  # (N, K)
    spread_hist = np.stack([np.histogram(s, bins=bins, range=(0, 100))[0] for s in spreads]).astype(np.float32)
    spread_hist /= spread_hist.sum(1, keepdims=True)
    return np.column_stack([hist, x.reshape(n, -1).mean(1) / 255, x.reshape(n, -1).std(1) / 128,
                            ch, cv, spread_hist]).astype(np.float32)


def probe_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class predictions of a standardised logistic-regression probe (scikit-learn) fitted on
    ``train_x``/``train_y``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(train_x, train_y)
    return probe.predict(test_x)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 seed: int = 0) -> float:
    """Test accuracy of :func:`probe_predictions`."""
    return float((probe_predictions(train_x, train_y, test_x, seed) == test_y).mean())
