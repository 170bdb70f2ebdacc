import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cbirlib.core import cipher, keys, schedule
from cbirlib.core.cipher import CipherInputError
from cbirlib.core.keys import CipherParams, KeyUsageError


def key_for(block=8, strength=255, swap=True, seed=0, image_id="img"):
    return keys.from_seed(seed, CipherParams(block, strength, swap)).for_image(image_id)


@st.composite
def image_and_key(draw):
    b = draw(st.integers(1, 6))
    h = b * draw(st.integers(1, 5))
    w = b * draw(st.integers(1, 5))
    c = draw(st.sampled_from([1, 3]))
    img = draw(arrays(np.uint8, (h, w, c)))
    params = CipherParams(b, draw(st.integers(0, 255)), draw(st.booleans()), draw(st.sampled_from([1, 2])))
    return img, keys.from_seed(draw(st.integers(0, 2**32)), params).for_image("x")


@given(image_and_key())
@settings(max_examples=150, deadline=None)
def test_round_trip_is_exact(case):
    img, key = case
    before = img.copy()
    enc = cipher.encrypt(img, key)
    assert enc.shape == img.shape and enc.dtype == np.uint8
    assert np.array_equal(cipher.decrypt(enc, key), img)
    assert np.array_equal(img, before)  # inputs are never modified


@given(image_and_key())
@settings(max_examples=100, deadline=None)
def test_steps_compose_to_the_fast_path(case):
    img, key = case
    steps = cipher.encrypt_steps(img, key)
    assert np.array_equal(steps["3b substitute"], cipher.encrypt(img, key))
    # steps 1-2 only move values: the multiset of values is unchanged until substitution
    assert np.array_equal(np.sort(steps["2 shuffle blocks"].ravel()), np.sort(img.ravel()))


@given(st.integers(1, 8), st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3]))
@settings(max_examples=60, deadline=None)
def test_padding_round_trip(b, h, w, c):
    img = np.random.default_rng(h * 100 + w).integers(0, 256, (h, w, c), dtype=np.uint8)
    key = key_for(block=b)
    enc = cipher.encrypt(img, key, pad="pad")
    assert enc.shape[:2] == cipher.padded_size(h, w, b)
    assert np.array_equal(cipher.decrypt(enc, key, size=(h, w)), img)


def test_batch_with_per_image_keys_equals_one_by_one():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (11, 16, 24, 3), dtype=np.uint8)
    master = keys.from_seed(3, CipherParams(4, 100, True))
    ids = [f"i{k}" for k in range(11)]
    enc = cipher.encrypt_with_ids(batch, ids, master)
    for k in range(11):
        assert np.array_equal(enc[k], cipher.encrypt(batch[k], master.for_image(ids[k])))
    # chunking and threads do not change the result
    again = cipher.encrypt(batch, [master.for_image(i) for i in ids], chunk=3, workers=2)
    assert np.array_equal(enc, again)
    assert np.array_equal(cipher.decrypt_with_ids(enc, ids, master), batch)


def test_shared_key_is_one_permutation_for_all_images():
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    shared = keys.from_seed(0, CipherParams(8, 0, True), kind="shared")
    enc = cipher.encrypt(batch, shared)
    assert np.array_equal(enc[1], cipher.encrypt(batch[1], shared))
    assert np.array_equal(cipher.decrypt(enc, shared), batch)


def test_a_shared_key_given_per_image_is_expanded_once(monkeypatch):
    imgs = np.random.default_rng(3).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    shared = keys.Key(key_for(8).secret, CipherParams(8, 255, True), "shared")
    calls = []
    real = schedule._expand_v2  # key expansion 2: called by expand, and by encryption with per-image keys
    monkeypatch.setattr(schedule, "_expand_v2", lambda ks, *a, **kw: calls.append(len(ks)) or real(ks, *a, **kw))
    enc = cipher.encrypt(imgs, [shared] * 9, chunk=2, workers=1)
    assert calls == [1]  # once for the call, not once per chunk
    assert np.array_equal(enc, cipher.encrypt(imgs, shared))
    assert np.array_equal(cipher.decrypt(enc, [shared] * 9, chunk=2), imgs)
    calls.clear()
    cipher.encrypt(imgs, [key_for(8, image_id=f"im{i}") for i in range(9)], chunk=2, workers=1)
    assert sum(calls) == 9 and max(calls) == 2  # distinct keys: chunk by chunk


def test_ciphertext_differs_and_wrong_key_does_not_decrypt():
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    key, other = key_for(seed=1), key_for(seed=2)
    enc = cipher.encrypt(img, key)
    assert (enc != img).mean() > 0.9
    wrong = cipher.decrypt(enc, other)  # no exception, no plaintext
    assert (wrong == img).mean() < 0.05
    assert not np.array_equal(cipher.encrypt(img, key_for(seed=1, image_id="a")),
                              cipher.encrypt(img, key_for(seed=1, image_id="b")))


