"""Encryption-quality metrics (the paper's Table V and the field's standard ones) and AES baselines.

Conventions: images are uint8 arrays (H, W) or (H, W, C); metrics pool all channels unless
stated. scikit-image computes entropy, MSE, PSNR and SSIM; the rest are a few lines of numpy.
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from skimage.measure import shannon_entropy
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

#: chi-square critical value for 255 degrees of freedom at alpha = 0.05
CHI2_CRITICAL_255_005 = 293.2478
AES_MODES = ("ECB", "CBC", "CTR")


def _u8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {a.dtype}")
    return a


def entropy(img: np.ndarray) -> float:
    """Shannon entropy of the pixel values in bits (scikit-image; 8 = uniform histogram)."""
    return float(shannon_entropy(_u8(img), base=2))


def entropy_with_epsilon(img: np.ndarray, eps: float = 1e-10) -> float:
    """``-sum(p * log2(p + eps))`` over the 256-bin histogram: a common hand-written entropy.

    For a constant image (one occupied bin, p = 1) it returns -log2(1 + 1e-10)
    = -1.4426951601859516e-10, whose magnitude is exactly the paper's AES entropy.
    """
    p = np.bincount(_u8(img).ravel(), minlength=256) / _u8(img).size
    return float(-np.sum(p * np.log2(p + eps)))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error between two uint8 images (scikit-image)."""
    return float(mean_squared_error(_u8(a).astype(np.float64), _u8(b).astype(np.float64)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, data range 255 (scikit-image); inf for identical images."""
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(_u8(a), _u8(b), data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (scikit-image, 7x7 window, channels averaged)."""
    a, b = _u8(a), _u8(b)
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1 if a.ndim == 3 else None))


def adjacent_correlation(img: np.ndarray, direction: str) -> float:
    """Pearson correlation of all horizontally, vertically or diagonally adjacent pixel pairs
    (channels pooled). Near 1 for natural images, near 0 for a good cipher; NaN if constant."""
    a = _u8(img).astype(np.float64)
    if a.ndim == 2:
        a = a[..., None]
    pairs = {"horizontal": (a[:, :-1], a[:, 1:]), "vertical": (a[:-1, :], a[1:, :]),
             "diagonal": (a[:-1, :-1], a[1:, 1:])}
    if direction not in pairs:
        raise ValueError(f"direction must be one of {tuple(pairs)}, got {direction!r}")
    x, y = (p.ravel() for p in pairs[direction])
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def chi_square(img: np.ndarray) -> float:
    """Histogram chi-square against the uniform distribution over 256 values (channels pooled).
    Below :data:`CHI2_CRITICAL_255_005` the histogram passes as uniform at alpha = 0.05."""
    counts = np.bincount(_u8(img).ravel(), minlength=256).astype(np.float64)
    expected = counts.sum() / 256.0
    return float(((counts - expected) ** 2 / expected).sum())


def npcr_uaci(c1: np.ndarray, c2: np.ndarray) -> tuple[float, float]:
    """NPCR (% of values that differ) and UACI (mean |c1 - c2| / 255, in %) of two ciphertexts.
    Ideal for a cipher with full diffusion: about 99.61 % and 33.46 %."""
    a, b = _u8(c1).astype(np.int16), _u8(c2).astype(np.int16)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float((a != b).mean() * 100.0), float(np.abs(a - b).mean() / 255.0 * 100.0)


def one_pixel_change(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """A copy of ``img`` with one value (chosen by ``seed``) increased by 1 mod 256."""
    out = _u8(img).copy()
    flat = out.reshape(-1)
    i = np.random.default_rng(seed).integers(flat.size)
    flat[i] = (int(flat[i]) + 1) % 256  # 255 wraps to 0 (in Python ints: no overflow warning)
    return out


def aes_encrypt_image(img: np.ndarray, key: bytes, mode: str, iv: bytes | None = None) -> np.ndarray:
    """AES (key of 16 or 32 bytes) in ECB, CBC or CTR mode over the image bytes, shaped back into
    an image of the same shape. ECB/CBC input is zero-padded to whole 16-byte blocks and the
    ciphertext cut back to the image size (enough for metrics; not decryptable as cut)."""
    a = _u8(img)
    if mode not in AES_MODES:
        raise ValueError(f"mode must be one of {AES_MODES}, got {mode!r}")
    if len(key) not in (16, 32):
        raise ValueError("AES keys here are 16 (AES-128) or 32 (AES-256) bytes")
    iv = iv or bytes(16)
    m = {"ECB": modes.ECB(), "CBC": modes.CBC(iv), "CTR": modes.CTR(iv)}[mode]
    data = a.tobytes()
    if mode != "CTR":
        data += bytes(-len(data) % 16)
    enc = Cipher(algorithms.AES(key), m).encryptor()
    out = enc.update(data) + enc.finalize()
    return np.frombuffer(out[:a.size], dtype=np.uint8).reshape(a.shape).copy()


def table_v_metrics(plain: np.ndarray, cipher: np.ndarray) -> dict[str, float]:
    """The paper's Table V metrics of one (plaintext, ciphertext) pair: entropy of the ciphertext,
    and MSE, SSIM, PSNR between plaintext and ciphertext."""
    return {"entropy": entropy(cipher), "mse": mse(plain, cipher), "ssim": ssim(plain, cipher),
            "psnr": psnr(plain, cipher)}


def extended_metrics(cipher: np.ndarray) -> dict[str, float]:
    """The field's ciphertext-only statistics: adjacent correlations and histogram chi-square."""
    return {"corr_horizontal": adjacent_correlation(cipher, "horizontal"),
            "corr_vertical": adjacent_correlation(cipher, "vertical"),
            "corr_diagonal": adjacent_correlation(cipher, "diagonal"),
            "chi_square": chi_square(cipher)}
