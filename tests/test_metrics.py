import math

import numpy as np
import pytest

from cbirlib.core import imagemetrics as im, keyspace, keys
from cbirlib.studies import cipherstudy


def test_entropy_known_values():
    uniform = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert im.entropy(uniform) == pytest.approx(8.0)
    assert im.entropy(np.zeros((4, 4), np.uint8)) == 0.0
    two = np.array([[0, 255]], dtype=np.uint8)
    assert im.entropy(two) == pytest.approx(1.0)


def test_paper_aes_entropy_is_a_constant_image():
    """The paper's AES entropy is |-log2(1 + 1e-10)| to the last digit: one occupied histogram bin."""
    assert abs(im.entropy_with_epsilon(np.full((8, 8, 3), 17, np.uint8))) == 1.4426951601859516e-10
    assert im.entropy_with_epsilon(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0, abs=1e-6)


def test_mse_psnr_ssim_known_values():
    a = np.zeros((16, 16), np.uint8)
    b = np.full((16, 16), 10, np.uint8)
    assert im.mse(a, a) == 0.0 and math.isinf(im.psnr(a, a))
    assert im.mse(a, b) == 100.0
    assert im.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert im.ssim(b, b) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="uint8"):
        im.mse(a.astype(float), b)


def test_correlation_and_chi_square():
    ramp = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    assert im.adjacent_correlation(ramp, "horizontal") == pytest.approx(1.0)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    assert abs(im.adjacent_correlation(noise, "diagonal")) < 0.02
    assert im.chi_square(noise) < im.CHI2_CRITICAL_255_005 * 1.5
    assert im.chi_square(np.arange(256, dtype=np.uint8)) == 0.0
    assert math.isnan(im.adjacent_correlation(np.zeros((4, 4), np.uint8), "vertical"))
    with pytest.raises(ValueError, match="direction"):
        im.adjacent_correlation(ramp, "sideways")


def test_npcr_uaci():
    a = np.zeros((10, 10), np.uint8)
    assert im.npcr_uaci(a, a) == (0.0, 0.0)
    b = np.full((10, 10), 255, np.uint8)
    assert im.npcr_uaci(a, b) == (100.0, 100.0)
    assert (im.one_pixel_change(a) != a).sum() == 1


def test_aes_modes():
    img = np.zeros((32, 32, 3), np.uint8)
    key = bytes(range(16))
    ecb, cbc, ctr = (im.aes_encrypt_image(img, key, m) for m in ("ECB", "CBC", "CTR"))
    assert im.entropy(ecb) < 4.1  # ECB of a constant image repeats one 16-byte block
    assert im.entropy(cbc) > 7.5 and im.entropy(ctr) > 7.5
    with pytest.raises(ValueError):
        im.aes_encrypt_image(img, key, "GCM")


def test_mtce_has_no_diffusion_under_a_fixed_key():
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = cipherstudy.diffusion(img[None], ["a"], keys.from_seed(0, keys.CipherParams(8)))
    npcr = t.query("test == 'one value changed, same key' and metric == 'NPCR'").value.iloc[0]
    assert npcr == pytest.approx(100.0 / img.size)  # exactly one ciphertext value changes
    right = t.query("metric == 'values right after decryption'").value.iloc[0]
    assert right == 100.0


def test_keyspace_counts():
    assert keyspace.num_blocks(224, 224, 8) == 784
    assert keyspace.log2_factorial(4) == pytest.approx(math.log2(24))
    p = keyspace.paper_bits(224, 224, 8)
    assert p["total"] == pytest.approx(784 * keyspace.log2_factorial(64) + keyspace.log2_factorial(784)
                                       + 24 + math.log2(6))
    c = keyspace.cipher_bits(224, 224, 8, 3, 255)
    assert c["in-block scramble"] > p["in-block scramble"] and c["channel swap"] == 0.0
    assert c["substitution"] == pytest.approx(3 * 784 * 8)
    assert keyspace.key_entropy_bits(32, 256) == 256
    with pytest.raises(ValueError):
        keyspace.num_blocks(10, 16, 8)


def test_one_pixel_change_wraps_255_to_0_without_a_warning():
    import warnings

    a = np.full((4, 4, 3), 255, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = im.one_pixel_change(a, seed=3)
    assert (b != a).sum() == 1 and b.min() == 0
