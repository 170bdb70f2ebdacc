import numpy as np
import torch
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from dataclasses import replace

from cbirlib.core import cipher
from cbirlib.datasets import data
from cbirlib.learning import evaluate, fitting, train
from cbirlib.learning.experimentconfig import Domain, ExperimentConfig, ExperimentError


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60))
@settings(max_examples=100, deadline=None)
def test_metrics_agree_with_scikit_learn(pairs):
    y_true = [a for a, _ in pairs]
    y_pred = [b for _, b in pairs]
    classes = ["a", "b", "c"]
    pc = evaluate.per_class_metrics(y_true, y_pred, classes)
    labels = [0, 1, 2]
    np.testing.assert_allclose(pc.precision, precision_score(y_true, y_pred, labels=labels, average=None,
                                                             zero_division=np.nan), equal_nan=True)
    np.testing.assert_allclose(pc.recall, recall_score(y_true, y_pred, labels=labels, average=None,
                                                       zero_division=np.nan), equal_nan=True)
    assert pc.accuracy_overall.iloc[0] == pytest.approx(accuracy_score(y_true, y_pred))
    present = sorted(set(y_true))
    summary = evaluate.summary_metrics(y_true, y_pred, classes)
    assert summary["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro",
                                                         zero_division=0))
    cm = evaluate.confusion_matrix(y_true, y_pred, 3)
    for k in range(3):  # one-vs-rest accuracy from the confusion matrix
        tn = cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]
        assert pc.accuracy_ovr.iloc[k] == pytest.approx((cm[k, k] + tn) / cm.sum())


def test_undefined_precision_is_nan_not_zero():
    pc = evaluate.per_class_metrics([0, 1, 2], [0, 0, 2], ["a", "b", "c"])
    assert np.isnan(pc.precision.iloc[1]) and pc.recall.iloc[1] == 0.0


@pytest.fixture
def toy_folder(tmp_path):
    """3 separable classes of 28x28 RGB images: dark, mid and bright, with noise."""
    rng = np.random.default_rng(0)
    root = tmp_path / "toy"
    for k, (cls, level) in enumerate((("dark", 40), ("mid", 128), ("bright", 215))):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            img = np.clip(rng.normal(level, 25, (28, 28, 3)), 0, 255).astype(np.uint8)
            img[: 4 + 6 * k] = 255 - img[: 4 + 6 * k]  # a class-specific stripe
            Image.fromarray(img).save(root / cls / f"{i}.png")
    return root


def toy_config(folder, **kw):
    base = dict(model="vgg16", weights="none", data=str(folder), domains=("plain",), image_size=32,
                trainable="head", epochs=40, batch_size=16, lr=1e-2, seed=0, profile="ci")
    return ExperimentConfig(**(base | kw))


def test_tiny_training_learns_and_is_deterministic(toy_folder):
    cfg = toy_config(toy_folder)
    a = train.run_experiment(cfg, progress=False)
    acc = evaluate.summary_metrics(a.results[0].y_true, a.results[0].y_pred, a.classes)["accuracy"]
    assert acc > 0.6, acc  # chance is 1/3
    b = train.run_experiment(cfg, progress=False)
    assert np.array_equal(a.results[0].y_pred, b.results[0].y_pred)
    assert a.results[0].history.equals(b.results[0].history)


def test_full_fine_tuning_runs(toy_folder):
    cfg = toy_config(toy_folder, model="vgg16", trainable="all", epochs=2, image_size=32, lr=1e-4)
    exp = train.run_experiment(cfg, progress=False)
    assert len(exp.results[0].history) == 2 and exp.results[0].best_epoch in (1, 2)
    assert exp.provenance["device"] in ("cpu", "cuda")


