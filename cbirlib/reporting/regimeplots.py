"""Figures of the regime where plaintext reaches the paper's level (issue 28): accuracy against
image size with intervals (matplotlib; no logic beyond drawing)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

#: series of :func:`cbirlib.reporting.regimetables.size_trend`, in drawing order, with their markers
SERIES = {"plaintext": "o", "8-px blocks, shared keys": "s", "8-px blocks, per image keys": "^"}


def size_trend(trend, paper: dict[str, float] | None = None, title: str = "") -> plt.Figure:
    """Accuracy over every image (95 % Wilson intervals) against the image size, one line per
    series of ``trend`` (columns series, image_size, value, ci_low, ci_high); ``paper`` maps a
    label to a value drawn as a dashed horizontal line (the paper's accuracies, at 224 px). The
    dotted line is chance (three balanced classes)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    colours = dict(zip(SERIES, sns.color_palette("colorblind", len(SERIES))))
    sizes = sorted(set(trend.image_size))
    for name, marker in SERIES.items():
        g = trend[trend.series == name].sort_values("image_size")
        if g.empty:
            continue
        ax.errorbar(g.image_size, g.value, yerr=[g.value - g.ci_low, g.ci_high - g.value], marker=marker,
                    capsize=3, linewidth=1.4, markersize=5, color=colours[name], label=name)
    for i, (label, value) in enumerate((paper or {}).items()):
        ax.axhline(value, color=sns.color_palette("dark", 8)[i + 3], linestyle="--", linewidth=1, label=label)
    ax.axhline(1 / 3, color="grey", linestyle=":", linewidth=1, label="chance (1/3)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{s} px" for s in sizes])
    ax.minorticks_off()
    ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("image size (side, pixels)", fontsize=9)
    ax.set_ylabel("accuracy, every image (95% CI)", fontsize=9)
    ax.tick_params(labelsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
