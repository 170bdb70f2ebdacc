import numpy as np
import pytest
from PIL import Image

from cbirlib import paper
from cbirlib.learning.experimentconfig import ExperimentConfig, ExperimentError
from cbirlib.studies import quantstudy as qs


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, request):
    request.getfixturevalue("weights_assets")  # the collapse needs real (pretrained) activation scales
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("q") / "toy"
    for k, (cls, level) in enumerate((("a", 40), ("b", 128), ("c", 215))):
        (root / cls).mkdir(parents=True)
        for i in range(18):
            img = np.clip(rng.normal(level, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.png")
    cfg = ExperimentConfig(model="vgg16", weights="bundled", data=str(root), domains=("plain",), image_size=32,
                           trainable="head", epochs=20, batch_size=16, lr=1e-2, seed=0, profile="ci")
    return qs.run_table_viii(cfg, 4, finetune_epochs=3)


def test_every_variant_is_evaluated_and_uncalibrated_int8_collapses(toy_run):
    t = qs.table(toy_run)
    assert list(t.columns) == ["model", "domain", "variant", "class", "metric", "value", "source"]
    variants = set(t.variant)
    for cal in ("max", "KL", "99%"):
        for v in ("literal", "int8", "int8 + fine-tuning", "literal + fine-tuning"):
            assert f"last layer ({cal}), {v}" in variants
    collapsed = toy_run.notes["collapse"]["predicted_classes_uncalibrated"]
    assert sorted(collapsed)[:2] == [0, 0]  # every test image in one class
    viii = qs.beside_paper(t)
    assert len(viii) == len(paper.table_viii()) and viii.paper.notna().all()


def test_onnx_int8_is_a_quarter_of_the_bytes(toy_run, tmp_path):
    o = qs.onnx_int8(toy_run, calib_images=8, repeats=1, workdir=tmp_path, methods=("MinMax",))
    p = o.pivot(index="model", columns="metric", values="value")
    assert p.loc["int8 (MinMax)", "bytes"] < 0.3 * p.loc["fp32", "bytes"]
    assert 0 <= p.loc["int8 (MinMax)", "accuracy"] <= 1


def test_onnx_int8_without_a_workdir_leaves_no_files_behind(toy_run, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    qs.onnx_int8(toy_run, calib_images=8, repeats=1, methods=("MinMax",))
    assert [p.name for p in tmp_path.rglob("*")] in ([], ["cbirlib-scratch"])  # at most the empty scratch root


def test_memory_table_counts_real_layers(toy_run):
    m = qs.memory_table(toy_run)
    last = m[(m.model.str.startswith("paper")) & (m["mode"] == "last") & (m.quantity == "weights")].value.iloc[0]
    assert last == 4096 * 3


def test_only_vgg16_head_mode():
    with pytest.raises(ExperimentError, match="VGG-16 in the head mode"):
        qs.base_run(ExperimentConfig(model="vit", image_size=28, trainable="head", domains=("plain",)))
