"""Figures of the security chapters (05, 06): the jigsaw attack's success against block size, the
known-plaintext attack's curves, and the privacy-utility frontier (matplotlib; no logic beyond
drawing)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .plots import annotate_apart, tick_labels_apart


def attack_success(jigsaw, metric: str = "neighbour") -> plt.Figure:
    """Jigsaw success (``metric``: neighbour or direct comparison) against block size, one panel per
    substitution strength, one line per attack, the chance level of a random placement dotted."""
    strengths = sorted(jigsaw.strength.unique())
    fig, axes = plt.subplots(1, len(strengths), figsize=(3.2 * len(strengths), 2.9), squeeze=False, sharey=True)
    for ax, s in zip(axes[0], strengths):
        g = jigsaw[jigsaw.strength == s]
        for attack, a in g.groupby("attack", sort=False):
            v = a[a.metric == metric].sort_values("block_size")
            line, = ax.plot(v.block_size, v.value, marker="o", label=attack)
            ch = a[a.metric == f"chance_{metric}"].sort_values("block_size")
            ax.plot(ch.block_size, ch.value, linestyle=":", color=line.get_color(), linewidth=1)
        ax.set(xscale="log", xlabel="block size (px)", title=f"strength {s}", ylim=(0, 1.02))
        sizes = sorted(g.block_size.unique())  # only the block sizes, no log-scale minor labels
        tick_labels_apart(ax, sizes, [str(b) for b in sizes])
        ax.tick_params(labelsize=9)
    axes[0, 0].set_ylabel(f"{metric} comparison")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False,
               title="dotted: random placement", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def kpa_curves(kpa) -> plt.Figure:
    """Known-plaintext attack: share of unseen foreground values decrypted exactly against the
    number of pairs, per key mode; the wrong-key baseline dotted."""
    fig, ax = plt.subplots(figsize=(4.2, 2.9))
    for mode, g in kpa.groupby("key_mode", sort=False):
        v = g[g.metric == "unseen_foreground_exact"].sort_values("pairs")
        line, = ax.plot(v.pairs, v.value, marker="o", label=f"{mode} key(s)")
        b = g[g.metric == "baseline_wrong_key_foreground"].sort_values("pairs")
        ax.plot(b.pairs, b.value, linestyle=":", color=line.get_color(), linewidth=1)
    ax.set(xlabel="known plaintext–ciphertext pairs", ylabel="unseen values recovered", ylim=(-0.02, 1.02),
           xticks=sorted(kpa.pairs.unique()))
    ax.legend(fontsize=8, title="dotted: an unrelated key", title_fontsize=8)
    fig.tight_layout()
    return fig


def privacy_utility(frontier, attack: str = "probe_accuracy", attack_label: str = "ciphertext-only probe accuracy",
                    extra=None, chance: float | None = None, accuracy_label: str = "classification accuracy"
                    ) -> plt.Figure:
    """The privacy–utility frontier: classification accuracy (utility, up) against an attack's
    success (privacy loss, right), one point per (block size, model), labelled with the block size.
    ``extra``: more points (columns model, label, accuracy and ``attack``), e.g. key-aware models;
    ``chance``: the attack's chance level (a dotted vertical line); ``accuracy_label`` says which run
    the accuracies come from."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.set(xlim=(0, 1.05), ylim=(0, 1.05))
    placed: list = []  # label boxes so far: no block-size label is printed over another
    for model, g in frontier.dropna(subset=["accuracy"]).groupby("model", sort=False):
        g = g.sort_values(attack)
        line, = ax.plot(g[attack], g.accuracy, marker="o", label=model)
        fig.canvas.draw()
        annotate_apart(ax, g[attack], g.accuracy, [f"{b} px" for b in g.block_size], color=line.get_color(),
                       placed=placed)
    if extra is not None:
        for _, r in extra.iterrows():
            ax.scatter(r[attack], r.accuracy, marker="*", s=80, zorder=3)
            ax.annotate(r.label, (r[attack], r.accuracy), fontsize=7, xytext=(-6, -10), textcoords="offset points",
                        ha="right")
    if chance is not None:
        ax.axvline(chance, color="grey", linestyle=":", linewidth=1, label="attack at chance")
    import textwrap

    ax.set(xlabel=f"{attack_label} (privacy loss →)", ylabel="\n".join(textwrap.wrap(f"{accuracy_label} (utility ↑)", 40)),
           ylim=(0, 1.05), xlim=(0, 1.05))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig
