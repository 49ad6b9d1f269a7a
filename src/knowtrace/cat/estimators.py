"""Ability estimation for one examinee: EAP, MAP and MLE (with fences), each with its standard error.

Every estimator reads an :class:`AbilityState`, which keeps the log-likelihood of the answers so far
on a fixed grid of ability nodes; recording an answer adds that item's log-likelihood to the grid
(O(grid)). EAP integrates on the grid; MAP and MLE start from the grid's best node and refine it
by safeguarded Newton steps on the exact log-likelihood of the answered items.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from scipy.special import expit, log_expit
from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowtrace.cat.bank import GridTables, ItemBank
from knowtrace.cat.logistic import log_likelihood_derivatives, score_and_information, total_information
from knowtrace.exceptions import InputError

__all__ = [
    "AbilityEstimator",
    "AbilityState",
    "EAPEstimator",
    "Estimate",
    "EstimatorConfig",
    "GridConfig",
    "MAPEstimator",
    "MLEEstimator",
    "make_estimator",
]


class Estimate(NamedTuple):
    """An ability estimate and its standard error (``inf`` when nothing bounds it yet)."""

    theta: float
    se: float


class GridConfig(BaseModel):
    """Equally spaced ability nodes on ``[lo, hi]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lo: float = -6.0
    hi: float = 6.0
    points: int = Field(default=121, ge=11, le=2001)

    @model_validator(mode="after")
    def _ordered(self) -> GridConfig:
        if not self.lo < self.hi:
            raise ValueError(f"grid lo ({self.lo}) must be below hi ({self.hi})")
        return self

    def nodes(self) -> np.ndarray:
        """The nodes, ascending."""
        return np.linspace(self.lo, self.hi, self.points)


