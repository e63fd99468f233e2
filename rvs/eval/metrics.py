"""Metrics on known answers: verification (threshold chosen on training folds, accuracy on the
held-out fold, ROC AUC, TAR at a FAR) over pair distances, and retrieval (recall@k, mAP) over
ranked result lists (ids of gallery items, best first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rvs.lfw.dataset import Pair


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


RECALL_KS = (1, 5, 10, 20)


def best_threshold(dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising accuracy of "same person iff dist < t", and that accuracy.

    Candidates are the midpoints between consecutive distinct distances (plus one below the
    smallest and one above the largest), so the answer does not depend on a grid step. When
    several intervals tie, the middle one of them is taken.
    """
    dist = np.asarray(dist, np.float64)
    same = np.asarray(same, bool)
    if len(dist) == 0:
        raise ValueError("no distances")
    u = np.unique(dist)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    # For each candidate: same pairs below it are right, different pairs at or above it are right.
    pos = np.sort(dist[same])
    neg = np.sort(dist[~same])
    tp = np.searchsorted(pos, cands, side="left")
    tn = len(neg) - np.searchsorted(neg, cands, side="left")
    acc = (tp + tn) / len(dist)
    best = np.flatnonzero(acc == acc.max())
    i = best[len(best) // 2]
    return float(cands[i]), float(acc[i])


def accuracy_at(dist: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(dist) < threshold) == np.asarray(same, bool)))


@dataclass
class VerificationResult:
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    best_threshold: float  # over all pairs: calibrates Config.match_threshold
    best_threshold_accuracy: float
    roc_auc: float
    tar_at_far: dict[str, float] = field(default_factory=dict)
    n_pairs: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def kfold_verification(
    dist: np.ndarray | None,
    same: np.ndarray,
    folds: np.ndarray,
    fars: Sequence[float] = (1e-3,),
    dist_for_fold: Callable[[np.ndarray], np.ndarray] | None = None,
) -> VerificationResult:
    """LFW protocol: for each fold, threshold from the other folds, accuracy on this fold.

    dist_for_fold: for distances that depend on statistics of the training folds (see
    `subtract_mean_distances`), a function (training-pair mask) -> distances of all pairs,
    used instead of `dist`; the all-pairs figures then use the mask of every pair.
    """
    same, folds = np.asarray(same, bool), np.asarray(folds)
    if dist_for_fold is None:
        fixed = np.asarray(dist, np.float64)
        dist_for_fold = lambda train: fixed  # noqa: E731
    accs, thrs = [], []
    for f in np.unique(folds):
        test = folds == f
        train = ~test if (~test).any() else test  # one fold only: nothing else to train on
        d = np.asarray(dist_for_fold(train), np.float64)
        t, _ = best_threshold(d[train], same[train])
        thrs.append(t)
        accs.append(accuracy_at(d[test], same[test], t))
    dist = np.asarray(dist_for_fold(np.ones(len(same), bool)), np.float64)
    bt, ba = best_threshold(dist, same)
    return VerificationResult(
        accuracy_mean=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        fold_accuracies=[float(a) for a in accs],
        fold_thresholds=[float(t) for t in thrs],
        best_threshold=bt,
        best_threshold_accuracy=ba,
        roc_auc=roc_auc(dist, same),
        tar_at_far={f"{far:g}": tar_at_far(dist, same, far) for far in fars},
        n_pairs=len(dist),
    )


def subtract_mean_distances(ea: np.ndarray, eb: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Sandberg's published LFW protocol (validate_on_lfw --subtract_mean --distance_metric 1):
    subtract the mean embedding of the training folds' pairs, then angular distance
    arccos(cosine) / pi in [0, 1]. Returns the `dist_for_fold` function for kfold_verification.
    Not what the search engine does (it uses plain Euclidean distances), so thresholds from this
    mode are not match_threshold values."""

    def fn(train: np.ndarray) -> np.ndarray:
        mu = np.concatenate([ea[train], eb[train]]).mean(axis=0)
        x, y = ea - mu, eb - mu
        cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
        return np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi

    return fn


def roc_auc(dist: np.ndarray, same: np.ndarray) -> float:
    """Probability that a same-person pair is closer than a different-person pair (ties 1/2)."""
    from scipy.stats import rankdata

    same = np.asarray(same, bool)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(-np.asarray(dist, np.float64))  # higher rank = more similar
    return float((r[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(dist: np.ndarray, same: np.ndarray, far: float) -> float:
    """True-accept rate at the strictest threshold that accepts at most floor(far * n_neg)
    different-person pairs (with 3,000 negative pairs, FAR 1e-3 allows 3 false accepts)."""
    dist, same = np.asarray(dist, np.float64), np.asarray(same, bool)
    neg = np.sort(dist[~same])
    k = int(np.floor(far * len(neg)))
    if len(neg) == 0 or (same.sum() == 0):
        return float("nan")
    thr = neg[k] if k < len(neg) else np.inf  # accept d < thr: exactly the k closest negatives
    return float(np.mean(dist[same] < thr))


def assign_folds(pairs: Sequence[Pair], n_folds: int = 10) -> np.ndarray:
    """Fold of each pair: pairs.txt's own folds, or for a one-fold View 1 list, `n_folds`
    contiguous slices of the same pairs and of the different pairs (balanced folds)."""
    folds = np.array([p.fold for p in pairs])
    if len(np.unique(folds)) > 1:
        return folds
    same = np.array([p.same for p in pairs])
    out = np.zeros(len(pairs), np.int64)
    for mask in (same, ~same):
        idx = np.flatnonzero(mask)
        out[idx] = np.arange(len(idx)) * n_folds // max(len(idx), 1)
    return out


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict:
    """Leave-one-out retrieval within one set of images: each image whose identity has at least
    one other image queries all the others (the rest stay in the gallery as distractors).

    Returns rank1, recall@k (share of queries with a correct identity in the top k), mAP over
    the full ranking, and the counts.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    q = np.flatnonzero(counts[labels] >= 2)
    if len(q) == 0:
        return {"queries": 0, "gallery": len(labels)}
    # k = N - 1: the query itself is pushed to the end by exclude_self and cut off.
    ranked = ranked_exact(emb[q], emb, k=len(emb) - 1, exclude_self=q)
    hits = hits_matrix(ranked, labels, labels[q])
    rec = recall_at(hits, tuple(ks))
    ap = average_precision(hits, counts[labels[q]] - 1)
    return {
        "queries": int(len(q)),
        "gallery": int(len(labels)),
        "identities": int((counts > 0).sum()),
        "rank1": rec[1] if 1 in rec else float(hits[:, 0].mean()),
        **{f"recall@{k}": v for k, v in rec.items()},
        "mAP": float(ap.mean()),
    }
