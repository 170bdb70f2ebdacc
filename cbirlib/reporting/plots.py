"""Figures shared by the notebooks (matplotlib; no logic beyond drawing)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..datasets.data import ImageDataset, read_rgb

#: the width (inches) figures are shown at in the book's text column; a wider figure is scaled down
BOOK_WIDTH_IN = 7.2


def smallest_text_pt(fig: plt.Figure, width_in: float = BOOK_WIDTH_IN) -> float:
    """The smallest font size (points) of any visible, non-empty text in ``fig`` as it reads when the
    figure is shown ``width_in`` inches wide (wider figures are scaled down, narrower ones are not
    scaled up)."""
    fig.canvas.draw()
    scale = min(1.0, width_in / fig.get_figwidth())
    sizes = [t.get_fontsize() for t in fig.findobj(plt.Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * scale if sizes else float("inf")


def text_overlaps(fig: plt.Figure, tolerance_px: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of ``fig`` whose boxes overlap by more than
    ``tolerance_px`` (tick labels running together, labels printed over each other)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = list(fig.texts) + [t for leg in fig.legends for t in [*leg.get_texts(), leg.get_title()]]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:  # an axes turned off draws no ticks or axis labels
            texts += [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(which="both"),
                      *ax.get_yticklabels(which="both")]
        if ax.get_legend() is not None:
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]
    out = []
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > tolerance_px and h > tolerance_px:
                out.append((a, b))
    return out


def legend_covers_data(fig: plt.Figure) -> list[str]:
    """Labels of the lines of which a data point lies under a legend drawn inside an axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        if not ax.get_window_extent(renderer).overlaps(box):
            continue  # the legend sits outside the axes
        for line in ax.get_lines():
            xy = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
            if np.any((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)):
                out.append(line.get_label())
    return out


def tick_labels_apart(ax, values, labels, axis: str = "x", ratio: float = 1.35) -> None:
    """Ticks at ``values`` (a log axis) with ``labels``, and no log-scale minor labels; where two
    neighbours are closer than ``ratio`` (14 and 16 px side by side would read as "1416"), the left
    label ends at its tick and the right one starts at its own, so a gap stays between them."""
    values = sorted(values)
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    ticks = set_ticks(values, labels)
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(plt.NullLocator())
    if axis != "x":
        return
    for i, (a, b) in enumerate(zip(values, values[1:])):
        if a > 0 and b / a < ratio:
            ax.get_xticklabels()[i].set_horizontalalignment("right")
            ax.get_xticklabels()[i + 1].set_horizontalalignment("left")


def annotate_apart(ax, xs, ys, texts, *, color=None, fontsize: float = 7, placed: list | None = None) -> list:
    """Label points (``xs``, ``ys``) with ``texts``, each at the first of a few offsets (right-above,
    right-below, left-above, left-below, further out) where its box overlaps no label placed before
    (``placed``: the boxes so far, shared between calls; returned)."""
    offsets = [(4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right"), (6, 13, "left"),
               (6, -20, "left"), (-6, 13, "right"), (-6, -20, "right")]
    placed = [] if placed is None else placed
    renderer = ax.figure.canvas.get_renderer()
    for x, y, text in zip(xs, ys, texts):
        best = None
        for dx, dy, ha in offsets:
            a = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha,
                            color=color)
            box = a.get_window_extent(renderer)
            clash = sum(box.overlaps(b) for b in placed)
            if best is None or clash < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clash, a, box)
            else:
                a.remove()
            if clash == 0:
                break
        placed.append(best[2])
    return placed