def test_encrypted_domain_feeds_encrypted_images(toy_folder, monkeypatch):
    cfg = toy_config(toy_folder, domains=(4,), epochs=2)
    ds = data.open_dataset(str(toy_folder))
    splits = train.prepare_splits(cfg, ds, Domain(4))
    plain, _, ids = ds.load("train", 32)
    expected = cipher.encrypt_with_ids(plain, ids, train.domain_key(cfg, Domain(4)))
    assert np.array_equal(splits["train"].images, expected)
    assert not np.array_equal(splits["train"].images, plain)
    seen = []
    original = train.features.extract

    def spy(bundle, images, **k):
        seen.append(images)
        return original(bundle, images, **k)

    monkeypatch.setattr(train.features, "extract", spy)
    train.run_domain(cfg, ds, 4, progress=False, cache_features=False)
    assert any(np.array_equal(x, expected) for x in seen)


def test_shared_key_mode(toy_folder):
    cfg = toy_config(toy_folder, key_mode="shared", domains=(4,))
    ds = data.open_dataset(str(toy_folder))
    splits = train.prepare_splits(cfg, ds, Domain(4))
    plain, _, _ = ds.load("train", 32)
    assert np.array_equal(splits["train"].images, cipher.encrypt(plain, train.domain_key(cfg, Domain(4))))


@pytest.mark.parametrize("kw, match", [
    (dict(model="resnet"), "unknown model"),
    (dict(domains=(5,)), "does not divide image size 32"),
    (dict(domains=("rot13",)), "unknown domain"),
    (dict(trainable="some"), "trainable"),
    (dict(key_mode="none"), "key_mode"),
    (dict(epochs=0), "epochs"),
    (dict(lr=0.0), "lr"),
])
def test_bad_parameters(toy_folder, kw, match):
    with pytest.raises(ExperimentError, match=match):
        toy_config(toy_folder, **kw)


def test_empty_split_is_a_clear_error(toy_folder, tmp_path):
    ds = data.load_image_folder(toy_folder)
    split = ds.table[["path"]].assign(split="train")
    split_file = tmp_path / "split.csv"
    split.to_csv(split_file, index=False)
    ds2 = data.load_image_folder(toy_folder, split_file=split_file)
    with pytest.raises(ExperimentError, match="val split .* is empty"):
        train.prepare_splits(toy_config(toy_folder), ds2, Domain(None))


def test_differences_from_paper_are_stated(toy_folder):
    lines = toy_config(toy_folder).differences_from_paper()
    assert any("frozen" in line for line in lines) and any("image_size 32" in line for line in lines)
    assert ExperimentConfig(profile="paper").differences_from_paper() == []
    assert Domain.parse("plain").name == "plaintext" and Domain.parse("b8").block_size == 8


def test_tables_have_the_tidy_schema(toy_folder):
    exp = train.run_experiment(toy_config(toy_folder, epochs=3), progress=False)
    t = evaluate.experiment_table(exp)
    assert list(t.columns) == ["model", "domain", "class", "metric", "value", "source"]
    assert set(t.source) == {"ours"}
    c = evaluate.confusion_table(exp)
    assert c["count"].sum() == len(exp.results[0].y_true)
    assert isinstance(evaluate.history_table(exp), pd.DataFrame)


def test_model_specific_sizes(toy_folder):
    with pytest.raises(ExperimentError, match="multiple of 14"):
        toy_config(toy_folder, model="vit", image_size=32)
    with pytest.raises(ExperimentError, match=">= 32"):
        toy_config(toy_folder, image_size=28, domains=("plain",))


def test_early_stopping_keeps_the_best_epoch():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(module.parameters(), lr=0.0)  # nothing changes: validation never improves
    x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    out = fitting.fit(module, opt, lambda idx: torch.nn.functional.cross_entropy(module(x[idx]), y[idx]), 8, 4,
                    lambda: module(x).argmax(1).numpy(), y.numpy(), epochs=20, seed=0, patience=3)
    assert out.stopped_early and len(out.history) == 4 and out.best_epoch == 1


def test_fold_split_tests_every_image_once(toy_folder):
    cfg = toy_config(toy_folder, split="kfold", folds=3, epochs=5)
    ds = data.open_dataset(str(toy_folder))
    tested = []
    for f in range(3):
        r = train.run_domain(replace(cfg, fold=f), ds, "plain", progress=False)
        tested += r.test_ids
    assert sorted(tested) == sorted(ds.table.path)
    with pytest.raises(ExperimentError, match="fold must be"):
        toy_config(toy_folder, split="kfold", folds=3, fold=3)
    with pytest.raises(ExperimentError, match="volume column"):
        train.fold_dataset(toy_config(toy_folder, split="volume"), ds)