def test_parameters_change_the_key_material():
    img = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    base = keys.from_seed(5, CipherParams(8, 255, True)).for_image("x")
    for params in (CipherParams(8, 255, False), CipherParams(8, 254, True), CipherParams(4, 255, True)):
        assert not np.array_equal(cipher.encrypt(img, base), cipher.encrypt(img, base.with_params(params)))


def test_strength_zero_and_no_swap_only_permute():
    img = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    enc = cipher.encrypt(img, key_for(strength=0, swap=False))
    assert np.array_equal(np.sort(enc.ravel()), np.sort(img.ravel()))
    assert not np.array_equal(enc, img)


def test_block_shuffle_moves_whole_blocks():
    """With strength 0 each ciphertext block holds exactly the values of one plaintext block."""
    img = np.arange(16 * 16 * 3, dtype=np.int64).reshape(16, 16, 3)
    img = (img % 251).astype(np.uint8)
    key = key_for(block=8, strength=0)
    enc = cipher.encrypt(img, key)
    blocks = lambda a: sorted(tuple(sorted(a[i:i + 8, j:j + 8].ravel())) for i in (0, 8) for j in (0, 8))
    assert blocks(enc) == blocks(img)


def test_torch_tensors_round_trip():
    t = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    key = key_for(block=4)
    enc = cipher.encrypt(t, key)
    assert isinstance(enc, torch.Tensor) and enc.dtype == torch.uint8
    assert torch.equal(cipher.decrypt(enc, key), t)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
    (np.zeros((8, 8, 2), dtype=np.uint8), "C = 1 or 3"),
    (np.zeros((8, 8), dtype=np.uint8), "C = 1 or 3"),
    (np.full((8, 8, 3), 300, dtype=np.int32), "0..255"),
    (np.zeros((0, 8, 3), dtype=np.uint8), "empty"),
    ([[1, 2]], "numpy array"),
])
def test_bad_inputs(bad, match):
    with pytest.raises(CipherInputError, match=match):
        cipher.encrypt(bad, key_for())


def test_integer_arrays_in_range_are_accepted():
    img = np.random.default_rng(6).integers(0, 256, (8, 8, 3)).astype(np.int64)
    key = key_for()
    assert np.array_equal(cipher.decrypt(cipher.encrypt(img, key), key), img.astype(np.uint8))


def test_size_policy_and_key_errors():
    img = np.zeros((10, 16, 3), dtype=np.uint8)
    with pytest.raises(CipherInputError, match="not a multiple of block size 8"):
        cipher.encrypt(img, key_for())
    with pytest.raises(CipherInputError, match="pad must be"):
        cipher.encrypt(img, key_for(), pad="crop")
    with pytest.raises(KeyUsageError, match="master key"):
        cipher.encrypt(np.zeros((8, 8, 3), np.uint8), keys.from_seed(0))
    with pytest.raises(CipherInputError, match="2 keys for 3 images"):
        cipher.encrypt(np.zeros((3, 8, 8, 3), np.uint8), [key_for(), key_for()])
    with pytest.raises(KeyUsageError, match="same parameters"):
        cipher.encrypt(np.zeros((2, 8, 8, 3), np.uint8), [key_for(), key_for(strength=3)])
    with pytest.raises(KeyUsageError, match="same parameters"):  # also when they fall in different chunks
        cipher.encrypt(np.zeros((6, 8, 8, 3), np.uint8), [key_for(image_id=str(i)) for i in range(5)]
                       + [key_for(strength=3)], chunk=2)
    with pytest.raises(CipherInputError, match="multiple of block size"):
        cipher.decrypt(np.zeros((12, 16, 3), np.uint8), key_for())
    with pytest.raises(CipherInputError, match="does not fit"):
        cipher.decrypt(np.zeros((8, 8, 3), np.uint8), key_for(), size=(9, 8))


def test_encryption_is_deterministic_for_a_key():
    img = np.random.default_rng(7).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert np.array_equal(cipher.encrypt(img, key_for(block=3)), cipher.encrypt(img, key_for(block=3)))


def test_permutations_look_uniform():
    """Position of value 0 of a 2x2x1 block after step 1+2 for many keys: all 4 slots equally likely."""
    img = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    master = keys.from_seed(11, CipherParams(2, 0, False))
    enc = cipher.encrypt_with_ids(np.repeat(img[None], 4000, axis=0), [str(i) for i in range(4000)], master)
    where = enc.reshape(4000, 4).argmin(axis=1)
    counts = np.bincount(where, minlength=4)
    assert counts.min() > 900 and counts.max() < 1100, counts


