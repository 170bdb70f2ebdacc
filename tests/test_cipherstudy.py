"""The cipher chapter's controls: AES controls beside the paper's AES column, SSIM conventions."""

import numpy as np
import pandas as pd
import pytest

from cbirlib import paper
from cbirlib.studies import cipherstudy


def _images(n=3, size=32):
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size * size * 3).reshape(size, size, 3)
    return np.stack([np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8) for _ in range(n)])


def test_the_mean_valued_constant_control_has_the_images_variance_as_mse():
    image = _images(1)[0]
    control = cipherstudy.baseline_ciphertexts(image)["constant image (the image's mean)"]
    assert np.unique(control).tolist() == [round(float(image.mean()))]
    mse = float(((image.astype(float) - control) ** 2).mean())
    assert mse == pytest.approx(image.astype(float).var(), rel=1e-3)


def test_aes_controls_rank_a_control_that_matches_the_paper_first():
    aes = paper.TABLE_V["AES"]
    rows = []
    for method, scale in (("AES-128-CTR", 1.0), ("constant image (all 0)", 3.0)):
        for metric in ("entropy", "mse", "ssim", "psnr"):
            rows.append(dict(method=method, metric=metric, mean=aes[metric] * scale, std=0.0, n=3))
    controls = cipherstudy.aes_controls(pd.DataFrame(rows), aes)
    d = controls[controls.metric.str.startswith("distance")].set_index("method")["ours"]
    assert d["AES-128-CTR"] == pytest.approx(0.0) and d["constant image (all 0)"] == pytest.approx(np.log(3.0))
    assert "Closest on MSE, SSIM and PSNR together: AES-128-CTR" in cipherstudy.aes_controls_finding(controls)


def test_every_ssim_convention_gives_1_for_identical_images_and_less_for_noise():
    images = _images()
    noisy = np.clip(images.astype(int) + np.random.default_rng(1).integers(-60, 60, images.shape), 0, 255).astype(np.uint8)
    table = cipherstudy.ssim_conventions(images, {"same": images, "noisy": noisy})
    same = table[table.setting == "same"]
    assert same.value.to_numpy() == pytest.approx(1.0)
    assert (table[table.setting == "noisy"].value < 0.99).all()
    summary = cipherstudy.summarize(table, ("setting", "convention"))
    assert "reaching the paper's value" in cipherstudy.ssim_finding(summary, 0.273)
    assert "still below it" in cipherstudy.ssim_finding(summary[summary.setting == "noisy"], 0.999)
