"""Figures read at the book's width: no text below 7 pt once scaled to the text column, tick
labels as numbers, accuracy axes from 0."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cbirlib.reporting import plots, regimeplots, securityplots

MIN_PT = 7.0


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _confusion(models=("vit", "vgg16"), domains=("plaintext", "MTCE 16-px blocks", "MTCE 8-px blocks",
                                                   "MTCE 4-px blocks", "MTCE 1-px blocks")):
    classes = ["bone", "brain", "chest"]
    return pd.DataFrame([dict(model=m, domain=d, true=t, predicted=p, count=int(t == p) * 20 + 2)
                         for m in models for d in domains for t in classes for p in classes]), classes


def _jigsaw():
    rows = []
    for s in (0, 255):
        for b in (4, 8, 14, 16, 32):
            for attack in ("MTCE, per-image keys", "block shuffle only"):
                rows += [dict(strength=s, block_size=b, attack=attack, metric="neighbour", value=0.5),
                         dict(strength=s, block_size=b, attack=attack, metric="chance_neighbour", value=0.3)]
    return pd.DataFrame(rows)


def _onnx():
    rows = []
    for name, acc, lat, size in (("fp32", 0.70, 2500, 5.9e7), ("int8 (MinMax)", 0.69, 500, 1.5e7),
                                 ("int8 (Entropy)", 0.68, 540, 1.5e7), ("int8 (Percentile)", 0.70, 490, 1.5e7)):
        rows += [dict(model=name, metric="accuracy", value=acc), dict(model=name, metric="latency_ms_batch32", value=lat),
                 dict(model=name, metric="bytes", value=size)]
    return pd.DataFrame(rows)


def _sweep_view():
    rows = []
    for model in ("vit", "vgg16"):
        for trainable in ("all", "head"):
            for key in ("per-image", "shared"):
                for d in ("plaintext", "MTCE 8-px blocks", "MTCE 1-px blocks"):
                    rows.append(dict(model=model, trainable=trainable, key_mode="none" if d == "plaintext" else key,
                                     domain=d, value=0.6, ci_low=0.55, ci_high=0.65, value_probe=0.5,
                                     ci_low_probe=0.45, ci_high_probe=0.55, paper=0.9))
    return pd.DataFrame(rows)


def _history(models=("vit", "vgg16"), domains=("plaintext", "MTCE 16-px blocks", "MTCE 8-px blocks",
                                              "MTCE 4-px blocks", "MTCE 1-px blocks")):
    rows = []
    for m in models:
        for i, d in enumerate(domains):
            for e in range(1, 31):
                rows.append(dict(model=m, domain=d, epoch=e, val_accuracy=min(0.99, 0.3 + 0.02 * e + 0.01 * i),
                                 train_loss=1.1 / e, best=e == 30))
    return pd.DataFrame(rows)


def _frontier():
    return pd.DataFrame([dict(model=m, block_size=b, probe_accuracy=0.35 + 0.018 * b + 0.02 * k,
                              accuracy=0.38 + 0.017 * b + 0.01 * k)
                         for k, m in enumerate(("vit", "vgg16")) for b in (4, 8, 14, 16, 32)])


def _trend():
    return pd.DataFrame([dict(series=s, image_size=z, n=900, value=v, ci_low=v - 0.03, ci_high=v + 0.03)
                         for s, v in (("plaintext", 0.95), ("8-px blocks, shared keys", 0.8),
                                      ("8-px blocks, per image keys", 0.5)) for z in (56, 112, 224)])


def _live_table():
    rows = []
    for model in ("vit", "vgg16"):
        for d, v in (("plaintext", 0.97), ("MTCE 16-px blocks", 0.8), ("MTCE 14-px blocks", 0.75),
                     ("MTCE 8-px blocks", 0.6), ("MTCE 1-px blocks", 0.35)):
            rows.append(dict(model=model, domain=d, metric="accuracy", value=v, **{"class": "all"}, source="ours"))
    return pd.DataFrame(rows)


FIGURES = {
    "confusion matrices (10 panels)": lambda: plots.confusion_matrices(*_confusion()),
    "Fig. 8 (long variant names)": lambda: plots.confusion_matrices(*_confusion(
        ("vgg16",), ("fp32 (no quantization)", "last layer (max), int8 + fine-tuning",
                     "fully (int8 weights, activations uncalibrated: range [-1, 1] assumed)"))),
    "jigsaw attack": lambda: securityplots.attack_success(_jigsaw()),
    "int8 trade-off": lambda: plots.quant_tradeoff(_onnx()),
    "classification sweep": lambda: plots.sweep_accuracy(_sweep_view(), "a title"),
    "training curves (10 lines)": lambda: plots.training_curves(_history()),
    "accuracy against block size (14 and 16 px)": lambda: plots.accuracy_vs_block_size(_live_table()),
    "privacy-utility frontier (two models)": lambda: securityplots.privacy_utility(_frontier(), chance=1 / 3),
    "accuracy against image size": lambda: regimeplots.size_trend(_trend(), {"paper, plaintext": 0.97}),
}


@pytest.mark.parametrize("name", FIGURES)
def test_no_two_texts_overlap_and_no_legend_covers_a_line(name):
    """Tick labels that never run together ('14' '16' read as '1416'), labels not printed over each
    other, legends beside the data rather than over it."""
    fig = FIGURES[name]()
    assert plots.text_overlaps(fig) == [], name
    assert plots.legend_covers_data(fig) == [], name


@pytest.mark.parametrize("name", FIGURES)
def test_no_text_is_smaller_than_7_pt_at_the_books_width(name):
    fig = FIGURES[name]()
    assert plots.smallest_text_pt(fig) >= MIN_PT, name


def test_the_jigsaw_axis_shows_the_block_sizes_and_nothing_else():
    fig = securityplots.attack_success(_jigsaw())
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels(minor=False) if t.get_text()]
    assert labels == ["4", "8", "14", "16", "32"]
    assert not [t.get_text() for t in fig.axes[0].get_xticklabels(minor=True) if t.get_text()]


def test_the_int8_tradeoff_accuracy_axis_starts_at_0():
    ax = plots.quant_tradeoff(_onnx()).axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_xlim()[0] == 0


def test_smallest_text_scales_a_wide_figure_down():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14.4, 2))
    ax.set_title("x", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    assert plots.smallest_text_pt(fig) == pytest.approx(5.0)
    assert np.isfinite(plots.smallest_text_pt(fig, width_in=14.4))


def test_the_montage_reads_at_the_books_width(default_dataset):
    fig = plots.montage(default_dataset, per_class=8)
    assert fig.get_figwidth() <= plots.BOOK_WIDTH_IN
    assert plots.smallest_text_pt(fig) >= MIN_PT
    assert plots.text_overlaps(fig) == []
