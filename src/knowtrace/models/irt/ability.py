"""Learner ability estimates from calibrated items: EAP, MAP and MLE, vectorised over learners.

- ``eap``: posterior mean and SD of the ability over a quadrature grid with a N(mean, sd^2) prior.
- ``map_``: posterior mode by Fisher scoring from the EAP; SE = 1 / sqrt(test information + 1/sd^2).
- ``mle``: likelihood maximum by Fisher scoring from the EAP, kept inside ``bounds`` (default
  ±4). A pattern whose maximum lies outside (all correct, all wrong, or any pattern pushing past a
  bound) gets the bound and ``at_bound=True``; SE = 1 / sqrt(test information) at the estimate.

Learners without answers get the prior (EAP, MAP) or NaN with ``at_bound=False`` (MLE).
Only items present in both the responses and the parameters are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from knowtrace.constants import ABILITY_METHODS
from knowtrace.exceptions import InputError
from knowtrace.models.data import lookup
from knowtrace.models._blas import blas_threads
from knowtrace.models.irt.mml import Design
from knowtrace.models.irt.params import ItemParameters, quadrature
from knowtrace.models.irt.response_matrix import ResponseMatrix

__all__ = ["METHODS", "AbilityEstimates", "eap", "estimate_abilities", "map_", "mle"]

METHODS = ABILITY_METHODS
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True, eq=False)
class AbilityEstimates:
    """One ability estimate per learner, its standard error and whether it sits at a bound."""

    learner_ids: np.ndarray
    theta: np.ndarray
    se: np.ndarray
    at_bound: np.ndarray
    n_answers: np.ndarray
    method: str

    def to_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per learner (None for an undefined value)."""
        return [{"learner_id": lid, "theta": _num(t), "se": _num(s), "at_bound": bool(f), "n_answers": int(n)}
                for lid, t, s, f, n in zip(self.learner_ids.tolist(), self.theta.tolist(), self.se.tolist(),
                                           self.at_bound.tolist(), self.n_answers.tolist())]


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _aligned(responses: ResponseMatrix, params: ItemParameters) -> tuple[ResponseMatrix, ItemParameters]:
    """The responses restricted to the calibrated items, and the parameters in the same order."""
    ids = np.asarray(params.item_ids, dtype=str)
    order = np.argsort(ids, kind="stable")
    at = lookup(ids[order], responses.item_ids)
    at = np.where(at >= 0, order[np.maximum(at, 0)], -1)
    known = at >= 0
    if not known.any():
        raise InputError("none of the answered items has calibrated parameters")
    return responses.subset(items=known), params.take(at[known])


def eap(responses: ResponseMatrix, params: ItemParameters, *, prior_mean: float = 0.0, prior_sd: float = 1.0,
        n_quadrature: int = 61, bound: float = 6.0) -> AbilityEstimates:
    """Posterior mean (and SD as SE) of every learner's ability on a uniform grid over prior_mean ± bound * prior_sd."""
    data, items = _aligned(responses, params)
    grid = quadrature(n_quadrature, "uniform", mean=prior_mean, sd=prior_sd, bound=bound)
    theta, sd = _eap(data, items, grid.nodes, grid.log_weights)
    return AbilityEstimates(data.learner_ids, theta, sd, np.zeros(len(theta), dtype=bool), data.learner_counts(),
                            "eap")


