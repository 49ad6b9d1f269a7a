"""Metrics of predicted probabilities against 0/1 outcomes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from knowtrace.exceptions import InputError

__all__ = [
    "METRICS",
    "accuracy",
    "auc",
    "expected_calibration_error",
    "log_loss",
    "reliability",
    "rmse",
    "roc_curve",
    "score_all",
]

#: the metric keys of ``score_all``, in display order
METRICS = ("auc", "acc", "rmse", "logloss", "ece")


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


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(first) - 1]
    return ranks


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    y_arr, p_arr = _check(y, p)
    positives = int(y_arr.sum())
    negatives = len(y_arr) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(p_arr)
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
    count, observed, predicted = reliability(y, p, bins)
    return float(np.abs(observed - predicted)[count > 0] @ count[count > 0] / count.sum())


def reliability(y: ArrayLike, p: ArrayLike, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answers, observed correct rate, mean prediction) in each of ``bins`` equal-width probability
    bins; the rates are NaN in empty bins."""
    y_arr, p_arr = _check(y, p)
    if bins < 1:
        raise InputError(f"bins must be >= 1, got {bins}", field="bins")
    which = np.minimum((p_arr * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.bincount(which, weights=y_arr, minlength=bins) / count
        predicted = np.bincount(which, weights=p_arr, minlength=bins) / count
    return count, observed, predicted


def roc_curve(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    y_arr, p_arr = _check(y, p)
    positives = y_arr.sum()
    negatives = len(y_arr) - positives
    if positives == 0 or negatives == 0:
        raise InputError("a ROC curve needs both correct and wrong answers")
    order = np.argsort(-p_arr, kind="stable")
    p_sorted, y_sorted = p_arr[order], y_arr[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]  # last row of each threshold
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def score_all(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """auc, acc, rmse, logloss and ece of the predictions."""
    return {
        "auc": auc(y, p),
        "acc": accuracy(y, p),
        "rmse": rmse(y, p),
        "logloss": log_loss(y, p),
        "ece": expected_calibration_error(y, p),
    }