@pytest.mark.parametrize("view", [lambda a: a[:, ::-1], lambda a: np.asfortranarray(a), lambda a: a.transpose(0, 2, 1, 3)])
def test_non_contiguous_batches_encrypt_like_copies(view):
    """Strided, reversed or Fortran-ordered input gives the ciphertext of its contiguous copy."""
    imgs = view(np.random.default_rng(8).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8))
    master = keys.from_seed(4, CipherParams(4, 255, True))
    ks = [master.for_image(str(i)) for i in range(5)]
    for key in (ks, ks[0].with_params(ks[0].params)):
        enc = cipher.encrypt(imgs, key, chunk=2)
        assert np.array_equal(enc, cipher.encrypt(np.ascontiguousarray(imgs), key, chunk=2))
        assert np.array_equal(cipher.decrypt(enc, key, chunk=2), imgs)


def test_a_schedule_only_applies_to_its_shape_and_count():
    """The compiled gather and scatter do not check bounds, so the shapes are checked first."""
    key = key_for(block=4)
    sched = cipher.expand([key, key_for(block=4, image_id="b")], (8, 8, 3))
    with pytest.raises(CipherInputError, match="shape"):
        cipher.apply_schedule(np.zeros((2, 8, 12, 3), np.uint8), sched)
    with pytest.raises(CipherInputError, match="cannot decrypt 3"):
        cipher.invert_schedule(np.zeros((3, 8, 8, 3), np.uint8), sched)
    with pytest.raises(CipherInputError, match="C-contiguous"):
        cipher.apply_schedule(np.zeros((2, 8, 8, 3), np.uint8), sched, out=np.zeros((2, 8, 8, 3), np.uint16))
    imgs = np.random.default_rng(9).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(cipher.invert_schedule(cipher.apply_schedule(imgs, sched), sched), imgs)


@st.composite
def image16_and_keys(draw):
    """A batch of uint16 images of any shape the cipher takes and per-image 16-bit keys (or one shared)."""
    b = draw(st.integers(1, 6))
    n = draw(st.integers(1, 3))
    h, w = b * draw(st.integers(1, 4)), b * draw(st.integers(1, 4))
    c = draw(st.sampled_from([1, 3]))
    batch = draw(arrays(np.uint16, (n, h, w, c)))
    params = CipherParams(b, draw(st.integers(0, 65535)), draw(st.booleans()), draw(st.sampled_from([1, 2])), 16)
    master = keys.from_seed(draw(st.integers(0, 2**32)), params)
    return batch, ([master.for_image(f"i{r}") for r in range(n)] if draw(st.booleans()) else master.for_group(0))


@given(image16_and_keys())
@settings(max_examples=120, deadline=None)
def test_sixteen_bit_round_trip_is_exact(case):
    batch, key = case
    before = batch.copy()
    enc = cipher.encrypt(batch, key)
    assert enc.dtype == np.uint16 and enc.shape == batch.shape
    assert np.array_equal(cipher.decrypt(enc, key), batch)
    assert np.array_equal(batch, before)


def test_sixteen_bit_keys_use_the_full_range_and_never_convert_silently():
    key16 = keys.from_seed(3, CipherParams(8, 65535, depth=16)).for_image("ct")
    ct = np.random.default_rng(0).integers(0, 4096, (64, 64, 1)).astype(np.uint16)  # a 12-bit CT slice
    enc = cipher.encrypt(ct, key16)
    assert enc.max() > 4095 and len(np.unique(enc)) > 3000  # substitution mod 2^16 spreads the values
    assert np.array_equal(cipher.decrypt(enc, key16), ct)
    with pytest.raises(CipherInputError, match="16-bit images and an 8-bit key"):
        cipher.encrypt(ct, key_for())
    with pytest.raises(CipherInputError, match="8-bit images and a 16-bit key"):
        cipher.encrypt(ct.astype(np.uint8), key16)
    with pytest.raises(ValueError, match="strength must be an integer in 0..255"):
        CipherParams(8, 4095)
    assert CipherParams(8, 4095, depth=16).record()["depth"] == 16 and "depth" not in CipherParams().record()
    # a 16-bit key's permutations come from a derived key: not those of the same secret at 8 bits
    from cbirlib.core import cipher16

    k16 = keys.from_seed(3, CipherParams(8, 0, depth=16), "shared")
    k8 = keys.from_seed(3, CipherParams(8, 0), "shared")
    assert not np.array_equal(cipher16.expand([k16], (64, 64, 1)).index, schedule.expand([k8], (64, 64, 1)).index)