def _eap(data: ResponseMatrix, items: ItemParameters, nodes: np.ndarray,
         log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.clip(items.prob(nodes), 1e-300, 1.0)
    q = np.clip(1.0 - p, 1e-300, 1.0)
    design = Design(data, merge_patterns=False)
    with blas_threads(1):
        post, _ = design.posterior(np.log(p), np.log(q), log_weights)
    mean = post @ nodes
    var = np.maximum(post @ (nodes * nodes) - mean * mean, 0.0)
    return mean, np.sqrt(var)


def _blocks(data: ResponseMatrix) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(row indices, then row, column, correct of their answered cells) in blocks of rows."""
    per_row = max(data.n_items, 1)
    step = max(1, _CHUNK_CELLS // per_row)
    if data.is_dense:
        for start in range(0, data.n_learners, step):
            rows = np.arange(start, min(start + step, data.n_learners))
            r, c, x = data.subset(learners=rows).triplets()
            yield rows, r + start, c, x
        return
    r, c, x = data.triplets()
    yield np.arange(data.n_learners), r, c, x


def _score_info(theta: np.ndarray, n: int, rows: np.ndarray, cols: np.ndarray, x: np.ndarray,
                items: ItemParameters) -> tuple[np.ndarray, np.ndarray]:
    """d log L / d theta and test information per learner (``n`` learners, answers as triplets)."""
    a, b, c, d = items.a[cols], items.b[cols], items.c[cols], items.d[cols]
    z = a * (theta[rows] - b)
    s, sc = expit(z), expit(-z)
    p = c + (d - c) * s
    one_minus = (1.0 - d) + (d - c) * sc
    q = np.maximum(p * one_minus, 1e-300)
    dp = (d - c) * a * s * sc
    score = np.bincount(rows, weights=(x - p) * dp / q, minlength=n)
    info = np.bincount(rows, weights=dp * dp / q, minlength=n)
    return score, info


def _newton(data: ResponseMatrix, items: ItemParameters, start: np.ndarray, *, prior: tuple[float, float] | None,
            bounds: tuple[float, float], max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Fisher scoring on every learner's log-likelihood (+ normal log-prior), steps at most 1, kept in bounds;
    returns (estimate, information at it incl. the prior's)."""
    theta = np.clip(start.astype(np.float64).copy(), *bounds)
    info_out = np.zeros(len(theta))
    for rows_block, rows, cols, x in _blocks(data):
        local = rows - rows_block[0]
        t = theta[rows_block]
        n = len(rows_block)
        for _ in range(max_iter):
            score, info = _score_info(t, n, local, cols, x, items)
            if prior is not None:
                score = score - (t - prior[0]) / prior[1] ** 2
                info = info + 1.0 / prior[1] ** 2
            step = np.clip(score / np.maximum(info, 1e-12), -1.0, 1.0)
            new = np.clip(t + step, *bounds)
            moved = np.max(np.abs(new - t)) if n else 0.0
            t = new
            if moved < tol:
                break
        _, info = _score_info(t, n, local, cols, x, items)
        if prior is not None:
            info = info + 1.0 / prior[1] ** 2
        theta[rows_block] = t
        info_out[rows_block] = info
    return theta, info_out


def map_(responses: ResponseMatrix, params: ItemParameters, *, prior_mean: float = 0.0, prior_sd: float = 1.0,
         max_iter: int = 100, tol: float = 1e-8) -> AbilityEstimates:
    """Posterior mode of every learner's ability under a N(prior_mean, prior_sd^2) prior."""
    data, items = _aligned(responses, params)
    grid = quadrature(61, "uniform", mean=prior_mean, sd=prior_sd)
    start, _ = _eap(data, items, grid.nodes, grid.log_weights)
    span = 20.0 * prior_sd
    theta, info = _newton(data, items, start, prior=(prior_mean, prior_sd),
                          bounds=(prior_mean - span, prior_mean + span), max_iter=max_iter, tol=tol)
    return AbilityEstimates(data.learner_ids, theta, 1.0 / np.sqrt(info), np.zeros(len(theta), dtype=bool),
                            data.learner_counts(), "map")


def mle(responses: ResponseMatrix, params: ItemParameters, *, bounds: tuple[float, float] = (-4.0, 4.0),
        max_iter: int = 100, tol: float = 1e-8) -> AbilityEstimates:
    """Maximum-likelihood ability of every learner inside ``bounds``; estimates at a bound are flagged."""
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise InputError(f"MLE bounds must be (low, high) with low < high, got {bounds!r}", field="bounds")
    data, items = _aligned(responses, params)
    grid = quadrature(61, "uniform")
    start, _ = _eap(data, items, grid.nodes, grid.log_weights)
    theta, info = _newton(data, items, start, prior=None, bounds=(lo, hi), max_iter=max_iter, tol=tol)
    counts = data.learner_counts()
    score = np.zeros(len(theta))
    for rows_block, rows, cols, x in _blocks(data):
        s, _ = _score_info(theta[rows_block], len(rows_block), rows - rows_block[0], cols, x, items)
        score[rows_block] = s
    # at a bound when the likelihood still rises beyond it
    at_bound = ((theta <= lo) & (score < 0)) | ((theta >= hi) & (score > 0))
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(info)
    empty = counts == 0
    theta = np.where(empty, np.nan, theta)
    se = np.where(empty, np.nan, se)
    return AbilityEstimates(data.learner_ids, theta, se, at_bound & ~empty, counts, "mle")


def estimate_abilities(responses: ResponseMatrix, params: ItemParameters, method: str = "eap",
                       **options: Any) -> AbilityEstimates:
    """Abilities by ``method`` (``eap``, ``map`` or ``mle``) with that method's options."""
    if method == "eap":
        return eap(responses, params, **options)
    if method == "map":
        return map_(responses, params, **options)
    if method == "mle":
        return mle(responses, params, **options)
    raise InputError(f"unknown ability method {method!r}; use one of {', '.join(METHODS)}", field="method")