def montage(dataset: ImageDataset, per_class: int = 6, split: str | None = None,
            image_size: int = 224) -> plt.Figure:
    """One row per class (its name at the left, horizontal), ``per_class`` images spread evenly over
    the class, each titled with its plane and volume on two short lines; as wide as the book's text
    column, so the titles keep their size there."""
    import textwrap

    classes = dataset.classes
    cell = BOOK_WIDTH_IN / (per_class + 0.8)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(BOOK_WIDTH_IN, (cell + 0.45) * len(classes)),
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
            title = f"{row.get('plane', '')} {row.get('volume', '')}".strip() or Path(row.path).stem
            ax.set_title("\n".join(textwrap.wrap(title, 14)[:2]), fontsize=7)
        axes[r, 0].text(-0.1, 0.5, cls, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout(rect=(0.8 / (per_class + 0.8), 0, 1, 1))
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


def image_table(rows: list[list[np.ndarray]], row_titles: list[str], col_titles: list[str],
                size: float = 1.9) -> plt.Figure:
    """A grid of uint8 images: ``rows[r][c]`` with row and column titles (grey for 1 channel)."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(size * nc, size * nr + 0.3), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(nc):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                img = row[c]
                ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img,
                          cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if r == 0:
                ax.set_title(col_titles[c], fontsize=8)
        axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    return fig


def metric_lines(summary, x: str, metrics: list[str], title: str = "") -> plt.Figure:
    """One small panel per metric: mean (line) and +-1 std (band) against ``x``."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        s = summary[summary.metric == metric].sort_values(x)
        ax.plot(s[x], s["mean"], marker="o")
        ax.fill_between(s[x], s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0), alpha=0.2)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(x)
        if x == "block_size":
            ax.set_xscale("log", base=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrices(confusion, classes: list[str], columns: int = 3) -> plt.Figure:
    """Seaborn heatmaps with counts, one panel per (model, domain), ``columns`` panels a row (the
    book's width), titles wrapped."""
    import textwrap

    import seaborn as sns

    panels = [(m, d) for m in dict.fromkeys(confusion.model) for d in dict.fromkeys(confusion.domain)
              if len(confusion[(confusion.model == m) & (confusion.domain == d)])]
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(2.4 * cols, 2.6 * rows))
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (model, domain) in zip(axes.flat, panels):
        g = confusion[(confusion.model == model) & (confusion.domain == domain)]
        m = g.pivot(index="true", columns="predicted", values="count").reindex(index=classes, columns=classes)
        sns.heatmap(m, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax, square=True, annot_kws={"fontsize": 10})
        ax.set_title("\n".join(textwrap.wrap(f"{model}: {domain}", 26)), fontsize=9)
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("true", fontsize=9)
        ax.tick_params(labelsize=9)
    fig.tight_layout()
    return fig


