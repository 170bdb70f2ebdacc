import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cbirlib.learning import quantize as qz
from cbirlib.learning.quantize import QuantizationError


def test_calibrators_on_hand_computed_cases():
    x = np.array([-3.0, 1.0, 2.0, 0.5])
    assert qz.threshold(x, "max") == 3.0
    ramp = np.arange(1, 101, dtype=float)  # |x| = 1..100
    assert qz.threshold(ramp, "percentile", 99) == pytest.approx(np.percentile(ramp, 99))
    assert qz.threshold(ramp, "percentile", 50) == pytest.approx(50.5)
    uniform = np.random.default_rng(0).uniform(-1, 1, 200_000)
    assert qz.threshold(uniform, "kl") == pytest.approx(1.0, rel=0.02)  # nothing worth clipping
    heavy = np.concatenate([np.random.default_rng(1).normal(0, 1, 200_000), [1000.0]])
    assert qz.threshold(heavy, "kl") < 100  # one huge outlier is clipped away
    gauss = np.random.default_rng(3).normal(0, 1, 50_000)

    def error(t):
        s = t / qz.QMAX
        return np.mean((gauss - np.clip(np.round(gauss / s), -127, 127) * s) ** 2)

    t_mse = qz.threshold(gauss, "mse")
    assert t_mse <= qz.threshold(gauss, "max") and error(t_mse) <= error(qz.threshold(gauss, "max"))


@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(-50, 50, width=32)),
       st.sampled_from(qz.CALIBRATORS))
@settings(max_examples=80, deadline=None)
def test_dequantization_error_is_at_most_half_a_step_inside_the_threshold(x, calibrator):
    qt = qz.quantize(x, calibrator)
    t = float(qt.scale) * qz.QMAX
    inside = np.abs(x) <= t
    err = np.abs(qt.dequantize() - x)
    assert np.all(err[inside] <= float(qt.scale) / 2 + 1e-6)
    assert qt.q.dtype == np.int8 and np.abs(qt.q.astype(int)).max() <= 127


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_subnormal_threshold_still_quantizes_without_dividing_by_zero(per_channel):
    x = np.array([[1e-45, -1e-45, 0.0], [3e-45, 0.0, -2e-45]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero or a NaN cast would raise here
        qt = qz.quantize(x, "max", per_channel=per_channel)
        back = qt.dequantize()
    assert np.all(np.asarray(qt.scale) > 0) and np.all(np.isfinite(back))
    assert np.all(np.abs(back - x) <= np.max(qt.scale) / 2 + 1e-45)


def test_per_channel_scales_and_serialization():
    w = np.random.default_rng(2).normal(size=(4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 100, 1000])[:, None, None, None]
    qt = qz.quantize(w, "max", per_channel=True)
    assert qt.scale.shape == (4,)
    np.testing.assert_allclose(qt.scale, np.abs(w).reshape(4, -1).max(1) / 127, rtol=1e-6)
    again = qz.QuantizedTensor.from_bytes(qt.to_bytes())
    assert np.array_equal(again.q, qt.q) and np.array_equal(again.scale, qt.scale)
    assert qt.nbytes == w.size + 4 * 4


def test_paper_literal_is_a_rescaling():
    w = np.array([[-4.0, 2.0], [1.0, 0.5]], dtype=np.float32)
    assert np.array_equal(qz.paper_literal(w, "max"), w / 4.0)
    assert len(np.unique(qz.paper_literal(np.linspace(-1, 1, 1000), "max"))) == 1000  # no rounding


def test_apply_last_and_fully():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    before = [m.weight.detach().clone() for _, m in qz.weight_layers(model)]
    qz.apply(model, "last", "literal", "max")
    after = [m.weight.detach() for _, m in qz.weight_layers(model)]
    assert torch.equal(before[0], after[0])
    assert float(after[1].abs().max()) == pytest.approx(1.0)
    qz.apply(model, "fully", "int8", "percentile", 99.0)
    conv = qz.weight_layers(model)[0][1].weight.detach().numpy()
    scale = np.abs(before[0].numpy()).ravel()
    assert len(np.unique(conv)) <= 255  # on the int8 grid
    mem = qz.memory_bytes(model, "last")
    assert mem["fp32_bytes"] == 4 * 4 * 6 * 6 * 3 and mem["int8_bytes"] == 4 * 6 * 6 * 3 + 4
    assert scale.size == 108


def test_fake_quantize_passes_gradients_straight_through():
    w = torch.randn(5, 5, requires_grad=True)
    y = qz.fake_quantize(w, "max").sum()
    y.backward()
    assert torch.equal(w.grad, torch.ones(5, 5))


@pytest.mark.parametrize("call, match", [
    (lambda: qz.threshold(np.ones(3), "median"), "unknown calibrator"),
    (lambda: qz.threshold(np.ones(3), "percentile", 0), "percentile"),
    (lambda: qz.threshold(np.ones(3), "percentile", 101), "percentile"),
    (lambda: qz.threshold(np.array([]), "max"), "empty"),
    (lambda: qz.apply(torch.nn.Linear(2, 2), "half"), "mode"),
    (lambda: qz.apply(torch.nn.Linear(2, 2), "last", "int4"), "variant"),
    (lambda: qz.apply(torch.nn.ReLU(), "last"), "no Linear"),
    (lambda: qz.QuantizedTensor.from_bytes(qz.QuantizedTensor(np.zeros(2, np.int16), np.float32(1)).to_bytes()),
     "not a serialized"),
])
def test_bad_requests(call, match):
    with pytest.raises(QuantizationError, match=match):
        call()
