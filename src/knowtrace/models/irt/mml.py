"""Marginal maximum likelihood calibration of logistic IRT models by Bock–Aitkin EM over quadrature.

The ability is integrated out over a fixed N(0, 1) quadrature grid. The E-step computes, for
every learner (or distinct response pattern), the posterior weights of the grid nodes; the M-step
maximises each item's expected complete-data log-likelihood (plus its log-priors) by Fisher
scoring, vectorised over all items. Items are parametrised internally by slope ``a`` and
intercept ``delta = -a * b`` (well conditioned for every ``a``); ``b`` and its standard error
follow by the delta method. Standard errors come from the observed information of the marginal
log-posterior: the full matrix by central differences of its analytic gradient when there are at
most ``full_se_max_params`` free parameters, else each item's diagonal block by Louis's formula
(cross-item covariances ignored).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logit

from knowtrace.exceptions import InputError
from knowtrace.models._blas import blas_threads
from knowtrace.models.irt.params import (
    BetaPrior,
    ItemParameters,
    LogNormalPrior,
    NormalPrior,
    Quadrature,
    check_model,
    quadrature,
)
from knowtrace.models.irt.response_matrix import ResponseMatrix

__all__ = ["Calibration", "ExcludedItem", "MMLEstimator", "DEFAULT_PRIOR_C", "DEFAULT_PRIOR_D"]

#: the usual guessing prior (BILOG's default for 5 options, mean 0.23)
DEFAULT_PRIOR_C = BetaPrior(5.0, 17.0)
#: its mirror for the upper asymptote of the 4PL (mean 0.77... upper asymptote near 1)
DEFAULT_PRIOR_D = BetaPrior(17.0, 5.0)

_A_MAX = 20.0
_DELTA_MAX = 60.0
_TINY = 1e-300

Progress = Callable[[int, float, float], None]


@dataclass(frozen=True)
class ExcludedItem:
    """An item left out of calibration, and why."""

    item_id: str
    reason: str
    n_answers: int
    n_correct: int

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "reason": self.reason, "n_answers": self.n_answers,
                "n_correct": self.n_correct}


@dataclass(eq=False)
class Calibration:
    """Calibrated item parameters with standard errors (NaN where a parameter is fixed or its
    information is singular) and the fit's summary."""

    model: str
    params: ItemParameters
    se_a: np.ndarray
    se_b: np.ndarray
    se_c: np.ndarray
    se_d: np.ndarray
    loglik: float
    n_iter: int
    converged: bool
    n_learners: int
    n_answers: int
    quadrature: Quadrature
    excluded_items: list[ExcludedItem] = field(default_factory=list)
    excluded_learners: int = 0
    se_method: str = "none"
    estimator: str = "mml"
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def item_ids(self) -> np.ndarray:
        """Ids of the calibrated items."""
        return self.params.item_ids

    def flags(self) -> list[str | None]:
        """Per item, why its estimates are weakly determined (None when they are not): a slope at
        its bound or a difficulty beyond the ability grid, typically an item with few answers or
        with its answers perfectly separated; priors (``prior_a``, ``prior_b``) keep them finite."""
        lo, hi = float(self.quadrature.nodes[0]), float(self.quadrature.nodes[-1])
        out: list[str | None] = []
        for a, b in zip(self.params.a.tolist(), self.params.b.tolist()):
            if abs(a) >= _A_MAX * 0.999:
                out.append(f"slope at its bound ({a:g})")
            elif not lo <= b <= hi:
                out.append(f"difficulty {b:.3g} outside the ability grid [{lo:g}, {hi:g}]")
            else:
                out.append(None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: one entry per calibrated item (None for an undefined SE)."""
        p = self.params
        items = []
        for k, (item, flag) in enumerate(zip(p.item_ids.tolist(), self.flags())):
            items.append({
                "item_id": item, "a": float(p.a[k]), "b": float(p.b[k]), "c": float(p.c[k]), "d": float(p.d[k]),
                "se_a": _num(self.se_a[k]), "se_b": _num(self.se_b[k]), "se_c": _num(self.se_c[k]),
                "se_d": _num(self.se_d[k]), "flag": flag,
            })
        return {
            "model": self.model, "estimator": self.estimator, "loglik": float(self.loglik),
            "n_learners": self.n_learners, "n_answers": self.n_answers, "n_items": len(p),
            "n_iter": self.n_iter, "converged": self.converged, "quadrature": self.quadrature.describe(),
            "se_method": self.se_method, "seconds": round(self.seconds, 3), "items": items,
            "excluded_items": [e.to_dict() for e in self.excluded_items],
            "excluded_learners": self.excluded_learners, **self.extra,
        }


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def screen_items(responses: ResponseMatrix) -> tuple[np.ndarray, list[ExcludedItem]]:
    """(mask of items with both correct and wrong answers, the others with their reason)."""
    answers, correct = responses.item_counts()
    keep = (correct > 0) & (correct < answers)
    excluded = []
    for k in np.flatnonzero(~keep).tolist():
        reason = ("no answers" if answers[k] == 0 else
                  "every answer is correct" if correct[k] == answers[k] else "every answer is wrong")
        excluded.append(ExcludedItem(str(responses.item_ids[k]), reason, int(answers[k]), int(correct[k])))
    return keep, excluded


# the data side: E-step sums over learners --------------------------------------------------


class Design:
    """The calibration data as matrices (dense or sparse), distinct dense response patterns merged."""

    def __init__(self, responses: ResponseMatrix, *, merge_patterns: bool = True) -> None:
        x1, mask = responses.design()
        weights = np.ones(responses.n_learners)
        if isinstance(x1, np.ndarray) and merge_patterns and 1 < responses.n_learners and responses.n_items <= 64:
            code = np.where(mask > 0, x1, 2.0) if mask is not None else x1
            code = code.astype(np.int8)
            unique, counts = np.unique(code, axis=0, return_counts=True)
            if len(unique) < 0.8 * len(code):
                x1 = (unique == 1).astype(np.float64)
                mask = (unique != 2).astype(np.float64) if mask is not None else None
                weights = counts.astype(np.float64)
        self.sparse = sp.issparse(x1)
        self.x1 = x1
        self.mask = mask
        self.x1t = x1.T.tocsr() if self.sparse else None
        self.maskt = mask.T.tocsr() if self.sparse and mask is not None else None
        self.weights = weights
        self.n_rows, self.n_items = x1.shape

    def node_loglik(self, logp: np.ndarray, log1mp: np.ndarray) -> np.ndarray:
        """log P(answers of each row | node) for every row and node (rows x nodes)."""
        out = np.asarray(self.x1 @ (logp - log1mp))
        if self.mask is None:
            out += log1mp.sum(axis=0)[None, :]
        else:
            out += np.asarray(self.mask @ log1mp)
        return out

    def posterior(self, logp: np.ndarray, log1mp: np.ndarray, log_prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(posterior node weights per row, marginal log-likelihood per row)."""
        post = self.node_loglik(logp, log1mp)
        post += log_prior[None, :]
        top = post.max(axis=1, keepdims=True)
        np.subtract(post, top, out=post)
        np.exp(post, out=post)
        total = post.sum(axis=1, keepdims=True)
        post /= total
        return post, top[:, 0] + np.log(total[:, 0])

    def expected_counts(self, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected correct answers, expected answers) of every item at every node."""
        weighted = post * self.weights[:, None]
        if self.sparse:
            r = np.asarray(self.x1t @ weighted)
            n = np.asarray(self.maskt @ weighted) if self.maskt is not None else None
        else:
            r = self.x1.T @ weighted
            n = self.mask.T @ weighted if self.mask is not None else None
        if n is None:
            n = np.broadcast_to(weighted.sum(axis=0), r.shape)
        return r, n


# the item side: response curves, their derivatives and priors -------------------------------


class _Spec:
    """Which parameters are free, their priors and bounds."""

    def __init__(self, model: str, prior_a: LogNormalPrior | None, prior_b: NormalPrior | None,
                 prior_c: BetaPrior | None, prior_d: BetaPrior | None) -> None:
        self.model = model
        self.a_mode = {"rasch": "fixed", "1pl": "common"}.get(model, "item")
        self.free_c = model in ("3pl", "4pl")
        self.free_d = model == "4pl"
        self.names = (["a"] if self.a_mode == "item" else []) + ["delta"] + (["c"] if self.free_c else []) \
            + (["d"] if self.free_d else [])
        self.logistic = not (self.free_c or self.free_d)
        self.prior_a = prior_a if self.a_mode != "fixed" else None
        self.prior_b = prior_b
        self.prior_c = prior_c if self.free_c else None
        self.prior_d = prior_d if self.free_d else None
        self.a_min = 1e-3 if self.prior_a is not None else -_A_MAX

    def clip(self, x: dict[str, np.ndarray]) -> None:
        """Keep every parameter inside its admissible box (in place)."""
        x["a"] = np.clip(x["a"], self.a_min, _A_MAX)
        x["delta"] = np.clip(x["delta"], -_DELTA_MAX, _DELTA_MAX)
        if self.free_d:
            x["d"] = np.clip(x["d"], 0.3, 1.0)
        if self.free_c:
            x["c"] = np.clip(x["c"], 0.0, np.minimum(0.7, x["d"] - 0.05))
        if self.free_d:
            x["d"] = np.maximum(x["d"], x["c"] + 0.05)


class _Curves:
    """Response curves of all items on the grid and their first and second derivatives."""

    def __init__(self, spec: _Spec, x: dict[str, np.ndarray], theta: np.ndarray) -> None:
        a, delta, c, d = x["a"], x["delta"], x["c"], x["d"]
        z = a[:, None] * theta[None, :] + delta[:, None]
        self.theta = theta
        self.s = expit(z)
        self.sc = expit(-z)  # 1 - s, accurate in the upper tail
        self.span = (d - c)[:, None]
        self.c, self.d = c[:, None], d[:, None]
        if spec.logistic:
            self.logp = -np.logaddexp(0.0, -z)
            self.log1mp = -np.logaddexp(0.0, z)
            self.p = self.s
            self.q = self.s * self.sc
            self.h = np.ones_like(z)  # s(1 - s) / (P (1 - P)) for a logistic curve
        else:
            self.p = self.c + self.span * self.s
            one_minus = (1.0 - self.d) + self.span * self.sc
            self.logp = np.log(np.maximum(self.p, _TINY))
            self.log1mp = np.log(np.maximum(one_minus, _TINY))
            self.q = np.maximum(self.p * one_minus, _TINY)
            self.h = self.s * self.sc / self.q
        self.s1 = self.s * self.sc

    def first(self, name: str) -> np.ndarray:
        """dP / d(name)."""
        if name == "a":
            return self.span * self.s1 * self.theta[None, :]
        if name == "delta":
            return self.span * self.s1
        if name == "c":
            return self.sc
        return self.s  # d

    def first_over_q(self, name: str) -> np.ndarray:
        """dP / d(name) / (P (1 - P)), stable in the tails of a logistic curve."""
        if name == "a":
            return self.span * self.h * self.theta[None, :]
        if name == "delta":
            return self.span * self.h
        return self.first(name) / self.q

    def second(self, n1: str, n2: str) -> np.ndarray | None:
        """d2P / d(n1) d(n2), or None where it is zero."""
        pair = {n1, n2}
        s2 = self.s1 * (self.s - self.sc) * -1.0  # s(1 - s)(1 - 2s)
        t = self.theta[None, :]
        if pair == {"a"}:
            return self.span * s2 * t * t
        if pair == {"a", "delta"}:
            return self.span * s2 * t
        if pair == {"delta"}:
            return self.span * s2
        if pair == {"a", "c"}:
            return -self.s1 * t
        if pair == {"delta", "c"}:
            return -self.s1
        if pair == {"a", "d"}:
            return self.s1 * t
        if pair == {"delta", "d"}:
            return self.s1
        return None

    def objective(self, r: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Expected complete-data log-likelihood of every item."""
        return (r * self.logp + (n - r) * self.log1mp).sum(axis=1)


def _log_curves(spec: _Spec, x: dict[str, np.ndarray], theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log P, log(1 - P)) of every item at every node."""
    z = x["a"][:, None] * theta[None, :] + x["delta"][:, None]
    if spec.logistic:
        return -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    c, d = x["c"][:, None], x["d"][:, None]
    p = c + (d - c) * expit(z)
    q = (1.0 - d) + (d - c) * expit(-z)
    return np.log(np.maximum(p, _TINY)), np.log(np.maximum(q, _TINY))


def _prior_terms(spec: _Spec, x: dict[str, np.ndarray], names: list[str], *,
                 a_prior: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log-prior, gradient, negative Hessian, its positive semi-definite part) per item over ``names``;
    ``a_prior=False`` leaves out the prior on ``a`` (counted once for the 1PL's common slope)."""
    a, delta = x["a"], x["delta"]
    m, k = len(a), len(names)
    value = np.zeros(m)
    grad = np.zeros((m, k))
    neg_hess = np.zeros((m, k, k))
    psd = np.zeros((m, k, k))
    at = {name: j for j, name in enumerate(names)}
    if spec.prior_a is not None and "a" in at and a_prior:
        mu, s2 = spec.prior_a.meanlog, spec.prior_a.sdlog ** 2
        la = np.log(a)
        value += -la - (la - mu) ** 2 / (2 * s2)
        j = at["a"]
        grad[:, j] += -(1.0 + (la - mu) / s2) / a
        h = (1.0 + (la - mu - 1.0) / s2) / a ** 2
        neg_hess[:, j, j] += -h
        psd[:, j, j] += np.maximum(-h, 0.0)
    if spec.prior_b is not None:
        mu, s2 = spec.prior_b.mean, spec.prior_b.sd ** 2
        b = -delta / a
        f1, f2 = -(b - mu) / s2, -1.0 / s2
        value += -(b - mu) ** 2 / (2 * s2)
        gb = {"a": delta / a ** 2, "delta": -1.0 / a}
        hb = {("a", "a"): -2.0 * delta / a ** 3, ("a", "delta"): 1.0 / a ** 2, ("delta", "a"): 1.0 / a ** 2}
        for n1 in ("a", "delta"):
            if n1 not in at:
                continue
            grad[:, at[n1]] += f1 * gb[n1]
            for n2 in ("a", "delta"):
                if n2 not in at:
                    continue
                outer = f2 * gb[n1] * gb[n2]
                neg_hess[:, at[n1], at[n2]] += -(outer + f1 * hb.get((n1, n2), 0.0))
                psd[:, at[n1], at[n2]] += -outer
    for name, prior in (("c", spec.prior_c), ("d", spec.prior_d)):
        if prior is None or name not in at:
            continue
        v = np.clip(x[name], 1e-9, 1 - 1e-9)
        j = at[name]
        al, be = prior.alpha - 1.0, prior.beta - 1.0
        value += al * np.log(v) + be * np.log1p(-v)
        grad[:, j] += al / v - be / (1 - v)
        h = al / v ** 2 + be / (1 - v) ** 2
        neg_hess[:, j, j] += h
        psd[:, j, j] += h
    return value, grad, neg_hess, psd


def _common_a_prior(spec: _Spec, a: float) -> tuple[float, float]:
    """(gradient, negative second derivative) of the lognormal prior of the 1PL's common slope (0 without one)."""
    if spec.prior_a is None or spec.a_mode != "common":
        return 0.0, 0.0
    mu, s2 = spec.prior_a.meanlog, spec.prior_a.sdlog ** 2
    la = math.log(a)
    return -(1.0 + (la - mu) / s2) / a, -(1.0 + (la - mu - 1.0) / s2) / a ** 2


def _score_info(spec: _Spec, curves: _Curves, r: np.ndarray, n: np.ndarray,
                names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, expected information) of every item's data term over ``names``."""
    resid = r - n * curves.p
    fq = {name: curves.first_over_q(name) for name in names}
    fp = {name: curves.first(name) for name in names}
    k = len(names)
    grad = np.stack([(resid * fq[name]).sum(axis=1) for name in names], axis=1)
    info = np.empty((len(r), k, k))
    for i, n1 in enumerate(names):
        for j in range(i, k):
            value = (n * fq[n1] * fp[names[j]]).sum(axis=1)
            info[:, i, j] = info[:, j, i] = value
    return grad, info


class MMLEstimator:
    """Bock–Aitkin EM calibration of a ``rasch``/``1pl``/``2pl``/``3pl``/``4pl`` model.

    ``prior_a`` (lognormal on a), ``prior_b`` (normal on b), ``prior_c``/``prior_d`` (beta on the
    asymptotes; ``"default"`` = Beta(5, 17) for c and Beta(17, 5) for d, None = no prior) make the
    fit a Bayes modal one. EM (accelerated by SQUAREM) stops when an EM cycle moves no parameter
    by more than ``tol`` (or after ``max_iter`` cycles). ``n_quadrature`` points of
    ``quadrature_kind`` ("uniform" on ±6 or "gauss-hermite") integrate over the N(0, 1) ability.
    ``threads``: BLAS threads for the matrix products (None: as configured; see ``_blas``).
    """

    def __init__(
        self,
        model: str = "2pl",
        *,
        n_quadrature: int = 61,
        quadrature_kind: str = "uniform",
        max_iter: int = 500,
        tol: float = 1e-5,
        prior_a: LogNormalPrior | None = None,
        prior_b: NormalPrior | None = None,
        prior_c: BetaPrior | str | None = "default",
        prior_d: BetaPrior | str | None = "default",
        standard_errors: bool = True,
        full_se_max_params: int = 120,
        newton_steps: int = 3,
        threads: int | None = 1,
    ) -> None:
        self.model = check_model(model)
        self.grid = quadrature(n_quadrature, quadrature_kind)
        if not (isinstance(max_iter, int) and max_iter >= 1):
            raise InputError(f"max_iter must be a positive integer, got {max_iter!r}", field="max_iter")
        if not tol > 0:
            raise InputError(f"tol must be > 0, got {tol}", field="tol")
        self.max_iter = max_iter
        self.tol = float(tol)
        self.spec = _Spec(self.model, prior_a, prior_b,
                          DEFAULT_PRIOR_C if prior_c == "default" else _beta(prior_c, "prior_c"),
                          DEFAULT_PRIOR_D if prior_d == "default" else _beta(prior_d, "prior_d"))
        self.standard_errors = standard_errors
        self.full_se_max_params = full_se_max_params
        self.newton_steps = newton_steps
        self.threads = threads

    # public ----------------------------------------------------------------------------------

    def fit(self, responses: ResponseMatrix, *, progress: Progress | None = None) -> Calibration:
        """Calibrate the items of ``responses`` (items without both right and wrong answers are left
        out and reported; so are learners left with no answers)."""
        with blas_threads(self.threads):
            return self._fit(responses, progress)

    def _fit(self, responses: ResponseMatrix, progress: Progress | None) -> Calibration:
        started = time.perf_counter()
        keep, excluded = screen_items(responses)
        if not keep.any():
            reasons = "; ".join(f"{e.item_id}: {e.reason}" for e in excluded[:10])
            raise InputError(f"no item has both correct and wrong answers, nothing to calibrate ({reasons})")
        data = responses.subset(items=keep)
        has_answers = data.learner_counts() > 0
        excluded_learners = int((~has_answers).sum())
        if excluded_learners:
            data = data.subset(learners=has_answers)
        design = Design(data)
        x, it, converged, loglik = self._run_em(design, self._start(data), progress)
        se, se_method = self._standard_errors(design, x) if self.standard_errors else (None, "none")
        params = ItemParameters(data.item_ids.copy(), x["a"].copy(), -x["delta"] / x["a"], x["c"].copy(),
                                x["d"].copy())
        nan = np.full(len(params), np.nan)
        se_a, se_b, se_c, se_d = se if se is not None else (nan, nan, nan, nan)
        return Calibration(
            model=self.model, params=params, se_a=se_a, se_b=se_b, se_c=se_c, se_d=se_d, loglik=loglik,
            n_iter=it, converged=converged, n_learners=data.n_learners, n_answers=int(data.learner_counts().sum()),
            quadrature=self.grid, excluded_items=excluded, excluded_learners=excluded_learners, se_method=se_method,
            seconds=time.perf_counter() - started,
        )

    def loglik(self, responses: ResponseMatrix, params: ItemParameters) -> float:
        """Marginal log-likelihood of ``responses`` (items aligned with ``params``) over this grid."""
        with blas_threads(self.threads):
            design = Design(responses)
            p = np.clip(params.prob(self.grid.nodes), _TINY, 1.0)
            q = np.clip(1.0 - p, _TINY, 1.0)
            _, row_ll = design.posterior(np.log(p), np.log(q), self.grid.log_weights)
            return float(design.weights @ row_ll)

    def standard_errors_at(self, responses: ResponseMatrix,
                           x: dict[str, np.ndarray]) -> tuple[tuple[np.ndarray, ...], str]:
        """(se_a, se_b, se_c, se_d), method: this estimator's standard errors at the internal
        parameters ``x`` (``a``, ``delta`` = -a b, ``c``, ``d``) of the items of ``responses``."""
        with blas_threads(self.threads):
            return self._standard_errors(Design(responses),
                                         {k: np.asarray(v, dtype=np.float64) for k, v in x.items()})

    # EM --------------------------------------------------------------------------------------

    def _em(self, design: Design, x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float, float]:
        """One EM cycle from ``x``: (new parameters, log-posterior at ``x``, log-likelihood at ``x``)."""
        theta = self.grid.nodes
        curves = _Curves(self.spec, x, theta)
        post, row_ll = design.posterior(curves.logp, curves.log1mp, self.grid.log_weights)
        loglik = float(design.weights @ row_ll)
        r, n = design.expected_counts(post)
        return self._m_step(x, r, n, theta), loglik + self._log_prior(x), loglik

    def _log_prior(self, x: dict[str, np.ndarray]) -> float:
        value = float(_prior_terms(self.spec, x, self.spec.names)[0].sum())
        if self.spec.a_mode == "common" and self.spec.prior_a is not None:
            la = math.log(float(x["a"][0]))
            value += -la - (la - self.spec.prior_a.meanlog) ** 2 / (2 * self.spec.prior_a.sdlog ** 2)
        return value

    def _run_em(self, design: Design, x: dict[str, np.ndarray],
                progress: Progress | None) -> tuple[dict[str, np.ndarray], int, bool, float]:
        """EM accelerated by SQUAREM (Varadhan & Roland 2008, scheme S3): two EM cycles give a
        direction, the parameters are extrapolated along it and then take one EM cycle; when that
        lowers the log-posterior below the plain cycles' the plain EM result is kept. Stops when an
        EM cycle moves no parameter by more than ``tol``. Returns (parameters, EM cycles,
        converged, log-likelihood at the parameters)."""
        keys = ("a", "delta", "c", "d")
        cycles = 0

        def step(y: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float, float]:
            nonlocal cycles
            new, objective, loglik = self._em(design, y)
            cycles += 1
            if progress is not None:
                progress(cycles, loglik, _change(new, y))
            return new, objective, loglik

        def _change(u: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> float:
            return max(float(np.max(np.abs(u[k] - v[k]))) for k in keys)

        converged = False
        while cycles < self.max_iter:
            x1, _, _ = step(x)
            converged = _change(x1, x) < self.tol
            if converged or cycles >= self.max_iter:
                x = x1
                break
            x2, f1, _ = step(x1)
            converged = _change(x2, x1) < self.tol
            if converged or cycles >= self.max_iter:
                x = x2
                break
            r = {k: x1[k] - x[k] for k in keys}
            v = {k: x2[k] - x1[k] - r[k] for k in keys}
            norm_r = math.sqrt(sum(float(np.sum(r[k] ** 2)) for k in keys))
            norm_v = math.sqrt(sum(float(np.sum(v[k] ** 2)) for k in keys))
            if norm_v == 0.0:
                x = x2
                continue
            alpha = min(-norm_r / norm_v, -1.0)
            jump = {k: x[k] - 2 * alpha * r[k] + alpha * alpha * v[k] for k in keys}
            self.spec.clip(jump)
            x3, f_jump, _ = step(jump)
            x = x3 if f_jump >= f1 and math.isfinite(f_jump) else x2
        curves = _Curves(self.spec, x, self.grid.nodes)
        _, row_ll = design.posterior(curves.logp, curves.log1mp, self.grid.log_weights)
        return x, cycles, converged, float(design.weights @ row_ll)

    def _start(self, data: ResponseMatrix) -> dict[str, np.ndarray]:
        answers, correct = data.item_counts()
        p = np.clip(correct / np.maximum(answers, 1), 0.02, 0.98)
        m = len(p)
        c = np.zeros(m)
        d = np.ones(m)
        if self.spec.free_c:
            prior = self.spec.prior_c
            c = np.full(m, prior.alpha / (prior.alpha + prior.beta) if prior else 0.1)
            c = np.minimum(c, p / 2)
        if self.spec.free_d:
            prior = self.spec.prior_d
            d = np.full(m, prior.alpha / (prior.alpha + prior.beta) if prior else 0.98)
            d = np.maximum(d, (1 + p) / 2)
        inner = np.clip((p - c) / (d - c), 0.02, 0.98)
        x = {"a": np.ones(m), "delta": logit(inner) * math.sqrt(1 + 0.346), "c": c, "d": d}
        self.spec.clip(x)
        return x

    def _objective(self, x: dict[str, np.ndarray], r: np.ndarray, n: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Expected complete-data log-posterior of every item (of the given rows of r, n)."""
        logp, log1mp = _log_curves(self.spec, x, theta)
        value = (r * logp + (n - r) * log1mp).sum(axis=1)
        return value + _prior_terms(self.spec, x, self.spec.names)[0]

    def _m_step(self, x: dict[str, np.ndarray], r: np.ndarray, n: np.ndarray,
                theta: np.ndarray) -> dict[str, np.ndarray]:
        """Fisher scoring on each item's expected log-posterior (the common a of the 1PL after the items)."""
        x = {k: v.copy() for k, v in x.items()}
        names = self.spec.names
        for _ in range(self.newton_steps):
            before = self._objective(x, r, n, theta)
            curves = _Curves(self.spec, x, theta)
            grad, info = _score_info(self.spec, curves, r, n, names)
            _, pg, _, psd = _prior_terms(self.spec, x, names)
            grad, info = grad + pg, info + psd
            step = _solve(info, grad)
            x, moved = self._line_search(x, names, step, before, r, n, theta)
            if self.spec.a_mode == "common":
                x = self._common_a_step(x, r, n, theta)
            if moved < self.tol * 1e-2:
                break
        return x

    def _line_search(self, x: dict[str, np.ndarray], names: list[str], step: np.ndarray, before: np.ndarray,
                     r: np.ndarray, n: np.ndarray, theta: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Take each item's step, halved until its objective does not drop (at most 20 halvings);
        only the items still pending are evaluated again."""
        best = {k: v.copy() for k, v in x.items()}
        pending = np.arange(len(step))
        scale = 1.0
        for _ in range(20):
            trial = {k: v[pending] for k, v in x.items()}
            for j, name in enumerate(names):
                trial[name] = trial[name] + scale * step[pending, j]
            self.spec.clip(trial)
            value = self._objective(trial, r[pending], n[pending], theta)
            ok = value >= before[pending] - 1e-12 * np.abs(before[pending])
            accepted = pending[ok]
            for k in best:
                best[k][accepted] = trial[k][ok]
            pending = pending[~ok]
            if not len(pending):
                break
            scale /= 2
        moved = max(float(np.max(np.abs(best[k] - x[k]))) for k in names)
        return best, moved

    def _common_a_step(self, x: dict[str, np.ndarray], r: np.ndarray, n: np.ndarray,
                       theta: np.ndarray) -> dict[str, np.ndarray]:
        """One Fisher-scoring step on the 1PL's common slope (the difficulties b held fixed)."""
        b = -x["delta"] / x["a"]

        def at(a: float) -> dict[str, np.ndarray]:
            y = {k: v.copy() for k, v in x.items()}
            y["a"] = np.full_like(x["a"], a)
            y["delta"] = -a * b
            self.spec.clip(y)
            return y

        def total(y: dict[str, np.ndarray]) -> float:
            value = float(_Curves(self.spec, y, theta).objective(r, n).sum())
            if self.spec.prior_a is not None:
                la = math.log(y["a"][0])
                value += -la - (la - self.spec.prior_a.meanlog) ** 2 / (2 * self.spec.prior_a.sdlog ** 2)
            return value

        a0 = float(x["a"][0])
        curves = _Curves(self.spec, x, theta)
        tb = theta[None, :] - b[:, None]
        resid = r - n * curves.p
        grad = float((resid * curves.h * tb).sum())
        info = float((n * curves.s1 * curves.h * tb * tb).sum())
        prior_grad, prior_info = _common_a_prior(self.spec, a0)
        grad += prior_grad
        info += max(prior_info, 0.0)
        if info <= 0:
            return x
        base = total(x)
        step = grad / info
        for _ in range(20):
            trial = at(a0 + step)
            if total(trial) >= base - 1e-12 * abs(base):
                return trial
            step /= 2
        return x

    # standard errors ------------------------------------------------------------------------

    def _flatten(self, x: dict[str, np.ndarray]) -> np.ndarray:
        parts = [x[name] for name in self.spec.names]
        if self.spec.a_mode == "common":
            parts.append(x["a"][:1])
        return np.concatenate(parts)

    def _unflatten(self, v: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = len(like["a"])
        out = {k: val.copy() for k, val in like.items()}
        for j, name in enumerate(self.spec.names):
            out[name] = v[j * m:(j + 1) * m].copy()
        if self.spec.a_mode == "common":
            out["a"] = np.full(m, v[-1])
        return out

    def _gradient(self, design: Design, x: dict[str, np.ndarray]) -> np.ndarray:
        """Gradient of the marginal log-posterior in the flattened parameters (Fisher's identity)."""
        theta = self.grid.nodes
        curves = _Curves(self.spec, x, theta)
        post, _ = design.posterior(curves.logp, curves.log1mp, self.grid.log_weights)
        r, n = design.expected_counts(post)
        names = self.spec.names
        grad, _ = _score_info(self.spec, curves, r, n, names)
        grad = grad + _prior_terms(self.spec, x, names)[1]
        parts = [grad[:, j] for j in range(len(names))]
        if self.spec.a_mode == "common":
            ga = float(((r - n * curves.p) * curves.first_over_q("a")).sum())
            ga += float(_prior_terms(self.spec, x, names + ["a"], a_prior=False)[1][:, -1].sum())
            ga += _common_a_prior(self.spec, float(x["a"][0]))[0]
            parts.append(np.array([ga]))
        return np.concatenate(parts)

    def _standard_errors(self, design: Design, x: dict[str, np.ndarray]) -> tuple[tuple[np.ndarray, ...], str]:
        """(se_a, se_b, se_c, se_d), method."""
        m = len(x["a"])
        n_free = len(self.spec.names) * m + (1 if self.spec.a_mode == "common" else 0)
        if n_free <= self.full_se_max_params:
            cov_of, method = self._full_covariance(design, x), "observed information (central differences)"
        else:
            cov_of, method = self._block_covariance(design, x), "observed information per item (Louis)"
        a, delta = x["a"], x["delta"]
        var = {name: np.array([cov_of(i, name, name) for i in range(m)]) for name in ("a", "delta", "c", "d")}
        cov_ad = np.array([cov_of(i, "a", "delta") for i in range(m)])
        var_b = (delta / a ** 2) ** 2 * var["a"] + var["delta"] / a ** 2 + 2 * (delta / a ** 2) * (-1 / a) * cov_ad
        estimated = {"a": self.spec.a_mode != "fixed", "c": self.spec.free_c, "d": self.spec.free_d}
        se = tuple(np.sqrt(np.where((v >= 0) & estimated.get(name, True), v, np.nan))
                   for name, v in (("a", var["a"]), ("b", var_b), ("c", var["c"]), ("d", var["d"])))
        return se, method

    def _index(self, m: int) -> Callable[[int, str], int | None]:
        names = self.spec.names

        def index(i: int, name: str) -> int | None:
            if name in names:
                return names.index(name) * m + i
            if name == "a" and self.spec.a_mode == "common":
                return len(names) * m
            return None

        return index

    def _full_covariance(self, design: Design, x: dict[str, np.ndarray]) -> Callable[[int, str, str], float]:
        v = self._flatten(x)
        k = len(v)
        hess = np.empty((k, k))
        for j in range(k):
            h = 1e-4 * max(1.0, abs(v[j]))
            up, down = v.copy(), v.copy()
            up[j] += h
            down[j] -= h
            hess[:, j] = (self._gradient(design, self._unflatten(up, x))
                          - self._gradient(design, self._unflatten(down, x))) / (2 * h)
        hess = (hess + hess.T) / 2
        cov = _inverse(-hess)
        index = self._index(len(x["a"]))

        def cov_of(i: int, n1: str, n2: str) -> float:
            j1, j2 = index(i, n1), index(i, n2)
            return 0.0 if j1 is None or j2 is None else float(cov[j1, j2])

        return cov_of

    def _block_covariance(self, design: Design, x: dict[str, np.ndarray]) -> Callable[[int, str, str], float]:
        """Each item's block of the observed information by Louis's formula, inverted per item;
        the 1PL's common slope gets its own 1 x 1 block."""
        theta = self.grid.nodes
        names = list(self.spec.names)
        common = self.spec.a_mode == "common"
        curves = _Curves(self.spec, x, theta)
        post, _ = design.posterior(curves.logp, curves.log1mp, self.grid.log_weights)
        r, n = design.expected_counts(post)
        all_names = names + (["a"] if common else [])
        k = len(all_names)
        m = len(x["a"])
        resid = r - n * curves.p
        # E[d2 log f + (d log f)(d log f)^T] summed over rows = sum_q resid * d2P / q
        second = np.zeros((m, k, k))
        for i, n1 in enumerate(all_names):
            for j, n2 in enumerate(all_names):
                d2 = curves.second(n1, n2)
                if d2 is not None:
                    second[:, i, j] = (resid * d2 / curves.q).sum(axis=1)
        # scores of one answer at each node: correct -> P'/P, wrong -> -P'/(1-P)
        g1 = [curves.first(name) / np.maximum(curves.p, _TINY) for name in all_names]
        g0 = [-curves.first(name) / np.maximum(1.0 - curves.p, _TINY) for name in all_names]
        outer = np.zeros((m, k, k))
        common_sum = np.zeros(design.n_rows) if common else None
        for rows, e_scores in _posterior_scores(design, post, g1, g0):
            w = design.weights[rows]
            for i in range(k):
                for j in range(i, k):
                    if common and (all_names[i] == "a" or all_names[j] == "a"):
                        continue
                    value = _weighted_column_products(e_scores[i], e_scores[j], w)
                    outer[:, i, j] += value
                    if i != j:
                        outer[:, j, i] += value
            if common:
                common_sum[rows] += _row_sums(e_scores[-1])
        neg_prior = _prior_terms(self.spec, x, all_names, a_prior=not common)[2]
        info = (outer - second + neg_prior)[:, :len(names), :len(names)]
        cov = np.stack([_inverse(block) for block in info])
        a_var = math.nan
        if common:
            assert common_sum is not None
            a_info = float(design.weights @ (common_sum ** 2)) - float(second[:, -1, -1].sum())
            a_info += float(neg_prior[:, -1, -1].sum()) + _common_a_prior(self.spec, float(x["a"][0]))[1]
            a_var = 1.0 / a_info if a_info > 0 else math.nan

        def cov_of(i: int, n1: str, n2: str) -> float:
            if common and n1 == "a" and n2 == "a":
                return a_var
            if n1 not in names or n2 not in names:
                return 0.0
            return float(cov[i, names.index(n1), names.index(n2)])

        return cov_of


def _posterior_scores(design: Design, post: np.ndarray, g1: list[np.ndarray], g0: list[np.ndarray],
                      chunk: int = 4096) -> Any:
    """Per block of rows: (row indices, per parameter the posterior mean score of every answer as a
    rows x items array or sparse matrix, 0 where unanswered)."""
    for start in range(0, design.n_rows, chunk):
        rows = np.arange(start, min(start + chunk, design.n_rows))
        w = post[rows]
        x1 = design.x1[rows]
        if design.sparse:
            assert design.mask is not None
            answered = design.mask[rows].tocoo()
            correct = np.asarray(x1[answered.row, answered.col]).ravel() > 0
            shape = x1.shape
            scores = []
            for e1, e0 in zip(g1, g0):
                values = np.where(correct, np.einsum("ij,ij->i", w[answered.row], e1[answered.col]),
                                  np.einsum("ij,ij->i", w[answered.row], e0[answered.col]))
                scores.append(sp.csr_matrix((values, (answered.row, answered.col)), shape=shape))
        else:
            answered_dense = design.mask[rows] if design.mask is not None else 1.0
            scores = [x1 * (w @ e1.T) + (answered_dense - x1) * (w @ e0.T) for e1, e0 in zip(g1, g0)]
        yield rows, scores


def _weighted_column_products(u: Any, v: Any, w: np.ndarray) -> np.ndarray:
    """sum over rows of w * u * v, per column."""
    if sp.issparse(u):
        return np.asarray(u.multiply(v).T @ w).ravel()
    return (u * v).T @ w


def _row_sums(u: Any) -> np.ndarray:
    return np.asarray(u.sum(axis=1)).ravel()


def _solve(info: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """info^-1 grad per item, with a small ridge where info is (nearly) singular."""
    k = info.shape[1]
    ridge = 1e-8 * (np.trace(info, axis1=1, axis2=2)[:, None, None] / k + 1e-8) * np.eye(k)
    try:
        return np.linalg.solve(info + ridge, grad[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("ijk,ik->ij", np.linalg.pinv(info + ridge), grad)


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric information matrix; NaN when it is not positive definite."""
    try:
        np.linalg.cholesky(matrix)
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return np.full(matrix.shape, np.nan)


def _beta(prior: BetaPrior | str | None, name: str) -> BetaPrior | None:
    if prior is None or isinstance(prior, BetaPrior):
        return prior
    raise InputError(f"{name} must be a BetaPrior, 'default' or None, got {prior!r}", field=name)