def test_end_to_end_uses_a_lower_rate_for_pretrained_layers(toy_folder):
    bundle = train.models.build_model("vgg16", 3, "none", 32)
    groups = train.parameter_groups(bundle.model, 1e-3, 1e-5)
    assert [g["lr"] for g in groups] == [1e-5, 1e-3]
    n_head = sum(p.numel() for p in groups[1]["params"])
    assert n_head == sum(p.numel() for p in bundle.model.classifier.parameters())
    cfg = toy_config(toy_folder, trainable="all", epochs=3, patience=1, backbone_lr=1e-5, lr=1e-4)
    assert any("learning rate 1e-05" in d for d in cfg.differences_from_paper())
    assert any("early stopping" in d for d in cfg.differences_from_paper())


@given(st.integers(1, 5000), st.floats(0.01, 0.5))
@settings(max_examples=60, deadline=None)
def test_warmup_cosine_rises_then_falls_to_zero(total, warmup):
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    f = train.warmup_cosine(opt, total, warmup).lr_lambdas[0]
    values = [f(s) for s in range(total + 1)]
    warm = max(1, round(warmup * total))
    assert all(0 <= v <= 1 for v in values)
    assert values[warm - 1] == 1.0 and values[total] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(values[:warm - 1], values[1:warm]))  # the warm-up rises
    assert all(a >= b for a, b in zip(values[warm - 1:], values[warm:]))  # then only falls


def test_warmup_cosine_schedule_spans_every_step_of_training(toy_folder, monkeypatch):
    calls = []
    real = train.warmup_cosine
    monkeypatch.setattr(train, "warmup_cosine", lambda opt, steps: calls.append(steps) or real(opt, steps))
    cfg = toy_config(toy_folder, trainable="all", epochs=2, lr=1e-4, schedule="warmup-cosine", train_per_class=5)
    assert any("cosine" in d for d in cfg.differences_from_paper())
    train.run_experiment(cfg, progress=False)
    assert calls == [2 * -(-15 // 16)]  # epochs x batches per epoch (15 training images, batch 16)
    with pytest.raises(ExperimentError, match="schedule must be one of"):
        toy_config(toy_folder, schedule="linear")


def test_head_epochs_train_the_new_layers_alone_first(toy_folder, monkeypatch):
    """Linear probing, then fine-tuning: during the head epochs no pretrained weight changes."""
    cfg = toy_config(toy_folder, trainable="all", epochs=1, head_epochs=2, lr=1e-3, train_per_class=5)
    assert any("new layers alone" in d for d in cfg.differences_from_paper())
    bundle = train.models.build_model("vgg16", 3, "none", 32, seed=0)
    before = {n: p.detach().clone() for n, p in bundle.model.named_parameters()}
    seen = []
    real_fit = train.fit

    def spy(module, *args, **kw):
        out = real_fit(module, *args, **kw)
        seen.append({n: p.detach().clone() for n, p in module.named_parameters()})
        return out

    monkeypatch.setattr(train, "fit", spy)
    ds = data.open_dataset(str(toy_folder))
    result = train.fine_tune(cfg, bundle, train.prepare_splits(cfg, ds, Domain.parse("plain")),
                             train.device_for("cpu"))
    after_head = seen[0]
    assert all(torch.equal(after_head[n], before[n]) for n in before if not n.startswith("classifier."))
    assert any(not torch.equal(after_head[n], before[n]) for n in before if n.startswith("classifier."))
    assert list(result.history.epoch) == [1, 2, 3] and result.best_epoch == 3
    assert all(p.requires_grad for p in bundle.model.parameters())
    with pytest.raises(ExperimentError, match="head_epochs"):
        toy_config(toy_folder, head_epochs=-1)
