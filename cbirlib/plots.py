"""Figures shared by the notebooks (matplotlib; no logic beyond drawing)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .data import ImageDataset, read_rgb


def montage(dataset: ImageDataset, per_class: int = 6, split: str | None = None,
            image_size: int = 224) -> plt.Figure:
    """One row per class, ``per_class`` images spread evenly over the class (titles: plane, source)."""
    classes = dataset.classes
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.6 * per_class, 1.75 * len(classes)),
                             squeeze=False)
    rows = dataset.subset(split, per_class)
    for r, cls in enumerate(classes):
        sub = rows[rows.label == cls]
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(sub):
                continue
            row = sub.iloc[c]
            ax.imshow(read_rgb(dataset.root / row.path, image_size, dataset.resize))
            title = f"{row.get('plane', '')} {row.get('volume', '')}".strip() or row.path
            ax.set_title(title, fontsize=6)
        axes[r, 0].text(-0.08, 0.5, cls, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, titles: list[str] | None = None, cols: int = 6) -> plt.Figure:
    """(N, H, W, 3) uint8 images in a grid."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            ax.imshow(images[k])
            if titles:
                ax.set_title(titles[k], fontsize=6)
    fig.tight_layout()
    return fig
