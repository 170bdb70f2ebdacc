import numpy as np
import pytest
import torch

from cbirlib.learning import models, weightsources
from cbirlib.learning.models import WeightsUnavailable


def test_bundled_vgg16_trunk_is_imagenet_vgg16(weights_assets):
    model = models.vgg16(weights="bundled").model
    for layer, (idx, ref) in models.VGG16_REFERENCE_BIASES.items():
        assert model.features[idx].bias[0].item() == pytest.approx(ref, abs=1e-7), layer
    # conv1 takes RGB: its input channels are the reversed (BGR) Keras ones
    assert model.features[0].weight.shape == (64, 3, 3, 3)


@pytest.mark.parametrize("name, tol", [("vgg16", 1e-3), ("vit", 1e-4)])
def test_torch_conversion_matches_onnxruntime(weights_assets, name, tol):
    r = models.onnx_agreement(name, n_images=1)
    assert r["max_abs_value"] > 1.0  # a real activation scale, not all zeros
    assert r["max_abs_diff"] < tol, r


def test_provenance_records_source_and_random_parts(weights_assets):
    p = models.vgg16(weights="bundled").provenance
    assert p.weights == "bundled" and p.sha256 == models.assets.ASSETS["vgg16_onnx"].sha256
    assert "classifier.0 (fc6)" in p.randomly_initialised
    q = models.vit(weights="bundled", image_size=112).provenance
    assert q.randomly_initialised == ["head"] and "8x8" in " ".join(q.pretrained_parts)
    for built in (p, q):  # the weights table's record, made without building the model, is the same
        unbuilt = models.bundled_provenance(built.model, image_size=built.image_size).record()
        assert unbuilt.pop("file") is None and built.file
        assert unbuilt == {k: v for k, v in built.record().items() if k != "file"}
    assert models.bundled_provenance("vit", image_size=56).pretrained_parts[2].endswith("4x4)")
    with pytest.raises(ValueError, match="unknown model"):
        models.bundled_provenance("resnet")


def test_auto_falls_back_to_bundled_with_warning(weights_assets, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(UserWarning, match="using the bundled weights"):
        b = models.vgg16(weights="auto")
    assert b.provenance.weights == "bundled" and b.provenance.requested == "auto"
    assert any("not comparable" in n for n in b.provenance.notes)


@pytest.mark.parametrize("name", ["vgg16", "vit"])
def test_torchvision_weights_are_never_downloaded(tmp_path, monkeypatch, name):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="does not download"):
        models.build_model(name, weights="torchvision")


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = models.vit(weights="none", image_size=28, seed=1).model
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = models.vit(weights="none", image_size=28, seed=1).model
    c = models.vit(weights="none", image_size=28, seed=2).model
    assert models.state_dict_sha256(a) == models.state_dict_sha256(b)
    assert models.state_dict_sha256(a) != models.state_dict_sha256(c)


def test_vgg16_is_torchvisions_layout_and_initialisation_without_importing_it():
    """The same modules, parameter names, shapes and seeded initial weights as
    ``torchvision.models.vgg16(weights=None)``; building it does not load torchvision."""
    import subprocess
    import sys

    import torchvision

    for seed in (0, 7):
        ours = models.vgg16(num_classes=3, weights="none", image_size=32, seed=seed).model
        with models._seeded(seed):
            theirs = torchvision.models.vgg16(weights=None, num_classes=3)
        assert [type(m) for m in ours.features] == [type(m) for m in theirs.features]
        assert [type(m) for m in ours.classifier] == [type(m) for m in theirs.classifier]
        ours_state = {k: v for k, v in ours.state_dict().items() if not k.startswith("input_")}
        assert ours_state.keys() == theirs.state_dict().keys()
        for name, value in theirs.state_dict().items():
            assert torch.equal(ours_state[name], value), (seed, name)
    code = ("import sys; from cbirlib.learning import models; models.VGG16(3); "
            "print('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet"), "unknown model"),
    (dict(name="vgg16", weights="imagenet"), "weights must be one of"),
    (dict(name="vgg16", num_classes=1), "num_classes"),
    (dict(name="vit", image_size=100), "multiple of 14"),
    (dict(name="vgg16", image_size=16), "at least 32"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build_model(**{"weights": "none", **kwargs})


def test_forward_shapes():
    vgg = models.vgg16(weights="none", num_classes=3, image_size=64)
    x = vgg.preprocess(np.zeros((2, 50, 70, 3), dtype=np.uint8))
    assert x.shape == (2, 3, 64, 64)
    with torch.no_grad():
        assert vgg.model.eval()(x).shape == (2, 3)
        assert vgg.model.forward_features(x).shape == (2, 4096)
    vit = models.vit(weights="none", num_classes=5, image_size=28)
    with torch.no_grad():
        assert vit.model.eval()(vit.preprocess(np.zeros((28, 28, 3), dtype=np.uint8))).shape == (1, 5)


def test_preprocessing_values_and_errors():
    pre = models.Preprocessing(2)
    white = np.full((1, 2, 2, 3), 255, dtype=np.uint8)
    out = pre(white)
    expected = (1 - np.array(models.IMAGENET_MEAN)) / np.array(models.IMAGENET_STD)
    assert np.allclose(out[0, :, 0, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        pre(np.zeros((1, 2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        pre(np.zeros((1, 2, 2, 4), dtype=np.uint8))


def test_resample_pos_embed_identity_at_native_size():
    grid = torch.randn(1, 4, 37, 37)
    cls = torch.randn(1, 1, 4)
    pe = weightsources.resample_pos_embed(grid, cls, 37)
    assert pe.shape == (1, 1 + 37 * 37, 4)
    assert torch.allclose(pe[0, 1:].T.reshape(4, 37, 37), grid[0], atol=1e-5)


def test_weights_provenance_names_files_relative_to_the_project():
    from cbirlib import paths
    from cbirlib.learning.models import WeightsProvenance

    inside = paths.cache_dir() / "files" / "vit_onnx" / "w.onnx"
    rec = WeightsProvenance("vit", "a", "bundled", "auto", 3, 56, "s", file=str(inside)).record()
    assert rec["file"] == "data/cache/files/vit_onnx/w.onnx"
    assert WeightsProvenance("vit", "a", "bundled", "auto", 3, 56, "s", file="/elsewhere/w.onnx").record()["file"] \
        == "/elsewhere/w.onnx"
