"""The four-parameter logistic (4PL) response model, vectorised over items and ability points.

``P(θ) = c + (d - c) / (1 + exp(-a (θ - b)))`` on the logistic metric (no 1.7 scaling); the
2PL has ``c = 0, d = 1`` and the 3PL ``d = 1``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit

__all__ = [
    "fisher_information",
    "grid_derivatives",
    "log_likelihood_derivatives",
    "log_prob_correct",
    "prob_correct",
    "score_and_information",
    "total_information",
]


def prob_correct(theta: float | np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                 d: np.ndarray) -> np.ndarray:
    """P(correct) of each item at ``theta`` (broadcast: items × points when ``theta`` is a row)."""
    return c + (d - c) * expit(a * (theta - b))


def fisher_information(theta: float | np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                       d: np.ndarray) -> np.ndarray:
    """Fisher information ``P'² / (P Q)`` of each item at ``theta``."""
    z = a * (theta - b)
    s, sm = expit(z), expit(-z)
    p = c + (d - c) * s
    q = (1.0 - d) + (d - c) * sm
    slope = a * (d - c) * s * sm
    return slope * slope / (p * q)


def log_prob_correct(theta: float | np.ndarray, a: np.ndarray, b: np.ndarray, log_c: np.ndarray,
                     log_1md: np.ndarray, log_dmc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log P, log Q)`` computed without underflow; ``log_c = log c``, ``log_1md = log(1 - d)``,
    ``log_dmc = log(d - c)`` (``-inf`` where ``c = 0`` or ``d = 1``)."""
    z = a * (theta - b)
    log_p = np.logaddexp(log_c, log_dmc + log_expit(z))
    log_q = np.logaddexp(log_1md, log_dmc + log_expit(-z))
    return log_p, log_q


def log_likelihood_derivatives(theta: float, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                               u: np.ndarray) -> tuple[float, float, float, float]:
    """At ``theta``, for answers ``u`` (0/1) to the items: log-likelihood, its first and second
    derivative (observed), and the test's Fisher information."""
    z = a * (theta - b)
    s, sm = expit(z), expit(-z)
    dmc = d - c
    p = c + dmc * s
    q = (1.0 - d) + dmc * sm                           # 1 - P without cancellation
    p1 = a * dmc * s * sm                              # dP/dθ
    p2 = a * p1 * (sm - s)                             # d²P/dθ²
    ll = float(np.sum(np.where(u > 0, np.log(p), np.log(q))))
    w = u / p - (1.0 - u) / q                          # d log L / dP
    d1 = float(np.sum(w * p1))
    d2 = float(np.sum(w * p2 - p1 * p1 * (u / (p * p) + (1.0 - u) / (q * q))))
    info = float(np.sum(p1 * p1 / (p * q)))
    return ll, d1, d2, info


def score_and_information(theta: float, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                          u: np.ndarray, two_pl: bool = False) -> tuple[float, float, float]:
    """First and second derivative of the log-likelihood and the Fisher information at ``theta``
    (as :func:`log_likelihood_derivatives` without the log-likelihood itself, for Newton steps).
    ``two_pl`` says every ``c`` is 0 and every ``d`` 1 (then observed and Fisher information agree)."""
    # ndarray.dot is the cheapest reduction on the short arrays of one test
    if two_pl:
        s = expit(a * (theta - b))
        info = float((a * a).dot(s * (1.0 - s)))
        return float(a.dot(u - s)), -info, info
    z = a * (theta - b)
    s, sm = expit(z), expit(-z)
    dmc = d - c
    p = c + dmc * s
    q = (1.0 - d) + dmc * sm
    p1 = (a * dmc) * s * sm                            # dP/dθ
    nu = 1.0 - u
    w = u / p - nu / q                                 # d log L / dP
    d1 = float(w.dot(p1))
    # d²P/dθ² = a P' (1 - 2s)
    d2 = float((w * a * (sm - s)).dot(p1)) - float(p1.dot(p1 * (u / (p * p) + nu / (q * q))))
    info = float(p1.dot(p1 / (p * q)))
    return d1, d2, info


def total_information(theta: float, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                     two_pl: bool = False) -> float:
    """Fisher information of the items together at ``theta`` (``two_pl``: every c = 0 and d = 1)."""
    if two_pl:
        s = expit(a * (theta - b))
        return float((a * a).dot(s * (1.0 - s)))
    z = a * (theta - b)
    s, sm = expit(z), expit(-z)
    dmc = d - c
    p1 = (a * dmc) * s * sm
    return float(p1.dot(p1 / ((c + dmc * s) * ((1.0 - d) + dmc * sm))))


def grid_derivatives(theta: float | np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                     d: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(d log P, d log Q, d² log P, d² log Q, information)`` with respect to θ (broadcast like
    :func:`prob_correct`)."""
    z = a * (theta - b)
    s, sm = expit(z), expit(-z)
    dmc = d - c
    tiny = np.finfo(np.float64).tiny
    p = np.maximum(c + dmc * s, tiny)
    q = np.maximum((1.0 - d) + dmc * sm, tiny)
    p1 = a * dmc * s * sm
    p2 = a * p1 * (sm - s)
    rp, rq = p1 / p, p1 / q
    return rp, -rq, p2 / p - rp * rp, -p2 / q - rq * rq, p1 * rp / q
