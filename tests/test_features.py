"""The content-keyed feature cache: shared when the numbers are the same, never otherwise."""

import numpy as np
import pytest
import torch

from cbirlib import features, models


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_HOME", str(tmp_path))
    return tmp_path


def test_cached_is_keyed_by_content_and_key(home):
    calls = []

    def compute(x):
        calls.append(len(x))
        return torch.tensor(x.astype(np.float32).mean(axis=(1, 2, 3)))

    a = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    first = features.cached(a, compute, "k1")
    again = features.cached(a.copy(), compute, "k1")
    assert torch.equal(first, again) and calls == [4]  # same bytes, same key: computed once
    b = a.copy()
    b[0, 0, 0, 0] ^= 1
    features.cached(b, compute, "k1")
    features.cached(a, compute, "k2")
    assert calls == [4, 4, 4]  # one changed byte or another key: computed again
    assert not list((home / "data" / "cache" / "features").glob("*.part"))


def test_damaged_entry_is_recomputed(home):
    a = np.zeros((2, 4, 4, 3), np.uint8)
    features.cached(a, lambda x: torch.ones(2), "k")
    path = next((home / "data" / "cache" / "features").glob("*.pt"))
    path.write_bytes(b"garbage")
    assert torch.equal(features.cached(a, lambda x: torch.zeros(2), "k"), torch.zeros(2))


def test_fingerprint_follows_the_weights_but_not_the_classifier():
    b = models.build_model("vgg16", 3, "none", 32)
    fp = features.fingerprint(b.model, features.CLASSIFIER_PREFIXES)
    with torch.no_grad():
        b.model.classifier[6].weight.add_(1.0)
    assert features.fingerprint(b.model, features.CLASSIFIER_PREFIXES) == fp
    with torch.no_grad():
        b.model.features[0].weight[0, 0, 0, 0] += 1e-3
    assert features.fingerprint(b.model, features.CLASSIFIER_PREFIXES) != fp


def test_feature_model_cache_off_when_hooks_change_outputs(home):
    b = models.build_model("vgg16", 3, "none", 32)
    psi = features.FeatureModel(b, "pooled")
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    plain = psi(x)
    h = psi.backbone.features[1].register_forward_hook(lambda m, i, o: o * 0)
    hooked = psi(x)
    h.remove()
    assert not torch.allclose(plain, hooked)
    assert torch.allclose(psi(x), plain)
