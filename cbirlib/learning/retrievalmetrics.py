"""Retrieval metrics: relevance of the ranked database for each query, precision / recall / mAP
at k, the precision-recall curve, and the share of results from the query's own scan (exact
ranking by :class:`cbirlib.learning.indexes.ExactIndex`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .indexes import ExactIndex, RetrievalError


@dataclass
class RetrievalScores:
    table: pd.DataFrame  # metric, k, value
    pr_curve: pd.DataFrame  # recall, precision
    extra: dict = field(default_factory=dict)


def relevance(query_features: np.ndarray, query_labels: np.ndarray, db_features: np.ndarray,
              db_labels: np.ndarray, metric: str = "euclidean", query_ids: Sequence[str] | None = None,
              db_ids: Sequence[str] | None = None) -> np.ndarray:
    """(Q, D') booleans: whether the database item at each rank is of the query's class, over the
    whole ranking (exact search); a query that is itself in the database (same id) is dropped
    from its own ranking, so D' = D - 1 then."""
    q = np.asarray(query_features, dtype=np.float64)
    d = np.asarray(db_features, dtype=np.float64)
    index = ExactIndex(d, metric)
    order, _ = index.search(q, len(d))
    rel = np.asarray(db_labels)[order] == np.asarray(query_labels)[:, None]
    if query_ids is not None and db_ids is not None:
        pos = {i: n for n, i in enumerate(db_ids)}
        self_idx = np.array([pos.get(i, -1) for i in query_ids])
        if (self_idx >= 0).all():  # every query is in the database: drop it from its own ranking
            rel = rel[order != self_idx[:, None]].reshape(len(q), len(d) - 1)
        elif (self_idx >= 0).any():
            raise RetrievalError("queries must be either all in the database or all outside it")
    return rel


def per_query(rel: np.ndarray, k: int = 10) -> pd.DataFrame:
    """Per query (rows of :func:`relevance`): average precision over the whole ranking (``ap``)
    and precision at ``k`` (``p_at_k``), for intervals over queries."""
    cum = np.cumsum(rel, axis=1)
    prec = cum / np.arange(1, rel.shape[1] + 1)
    kk = min(k, rel.shape[1])
    return pd.DataFrame({"ap": (prec * rel).sum(1) / np.maximum(cum[:, -1], 1), "p_at_k": cum[:, kk - 1] / kk,
                         "k": kk})


def source_breakdown(query_features: np.ndarray, query_labels: np.ndarray, query_sources: Sequence[str],
                     db_features: np.ndarray, db_labels: np.ndarray, db_sources: Sequence[str], k: int = 10,
                     metric: str = "euclidean") -> dict[str, float]:
    """How much of a retrieval score comes from the query's own source (the scan, or volume, an
    image was sliced from): mAP and P@k over the whole database, the share of the top k that comes
    from the query's own source, and mAP and P@k when the query's own source is taken out of the
    database (every relevant image then comes from another scan). Relevance = same class.

    >>> q = np.array([[0.0], [10.0]]); db = np.array([[0.1], [9.9], [5.0]])
    >>> r = source_breakdown(q, np.array([0, 1]), ["a", "b"], db, np.array([0, 1, 0]), ["a", "b", "c"], k=1)
    >>> r["share_top_k_same_source"], r["precision@k_other_sources"]
    (1.0, 0.5)
    """
    from scipy.spatial.distance import cdist

    qs, ds = np.asarray(query_sources), np.asarray(db_sources)
    order = np.argsort(cdist(query_features, db_features, metric=metric), axis=1, kind="stable")
    rel = db_labels[order] == np.asarray(query_labels)[:, None]
    same = ds[order] == qs[:, None]
    kk = min(k, rel.shape[1])

    def ap_and_pk(r: np.ndarray) -> tuple[float, float]:
        if not r.any():
            return 0.0, 0.0
        prec = np.cumsum(r) / np.arange(1, len(r) + 1)
        return float((prec * r).sum() / r.sum()), float(r[:kk].mean())

    full = [ap_and_pk(r) for r in rel]
    other = [ap_and_pk(r[~m]) for r, m in zip(rel, same)]  # one ranking per query, not per pixel
    return {"mAP": float(np.mean([a for a, _ in full])), "precision@k": float(np.mean([p for _, p in full])),
            "share_top_k_same_source": float(same[:, :kk].mean()),
            "mAP_other_sources": float(np.mean([a for a, _ in other])),
            "precision@k_other_sources": float(np.mean([p for _, p in other])), "k": kk}


def retrieval_metrics(query_features: np.ndarray, query_labels: np.ndarray, db_features: np.ndarray,
                      db_labels: np.ndarray, ks: Sequence[int] = (1, 5, 10, 100), metric: str = "euclidean",
                      query_ids: Sequence[str] | None = None, db_ids: Sequence[str] | None = None
                      ) -> RetrievalScores:
    """Rank the whole database for every query and score it.

    Relevance = same class. A query that is itself in the database (same id) is excluded from its
    own ranking. Definitions, per query, averaged over queries: P@k = relevant in the top k / k;
    R@k = relevant in the top k / all relevant; AP@k = sum over relevant ranks i <= k of P@i,
    divided by the number of relevant items retrieved within k (0 when none); mAP = AP over the
    whole ranking. k larger than the database is capped at its size (the row says which k ran).
    The precision-recall curve is interpolated (max precision at recall >= r) at 11 recall levels.
    """
    rel = relevance(query_features, query_labels, db_features, db_labels, metric, query_ids, db_ids)
    n = rel.shape[1]
    cum = np.cumsum(rel, axis=1)
    ranks = np.arange(1, n + 1)
    prec = cum / ranks
    total = np.maximum(cum[:, -1], 1)
    rows = []
    for k in ks:
        kk = min(k, n)
        hits = cum[:, kk - 1]
        ap = (prec[:, :kk] * rel[:, :kk]).sum(1) / np.maximum(hits, 1)
        rows += [dict(metric="mAP@k", k=k, k_used=kk, value=float(ap.mean())),
                 dict(metric="precision@k", k=k, k_used=kk, value=float((hits / kk).mean())),
                 dict(metric="recall@k", k=k, k_used=kk, value=float((hits / total).mean()))]
    ap_all = (prec * rel).sum(1) / total
    rows.append(dict(metric="mAP", k=n, k_used=n, value=float(ap_all.mean())))
    recall = cum / total[:, None]
    levels = np.linspace(0, 1, 11)
    interp = np.stack([np.where(recall >= r, prec, 0).max(axis=1) for r in levels], axis=1)
    pr = pd.DataFrame({"recall": levels, "precision": interp.mean(0)})
    return RetrievalScores(pd.DataFrame(rows), pr, {"queries": len(rel), "database": len(db_features)})
