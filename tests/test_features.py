"""The content-keyed feature cache: shared when the numbers are the same, never otherwise."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from cbirlib.learning import features, models


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
    assert calls == [4, 1, 4]  # one changed byte: that image again; another key: all of them
    assert not list((home / "data" / "cache" / "features").rglob("*.part"))


def test_damaged_entry_is_recomputed(home):
    a = np.zeros((2, 4, 4, 3), np.uint8)
    features.cached(a, lambda x: torch.ones(2), "k")
    path = next((home / "data" / "cache" / "features").rglob("*.pt"))
    path.write_bytes(b"garbage")
    assert torch.equal(features.cached(a, lambda x: torch.zeros(2), "k"), torch.zeros(2))


def _mean_per_image(calls):
    def compute(x):
        calls.append(len(x))
        return torch.tensor(x.astype(np.float32).mean(axis=(1, 2, 3)))
    return compute


def test_another_grouping_of_cached_images_computes_only_the_new_ones(home):
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8) for n in (5, 3))
    calls = []
    compute = _mean_per_image(calls)
    features.cached(a, compute, "k")  # e.g. the feature job's split
    mixed = np.concatenate([a[3:], b, a[:2], b[:1]])  # e.g. a database of two splits, one image twice
    got = features.cached(mixed, compute, "k")
    assert calls == [5, 4] and torch.equal(got, compute(mixed))
    calls.clear()
    assert torch.equal(features.cached(mixed[::-1].copy(), compute, "k"), compute(mixed[::-1].copy()))
    assert calls == [len(mixed)]  # only the check above computed: every row came from the cache


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=12), min_size=1, max_size=4))
def test_cached_equals_computed_for_any_sequence_of_requests(home, requests):
    pool = np.random.default_rng(3).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    compute = _mean_per_image([])
    key = str(len(list(home.rglob("*"))))  # a fresh key per example
    for idx in requests:
        assert torch.equal(features.cached(pool[idx], compute, key), compute(pool[idx]))


def test_with_a_batch_every_row_is_the_same_whichever_grouping_came_first(home):
    """A compute whose numbers depend on the batch size (as oneDNN's can) but not on the other
    images: with ``batch``, cold or warm, any grouping gets the rows of a full batch."""
    def compute(x):
        assert len(x) % 4 == 0  # always whole batches
        return torch.cat([torch.tensor(c.astype(np.float32).mean(axis=(1, 2, 3))) + 1e-3 * len(c)
                          for c in np.split(x, len(x) // 4)])
    pool = np.random.default_rng(4).integers(0, 256, (9, 4, 4, 3), dtype=np.uint8)
    reference = torch.cat([compute(np.concatenate([pool[i:i + 1], np.zeros((3, 4, 4, 3), np.uint8)]))[:1]
                           for i in range(9)])  # image i in a batch of 4 with zeros
    assert torch.equal(features.cached(pool[[4, 1]], compute, "k", batch=4), reference[[4, 1]])
    assert torch.equal(features.cached(pool, compute, "k", batch=4), reference)
    assert torch.equal(features.cached(pool[::-1].copy(), compute, "k", batch=4), reference.flip(0))


@pytest.mark.parametrize("name", ["vgg16", "vit"])
def test_a_networks_features_of_an_image_do_not_depend_on_the_other_images_of_its_batch(name):
    """What the per-image cache relies on (with a fixed batch size): row i of a batch is image i's
    features, bit for bit, whatever else is in the batch."""
    b = models.build_model(name, 3, "none", 56, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 56, 56, generator=g)
    other = torch.cat([x[5:6], torch.randn(5, 3, 56, 56, generator=g)])
    padded = torch.cat([x[5:6], torch.zeros(5, 3, 56, 56)])
    with torch.no_grad():
        f = [models.pooled_features(b.model.eval(), features.network_input(b.model, t)) for t in (x[:6], other, padded)]
    assert torch.equal(f[0][5], f[1][0]) and torch.equal(f[0][5], f[2][0])


@pytest.mark.parametrize("name", ["vgg16", "vit"])
def test_the_cpu_layout_of_the_input_changes_features_only_by_rounding(name):
    """VGG-16 runs on channels-last input (faster on CPUs); the ViT's input is left as it is."""
    b = models.build_model(name, 3, "none", 56, seed=0)
    x = torch.randn(4, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    fast = features.network_input(b.model, x)
    assert fast.is_contiguous(memory_format=torch.channels_last) == (name == "vgg16")
    assert torch.equal(fast, x)
    with torch.no_grad():
        ref, got = (models.pooled_features(b.model.eval(), t) for t in (x, fast))
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


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


@pytest.mark.parametrize("name", ["vgg16", "vit"])
@pytest.mark.parametrize("layer", ["pooled", "penultimate"])
def test_feature_model_lives_on_its_networks_device(name, layer):
    """Psi of a network on another device (a GPU; here the shape-only ``meta`` device) probes its
    dimension there and keeps its buffers there: the first GPU run failed here with a CPU input."""
    on_cpu = features.FeatureModel(models.build_model(name, 3, "none", 56, seed=0), layer)
    b = models.build_model(name, 3, "none", 56, seed=0)
    b.model.to("meta")
    psi = features.FeatureModel(b, layer)
    assert psi.mean.device.type == "meta" and psi.std.device.type == "meta"
    assert psi.dim == on_cpu.dim
