"""Attacks on the cipher: each must succeed where it should and stay at chance where it should."""

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.ndimage import gaussian_filter

from cbirlib.core import attacks, cipher, keys, knownplaintext
from cbirlib.studies import securitystudy


def smooth_image(size=96, seed=1) -> np.ndarray:
    f = gaussian_filter(np.random.default_rng(seed).normal(size=(size, size, 3)), (6, 6, 0))
    return ((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)


@pytest.mark.parametrize("b", [4, 8, 16])
def test_solver_reassembles_shuffled_blocks_of_a_smooth_image(b):
    img = smooth_image()
    p = attacks.pieces(img, b)[0]
    perm = np.random.default_rng(0).permutation(len(p))
    d_lr, d_tb = attacks.dissimilarity(p[perm], "edges")
    grid = (96 // b, 96 // b)
    t0 = time.perf_counter()
    sol = attacks.solve_jigsaw(d_lr, d_tb, grid)
    assert time.perf_counter() - t0 < 20          # bounded on small inputs (not a benchmark)
    truth = attacks.true_grid(perm, grid)
    assert attacks.direct_comparison(sol.placement, truth) == 1.0
    assert attacks.neighbour_comparison(sol.placement, truth) == 1.0
    assert sorted(sol.placement.ravel()) == list(range(len(p)))   # a permutation: every piece once


def test_scores_of_identity_reversal_and_identical_pieces():
    truth = np.arange(12).reshape(3, 4)
    assert attacks.direct_comparison(truth, truth) == 1.0
    assert attacks.neighbour_comparison(truth, truth) == 1.0
    flipped = truth[:, ::-1]
    assert attacks.neighbour_comparison(flipped, truth) == pytest.approx(8 / 17)  # only the 8 vertical pairs kept
    shifted = np.roll(truth, 1, axis=1)
    assert attacks.direct_comparison(shifted, truth) == 0.0
    assert attacks.neighbour_comparison(shifted, truth) == pytest.approx((6 + 8) / 17)
    same = np.zeros(12, int)                                   # all pieces identical: any placement is right
    assert attacks.direct_comparison(shifted, truth, same) == 1.0
    assert attacks.neighbour_comparison(shifted, truth, same) == 1.0


def test_mtce_per_image_jigsaw_stays_near_chance_on_noise():
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    key = keys.from_seed(1, keys.CipherParams(block_size=8)).for_image("x")
    enc = cipher.encrypt(img, key)
    order = cipher.expand([key], img.shape).order[0]
    r = securitystudy.jigsaw_one(enc[None], img[None], order, 8, "stats", True)
    assert abs(r["neighbour"] - r["chance_neighbour"]) < 0.1
    assert abs(r["direct"] - r["chance_direct"]) < 0.1


def _pairs(n, key, size=16, seed=0):
    rng = np.random.default_rng(seed)
    plain = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return plain, cipher.encrypt(plain, key)


def test_known_plaintext_recovers_a_shared_key_exactly():
    params = keys.CipherParams(block_size=4, strength=255)
    shared = keys.Key(bytes(range(32)), params, "shared")
    plain, enc = _pairs(4, shared)
    t0 = time.perf_counter()
    rec = knownplaintext.known_plaintext_attack(plain, enc, 4)
    assert time.perf_counter() - t0 < 20
    sched = cipher.expand([shared], plain.shape[1:])
    assert np.array_equal(rec.index, sched.index[0])
    assert np.array_equal(rec.block_order, sched.order[0])
    unseen, unseen_enc = _pairs(3, shared, seed=9)
    assert np.array_equal(rec.decrypt(unseen_enc), unseen)


def test_known_plaintext_learns_nothing_from_per_image_keys():
    master = keys.from_seed(2, keys.CipherParams(block_size=4))
    plain = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    enc = cipher.encrypt_with_ids(plain, [f"i{k}" for k in range(6)], master)
    rec = knownplaintext.known_plaintext_attack(plain[:5], enc[:5], 4)
    recovered = rec.decrypt(enc[5:])
    assert (recovered == plain[5:]).mean() < 0.02              # chance is 1/256


def test_one_pair_is_not_enough():
    shared = keys.Key(bytes(32), keys.CipherParams(block_size=4), "shared")
    plain, enc = _pairs(1, shared)
    unseen, unseen_enc = _pairs(2, shared, seed=5)
    rec = knownplaintext.known_plaintext_attack(plain, enc, 4)
    assert (rec.decrypt(unseen_enc) == unseen).mean() < 0.5


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 255), st.integers(0, 2**31 - 1))
def test_block_statistics_ignore_the_substitution_byte(shift, seed):
    p = np.random.default_rng(seed).normal(120, 20, (5, 4, 4, 3)).clip(0, 255).astype(np.uint8)
    shifted = (p.astype(np.int16) + shift) % 256
    a = attacks.block_statistics(p.astype(np.float32), substituted=True)
    b = attacks.block_statistics(shifted.astype(np.float32), substituted=True)
    assert np.allclose(a, b, atol=1e-3)


def test_ciphertext_statistics_and_probe():
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 60, (20, 16, 16, 3), dtype=np.uint8)
    bright = rng.integers(180, 256, (20, 16, 16, 3), dtype=np.uint8)
    x = attacks.ciphertext_statistics(np.concatenate([dark, bright]), 4)
    assert x.shape[0] == 40 and np.isfinite(x).all()
    y = np.repeat([0, 1], 20)
    assert attacks.linear_probe(x[::2], y[::2], x[1::2], y[1::2]) == 1.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="whole number of 8-px blocks"):
        attacks.pieces(np.zeros((20, 20, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="features must be one of"):
        attacks.dissimilarity(np.zeros((4, 2, 2, 3), np.float32), "colour")
    with pytest.raises(ValueError, match="dissimilarities must be"):
        attacks.solve_jigsaw(np.zeros((4, 4)), np.zeros((4, 4)), (3, 3))
    with pytest.raises(ValueError, match="pairs of one shape"):
        knownplaintext.known_plaintext_attack(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="key_mode"):
        securitystudy._keys(keys.from_seed(0), ["a"], "per-class")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 255), st.integers(0, 2**31 - 1))
def test_circular_spread_ignores_the_substitution_byte(shift, seed):
    v = np.random.default_rng(seed).normal(100, 15, (4, 64)).clip(0, 255).astype(np.uint8)
    shifted = ((v.astype(np.int16) + shift) % 256).astype(np.uint8)
    assert np.allclose(attacks.circular_spread(v), attacks.circular_spread(shifted), atol=1e-2)
    assert (attacks.circular_spread(np.full((1, 8), 7, np.uint8)) < 1e-2).all()


def test_the_probe_table_gives_each_accuracy_its_count_and_interval():
    from cbirlib.studies import securitystudy

    rng = np.random.default_rng(0)
    levels = (40, 128, 215)

    def split(n):
        y = np.repeat(np.arange(3), n)
        x = np.stack([np.clip(rng.normal(levels[k], 20, (16, 16, 3)), 0, 255).astype(np.uint8) for k in y])
        return x, y, [f"i{k}-{i}" for i, k in enumerate(y)]

    t = securitystudy.probe_table(split(8), split(4), [8], strength=0)
    acc = t[t.metric == "probe_accuracy"]
    assert (acc.n == 12).all() and (acc.ci_low <= acc.value).all() and (acc.value <= acc.ci_high).all()
    assert t[t.metric == "chance"].n.isna().all()