class EstimatorConfig(BaseModel):
    """Which estimator and its settings; ``prior_*`` also weigh the posterior for KL/MPWI selection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["eap", "map", "mle"] = "eap"
    prior_mean: float = 0.0
    prior_sd: float = Field(default=1.0, gt=0)
    fences: tuple[float, float] = (-3.5, 3.5)
    #: MLE only: add Han's (2016) two imaginary fence items (lower answered right, upper wrong)
    fence_items: bool = True
    #: discrimination of the fence items; None = the bank's largest a
    fence_a: float | None = Field(default=None, gt=0)
    #: MAP/MLE: Newton steps on the exact likelihood instead of reading the mode off the grid
    exact: bool = False
    grid: GridConfig = GridConfig()

    @model_validator(mode="after")
    def _check(self) -> EstimatorConfig:
        lo, hi = self.fences
        if not lo < hi:
            raise ValueError(f"fences must be (lower, upper) with lower < upper, got {self.fences}")
        return self


@dataclass
class AbilityState:
    """What an estimator needs of one examinee: the answered items and answers, and on the ability
    grid the log-likelihood of the answers (and, for reading MAP/MLE off the grid, its first and
    second derivatives and the test information)."""

    nodes: np.ndarray
    loglik: np.ndarray
    items: list[int] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    _params: np.ndarray | None = field(default=None, repr=False)   # rows a, b, c, d, u (a cache)
    #: optional precomputed rows for every bank item, to add instead of computing
    tables: GridTables | None = field(default=None, repr=False)
    score: np.ndarray | None = field(default=None, repr=False)
    curvature: np.ndarray | None = field(default=None, repr=False)
    information: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, nodes: np.ndarray, tables: GridTables | None = None, *,
              derivatives: bool = False) -> AbilityState:
        """The state before any answer; ``derivatives`` keeps the derivative grids too."""
        zeros = np.zeros(len(nodes))
        return cls(nodes, zeros, tables=tables, score=zeros.copy() if derivatives else None,
                   curvature=zeros.copy() if derivatives else None,
                   information=zeros.copy() if derivatives else None)

    def add(self, bank: ItemBank, item: int, correct: int) -> None:
        """Record one answer: O(grid)."""
        tables = self.tables
        if tables is not None:
            self.loglik += tables.log_p[item] if correct else tables.log_q[item]
        else:
            self.loglik += bank.item_log_likelihood(item, correct, self.nodes)
        if self.score is not None:
            assert self.curvature is not None and self.information is not None
            if tables is not None and tables.information is not None:
                assert tables.score_p is not None and tables.score_q is not None
                assert tables.curvature_p is not None and tables.curvature_q is not None
                self.score += tables.score_p[item] if correct else tables.score_q[item]
                self.curvature += tables.curvature_p[item] if correct else tables.curvature_q[item]
                self.information += tables.information[item]
            else:
                score, curvature, information = bank.item_grid_derivatives(item, correct, self.nodes)
                self.score += score
                self.curvature += curvature
                self.information += information
        self.items.append(int(item))
        self.answers.append(1 if correct else 0)
        self._params = None

    def arrays(self, bank: ItemBank) -> tuple[np.ndarray, ...]:
        """``a, b, c, d, u`` of the answered items, in answer order (cached until the next answer)."""
        if self._params is None:
            idx = np.array(self.items, dtype=np.intp)
            self._params = np.stack([bank.a[idx], bank.b[idx], bank.c[idx], bank.d[idx],
                                     np.array(self.answers, dtype=np.float64)])
        p = self._params
        return p[0], p[1], p[2], p[3], p[4]

    def log_likelihood_at(self, bank: ItemBank, theta: float) -> float:
        """Exact log-likelihood of the answers at ``theta``."""
        if not self.items:
            return 0.0
        return log_likelihood_derivatives(theta, *self.arrays(bank))[0]


class AbilityEstimator:
    """Base class: ``estimate(state, bank)`` gives an :class:`Estimate`."""

    method: str = ""

    def __init__(self, config: EstimatorConfig) -> None:
        self.config = config
        self.nodes = config.grid.nodes()
        z = (self.nodes - config.prior_mean) / config.prior_sd
        self.log_prior = -0.5 * z * z
        self._nodes2 = self.nodes * self.nodes
        self._ones = np.ones(len(self.nodes))

    def start(self) -> Estimate:
        """The estimate before any answer."""
        raise NotImplementedError

    def estimate(self, state: AbilityState, bank: ItemBank) -> Estimate:
        """The estimate after the answers in ``state``."""
        raise NotImplementedError

    def posterior(self, state: AbilityState) -> np.ndarray:
        """Posterior weights on the grid (prior from the config), summing to 1."""
        log_post = state.loglik + self.log_prior
        w = np.exp(log_post - log_post.max())
        return w / w.sum()


class EAPEstimator(AbilityEstimator):
    """Expected a posteriori: posterior mean on the grid; SE = posterior standard deviation."""

    method = "eap"

    def start(self) -> Estimate:
        return self._moments(self.log_prior)

    def estimate(self, state: AbilityState, bank: ItemBank) -> Estimate:
        return self._moments(state.loglik + self.log_prior)

    def _moments(self, log_post: np.ndarray) -> Estimate:
        w = np.exp(log_post - log_post.max())
        total = float(w.dot(self._ones))
        mean = float(w.dot(self.nodes)) / total
        second = float(w.dot(self._nodes2)) / total
        return Estimate(mean, math.sqrt(max(second - mean * mean, 0.0)))


class MAPEstimator(AbilityEstimator):
    """Maximum a posteriori (normal prior); SE = ``1 / sqrt(test information + 1 / prior_sd²)``."""

    method = "map"

    def start(self) -> Estimate:
        return Estimate(self.config.prior_mean, self.config.prior_sd)

    def estimate(self, state: AbilityState, bank: ItemBank) -> Estimate:
        if not state.items:
            return self.start()
        mean, precision = self.config.prior_mean, 1.0 / self.config.prior_sd ** 2
        if state.score is not None and not self.config.exact:
            assert state.curvature is not None and state.information is not None
            found = _grid_mode(state.loglik + self.log_prior, state.score - (self.nodes - mean) * precision,
                               state.curvature - precision, self.nodes, -math.inf, math.inf)
            if found is not None:
                info = _interpolate(state.information, self.nodes, found)
                if info > 0:
                    return Estimate(found, 1.0 / math.sqrt(info + precision))
        a, b, c, d, u = state.arrays(bank)
        simple = bank.model in ("1pl", "2pl")

        def derivs(theta: float) -> tuple[float, float, float]:
            d1, d2, info = score_and_information(theta, a, b, c, d, u, simple)
            return d1 - (theta - mean) * precision, d2 - precision, info + precision

        theta = _maximise(derivs, state.loglik + self.log_prior, self.nodes, float(self.nodes[0]),
                          float(self.nodes[-1]))
        return Estimate(theta, 1.0 / math.sqrt(total_information(theta, a, b, c, d, simple) + precision))


class MLEEstimator(AbilityEstimator):
    """Maximum likelihood within the fences; SE = ``1 / sqrt(test information)`` of the answered items.

    With ``fence_items`` (default) two imaginary items at the fences (Han's MLEF: the lower one
    answered right, the upper one wrong, both with discrimination ``fence_a``) keep the estimate
    finite and inside them for all-right or all-wrong answers; without, the estimate is truncated
    to the fences.
    """

    method = "mle"

    def __init__(self, config: EstimatorConfig) -> None:
        super().__init__(config)
        self._cache: tuple[ItemBank, float, np.ndarray, np.ndarray, np.ndarray] | None = None
        lo, hi = config.fences
        self._inside = (self.nodes >= lo) & (self.nodes <= hi)

    def start(self) -> Estimate:
        lo, hi = self.config.fences
        return Estimate(min(max(self.config.prior_mean, lo), hi), math.inf)

    def _offset(self, bank: ItemBank) -> tuple[float, np.ndarray]:
        """The fence items' discrimination and what to add to the grid log-likelihood: the fence items'
        log-likelihood inside the fences, ``-inf`` outside (cached for the last bank, with the fence
        items' score and curvature on the grid)."""
        cached = self._cache
        if cached is not None and cached[0] is bank:
            return cached[1], cached[2]
        lo, hi = self.config.fences
        fa = self.config.fence_a if self.config.fence_a is not None else float(bank.a.max())
        offset = np.where(self._inside, 0.0, -np.inf)
        score = np.zeros(len(self.nodes))
        curvature = np.zeros(len(self.nodes))
        if self.config.fence_items:
            offset = offset + log_expit(fa * (self.nodes - lo)) + log_expit(-fa * (self.nodes - hi))
            s_lo, s_hi = expit(fa * (self.nodes - lo)), expit(fa * (self.nodes - hi))
            score = fa * (1.0 - s_lo) - fa * s_hi
            curvature = -fa * fa * (s_lo * (1.0 - s_lo) + s_hi * (1.0 - s_hi))
        self._cache = (bank, fa, offset, score, curvature)
        return fa, offset

    def estimate(self, state: AbilityState, bank: ItemBank) -> Estimate:
        if not state.items:
            return self.start()
        lo, hi = self.config.fences
        fa, offset = self._offset(bank)
        if state.score is not None and not self.config.exact:
            assert state.curvature is not None and state.information is not None
            assert self._cache is not None
            _, _, _, fence_score, fence_curvature = self._cache
            found = _grid_mode(state.loglik + offset, state.score + fence_score, state.curvature + fence_curvature,
                               self.nodes, lo, hi)
            if found is not None:
                info = _interpolate(state.information, self.nodes, found)
                if info > 0:
                    return Estimate(found, 1.0 / math.sqrt(info))
        a, b, c, d, u = state.arrays(bank)
        simple = bank.model in ("1pl", "2pl")
        if self.config.fence_items:
            def derivs(theta: float) -> tuple[float, float, float]:
                d1, d2, info = score_and_information(theta, a, b, c, d, u, simple)
                s_lo, s_hi = _sigmoid(fa * (theta - lo)), _sigmoid(fa * (theta - hi))
                # lower fence answered right: d/dθ log s = fa (1 - s); upper answered wrong: -fa s
                f1 = fa * (1.0 - s_lo) - fa * s_hi
                f2 = -fa * fa * (s_lo * (1.0 - s_lo) + s_hi * (1.0 - s_hi))
                return d1 + f1, d2 + f2, info - f2
        else:
            def derivs(theta: float) -> tuple[float, float, float]:
                return score_and_information(theta, a, b, c, d, u, simple)

        theta = _maximise(derivs, state.loglik + offset, self.nodes, lo, hi)
        info = total_information(theta, a, b, c, d, simple)
        return Estimate(theta, 1.0 / math.sqrt(info) if info > 0 else math.inf)


def _maximise(derivs: Callable[[float], tuple[float, float, float]], grid_values: np.ndarray,
              nodes: np.ndarray, lo: float, hi: float, newton_tol: float = 2e-4, tol: float = 1e-10,
              max_iter: int = 60) -> float:
    """The maximiser in ``[lo, hi]`` of a smooth function known on ``nodes`` by ``grid_values``;
    ``derivs(θ)`` gives its first and second derivative and the Fisher information (Fisher scoring
    where the curvature is not negative).

    The best node's neighbours bracket a maximum; the start is the maximum of the cubic through four
    grid values around the best node; Newton steps are safeguarded by bisection. A Newton step shorter than
    ``newton_tol`` ends the search (the error after it is of the order of its square); a scoring step
    or a bisection must get below ``tol``. At a fence the derivative decides whether the maximum is
    the fence itself."""
    k = int(np.argmax(grid_values))
    last = len(nodes) - 1
    left = max(lo, float(nodes[k - 1])) if k > 0 else lo
    right = min(hi, float(nodes[k + 1])) if k < last else hi
    if left <= lo and derivs(lo)[0] <= 0:
        return lo
    if right >= hi and derivs(hi)[0] >= 0:
        return hi
    theta = _cubic_start(grid_values, nodes, k)
    if not left < theta < right:
        theta = 0.5 * (left + right)
    for _ in range(max_iter):
        g, h, fisher = derivs(theta)
        if g > 0:
            left = theta
        else:
            right = theta
        if h < 0:
            step, limit = -g / h, newton_tol
        else:
            step, limit = (g / fisher if fisher > 0 else math.inf), tol
        if abs(step) < limit:
            return min(max(theta + step, lo), hi)
        new = theta + step
        if not left < new < right:
            new = 0.5 * (left + right)
            if right - left < tol:
                return new
        theta = new
    return theta


def _grid_mode(values: np.ndarray, score: np.ndarray, curvature: np.ndarray, nodes: np.ndarray, lo: float,
               hi: float) -> float | None:
    """The maximum near the best node of a function known on the grid by its ``values``, first
    (``score``) and second derivative, from the cubic Hermite interpolant of the first derivative
    between the two nodes where it changes sign; None when no sign change brackets it inside
    ``(lo, hi)`` (then the caller solves on the exact likelihood)."""
    k = int(values.argmax())
    j = k if score[k] > 0 else k - 1
    if j < 0 or j + 1 >= len(nodes):
        return None
    f0, f1 = float(score[j]), float(score[j + 1])
    x0, x1 = float(nodes[j]), float(nodes[j + 1])
    if not (f0 > 0 >= f1) or x0 < lo or x1 > hi:
        return None
    h = x1 - x0
    d0, d1 = float(curvature[j]) * h, float(curvature[j + 1]) * h
    left, right = 0.0, 1.0
    t = f0 / (f0 - f1)
    for _ in range(40):  # safeguarded Newton on the Hermite cubic H(t), H(0) = f0 > 0 >= f1 = H(1)
        t2, t3 = t * t, t * t * t
        value = (2 * t3 - 3 * t2 + 1) * f0 + (t3 - 2 * t2 + t) * d0 + (3 * t2 - 2 * t3) * f1 + (t3 - t2) * d1
        slope = (6 * t2 - 6 * t) * (f0 - f1) + (3 * t2 - 4 * t + 1) * d0 + (3 * t2 - 2 * t) * d1
        if value > 0:
            left = t
        else:
            right = t
        new = t - value / slope if slope < 0 else 0.5 * (left + right)
        if not left <= new <= right:
            new = 0.5 * (left + right)
        if abs(new - t) < 1e-13:
            t = new
            break
        t = new
    return x0 + t * h


def _interpolate(grid: np.ndarray, nodes: np.ndarray, x: float) -> float:
    """The cubic through the four grid values around ``x``, at ``x``."""
    h = float(nodes[1] - nodes[0])
    m = min(max(int((x - float(nodes[0])) / h) - 1, 0), len(nodes) - 4)
    t = (x - float(nodes[m])) / h
    f0, f1, f2, f3 = grid[m:m + 4].tolist()
    return (-(t - 1) * (t - 2) * (t - 3) * f0 / 6 + t * (t - 2) * (t - 3) * f1 / 2
            - t * (t - 1) * (t - 3) * f2 / 2 + t * (t - 1) * (t - 2) * f3 / 6)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _cubic_start(values: np.ndarray, nodes: np.ndarray, k: int) -> float:
    """The maximum near node ``k`` of the cubic through four grid values around it (the node itself
    where they are not all finite)."""
    last = len(nodes) - 1
    m = k - 1 if k + 2 <= last else k - 2
    if m < 0 or m + 3 > last:
        return float(nodes[k])
    f0, f1, f2, f3 = values[m:m + 4].tolist()
    d1, d2, d3 = f1 - f0, f2 - 2 * f1 + f0, f3 - 3 * f2 + 3 * f1 - f0
    if not math.isfinite(d3):
        return float(nodes[k])
    # P'(t) = A t² + B t + C for the Newton forward polynomial P of f on t = (x - x_m) / h
    qa, qb, qc = d3 / 2, d2 - d3, d1 - d2 / 2 + d3 / 3
    if abs(qa) < 1e-12 * (abs(qb) + abs(qc) + 1e-300):
        roots = [-qc / qb] if qb != 0 else []
    else:
        disc = qb * qb - 4 * qa * qc
        if disc < 0:
            return float(nodes[k])
        root = math.sqrt(disc)
        roots = [(-qb - root) / (2 * qa), (-qb + root) / (2 * qa)]
    t_k = k - m
    for t in roots:
        if t_k - 1 <= t <= t_k + 1 and d2 + (t - 1) * d3 < 0:
            h = float(nodes[1] - nodes[0])
            return float(nodes[m]) + t * h
    return float(nodes[k])


def make_estimator(config: EstimatorConfig) -> AbilityEstimator:
    """The estimator the config names."""
    classes: dict[str, type[AbilityEstimator]] = {"eap": EAPEstimator, "map": MAPEstimator, "mle": MLEEstimator}
    try:
        return classes[config.method](config)
    except KeyError:
        raise InputError(f"unknown estimator {config.method!r}; use eap, map or mle", field="estimator") from None
