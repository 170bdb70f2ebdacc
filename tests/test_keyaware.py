"""Key-aligned cipher and model transform: the identity must hold, and break when it should."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cbirlib.core import cipher, keys
from cbirlib.core.keys import KeyUsageError
from cbirlib.learning import experimentconfig, keyaware, models


def _key(seed: int = 0, b: int = 14) -> keys.Key:
    return keys.from_seed(seed, keys.CipherParams(block_size=b, strength=0, swap=False), "shared")


@pytest.fixture(scope="module")
def vit28(weights_assets):
    """The bundled DINOv2 ViT-S/14 at 28 px (2 x 2 patches): real weights, so outputs depend on the input."""
    return models.build_model("vit", 3, "bundled", 28, seed=0)


def _images(n=3, size=28, seed=0):
    """Smooth random images (real structure for a real model to react to)."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(np.random.default_rng(seed).normal(size=(n, size, size, 3)), (0, 3, 3, 0))
    return ((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans(), st.sampled_from([4, 7, 14]))
def test_aligned_round_trip(seed, negpos, b):
    imgs = _images(2, 28, seed)
    sched = keyaware.aligned_schedule(_key(seed % 7, b), imgs.shape[1:], negpos)
    enc = keyaware.encrypt_aligned(imgs, sched)
    assert np.array_equal(keyaware.decrypt_aligned(enc, sched), imgs)
    assert np.array_equal(keyaware.encrypt_aligned(imgs[0], sched), enc[0])     # single image = batch
    # one in-block permutation for every block: sorted block contents are preserved without flips
    if not negpos:
        src = np.sort(cipher.to_blocks(imgs, b).reshape(2, -1), axis=1)
        dst = np.sort(cipher.to_blocks(enc, b).reshape(2, -1), axis=1)
        assert np.array_equal(src, dst)


@pytest.mark.parametrize("negpos", [False, True])
def test_transformed_model_on_ciphertexts_equals_plain_model(vit28, negpos):
    imgs = _images()
    sched = keyaware.aligned_schedule(_key(), imgs.shape[1:], negpos)
    enc = keyaware.encrypt_aligned(imgs, sched)
    transformed = keyaware.transform_model(vit28, sched)
    wrong = keyaware.transform_model(vit28, keyaware.aligned_schedule(_key(1), imgs.shape[1:], negpos))
    with torch.no_grad():  # features: the CLS token after the final norm (what the head reads)
        plain = models.pooled_features(vit28.model.eval(), vit28.preprocess(imgs))
        on_enc = models.pooled_features(transformed.model.eval(), transformed.preprocess(enc))
        untransformed = models.pooled_features(vit28.model, vit28.preprocess(enc))
        wrong_feats = models.pooled_features(wrong.model.eval(), wrong.preprocess(enc))
    scale = plain.abs().max()
    assert (on_enc - plain).abs().max() < 1e-4 * scale, (on_enc - plain).abs().max()
    assert (untransformed - plain).abs().max() > 0.05 * scale
    assert (wrong_feats - plain).abs().max() > 0.05 * scale
    assert any("transformed" in n for n in transformed.provenance.notes)
    assert vit28.model.pos_embed is not transformed.model.pos_embed               # the original is untouched


def test_errors_are_clear(vit28):
    imgs = _images()
    with pytest.raises(KeyUsageError, match="ONE key shared"):
        keyaware.aligned_schedule(keys.from_seed(0, keys.CipherParams(block_size=14)), imgs.shape[1:])
    with pytest.raises(cipher.CipherInputError, match="not a multiple"):
        keyaware.aligned_schedule(_key(), (30, 30, 3))
    sched7 = keyaware.aligned_schedule(_key(0, 7), imgs.shape[1:])
    with pytest.raises(ValueError, match="must equal the patch size"):
        keyaware.transform_model(vit28, sched7)
    vgg = models.build_model("vgg16", 3, "none", 32, seed=0)
    with pytest.raises(TypeError, match="no key transform exists"):
        keyaware.transform_vit(vgg.model, keyaware.aligned_schedule(_key(0, 16), (32, 32, 3)), vgg.preprocess)
    sched = keyaware.aligned_schedule(_key(), imgs.shape[1:])
    with pytest.raises(cipher.CipherInputError, match="expected uint8 images"):
        keyaware.encrypt_aligned(imgs.astype(np.float32), sched)


@pytest.mark.parametrize("bad, message", [
    (dict(model="vgg16"), "Vision Transformers only"),
    (dict(trainable="all"), "linear head"),
    (dict(fresh_keys=0), "fresh_keys must be a positive integer"),
    (dict(image_size=50), "multiple of 14"),
    (dict(epochs=0), "epochs must be a positive integer"),
])
def test_study_config_rejects_bad_parameters(bad, message):
    from cbirlib.studies import keyawarestudy

    with pytest.raises(experimentconfig.ExperimentError, match=message):
        keyawarestudy.StudyConfig(**bad)
    assert "key_mode" not in keyawarestudy.StudyConfig().record()


def test_the_intensity_histogram_matches_numpy_image_by_image():
    import numpy as np

    from cbirlib.studies import keyawarestudy as ks

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    images[0] = 255  # the top edge lands in the last bin
    got = ks.intensity_histogram(images, bins=32).numpy()
    grey = images.reshape(4, -1, 3).mean(-1)
    want = np.stack([np.histogram(g, bins=np.linspace(0, 256, 33))[0] for g in grey])
    assert np.array_equal(got, want) and got.sum(1).tolist() == [64] * 4


def test_map_comes_with_its_interval_and_the_queries_average_precisions():
    import torch

    from cbirlib.studies import keyawarestudy as ks

    g = torch.Generator().manual_seed(0)
    feats = {s: torch.randn(n, 6, generator=g) for s, n in (("train", 30), ("val", 9), ("test", 12))}
    labels = {s: np.arange(len(f)) % 3 for s, f in feats.items()}
    maps, ap = ks._map(feats, labels, torch.zeros(6), torch.ones(6))
    assert ap.shape == (12,) and maps["mAP"] == pytest.approx(ap.mean())
    assert maps["mAP_ci_low"] <= maps["mAP"] <= maps["mAP_ci_high"] and 0 <= maps["precision@10"] <= 1