def training_curves(history) -> plt.Figure:
    """Validation accuracy and training loss per epoch, one line per (model, domain): a colour per
    domain (seaborn's colour-blind palette), a line style per model, the legend beside the panels;
    dots mark the kept (best-validation) epoch."""
    import seaborn as sns

    domains = list(dict.fromkeys(history.domain))
    models = list(dict.fromkeys(history.model))
    colours = dict(zip(domains, sns.color_palette("colorblind", len(domains))))
    styles = dict(zip(models, ["-", "--", ":", "-."]))
    rows = -(-len(domains) * len(models) // 3)  # legend rows, three entries a row
    legend_in = 0.22 * rows + 0.1
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 2.9 + legend_in))
    for (model, domain), h in history.groupby(["model", "domain"], sort=False):
        kw = dict(color=colours[domain], linestyle=styles.get(model, "-"), linewidth=1.4)
        a1.plot(h.epoch, h.val_accuracy, label=f"{model}: {domain}", **kw)
        a1.scatter(h.epoch[h.best], h.val_accuracy[h.best], color=colours[domain], s=16, zorder=3)
        a2.plot(h.epoch, h.train_loss, **kw)
    a1.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.02))
    a2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    a2.yaxis.set_minor_formatter(plt.NullFormatter())  # minor labels of a log axis run into the major ones
    last = int(history.epoch.max())
    for ax in (a1, a2):  # whole epochs, and no tick beyond the data to run into the next panel's
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=6, integer=True, min_n_ticks=1))
        ax.tick_params(labelsize=9)
        ax.xaxis.label.set_size(9)
        ax.yaxis.label.set_size(9)
    fig.legend(*a1.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def accuracy_vs_block_size(table, paper_rows=None) -> plt.Figure:
    """Test accuracy against block size per model (plaintext drawn as a dashed line); the paper's
    accuracies (mean recall over its balanced test classes) as crosses when given."""
    fig, ax = plt.subplots(figsize=(5, 3))
    acc = table[(table.metric == "accuracy") & (table["class"] == "all")]
    for model, g in acc.groupby("model", sort=False):
        enc = g[g.domain.str.startswith("MTCE")].assign(
            b=lambda d: d.domain.str.extract(r"(\d+)-px")[0].astype(int)).sort_values("b")
        line, = ax.plot(enc.b, enc.value, marker="o", label=f"{model} (ours)")
        plain = g[g.domain == "plaintext"].value
        if len(plain):
            ax.axhline(plain.iloc[0], color=line.get_color(), linestyle="--", linewidth=1)
        if paper_rows is not None:  # balanced test set: overall accuracy = mean recall
            p = paper_rows[(paper_rows.model == model) & (paper_rows.metric == "recall")
                           & paper_rows.domain.str.startswith("MTCE")]
            if len(p):
                pb = p.assign(b=p.domain.str.extract(r"(\d+)-px")[0].astype(int)).groupby("b").value.mean()
                ax.scatter(pb.index, pb.values, marker="x", color=line.get_color(), label=f"{model} (paper)")
    ax.axhline(1 / 3, color="grey", linestyle=":", linewidth=1, label="chance (3 classes)")
    ax.set(xscale="log", xlabel="block size (px)", ylabel="test accuracy", ylim=(0, 1.02))
    sizes = sorted({int(b) for b in acc.domain.str.extract(r"(\d+)-px")[0].dropna()})
    if sizes:
        tick_labels_apart(ax, sizes, [str(b) for b in sizes])
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


#: Fig. 2 of the paper as (from, to, message) steps; from == to is a local action.
PROTOCOL_STEPS = [
    ("owner", "owner", "encrypt database E with per-image keys K"),
    ("owner", "owner", "train feature model Psi on E"),
    ("owner", "server", "upload E and Psi"),
    ("server", "server", "features F_E = Psi(E); build index"),
    ("user", "user", "encrypt query Q -> EQ with own key"),
    ("user", "server", "query(EQ, k)"),
    ("server", "server", "F_EQ = Psi(EQ); rank by Euclidean distance"),
    ("server", "user", "ids ER and distances"),
    ("user", "owner", "request keys for ids ER"),
    ("owner", "user", "keys RK (only those ids; logged)"),
    ("user", "server", "fetch ciphertexts of ER"),
    ("server", "user", "ciphertexts"),
    ("user", "user", "decrypt with RK -> results R"),
]


def sequence_diagram(steps=PROTOCOL_STEPS) -> plt.Figure:
    """The three-party protocol as a sequence diagram (matplotlib, rendered offline)."""
    parties = {"owner": ("Data owner", 0.0), "server": ("Cloud server", 1.0), "user": ("Query user", 2.0)}
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(steps) + 1.2))
    n = len(steps)
    for name, x in parties.values():
        ax.plot([x, x], [0.5, n + 0.6], color="grey", linewidth=1, zorder=0)
        ax.text(x, n + 0.9, name, ha="center", va="center", fontsize=10, weight="bold",
                bbox=dict(boxstyle="round", facecolor="#e8eef7", edgecolor="#5a6f8f"))
    for i, (src, dst, msg) in enumerate(steps):
        y = n - i
        xs, xd = parties[src][1], parties[dst][1]
        if src == dst:
            ax.add_patch(plt.Rectangle((xs - 0.04, y - 0.17), 0.08, 0.34, color="#5a6f8f"))
            ax.text(xs + (0.08 if xs < 2 else -0.08), y, f"{i + 1}. {msg}", va="center",
                    ha="left" if xs < 2 else "right", fontsize=8)
        else:
            ax.annotate("", xy=(xd, y), xytext=(xs, y), arrowprops=dict(arrowstyle="->", color="#204080"))
            ax.text((xs + xd) / 2, y + 0.12, f"{i + 1}. {msg}", ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-0.6, 2.6)
    ax.set_ylim(0.2, n + 1.3)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def retrieval_grid(queries, encrypted, results, decrypted, labels_of, query_labels) -> plt.Figure:
    """One row per query: plaintext query, encrypted query, then the k decrypted results titled
    with their class and distance (green = same class as the query)."""
    k = len(results[0].ids)
    fig, axes = plt.subplots(len(queries), k + 2, figsize=(1.6 * (k + 2), 1.75 * len(queries)), squeeze=False)
    for r, (q, eq, res, dec, ql) in enumerate(zip(queries, encrypted, results, decrypted, query_labels)):
        cells = [(q, f"query ({ql})", "black"), (eq, "encrypted query", "black")]
        cells += [(img, f"{labels_of(i)} d={d:.2f}", "green" if labels_of(i) == ql else "red")
                  for i, img, d in zip(res.ids, dec, res.distances)]
        for c, (img, title, color) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=7, color=color)
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def pr_curves(curves) -> plt.Figure:
    """Interpolated precision-recall curves, one line per (domain, query set)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (domain, queries), g in curves.groupby(["domain", "queries"], sort=False):
        ax.plot(g.recall, g.precision, marker=".", label=f"{domain}: {queries}")
    ax.set(xlabel="recall", ylabel="interpolated precision", ylim=(0, 1.02))
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def threshold_histogram(weights, thresholds: dict[str, float], title: str = "") -> plt.Figure:
    """Histogram of |w| (log counts) with each calibrator's clipping threshold as a line."""
    w = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(w, bins=100, color="#8aa0c0", log=True)
    for (name, t), style in zip(thresholds.items(), ["-", "--", ":", "-."]):
        ax.axvline(t, color="k", linestyle=style, label=f"{name}: {t:.3g}")
    ax.set(xlabel="|weight|", ylabel="count", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def quant_tradeoff(onnx_table) -> plt.Figure:
    """Accuracy (axis from 0) against batch-32 latency, one marker per model (area ~ file size),
    named in the legend with its size, fp32 against the int8 calibrators."""
    o = onnx_table.pivot(index="model", columns="metric", values="value")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for (name, r), marker in zip(o.iterrows(), "os^vD<>"):
        ax.scatter(r["latency_ms_batch32"], r["accuracy"], s=max(r["bytes"] / 2e5, 20), alpha=0.7, marker=marker,
                   label=f"{name}, {r['bytes'] / 1e6:.1f} MB")
    ax.set_xlabel("latency, batch 32 (ms)", fontsize=9)
    ax.set_ylabel("test accuracy", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, o["latency_ms_batch32"].max() * 1.15)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=8, loc="lower right", markerscale=0.6)
    fig.tight_layout()
    return fig


