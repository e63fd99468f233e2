"""Retrieval metrics over ranked result lists (ids of gallery items, best first)."""

from __future__ import annotations

import numpy as np


def hits_matrix(ranked_ids: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """Boolean n_probes x k: does the result at each rank share the probe's label? (-1 ids never hit.)"""
    labels = np.where(ranked_ids >= 0, gallery_labels[np.clip(ranked_ids, 0, None)], -1)
    return labels == probe_labels[:, None]


def recall_at(hits: np.ndarray, ks=(1, 5, 10, 20)) -> dict[int, float]:
    """Fraction of probes with at least one correct result in the top k (k > columns uses all)."""
    return {k: float(hits[:, :k].any(axis=1).mean()) for k in ks}


def average_precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP per probe over its ranked list; `n_relevant` = how many gallery items share the label.

    With a full ranking this is the usual AP; with a truncated top-k list it is AP@k (relevant
    items beyond k count as not retrieved).
    """
    h = hits.astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (prec * h).sum(axis=1) / np.maximum(n_relevant, 1)


def ranked_exact(queries: np.ndarray, gallery: np.ndarray, k: int | None = None, exclude_self: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """Exact ranking by cosine similarity (unit vectors), in chunks to bound memory.

    exclude_self: for each query, a gallery id to drop (leave-one-out), or -1.
    Returns ids n_queries x k (k=None: the full ranking).
    """
    n, m = len(queries), len(gallery)
    k = m if k is None else min(k, m)
    out = np.empty((n, k), np.int64)
    for s in range(0, n, chunk):
        sims = queries[s : s + chunk] @ gallery.T
        if exclude_self is not None:
            rows = np.arange(len(sims))
            ex = exclude_self[s : s + chunk]
            sims[rows[ex >= 0], ex[ex >= 0]] = -np.inf
        if k < m:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(-sims, part, axis=1).argsort(axis=1, kind="stable")
            out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        else:
            out[s : s + chunk] = np.argsort(-sims, axis=1, kind="stable")
    return out


def overlap_recall(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-k that the approximate top-k also returns (ANN recall@k)."""
    a, e = approx_ids[:, :k], exact_ids[:, :k]
    return float(np.mean([len(set(x[x >= 0]) & set(y)) / k for x, y in zip(a, e)]))
