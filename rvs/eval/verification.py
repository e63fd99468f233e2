"""Fitting the 1:1 calibration (rvs.faces.verification) on LFW pairs.txt.

Per fold: a logistic curve P(same | distance) and the two thresholds are fitted on the other 9
folds and applied to this one; the held-out predictions give the calibration error (ECE, 10
equal-width bins), the false-accept rate at the same-person threshold and the false-reject rate
at the different-people threshold. The shipped curve and thresholds are then fitted on all folds.
"""

from __future__ import annotations

import numpy as np

from rvs.eval.metrics import best_threshold
from rvs.faces.verification import VerificationCalibration

TARGET_FAR = 0.01  # "same person" lets at most this share of different-person pairs through
TARGET_FRR = 0.01  # "different people" turns away at most this share of same-person pairs
SURE = 0.95  # and each answer needs this calibrated probability (of same, or of different)


def fit_logistic(d: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, b) of P(y=1 | d) = sigmoid(a + b d), maximum likelihood by Newton's method."""
    x = np.stack([np.ones_like(d), d], 1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        g = x.T @ (y - p)
        h = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def thresholds(d: np.ndarray, same: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """(same-person threshold, different-people threshold): "same person" up to the distance
    where the curve says P(same) = SURE and at most TARGET_FAR of different pairs fall; "different
    people" from where P(different) = SURE and at most TARGET_FRR of same pairs lie beyond."""
    diff_d, same_d = np.sort(d[~same]), np.sort(d[same])
    logit = float(np.log(SURE / (1 - SURE)))
    t_same = min(float(np.quantile(diff_d, TARGET_FAR, method="lower")), (logit - a) / b)
    t_diff = max(float(np.quantile(same_d, 1 - TARGET_FRR, method="higher")), (-logit - a) / b)
    return t_same, max(t_diff, t_same)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any()) / len(p))


def fit_verification(model_id: str, dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[VerificationCalibration, dict]:
    """The shipped calibration (fitted on all pairs) and the held-out report."""
    dist, same, folds = np.asarray(dist, np.float64), np.asarray(same, bool), np.asarray(folds)
    held_p = np.zeros(len(dist))
    fa = fr = n_diff = n_same = 0
    accs = []
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        a, b = fit_logistic(dist[train], same[train].astype(np.float64))
        held_p[test] = 1.0 / (1.0 + np.exp(-np.clip(a + b * dist[test], -50, 50)))
        t_same, t_diff = thresholds(dist[train], same[train], a, b)
        fa += int(((dist[test] <= t_same) & ~same[test]).sum())
        fr += int(((dist[test] >= t_diff) & same[test]).sum())
        n_diff += int((~same[test]).sum())
        n_same += int(same[test].sum())
        t, _ = best_threshold(dist[train], same[train])
        accs.append(float(((dist[test] <= t) == same[test]).mean()))
    a, b = fit_logistic(dist, same.astype(np.float64))
    t_same, t_diff = thresholds(dist, same, a, b)
    cal = VerificationCalibration(
        model_id=model_id, a=a, b=b, same_threshold=t_same, different_threshold=t_diff,
        far_at_same=fa / max(1, n_diff), frr_at_different=fr / max(1, n_same),
        ece=ece(held_p, same.astype(np.float64)), accuracy=float(np.mean(accs)), pairs=len(dist),
    )
    unsure = float(((dist > t_same) & (dist < t_diff)).mean())
    return cal, {"held_out_ece": cal.ece, "far_at_same": cal.far_at_same, "frr_at_different": cal.frr_at_different, "unsure_share": unsure, "accuracy": cal.accuracy}
