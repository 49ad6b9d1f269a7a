"""Joint calibration of items and learners in PyTorch over answered pairs, for logs too large for MML.

Items and learners are estimated together by maximising one objective over the answered
(learner, item) pairs only (never a dense matrix), full-batch with L-BFGS (strong Wolfe line
search) in float64 on the CPU. Every learner's ability is a normal distribution N(mu, sigma^2)
with its own mean and SD (a Gaussian variational approximation of the posterior); the objective
is the evidence lower bound: the expected log-likelihood of each learner's answers (by
``n_nodes``-point Gauss–Hermite quadrature over the learner's own normal) minus the KL divergence
of that normal from the N(0, 1) ability prior, plus the items' log-priors. Because it integrates
over each ability, the slopes are not inflated as in point-ability joint maximum likelihood, and
learners with few answers or all answers right cannot make the fit degenerate (a point-ability
regularised JML was tried first and did degenerate — single items turning into steps — on
simulated logs with 15 answers per learner).

Items get weak priors: lognormal(0, ``prior_a_sdlog``) on a, N(0, ``prior_b_sd``) on b, and
Beta(5, 17) / Beta(17, 5) on c / d as in MML. Nothing is random: the result depends only on the
data and the hyperparameters. Reported like MML: item a, b, c, d; standard errors from the
marginal observed information at these parameters (as MML computes them); the marginal
log-likelihood over the same quadrature as MML (comparable across estimators); in ``extra`` the
final evidence lower bound.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import logit

from knowtrace.exceptions import InputError
from knowtrace.models.irt.mml import DEFAULT_PRIOR_C, DEFAULT_PRIOR_D, Calibration, MMLEstimator, screen_items
from knowtrace.models.irt.params import ItemParameters, check_model
from knowtrace.models.irt.response_matrix import ResponseMatrix

if TYPE_CHECKING:
    import torch

__all__ = ["JMLEstimator"]


class JMLEstimator:
    """Joint variational calibration of a ``rasch``/``1pl``/``2pl``/``3pl``/``4pl`` model."""

    def __init__(self, model: str = "2pl", *, prior_a_sdlog: float = 1.0,
                 prior_b_sd: float = 10.0, max_iter: int = 500, tol: float = 1e-7, n_nodes: int = 5,
                 n_quadrature: int = 61, standard_errors: bool = True, seed: int = 0, threads: int = 1) -> None:
        self.model = check_model(model)
        if not (prior_a_sdlog > 0 and prior_b_sd > 0):
            raise InputError("prior_a_sdlog and prior_b_sd must be > 0")
        if not (isinstance(max_iter, int) and max_iter >= 1):
            raise InputError(f"max_iter must be a positive integer, got {max_iter!r}", field="max_iter")
        if not (isinstance(n_nodes, int) and n_nodes >= 3):
            raise InputError(f"n_nodes must be an integer >= 3, got {n_nodes!r}", field="n_nodes")
        self.prior_a_sdlog = float(prior_a_sdlog)
        self.prior_b_sd = float(prior_b_sd)
        self.max_iter = max_iter
        self.tol = float(tol)
        self.n_nodes = n_nodes
        self.standard_errors = standard_errors
        self.seed = seed
        self.threads = threads
        # the marginal side (log-likelihood, standard errors) as MML computes it, same priors on c, d
        self._marginal = MMLEstimator(self.model, n_quadrature=n_quadrature)

    def fit(self, responses: ResponseMatrix, *, progress: Any = None) -> Calibration:
        """Calibrate the items of ``responses`` (items without both right and wrong answers, and
        learners left with no answers, are left out and reported, as in MML)."""
        import torch  # imported here: it takes a second or more, and only this estimator needs it

        before = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.threads)))
        try:
            return self._fit(responses, progress)
        finally:
            torch.set_num_threads(before)

    def _fit(self, responses: ResponseMatrix, progress: Any) -> Calibration:
        import torch

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
        rows, cols, x = data.triplets()
        n, m = data.n_learners, data.n_items
        torch.manual_seed(self.seed)
        problem = _Problem(self, rows, cols, x, n, m)
        optimiser = torch.optim.LBFGS(problem.params, lr=1.0, max_iter=self.max_iter, tolerance_grad=self.tol,
                                      tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
        evaluations = [0]

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            loss = -problem.objective() / len(x)
            loss.backward()
            evaluations[0] += 1
            if progress is not None:
                progress(evaluations[0], float(-loss) * len(x), math.nan)
            return loss

        optimiser.step(closure)
        n_iter = int(optimiser.state[optimiser._params[0]].get("n_iter", 0))
        with torch.no_grad():
            objective = float(problem.objective())
        params = problem.item_parameters(data.item_ids)
        x_int = {"a": params.a, "delta": -params.a * params.b, "c": params.c, "d": params.d}
        loglik = self._marginal.loglik(data, params)
        if self.standard_errors:
            se, se_method = self._marginal.standard_errors_at(data, x_int)
        else:
            nan = np.full(m, np.nan)
            se, se_method = (nan, nan, nan, nan), "none"
        return Calibration(
            model=self.model, params=params, se_a=se[0], se_b=se[1], se_c=se[2], se_d=se[3], loglik=loglik,
            n_iter=n_iter, converged=n_iter < self.max_iter, n_learners=n, n_answers=len(x),
            quadrature=self._marginal.grid, excluded_items=excluded, excluded_learners=excluded_learners,
            se_method=se_method, estimator="jml", seconds=time.perf_counter() - started,
            extra={"elbo": objective},
        )


class _Problem:
    """The tensors and the objective of one joint fit."""

    def __init__(self, est: JMLEstimator, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, n: int, m: int) -> None:
        import torch

        self.torch: Any = torch
        self.est = est
        self.m = m
        model = est.model
        self.free_c, self.free_d = model in ("3pl", "4pl"), model == "4pl"
        dtype = self.dtype = torch.float64
        self.rows, self.cols = torch.as_tensor(rows), torch.as_tensor(cols)
        self.x = torch.as_tensor(x.astype(np.float64))[:, None]
        # starting values from proportions correct
        p_learner = (np.bincount(rows, weights=x, minlength=n) + 0.5) / (np.bincount(rows, minlength=n) + 1.0)
        t0 = logit(p_learner)
        t0 = 0.8 * (t0 - t0.mean()) / (t0.std() + 1e-9)
        p_item = (np.bincount(cols, weights=x, minlength=m) + 0.5) / (np.bincount(cols, minlength=m) + 1.0)
        c0 = _mean(DEFAULT_PRIOR_C) if self.free_c else 0.0
        d0 = _mean(DEFAULT_PRIOR_D) if self.free_d else 1.0
        b0 = -1.2 * logit(np.clip((p_item - c0) / (d0 - c0), 0.02, 0.98))
        self.mu = torch.tensor(t0, dtype=dtype, requires_grad=True)
        self.log_sigma = torch.full((n,), math.log(0.5), dtype=dtype, requires_grad=True)
        self.b = torch.tensor(b0, dtype=dtype, requires_grad=True)
        self.params = [self.mu, self.log_sigma, self.b]
        z, w = np.polynomial.hermite.hermgauss(est.n_nodes)
        self.nodes = torch.tensor(z * math.sqrt(2.0), dtype=dtype)
        self.node_weights = torch.tensor(w / w.sum(), dtype=dtype)
        self.log_a = None
        if model in ("2pl", "3pl", "4pl"):
            self.log_a = torch.zeros(m, dtype=dtype, requires_grad=True)
        elif model == "1pl":
            self.log_a = torch.zeros(1, dtype=dtype, requires_grad=True)
        if self.log_a is not None:
            self.params.append(self.log_a)
        self.c_raw = torch.full((m,), float(logit(c0)), dtype=dtype, requires_grad=True) if self.free_c else None
        self.d_raw = torch.full((m,), float(logit(d0)), dtype=dtype, requires_grad=True) if self.free_d else None
        self.params += [t for t in (self.c_raw, self.d_raw) if t is not None]

    def _loglik(self, z: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of the answers at logits ``z`` (answers x nodes)."""
        torch = self.torch
        x = self.x
        if not (self.free_c or self.free_d):  # log sigmoid(-z) = log sigmoid(z) - z
            return torch.nn.functional.logsigmoid(z) - (1 - x) * z
        one = torch.ones(1, 1, dtype=self.dtype)
        c = torch.sigmoid(self.c_raw)[self.cols][:, None] if self.c_raw is not None else 0.0 * one
        d = torch.sigmoid(self.d_raw)[self.cols][:, None] if self.d_raw is not None else one
        p = c + (d - c) * torch.sigmoid(z)
        q = (1 - d) + (d - c) * torch.sigmoid(-z)
        return x * torch.log(p.clamp_min(1e-300)) + (1 - x) * torch.log(q.clamp_min(1e-300))

    def objective(self) -> torch.Tensor:
        """The evidence lower bound plus the items' log-priors."""
        torch = self.torch
        sigma = torch.exp(self.log_sigma)
        z = self.mu[self.rows][:, None] + sigma[self.rows][:, None] * self.nodes[None, :] - self.b[self.cols][:, None]
        if self.log_a is not None:
            a = torch.exp(self.log_a)
            z = (a[self.cols] if a.numel() == self.m else a.expand(len(self.cols)))[:, None] * z
        value = (self._loglik(z) * self.node_weights[None, :]).sum()
        value = value - 0.5 * (self.mu ** 2 + sigma ** 2 - 1.0 - 2.0 * self.log_sigma).sum()
        value = value - 0.5 * ((self.b / self.est.prior_b_sd) ** 2).sum()
        if self.log_a is not None:
            value = value - 0.5 * ((self.log_a / self.est.prior_a_sdlog) ** 2).sum()
        for raw, prior in ((self.c_raw, DEFAULT_PRIOR_C), (self.d_raw, DEFAULT_PRIOR_D)):
            if raw is not None:
                v = torch.sigmoid(raw)
                value = value + ((prior.alpha - 1) * torch.log(v) + (prior.beta - 1) * torch.log1p(-v)).sum()
        return value

    def item_parameters(self, item_ids: np.ndarray) -> ItemParameters:
        """The fitted item parameters."""
        torch = self.torch
        m = self.m
        with torch.no_grad():
            a = np.broadcast_to(np.exp(self.log_a.numpy()), (m,)).astype(np.float64) \
                if self.log_a is not None else np.ones(m)
            b = self.b.numpy().astype(np.float64).copy()
            c = torch.sigmoid(self.c_raw).numpy().astype(np.float64) if self.c_raw is not None else np.zeros(m)
            d = torch.sigmoid(self.d_raw).numpy().astype(np.float64) if self.d_raw is not None else np.ones(m)
        return ItemParameters(np.asarray(item_ids, dtype=str).copy(), a, b, c, d)


def _mean(prior: Any) -> float:
    return prior.alpha / (prior.alpha + prior.beta)
