"""Uncertainty for every rate the book reports, and paired tests between variants.

- :func:`wilson`: Wilson score 95% interval of a proportion k/n (scipy's ``binomtest``);
- :func:`mean_interval`: Student-t interval of a mean from its standard deviation and count;
- :func:`bootstrap_mean`: percentile bootstrap interval of a mean over units (e.g. per-query
  average precision for mAP), seeded;
- :func:`mcnemar`: exact McNemar test of two classifiers on the same test images (two-sided
  binomial test on the discordant pairs);
- :func:`verdict`: the paper's value against our interval;
- :func:`trial_means`: means of tidy per-trial rows with n, Student-t intervals and paired
  differences (:func:`signed_rank_p`: the Wilcoxon signed-rank test of those differences).

All intervals are 95% unless ``confidence`` says otherwise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (NaN, NaN when n = 0).

    >>> [round(x, 3) for x in wilson(48, 72)]
    [0.552, 0.765]
    """
    k, n = int(k), int(n)
    if n == 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10, from two Wilson intervals) of the
    difference of two independent proportions, k1/n1 - k2/n2.

    >>> [round(x, 4) for x in newcombe_difference(56, 70, 48, 80)]
    [0.0524, 0.3339]
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    return float(d - np.hypot(p1 - l1, u2 - p2)), float(d + np.hypot(u1 - p1, p2 - l2))


def mean_interval(mean: float, std: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of a mean over ``n`` units with sample standard deviation ``std``
    (NaN, NaN when n < 2).

    >>> [round(x, 2) for x in mean_interval(10.0, 2.0, 30)]
    [9.25, 10.75]
    """
    n = int(n)
    if n < 2 or not np.isfinite(std):
        return float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1) * float(std) / np.sqrt(n))
    return float(mean) - half, float(mean) + half


def bootstrap_mean(values, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
                   ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one per unit, e.g. per query)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (resamples, v.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two classifiers on the same images.

    Args:
        correct_a, correct_b: (n,) booleans, whether each classifier got each image right.

    Returns:
        dict with ``n``, ``a_only`` (A right, B wrong), ``b_only``, ``p_value`` (two-sided exact
        binomial test on the discordant pairs; 1.0 when there are none).
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired tests need the same images: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    d = a_only + b_only
    p = 1.0 if d == 0 else float(sps.binomtest(a_only, d, 0.5).pvalue)
    return {"n": int(a.size), "a_only": a_only, "b_only": b_only, "p_value": p}


def verdict(paper: float, low: float, high: float, comparable: bool = True) -> str:
    """``reproduced`` when the paper's value lies inside our interval, ``differs`` when outside,
    ``not comparable here`` when our run is not the paper's setup."""
    if not comparable:
        return "not comparable here"
    if np.isnan(low) or np.isnan(high):
        return "no interval"
    return "reproduced" if low <= paper <= high else "differs"


def best_case_mcnemar(k_a: int, k_b: int, n: int) -> float:
    """The smallest exact McNemar p-value two classifiers with ``k_a`` and ``k_b`` correct of the
    same ``n`` images can have: every discordant image favours the better one, so the discordant
    count is |k_a - k_b|. When even this is above 0.05 the two accuracies cannot differ
    significantly, whatever their per-image predictions."""
    d = abs(int(k_a) - int(k_b))
    if d > n:
        raise ValueError("more discordant images than images")
    return 1.0 if d == 0 else float(sps.binomtest(d, d, 0.5).pvalue)


def trial_means(trials: pd.DataFrame, by: Sequence[str], paired: Sequence[tuple[str, str, str]] = ()
                ) -> pd.DataFrame:
    """Means of tidy ``trials`` (columns ``by``, ``seed``, ``unit``, ``metric``, ``value``) per group of
    ``by`` and metric, with ``n`` (trials) and the Student-t 95 % interval (``ci_low``,
    ``ci_high``; NaN for one trial; clipped to the range a metric can take: shares 0..1, seconds
    ≥ 0), plus, for each ``(name, metric, baseline)`` of ``paired``, the per-trial difference
    metric − baseline as metric ``name`` (−1..1) with its interval and the two-sided Wilcoxon
    signed-rank ``p_value`` (1.0 when every difference is 0)."""
    keys = list(by) + ["metric"]
    t = trials[trials.metric.notna()]
    extra = []
    for name, metric, baseline in paired:
        wide = t[t.metric.isin([metric, baseline])].pivot_table(index=list(by) + ["seed", "unit"], columns="metric",
                                                               values="value", sort=False)
        diff = (wide[metric] - wide[baseline]).rename("value").reset_index().assign(metric=name)
        extra.append(diff)
    t = pd.concat([t[keys + ["seed", "unit", "value"]], *extra], ignore_index=True)
    rows = []
    for key, g in t.groupby(keys, sort=False):
        v = g.value.to_numpy(float)
        low, high = mean_interval(v.mean(), v.std(ddof=1) if len(v) > 1 else np.nan, len(v))
        is_paired = key[-1] in {name for name, _, _ in paired}
        floor, ceiling = (-1.0, 1.0) if is_paired else (0.0, np.inf if key[-1] == "seconds" else 1.0)
        row = dict(zip(keys, key)) | dict(value=float(v.mean()), n=len(v), ci_low=float(np.clip(low, floor, ceiling)),
                                          ci_high=float(np.clip(high, floor, ceiling)))
        if is_paired:
            row["p_value"] = signed_rank_p(v)
        rows.append(row)
    return pd.DataFrame(rows).assign(source="ours")


def signed_rank_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired ``differences`` (NaNs dropped; NaN for
    fewer than 2, 1.0 when every difference is 0)."""
    d = differences[np.isfinite(differences)]
    if len(d) < 2:
        return float("nan")
    if not np.any(d):
        return 1.0
    return float(sps.wilcoxon(d).pvalue)
