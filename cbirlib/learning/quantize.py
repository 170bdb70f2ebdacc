"""Quantization: calibrators, symmetric int8, the paper's Algorithm 2 as written, fake quantization.

Calibrators choose a clipping threshold T for a tensor; the int8 scale is T / 127 and
quantization is symmetric: ``q = clamp(round(x / scale), -127, 127)`` stored as int8 with an fp32
scale, per tensor or per output channel (axis 0).

- ``max``: T = max |x|.
- ``percentile``: T = the p-th percentile of |x| (99 by default, as the paper).
- ``kl``: TensorRT's entropy calibration: a 2048-bin histogram of |x|; for every candidate
  threshold bin i >= 128, clip the outliers into bin i, quantize the i bins to 128 levels, expand
  back, and keep the i with the smallest KL(P || Q).
- ``mse``: the T (of 100 candidates up to max |x|) with the smallest quantize-dequantize error.

:func:`paper_literal` is Algorithm 2 exactly as printed: W is divided by W_max (or W_99, or the KL
threshold) and put back, with no rounding and no scale kept — a rescaling, not a quantization.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CALIBRATORS = ("max", "percentile", "kl", "mse")
QMAX = 127


class QuantizationError(ValueError):
    """A mode, calibrator or percentile the quantizer does not take."""


def _abs(x) -> np.ndarray:
    a = np.abs(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)).ravel()
    if a.size == 0:
        raise QuantizationError("cannot calibrate an empty tensor")
    return a


def threshold_max(x) -> float:
    return float(_abs(x).max())


def threshold_percentile(x, percentile: float = 99.0) -> float:
    if not 0 < percentile <= 100:
        raise QuantizationError(f"percentile must be in (0, 100], got {percentile!r}")
    return float(np.percentile(_abs(x), percentile))


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give empty bins of a histogram of counts a mass ``eps`` taken evenly from the others
    (MXNet/TensorRT smoothing), so KL(P || Q) stays finite where Q has no mass."""
    zeros = p == 0
    n_zero = int(zeros.sum())
    if n_zero == 0 or n_zero == p.size:
        return p
    return np.where(zeros, eps, p - eps * n_zero / (p.size - n_zero))


