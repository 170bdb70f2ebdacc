"""The chapters read the committed sweep wherever they write their own results."""

import pytest

from cbirlib import paths
from cbirlib.reporting import sweeptables

pytestmark = pytest.mark.skipif(not (paths.results_dir() / "sweeps" / "classification" / "accuracy.csv").exists(),
                                reason="the classification sweep has not run in this checkout")


def test_the_committed_sweep_is_read_whatever_the_results_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CBIR_RESULTS_DIR", str(tmp_path))
    tables = sweeptables.load("classification")
    assert tables is not None and {"accuracy", "paired", "points"} <= set(tables)
    acc = tables["accuracy"]
    assert (acc.n > 0).all() and (acc.ci_low <= acc.value).all() and (acc.value <= acc.ci_high).all()
    assert sweeptables.provenance("classification")["points_done"] > 0


def test_a_sweep_on_other_data_is_left_out_and_says_why(tmp_path):
    assert sweeptables.load("classification", data=str(tmp_path)) is None
    assert "not on this run's data" in sweeptables.missing("classification", data=str(tmp_path))
    assert "make sweep SWEEP=nosuch" in sweeptables.missing("nosuch")


def _view(value, lo, hi, paper, key_mode="per-image", domain="MTCE 8-px blocks", model="vit", probe=(0.5, 0.45, 0.55)):
    import pandas as pd

    return pd.DataFrame([dict(model=model, trainable="all", domain=domain, key_mode=key_mode, lr=1e-3, n=900,
                              value=value, ci_low=lo, ci_high=hi, paper=paper, inside=lo <= paper <= hi,
                              value_probe=probe[0], ci_low_probe=probe[1], ci_high_probe=probe[2])])


def test_the_answer_follows_the_intervals():
    import pandas as pd

    modes = pd.DataFrame(columns=["model", "trainable", "domain", "seed", "p_value"])
    below = sweeptables.answer(_view(0.50, 0.46, 0.53, 0.913), modes)
    assert "Not with a key per image" in below and "0.38 below" in below
    reached = sweeptables.answer(_view(0.90, 0.88, 0.93, 0.913), modes)
    assert reached.split("?** ")[1].startswith("Yes with a key per image")
    one_px = pd.concat([_view(0.50, 0.46, 0.53, 0.913),
                        _view(0.34, 0.31, 0.37, 0.437, domain="MTCE 1-px blocks", model="vgg16",
                              probe=(0.33, 0.30, 0.36))])
    text = sweeptables.answer(one_px, modes)
    assert "at chance (1/3)" in text and "vgg16 0.437 [0.382, 0.493]" in text and "above chance" in text
    above_chance = pd.concat([_view(0.50, 0.46, 0.53, 0.913),
                              _view(0.45, 0.41, 0.48, 0.437, domain="MTCE 1-px blocks", model="vgg16")])
    assert "at chance" not in sweeptables.answer(above_chance, modes)
    with_plain = pd.concat([_view(0.50, 0.46, 0.53, 0.913), _view(0.85, 0.82, 0.87, 0.970, key_mode="none",
                                                                domain="plaintext")])
    text = sweeptables.answer(with_plain, modes)
    assert "a drop of 0.35 to 8-px blocks against the paper's 0.06" in text and "costs us 6 times" in text


def test_the_quantization_view_is_the_quantized_arm():
    tables = sweeptables.load("classification")
    view = sweeptables.quantization_view(tables["accuracy"], tables["paired"], "vit", "MTCE 8-px blocks", "per-image")
    assert (view.variant == "fp32").sum() == 1 and len(view) > 1
    assert view[view.variant != "fp32"].p_value.notna().all()
