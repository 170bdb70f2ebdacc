"""Key expansion 2 (Fisher-Yates from keystream words): exact, uniform, versioned."""

import hashlib
import json

import numpy as np
import pytest
from scipy import stats

from cbirlib.core import cipher, keyexpansion, keys, schedule
from cbirlib.core.keys import CipherParams, KeyFileError

IMG = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()[:32]


WORDS16 = np.arange(1 << 16, dtype=np.uint16)


def exactly_uniform(results: np.ndarray, s: int) -> bool:
    """Whether the draws of all 2^16 words (-1 = rejected) give each of 0..s-1 exactly
    floor(2^16 / s) times and reject the remaining 2^16 mod s words."""
    counts = np.bincount(results + 1, minlength=s + 1)
    return len(counts) == s + 1 and counts[0] == (1 << 16) % s and bool((counts[1:] == (1 << 16) // s).all())


def test_every_16_bit_bound_is_exactly_uniform():
    """Lemire's method, exhaustively: for every bound a 16-bit draw may use (1..4096), each result
    is produced by exactly floor(2^16 / s) of the 2^16 words, and the rest are rejected."""
    for s in range(1, keyexpansion.NARROW_BOUND + 1):
        assert exactly_uniform(keyexpansion.bounded16(WORDS16, s), s), s


def test_the_uniformity_check_rejects_biased_draws():
    """The check above has power: the usual shortcuts (a word modulo s; Lemire's multiply
    without its rejection step) fail it for the bounds the cipher uses most."""
    for s in (6, 191, 192, 3000):
        assert not exactly_uniform(WORDS16.astype(np.int64) % s, s), s
        assert not exactly_uniform((WORDS16.astype(np.int64) * s) >> 16, s), s


def permutation_counts(shape, block, n_keys, read):
    """How often each arrangement occurs over ``n_keys`` keys (strength 0, no swap)."""
    master = keys.from_seed(11, CipherParams(block, 0, False))
    sched = cipher.expand([master.for_image(str(i)) for i in range(n_keys)], shape)
    seen = [tuple(read(sched, r)) for r in range(n_keys)]
    _, counts = np.unique(np.array(seen), axis=0, return_counts=True)
    return counts


@pytest.mark.parametrize("shape, block, outcomes, read", [
    ((2, 2, 1), 1, 24, lambda s, r: s.order[r]),  # the order of 4 blocks
    ((1, 1, 3), 1, 6, lambda s, r: s.index[r] - r * 3),  # the 3 values of one block
    ((2, 2, 1), 2, 24, lambda s, r: s.index[r] - r * 4),  # the 4 values of a 2x2 block
])
def test_permutations_are_uniform_chi_square(shape, block, outcomes, read):
    counts = permutation_counts(shape, block, 200 * outcomes, read)
    assert len(counts) == outcomes  # every arrangement occurs
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_a_running_out_pool_gives_the_same_schedule(monkeypatch):
    """The pool's size does not change the result: with an empty first pool every rejection
    makes the expansion retry with a longer stream, and the schedules are identical."""
    master = keys.from_seed(5, CipherParams(16, 200, True))
    ks = [master.for_image(f"i{i}") for i in range(6)]
    shape = (64, 48, 3)  # n = 768 values per block: several rejections per image
    normal = cipher.expand(ks, shape)
    retries = []
    real = schedule.keystream
    monkeypatch.setattr(keyexpansion, "first_pool", lambda *a: 0)
    monkeypatch.setattr(schedule, "keystream", lambda *a: retries.append(1) or real(*a))
    starved = cipher.expand(ks, shape)
    assert len(retries) >= 6
    for field in ("index", "order", "channels", "subst"):
        assert np.array_equal(getattr(normal, field), getattr(starved, field)), field


def test_wide_blocks_use_32_bit_draws_and_round_trip():
    key = keys.from_seed(1, CipherParams(40, 255, True)).for_image("x")  # n = 4800 > 4096
    img = np.random.default_rng(1).integers(0, 256, (80, 40, 3), dtype=np.uint8)
    enc = cipher.encrypt(img, key)
    assert np.array_equal(cipher.decrypt(enc, key), img)
    assert np.array_equal(cipher.encrypt_steps(img, key)["3b substitute"], enc)


# Ciphertexts of IMG under keys.from_seed(7, params).for_image("golden"): expansion 1 as written
# by cbirlib before expansion 2 existed (so old keys still decrypt old ciphertexts), and
# expansion 2 as frozen now (a change of the definition must be a new version).
GOLDEN = {
    (4, 255, True, 1): "3ce2cd60fc4ff76f87e10e32694369ee",
    (1, 100, False, 1): "fcff5cb1677d201d32613b31d8b351e8",
    (8, 0, True, 1): "a5641c528b98b53f447e6e2e5fde82e5",
    (4, 255, True, 2): "8130e2e8fc260194a9f91908724d8744",
    (1, 100, False, 2): "acc476edb15fc09e99c0fcbcd1787366",
    (8, 0, True, 2): "92daaa6553c5e2b4c3580555e4686cb3",
}


@pytest.mark.parametrize("params", sorted(GOLDEN))
def test_ciphertexts_of_each_expansion_version_are_frozen(params):
    b, s, swap, version = params
    key = keys.from_seed(7, CipherParams(b, s, swap, expansion=version)).for_image("golden")
    enc = cipher.encrypt(IMG, key)
    assert digest(enc) == GOLDEN[params]
    assert np.array_equal(cipher.decrypt(enc, key), IMG)


def version1_key_file(key: keys.Key) -> str:
    """The key file cbirlib wrote before expansion 2: version 1, no expansion field."""
    payload = {"format": keys.KEY_FILE_FORMAT, "version": 1, "kind": key.kind, "secret": key.secret.hex(),
               "params": {"block_size": key.params.block_size, "strength": key.params.strength,
                          "swap": key.params.swap}, "image_id": key.image_id, "from_seed": key.from_seed}
    return json.dumps(payload | {"sha256": keys._checksum(payload)}, indent=2, sort_keys=True) + "\n"


def test_a_version_1_key_file_still_decrypts_its_ciphertexts(tmp_path):
    old = keys.from_seed(7, CipherParams(4, 255, True, expansion=1)).for_image("golden")
    path = tmp_path / "old.key"
    path.write_text(version1_key_file(old))
    path.chmod(0o600)  # a key file is private (keys.check_private)
    loaded = keys.load(path)
    assert loaded.params.expansion == 1 and loaded == old
    assert digest(cipher.encrypt(IMG, loaded)) == GOLDEN[(4, 255, True, 1)]
    new = keys.loads(keys.dumps(loaded.with_params(CipherParams(4, 255, True))))
    assert new.params.expansion == 2 and json.loads(keys.dumps(new))["version"] == keys.KEY_FILE_VERSION


def test_a_version_1_key_file_cannot_name_an_expansion(tmp_path):
    key = keys.from_seed(7, CipherParams(4, 255, True))
    payload = json.loads(version1_key_file(key))
    payload.pop("sha256")
    payload["params"]["expansion"] = 2
    text = json.dumps(payload | {"sha256": keys._checksum(payload)})
    with pytest.raises(KeyFileError, match="cannot name a key expansion"):
        keys.loads(text)


def test_records_without_the_field_mean_version_1():
    assert CipherParams.from_record({"block_size": 8, "strength": 255, "swap": True}).expansion == 1
    assert CipherParams.from_record(CipherParams(8).record()) == CipherParams(8)
    with pytest.raises(ValueError, match="mapping"):
        CipherParams.from_record([8, 255])


@pytest.mark.parametrize("block, shape", [(8, (16, 24, 3)), (1, (5, 7, 1)), (40, (40, 80, 3))])
def test_encrypting_while_expanding_equals_the_schedule(block, shape):
    """Per-image keys encrypt while they expand (no gather index); the ciphertext is the one
    the expanded schedule gives, whatever the chunking and threads."""
    master = keys.from_seed(9, CipherParams(block, 200, True))
    ks = [master.for_image(f"i{i}") for i in range(7)]
    imgs = np.random.default_rng(block).integers(0, 256, (7, *shape), dtype=np.uint8)
    fused = cipher.encrypt(imgs, ks, chunk=3, workers=2)
    assert np.array_equal(fused, cipher.apply_schedule(imgs, cipher.expand(ks, shape)))
    assert np.array_equal(cipher.decrypt(fused, ks), imgs)


def test_the_docstring_examples_hold():
    import doctest

    result = doctest.testmod(keyexpansion)
    assert result.attempted >= 2 and result.failed == 0