def radiographs(real: ImageDataset, simulated: ImageDataset | None, per_row: int = 6,
                classes=("chest", "bone")) -> plt.Figure:
    """Real radiographs of the check set beside simulated ones (DRRs of the default data's CTs):
    one row per class and kind, images spread evenly, titled by their source."""
    rows = []
    for cls in classes:
        for kind, ds in (("real", real), ("simulated (DRR)", simulated)):
            if ds is None:
                continue
            sub = ds.table[(ds.table.label == cls) & (ds.table.simulated == (kind != "real"))]
            if sub.empty:
                continue
            pick = sub.iloc[np.unique(np.linspace(0, len(sub) - 1, min(per_row, len(sub))).round().astype(int))]
            rows.append((f"{cls}\n{kind}", [(read_rgb(ds.root / r.path, 224), str(r.volume)) for r in pick.itertuples()]))
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.75 * per_row, 2.0 * len(rows)), squeeze=False)
    for r, (title, items) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(items):
                ax.imshow(items[c][0])
                ax.set_title(items[c][1].replace("xray_", "").replace("_", " ")[:22], fontsize=8)
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(title, fontsize=9)
    fig.tight_layout()
    return fig


_SERIES = (("all", "per-image", "end-to-end, key per image", "o", "-"),
           ("all", "shared", "end-to-end, shared key", "s", "-"),
           ("head", "per-image", "head-only, key per image", "o", "--"),
           ("head", "shared", "head-only, shared key", "s", "--"))


