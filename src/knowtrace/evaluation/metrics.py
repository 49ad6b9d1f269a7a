"""Metrics of predicted probabilities against 0/1 outcomes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from knowtrace.exceptions import InputError

__all__ = ["accuracy", "auc", "expected_calibration_error", "log_loss", "rmse", "score_all"]


def _check(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_arr, p_arr = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if y_arr.shape != p_arr.shape:
        raise InputError(f"{len(y_arr)} outcomes but {len(p_arr)} predictions")
    if len(y_arr) == 0:
        raise InputError("no outcomes to score")
    if not np.all((y_arr == 0) | (y_arr == 1)):
        raise InputError("outcomes must be 0 or 1")
    if not np.all(np.isfinite(p_arr)) or p_arr.min() < 0 or p_arr.max() > 1:
        raise InputError("predictions must be probabilities in [0, 1]")
    return y_arr, p_arr


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    y_arr, p_arr = _check(y, p)
    positives = int(y_arr.sum())
    negatives = len(y_arr) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p_arr)  # average ranks for ties
    return float((ranks[y_arr == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def accuracy(y: ArrayLike, p: ArrayLike, threshold: float = 0.5) -> float:
    """Share of answers whose outcome is predicted right (correct when ``p >= threshold``)."""
    y_arr, p_arr = _check(y, p)
    return float(np.mean((p_arr >= threshold) == (y_arr == 1)))


def rmse(y: ArrayLike, p: ArrayLike) -> float:
    """Root mean squared error of the probabilities."""
    y_arr, p_arr = _check(y, p)
    return float(np.sqrt(np.mean((p_arr - y_arr) ** 2)))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood, probabilities clipped to ``[eps, 1 - eps]``."""
    y_arr, p_arr = _check(y, p)
    p_arr = np.clip(p_arr, eps, 1 - eps)
    return float(-np.mean(y_arr * np.log(p_arr) + (1 - y_arr) * np.log1p(-p_arr)))


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Mean |observed rate - mean prediction| over equal-width probability bins, weighted by size."""
    y_arr, p_arr = _check(y, p)
    which = np.minimum((p_arr * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=y_arr, minlength=bins) - np.bincount(which, weights=p_arr, minlength=bins))
    return float(gap.sum() / count.sum())


def score_all(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """auc, acc, rmse, logloss and ece of the predictions."""
    return {
        "auc": auc(y, p),
        "acc": accuracy(y, p),
        "rmse": rmse(y, p),
        "logloss": log_loss(y, p),
        "ece": expected_calibration_error(y, p),
    }
