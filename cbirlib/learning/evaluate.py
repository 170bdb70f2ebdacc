"""Classification metrics as the paper reports them (Tables VI-VIII), plus macro F1.

Two per-class accuracy conventions exist in the paper: Table VI's per-class accuracies differ by
class, so they are one-vs-rest accuracies ((TP + TN) / N); Table VII repeats the overall accuracy in
every class row. Both are computed. Precision of a class that is never predicted is *undefined*
(NaN), as the paper prints it, never 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as sk_confusion_matrix


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts; rows = true class, columns = predicted class (scikit-learn)."""
    return sk_confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def per_class_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: accuracy_ovr, accuracy_overall, precision (NaN when never predicted),
    recall (NaN when the class has no test images), f1, support. Values are fractions in 0..1."""
    cm = confusion_matrix(y_true, y_pred, len(classes)).astype(float)
    n = cm.sum()
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
        f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.where(actual > 0, 0.0, np.nan), f1)
    tn = n - predicted - actual + tp
    return pd.DataFrame({
        "class": list(classes),
        "accuracy_ovr": (tp + tn) / n,
        "accuracy_overall": np.full(len(classes), tp.sum() / n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": actual.astype(int),
    })


def summary_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, float]:
    """Overall accuracy and macro F1 (mean of per-class F1 over classes with test images)."""
    pc = per_class_metrics(y_true, y_pred, classes)
    return {"accuracy": float(pc.accuracy_overall.iloc[0]), "macro_f1": float(np.nanmean(pc.f1))}


def tidy_metrics(y_true, y_pred, classes, **ids) -> pd.DataFrame:
    """Tidy rows (``ids`` columns..., class, metric, value, source='ours') of
    :func:`per_class_metrics` and :func:`summary_metrics` (class = 'all' for the latter)."""
    pc = per_class_metrics(y_true, y_pred, classes)
    long = pc.melt(id_vars="class", var_name="metric", value_name="value")
    summ = pd.DataFrame([{"class": "all", "metric": k, "value": v}
                         for k, v in summary_metrics(y_true, y_pred, classes).items()])
    out = pd.concat([long, summ], ignore_index=True).assign(**ids, source="ours")
    return out[[*ids, "class", "metric", "value", "source"]]


def experiment_table(experiment) -> pd.DataFrame:
    """Tidy metrics (model, domain, class, metric, value, source='ours') of every domain of a
    :class:`cbirlib.learning.train.Experiment`."""
    parts = [tidy_metrics(r.y_true, r.y_pred, experiment.classes, model=experiment.config.model,
                          domain=r.domain.name) for r in experiment.results]
    return pd.concat(parts, ignore_index=True)


def beside_paper(ours: pd.DataFrame, paper_rows: pd.DataFrame,
                 metrics: Sequence[str] = ("accuracy_ovr", "accuracy_overall", "precision", "recall")) -> pd.DataFrame:
    """Wide table: one row per (model, domain, class), columns (metric, source) with the paper's
    value beside ours (NaN where a side has none: the paper prints one accuracy convention per
    table, and "undefined" precision)."""
    both = pd.concat([paper_rows, ours[ours.metric.isin(metrics) & (ours["class"] != "all")]],
                     ignore_index=True)
    wide = both.pivot_table(index=["model", "domain", "class"], columns=["metric", "source"], values="value",
                            aggfunc="first", dropna=False, sort=False)
    cols = [(m, s) for m in metrics for s in ("paper", "ours") if (m, s) in wide.columns]
    return wide.reindex(columns=pd.MultiIndex.from_tuples(cols, names=["metric", "source"]))


def confusion_table(experiment) -> pd.DataFrame:
    """Tidy confusion counts (model, domain, true, predicted, count, source='ours')."""
    rows = []
    for r in experiment.results:
        cm = confusion_matrix(r.y_true, r.y_pred, len(experiment.classes))
        for i, t in enumerate(experiment.classes):
            for j, p in enumerate(experiment.classes):
                rows.append(dict(model=experiment.config.model, domain=r.domain.name, true=t, predicted=p,
                                 count=int(cm[i, j]), source="ours"))
    return pd.DataFrame(rows)


def history_table(experiment) -> pd.DataFrame:
    """Training curves of every domain, tidy (model, domain, epoch, train_loss, val_accuracy, best)."""
    parts = [r.history.assign(model=experiment.config.model, domain=r.domain.name,
                              best=lambda h, b=r.best_epoch: h.epoch == b)
             for r in experiment.results]
    return pd.concat(parts, ignore_index=True).assign(source="ours")


def findings(table: pd.DataFrame, paper_rows: pd.DataFrame) -> str:
    """Markdown: overall accuracy per model and domain, ours beside the paper's (mean recall over
    its balanced test classes), every number read from the tables."""
    acc = table[(table.metric == "accuracy") & (table["class"] == "all")]
    paper_acc = (paper_rows[paper_rows.metric == "recall"].groupby(["model", "domain"]).value.mean())
    lines = []
    for (model, domain), v in acc.set_index(["model", "domain"]).value.items():
        p = paper_acc.get((model, domain))
        lines.append(f"- {model}, {domain}: accuracy {v:.3f}"
                     + (f" (paper {p:.3f})" if p is not None else " (not in the paper)"))
    return "\n".join(lines)