def sweep_accuracy(view, title: str = "") -> plt.Figure:
    """Accuracy over every image with 95% intervals per domain, one panel per model: the trained
    networks (end-to-end and head-only, per key mode), the ciphertext-statistics probe (grey) and
    the paper's accuracy (black stars). Plaintext has no key, so its point appears under both key
    modes. The y axis starts at 0; the dotted line is chance (3 balanced classes)."""
    domains = [d for d in ("plaintext", "MTCE 8-px blocks", "MTCE 1-px blocks") if d in set(view.domain)]
    labels = {"plaintext": "plaintext", "MTCE 8-px blocks": "8-px blocks", "MTCE 1-px blocks": "1-px blocks"}
    model_names = list(dict.fromkeys(view.model))
    fig, axes = plt.subplots(1, len(model_names), figsize=(3.6 * len(model_names), 3.8), squeeze=False, sharey=True)
    width = 0.8 / (len(_SERIES) + 1)
    for ax, model in zip(axes[0], model_names):
        g = view[view.model == model]
        for s, (trainable, key, label, marker, style) in enumerate(_SERIES):
            xs, ys, lo, hi = [], [], [], []
            for i, d in enumerate(domains):
                r = g[(g.trainable == trainable) & (g.domain == d) & (g.key_mode.isin([key, "none"]))]
                if len(r):
                    r = r.iloc[0]
                    xs.append(i + (s - len(_SERIES) / 2) * width)
                    ys.append(r.value)
                    lo.append(r.value - r.ci_low)
                    hi.append(r.ci_high - r.value)
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, linestyle=style, capsize=2, markersize=4,
                            linewidth=1, label=label)
        probe = g[(g.trainable == "head") & (g.key_mode.isin(["per-image", "none"]))]
        px = [i + (len(_SERIES) / 2) * width for i, d in enumerate(domains) if d in set(probe.domain)]
        pr = [probe[probe.domain == d].iloc[0] for d in domains if d in set(probe.domain)]
        if pr:
            ax.errorbar(px, [r.value_probe for r in pr], yerr=[[r.value_probe - r.ci_low_probe for r in pr],
                                                               [r.ci_high_probe - r.value_probe for r in pr]],
                        fmt="D", color="grey", capsize=2, markersize=4, label="ciphertext-statistics probe")
        paper_pts = [(i, g[g.domain == d].paper.dropna().iloc[0]) for i, d in enumerate(domains)
                     if len(g[g.domain == d].paper.dropna())]
        if paper_pts:
            ax.scatter([p[0] for p in paper_pts], [p[1] for p in paper_pts], marker="*", s=90, color="black",
                       zorder=5, label="paper")
        ax.axhline(1 / 3, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(domains)), [labels[d] for d in domains], fontsize=9)
        ax.set_title({"vit": "ViT-S/14", "vgg16": "VGG-16"}.get(model, model), fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=9)
    axes[0, 0].set_ylabel("accuracy over every image (95% CI)", fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def _short_claim(section: str, claim: str, width: int = 40) -> str:
    """A claim's label for the forest plot: its text before the colon, on at most two lines of
    ``width`` characters (cut with an ellipsis beyond)."""
    import textwrap

    text = claim.split(":")[0].replace("VGG-16, 8-px blocks, ", "VGG-16 8-px, ").replace(", int8 + fine-tuning", "")
    text = {"Beyond the paper": "beyond: "}.get(section, "") + text
    lines = textwrap.wrap(text, width)
    if len(lines) > 2:
        lines = [lines[0], lines[1][:width - 1].rstrip(" ,") + "…"]
    return "\n".join(lines)


def scorecard_forest(card) -> plt.Figure:
    """The scorecard's measured claims as a forest plot, one line per claim coloured by verdict, on
    one axis per kind of quantity: accuracies (0–1; the paper's value ◆, ours ● with our 95 %
    interval), the attacks' scores (each in its own unit, a share from 0 to 1: adjacencies
    reassembled, values decrypted), and the cipher's quality means (Table V) as a difference from
    the paper's value in %. Claims without an interval (exact quantities, texts), and the paper's
    AES entropy (a constant image, about 0 bits), are left to the table."""
    from .verdicts import VERDICTS

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    has = card[card.low.notna() & card.high.notna() & card.ours.map(number).astype(bool)]
    measured = has[has.section != "Encryption"]
    accuracy_like = measured.unit.fillna("").eq("") | measured.unit.fillna("").str.contains("accuracy")
    panels = [(measured[accuracy_like], "accuracy: ◆ paper, ● ours, 95 % interval", "rate"),
              (measured[~accuracy_like], "attack scores, each a share (its unit in the table): ● ours, 95 % interval",
               "rate"),
              (has[(has.section == "Encryption") & has.paper.map(number).astype(bool)], "Table V: (ours − paper) / "
               "paper, %", "relative")]
    panels[2] = (panels[2][0][panels[2][0].paper.astype(float).abs() > 1e-6], *panels[2][1:])
    panels = [pn for pn in panels if len(pn[0])] or panels[:1]
    edge = {"reproduced": "#2e7d32", "differs": "#b26a00", "paper error": "#c62828",
            "not comparable here": "#3f5f8f", "new result": "#6a4c93", "not reproducible here": "#666666"}
    heights = [max(len(rows), 1) for rows, _, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.2, 0.42 * sum(heights) + 1.4 * len(panels) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (rows, xlabel, kind) in zip(axes[:, 0], panels):
        for i, r in enumerate(rows.itertuples(index=False)):
            y = len(rows) - 1 - i
            vals = [float(r.ours), float(r.low), float(r.high)]
            if kind == "relative":
                p = float(r.paper)
                vals = [100 * (v - p) / abs(p) for v in vals]
            elif number(r.paper):
                ax.plot(float(r.paper), y, "D", color="black", ms=5, zorder=3)
            ax.plot(vals[1:], [y, y], color=edge[r.verdict], lw=2.4)
            ax.plot(vals[0], y, "o", color=edge[r.verdict], ms=5)
        labels = [_short_claim(r.section, r.claim) for r in rows.itertuples(index=False)]
        ax.set_yticks(range(len(rows) - 1, -1, -1), labels, fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel(xlabel, fontsize=9)
        if kind == "relative":
            ax.axvline(0, color="black", lw=1)
        else:
            ax.set_xlim(0, 1)
        if rows.empty:  # e.g. a run on other data: every claim not comparable, nothing measured to draw
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no measured claim with an interval in this run", ha="center", va="center",
                    transform=ax.transAxes, fontsize=10)
    shown = set().union(*(set(rows.verdict) for rows, _, _ in panels))
    handles = [plt.Line2D([], [], color=edge[v], marker="o", lw=2, label=v) for v in VERDICTS if v in shown]
    if handles:
        fig.legend(handles=handles, fontsize=8, loc="upper center", ncol=min(len(handles), 3), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return fig
