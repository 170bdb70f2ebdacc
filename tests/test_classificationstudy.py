"""Sweep points and their aggregation: every image once, intervals, paired tests."""

import json

import numpy as np
import pytest
from PIL import Image

from cbirlib.learning.experimentconfig import ExperimentError
from cbirlib.studies import classificationstudy as cs


@pytest.fixture
def toy(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "toy"
    for k, (cls, level) in enumerate((("dark", 40), ("mid", 128), ("bright", 215))):
        (root / cls).mkdir(parents=True)
        for i in range(15):
            img = np.clip(rng.normal(level, 25, (28, 28, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def point(folder, **kw):
    return dict(data=str(folder), model="vgg16", weights="none", trainable="head", image_size=32, epochs=5,
                batch_size=16, lr=1e-2, split="kfold", folds=3, retrieval=True) | kw


def test_points_and_aggregate(toy, tmp_path):
    out = tmp_path / "points"
    for key_mode in ("per-image", "shared"):
        for f in range(3):
            p = point(toy, domain=4, key_mode=key_mode, fold=f)
            rec = json.loads(cs.run_point(p, out / cs.point_id(p)).read_text())
            assert rec["counts"]["test"] > 0 and "random stratified" in rec["split"]
    tables = cs.aggregate(out, expected_images=45)
    acc = tables["accuracy"]
    fp32 = acc[(acc.variant == "fp32") & (acc.seed == "0")]
    assert len(fp32) == 2 and (fp32.n == 45).all() and fp32.complete.all()
    assert ((fp32.ci_low <= fp32.value) & (fp32.value <= fp32.ci_high)).all()
    probe = acc[acc.variant == "ciphertext-statistics probe"]
    assert len(probe) == 4  # per seed and the seeds' mean, for both key modes
    paired = tables["paired"]
    row = paired[paired.kind == "key mode"].iloc[0]
    assert row.n == 45 and 0 <= row.p_value <= 1
    r = tables["retrieval"]
    assert set(r.metric) == {"mAP", "precision@10"} and (r.n == 45).all()
    assert not list(out.glob(".*")), "no temporary folder left"


def test_unknown_point_parameter_is_a_clear_error(toy):
    with pytest.raises(ExperimentError, match="unknown point parameter"):
        cs.point_config(point(toy, colour="red"))


def test_point_id_changes_with_any_parameter(toy):
    a = cs.point_id(point(toy, domain=8))
    assert a == cs.point_id(point(toy, domain=8)) and a != cs.point_id(point(toy, domain=8, epochs=6))
    assert a.startswith("vgg16-head-b8-per-image-s0-kfold0-")


def test_aggregate_without_points(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished points"):
        cs.aggregate(tmp_path)


def test_paper_profile_is_table_iv_with_mixed_precision_recorded():
    cfg = cs.config_for("paper", "vgg16", weights="none")
    assert (cfg.image_size, cfg.trainable, cfg.epochs, cfg.batch_size, cfg.lr) == (224, "all", 100, 32, 1e-3)
    assert cfg.amp and cfg.patience is None and cfg.backbone_lr is None
    assert cfg.differences_from_paper() == ["mixed precision (bfloat16 autocast); the paper does not say"]


def test_amp_trains_in_bfloat16_on_the_cpu_too(toy):
    import torch

    from cbirlib.datasets import data
    from cbirlib.learning import train

    with train._autocast(torch.device("cpu"), True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with train._autocast(torch.device("cpu"), False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    cfg = cs.point_config(point(toy, domain="plain", trainable="all", epochs=1, amp=True, fold=0))
    res = train.run_domain(cfg, data.open_dataset(str(toy)), "plain", progress=False)
    assert len(res.y_pred) == len(res.y_true) > 0


def test_regimes_are_told_apart_and_encrypted_runs_are_paired_with_plaintext(toy, tmp_path):
    """Points that differ only in how they were trained (here the epochs) are separate rows, each
    with its regime in words; every encrypted run gets an exact McNemar test against the plaintext
    run of the same regime and seed."""
    out = tmp_path / "points"
    for epochs in (3, 4):
        for domain in ("plain", 4):
            for f in range(3):
                p = point(toy, domain=domain, fold=f, epochs=epochs, probe=False, retrieval=False)
                cs.run_point(p, out / cs.point_id(p))
    tables = cs.aggregate(out, expected_images=45)
    acc = tables["accuracy"]
    fp32 = acc[(acc.variant == "fp32") & (acc.seed == "0")]
    assert len(fp32) == 4 and (fp32.n == 45).all()
    assert set(fp32.regime) == {"head only, 3 epochs, lr 0.01", "head only, 4 epochs, lr 0.01"}
    domain = tables["paired"][tables["paired"].kind == "domain"]
    assert len(domain) == 2 and set(domain.a) == {"plaintext"} and set(domain.b) == {"MTCE 4-px blocks"}
    assert (domain.n == 45).all() and domain.regime.is_unique


def test_regime_text_of_a_head_only_run():
    assert cs.regime_text(dict(trainable="head", epochs=100, lr=1e-3)) == "head only, 100 epochs, lr 0.001"
    assert cs.regime_text(dict(trainable="all", epochs=10, patience=3, lr=1e-3, backbone_lr=1e-3, amp=True)) == (
        "end to end, 10 epochs, patience 3, lr 0.001, bf16")
    assert cs.regime_text(dict(trainable="all", epochs=4, lr=1e-3, backbone_lr=1e-5, schedule="warmup-cosine")) == (
        "end to end, 4 epochs, lr 0.001 (pretrained 1e-05), warmup-cosine")


def test_two_regimes_of_one_run_are_paired():
    """The same end-to-end run trained two ways (say bf16 and fp32) gets one exact McNemar row."""
    import pandas as pd

    base = dict(model="vit", trainable="all", domain="plaintext", key_mode="none", split="kfold", strength=255,
                image_size=112, lr=1e-3, seed=0, variant="fp32")
    rows = []
    for regime, right in (("end to end, 4 epochs, lr 0.001, bf16", [True] * 8 + [False] * 2),
                          ("end to end, 4 epochs, lr 0.001", [True] * 5 + [False] * 5)):
        rows += [base | dict(regime=regime, id=f"img{i}", correct=c) for i, c in enumerate(right)]
    paired = cs.paired_table(pd.DataFrame(rows))
    r = paired[paired.kind == "regime"]
    assert len(r) == 1 and r.n.iloc[0] == 10 and {r.a.iloc[0], r.b.iloc[0]} == {rows[0]["regime"], rows[-1]["regime"]}
    assert r.a_only.iloc[0] + r.b_only.iloc[0] == 3