def threshold_kl(x, bins: int = 2048, levels: int = 128) -> float:
    """TensorRT entropy calibration on the histogram of |x| (see the module docstring)."""
    a = _abs(x)
    top = a.max()
    if top == 0:
        return 0.0
    hist, edges = np.histogram(a, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best_i, best_kl = bins, np.inf
    for i in range(levels, bins + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # clip the outliers into the last kept bin
        nonzero = p > 0
        # Q: the i bins WITHOUT the outliers, merged into `levels` groups, each group's mass spread
        # over its nonzero bins (as TensorRT / MXNet do); clipping shows up as mass P has, Q lacks
        groups = np.arange(i) * levels // i
        mass = np.bincount(groups, weights=hist[:i], minlength=levels)
        count = np.bincount(groups, weights=nonzero.astype(np.float64), minlength=levels)
        q = np.where(nonzero, mass[groups] / np.maximum(count[groups], 1), 0.0)
        if q.sum() == 0:
            continue
        ps, qs = _smooth(p), _smooth(q)  # on counts, as MXNet/TensorRT: eps is tiny beside them
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def threshold_mse(x, candidates: int = 100) -> float:
    a = _abs(x)
    top = a.max()
    if top == 0:
        return 0.0
    best_t, best_err = top, np.inf
    for t in np.linspace(top / candidates, top, candidates):
        s = t / QMAX
        err = np.mean((a - np.clip(np.round(a / s), 0, QMAX) * s) ** 2)
        if err < best_err:
            best_t, best_err = float(t), err
    return best_t


def threshold(x, calibrator: str = "max", percentile: float = 99.0) -> float:
    """The clipping threshold of ``x`` for a calibrator."""
    if calibrator == "max":
        return threshold_max(x)
    if calibrator == "percentile":
        return threshold_percentile(x, percentile)
    if calibrator == "kl":
        return threshold_kl(x)
    if calibrator == "mse":
        return threshold_mse(x)
    raise QuantizationError(f"unknown calibrator {calibrator!r}; choose one of {CALIBRATORS}")


@dataclass
class QuantizedTensor:
    """int8 values and fp32 scale(s): ``value ~= q * scale`` (scale per tensor, or per output
    channel broadcast along axis 0)."""

    q: np.ndarray  # int8
    scale: np.ndarray  # float32, shape () or (C,)

    def dequantize(self) -> np.ndarray:
        s = self.scale.reshape((-1,) + (1,) * (self.q.ndim - 1)) if self.scale.ndim else self.scale
        return self.q.astype(np.float32) * s

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scale.nbytes

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, q=self.q, scale=self.scale)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "QuantizedTensor":
        with np.load(io.BytesIO(data)) as z:
            if z["q"].dtype != np.int8 or z["scale"].dtype != np.float32:
                raise QuantizationError("not a serialized QuantizedTensor")
            return cls(z["q"], z["scale"])


#: the smallest scale: a threshold so small (subnormal) that threshold / 127 rounds to 0 in float32
#: would otherwise divide by zero (values then come back as NaN)
_MIN_SCALE = float(np.finfo(np.float32).smallest_subnormal)


def quantize(x, calibrator: str = "max", percentile: float = 99.0, per_channel: bool = False) -> QuantizedTensor:
    """Symmetric int8 quantization of ``x`` (numpy or torch) with the calibrator's threshold."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if per_channel:
        t = np.array([threshold(c, calibrator, percentile) for c in a.reshape(len(a), -1)], dtype=np.float32)
        scale = np.where(t > 0, np.maximum(t / QMAX, _MIN_SCALE), 1.0).astype(np.float32)
        s = scale.reshape((-1,) + (1,) * (a.ndim - 1))
    else:
        t = threshold(a, calibrator, percentile)
        scale = np.float32(max(t / QMAX, _MIN_SCALE) if t > 0 else 1.0)
        s = scale
    q = np.clip(np.round(a / s), -QMAX, QMAX).astype(np.int8)
    return QuantizedTensor(q, np.asarray(scale, dtype=np.float32))


def fake_quantize(w: torch.Tensor, calibrator: str = "max", percentile: float = 99.0,
                  per_channel: bool = False) -> torch.Tensor:
    """``dequantize(quantize(w))`` with a straight-through gradient (for quantization-aware
    fine-tuning, Algorithm 3): forward sees the int8 grid, backward passes the gradient as is."""
    deq = torch.from_numpy(quantize(w, calibrator, percentile, per_channel).dequantize()).to(w.device, w.dtype)
    return w + (deq - w).detach()


def paper_literal(w, calibrator: str = "max", percentile: float = 99.0) -> np.ndarray:
    """Algorithm 2 as printed: ``W_q = W / T`` with T = W_max, W_99 or the KL threshold, no
    rounding, no scale kept. For ``max`` the result lies in [-1, 1]."""
    a = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float32)
    t = threshold(a, calibrator, percentile)
    return a / np.float32(t) if t > 0 else a.copy()


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's Linear and Conv2d layers in order (the last one is "the last layer")."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def apply(model: nn.Module, mode: str = "last", variant: str = "int8", calibrator: str = "max",
          percentile: float = 99.0, per_channel: bool = False) -> nn.Module:
    """Replace weights in place: ``mode`` = ``last`` (the last layer) or ``fully`` (every layer);
    ``variant`` = ``int8`` (dequantized int8 grid) or ``literal`` (Algorithm 2 as printed).
    Biases are left in fp32. Returns ``model``."""
    if mode not in ("last", "fully"):
        raise QuantizationError(f"mode must be 'last' or 'fully', got {mode!r}")
    if variant not in ("int8", "literal"):
        raise QuantizationError(f"variant must be 'int8' or 'literal', got {variant!r}")
    if calibrator not in CALIBRATORS:
        raise QuantizationError(f"unknown calibrator {calibrator!r}; choose one of {CALIBRATORS}")
    layers = weight_layers(model)
    if not layers:
        raise QuantizationError("the model has no Linear or Conv2d layer")
    with torch.no_grad():
        for _, layer in (layers if mode == "fully" else layers[-1:]):
            w = layer.weight
            new = (quantize(w, calibrator, percentile, per_channel).dequantize() if variant == "int8"
                   else paper_literal(w, calibrator, percentile))
            w.copy_(torch.from_numpy(np.asarray(new, dtype=np.float32)).to(w.device))
    return model


def memory_bytes(model: nn.Module, mode: str = "last") -> dict[str, int]:
    """Eq. (6) and the paper's per-mode formulas from the real layer sizes: weights of the last
    layer (or all layers) at 4 bytes before, 1 byte + one 4-byte scale per layer after; plus the
    whole model's fp32 bytes (parameters and buffers) for the share."""
    layers = weight_layers(model)
    chosen = layers if mode == "fully" else layers[-1:]
    w = sum(m.weight.numel() for _, m in chosen)
    total = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    return {"weights": w, "fp32_bytes": 4 * w, "int8_bytes": w + 4 * len(chosen), "model_fp32_bytes": total}
