"""Performance Factors Analysis (Pavlik, Cen & Koedinger 2009) and the Additive Factors Model.

Both are logistic regressions on the learner's earlier answers per concept, summed over the
concepts of the item:

- ``pfa``: ``logit P = b0 + sum_k (beta_k + gamma_k * successes_k + rho_k * failures_k)``;
- ``afm``: ``logit P = b0 + theta_learner + sum_k (beta_k + gamma_k * attempts_k)``, ``gamma >= 0``.

Counts are the learner's answers on concept ``k`` before the current one. Fitting minimises the
L2-regularised log-loss (the intercept is not penalised) with L-BFGS on a sparse design matrix.
``learn_one`` adds an answer to the learner's counts; the coefficients change only with ``fit``.
AFM learners not seen in ``fit`` have ``theta = 0``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse
from scipy.special import expit

from knowtrace.exceptions import InputError
from knowtrace.models._blas import blas_threads
from knowtrace.models.base import Mastery, OnlineModel, check_learner_fields, learner_field
from knowtrace.models.data import Interactions, lookup, pack_lists, unpack_lists

__all__ = ["AFM", "PFA"]

Counts = dict[str, dict[str, tuple[int, int]]]


def history_counts(
    learner: np.ndarray, concept: np.ndarray, correct: np.ndarray, n_concepts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts of earlier answers per (learner, concept) for (row, concept) pairs in history order.

    Returns per pair: successes and failures before it, its group; per group (one per learner and
    concept): the key ``learner * n_concepts + concept``, total successes and total failures.
    """
    m = len(concept)
    if m == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, empty, empty
    key = learner.astype(np.int64) * n_concepts + concept
    order = np.argsort(key, kind="stable")
    sorted_key, c = key[order], correct[order].astype(np.int64)
    first = np.ones(m, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    starts = np.flatnonzero(first)
    group_sorted = np.cumsum(first) - 1
    before = np.cumsum(c) - c
    successes_sorted = before - before[starts][group_sorted]
    attempts_sorted = np.arange(m) - starts[group_sorted]
    successes, attempts, group = (np.empty(m, dtype=np.int64) for _ in range(3))
    successes[order], attempts[order], group[order] = successes_sorted, attempts_sorted, group_sorted
    ends = np.append(starts[1:], m)
    total = ends - starts
    total_successes = before[ends - 1] + c[ends - 1] - before[starts]
    return successes, attempts - successes, group, sorted_key[starts], total_successes, total - total_successes


class _FactorModel(OnlineModel):
    """Logistic regression on per-concept counts of the learner's earlier answers."""

    #: names of the per-concept coefficient rows of ``coef_``
    blocks: ClassVar[tuple[str, ...]]
    #: whether every learner has a fitted ability ``theta``
    learner_ability: ClassVar[bool] = False
    #: coefficient rows constrained to be >= 0
    nonnegative: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, l2: float = 1.0, count_scale: Literal["raw", "log"] = "raw", max_iter: int = 500) -> None:
        self.l2 = l2
        self.count_scale = count_scale
        self.max_iter = max_iter

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        return {"l2": 2.0, "max_iter": 100}

    @abstractmethod
    def _features(self, successes: Any, failures: Any) -> list[Any]:
        """The value multiplying each block's coefficient for a learner's counts on a concept."""

    def _scale(self, counts: Any) -> Any:
        return np.log1p(counts) if self.count_scale == "log" else counts

    def _check_params(self) -> None:
        if not self.l2 >= 0:
            raise InputError(f"l2 must be >= 0, got {self.l2}", field="l2")
        if self.count_scale not in ("raw", "log"):
            raise InputError(f"count_scale must be 'raw' or 'log', got {self.count_scale!r}", field="count_scale")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise InputError(f"max_iter must be a positive integer, got {self.max_iter!r}", field="max_iter")

    # fitting ---------------------------------------------------------------------------------

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        self._check_params()
        n, n_concepts, n_blocks = data.n, len(data.concept_ids), len(self.blocks)
        n_learners = len(data.learner_ids) if self.learner_ability else 0
        rows = data.row_concepts()
        concept = data.concept_index
        successes, failures, _, keys, total_s, total_f = history_counts(
            data.learner[rows], concept, data.correct[rows], n_concepts)
        features = [np.broadcast_to(np.asarray(f, dtype=np.float64), rows.shape)
                    for f in self._features(successes, failures)]
        design_rows = [np.arange(n), *([rows] * n_blocks)]
        design_cols = [np.zeros(n, dtype=np.int64), *(1 + b * n_concepts + concept for b in range(n_blocks))]
        values = [np.ones(n), *features]
        if self.learner_ability:
            design_rows.append(np.arange(n))
            design_cols.append(1 + n_blocks * n_concepts + data.learner)
            values.append(np.ones(n))
        size = 1 + n_blocks * n_concepts + n_learners
        x = scipy.sparse.csr_matrix(
            (np.concatenate(values), (np.concatenate(design_rows), np.concatenate(design_cols))), shape=(n, size))
        w, self.n_iter_, self.converged_ = self._minimise(x, data.correct.astype(np.float64), n_concepts)
        self.intercept_ = float(w[0])
        self.coef_ = w[1:1 + n_blocks * n_concepts].reshape(n_blocks, n_concepts)
        self.concept_ids_ = data.concept_ids.copy()
        self.learner_ability_ = dict(zip(data.learner_ids.tolist(), w[1 + n_blocks * n_concepts:].tolist())) \
            if self.learner_ability else {}
        self.learner_counts_ = self._group_counts(data, keys, total_s, total_f)
        self.item_concepts_ = data.item_concepts()
        self._index = {c: j for j, c in enumerate(self.concept_ids_.tolist())}

    def _minimise(self, x: scipy.sparse.csr_matrix, y: np.ndarray, n_concepts: int) -> tuple[np.ndarray, int, bool]:
        """Coefficients minimising the L2-regularised mean log-loss; iterations; converged."""
        n, size = x.shape
        if n == 0:
            return np.zeros(size), 0, True
        penalty = np.full(size, float(self.l2))
        penalty[0] = 0.0
        xt = x.T.tocsr()

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = x @ w
            loss = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.dot(penalty * w, w)
            return loss / n, (xt @ (expit(z) - y) + penalty * w) / n

        bounds = [(None, None)] * size
        for b, block in enumerate(self.blocks):
            if block in self.nonnegative:
                bounds[1 + b * n_concepts: 1 + (b + 1) * n_concepts] = [(0.0, None)] * n_concepts
        with blas_threads(1):
            result = scipy.optimize.minimize(objective, np.zeros(size), jac=True, method="L-BFGS-B",
                                             bounds=bounds, options={"maxiter": self.max_iter})
        return np.asarray(result.x, dtype=np.float64), int(result.nit), bool(result.success)

    @staticmethod
    def _group_counts(data: Interactions, keys: np.ndarray, total_s: np.ndarray, total_f: np.ndarray) -> Counts:
        n_concepts = max(len(data.concept_ids), 1)
        learners = data.learner_ids[keys // n_concepts].tolist()
        concepts = data.concept_ids[keys % n_concepts].tolist()
        counts: Counts = {}
        for learner, concept, s, f in zip(learners, concepts, total_s.tolist(), total_f.tolist()):
            counts.setdefault(learner, {})[concept] = (s, f)
        return counts

    # predicting ------------------------------------------------------------------------------

    def _predict(self, data: Interactions) -> np.ndarray:
        rows = data.row_concepts()
        n_concepts = len(data.concept_ids)
        successes, failures, group, keys, _, _ = history_counts(
            data.learner[rows], data.concept_index, data.correct[rows], n_concepts)
        if len(keys) and self.learner_counts_:
            learners = data.learner_ids[keys // n_concepts].tolist()
            concepts = data.concept_ids[keys % n_concepts].tolist()
            start = np.array([self.learner_counts_.get(lr, {}).get(c, (0, 0)) for lr, c in zip(learners, concepts)],
                             dtype=np.int64).reshape(-1, 2)
            successes = successes + start[group, 0]
            failures = failures + start[group, 1]
        fitted = lookup(self.concept_ids_, data.concept_ids)[data.concept_index]
        known = fitted >= 0
        features = self._features(successes[known], failures[known])
        contribution = sum(self.coef_[b, fitted[known]] * features[b] for b in range(len(self.blocks)))
        z = self.intercept_ + np.bincount(rows[known], weights=contribution, minlength=data.n)
        if self.learner_ability:
            ability = np.array([self.learner_ability_.get(lr, 0.0) for lr in data.learner_ids.tolist()])
            z = z + ability[data.learner]
        return expit(z)

    def _logit(self, learner_id: str, concept_ids: tuple[str, ...]) -> float:
        counts = self.learner_counts_.get(learner_id, {})
        z = self.intercept_ + self.learner_ability_.get(learner_id, 0.0)
        for concept in concept_ids:
            j = self._index.get(concept)
            if j is not None:
                s, f = counts.get(concept, (0, 0))
                z += float(sum(self.coef_[b, j] * v for b, v in enumerate(self._features(s, f))))
        return z

    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        return float(expit(self._logit(learner_id, concept_ids)))

    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        counts = self.learner_counts_.setdefault(learner_id, {})
        for concept in concept_ids:
            s, f = counts.get(concept, (0, 0))
            counts[concept] = (s + correct, f + 1 - correct)
        if update_shared and concept_ids and item_id not in self.item_concepts_:
            self.item_concepts_[item_id] = tuple(concept_ids)

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        return self.item_concepts_.get(item_id, ())

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        return {c: (float(expit(self._logit(learner_id, (c,)))), None) for c in self.concept_ids_.tolist()}

    # per-learner state -----------------------------------------------------------------------

    def _learner_fields(self) -> tuple[str, ...]:
        return ("concept_ids", "counts", "ability") if self.learner_ability else ("concept_ids", "counts")

    def get_learner_state(self, learner_id: str) -> dict[str, np.ndarray]:
        """The learner's (successes, failures) per concept answered: ``concept_ids`` and ``counts``
        (m, 2); AFM adds ``ability`` (1,). A learner never seen has no counts (and ability 0)."""
        self._check_fitted()
        counts = self.learner_counts_.get(learner_id, {})
        out = {"concept_ids": np.array(list(counts), dtype=str),
               "counts": np.array(list(counts.values()), dtype=np.int64).reshape(-1, 2)}
        if self.learner_ability:
            out["ability"] = np.array([self.learner_ability_.get(learner_id, 0.0)], dtype=np.float64)
        return out

    def set_learner_state(self, learner_id: str, state: Mapping[str, np.ndarray]) -> None:
        self._check_fitted()
        check_learner_fields(state, self._learner_fields(), self.name)
        concepts = learner_field(state, "concept_ids", "U", 1)
        counts = learner_field(state, "counts", "i", 2, size=len(concepts))
        if counts.shape[1] != 2 or (counts < 0).any():
            raise InputError("counts must be (successes, failures) pairs >= 0, one per concept", field="counts")
        if len(set(concepts.tolist())) != len(concepts):
            raise InputError("concept_ids repeat a concept", field="concept_ids")
        if self.learner_ability:
            self.learner_ability_[learner_id] = float(learner_field(state, "ability", "f", 1, size=1)[0])
        self.learner_counts_[learner_id] = {c: (s, f) for c, (s, f) in zip(concepts.tolist(), counts.tolist())}

    def drop_learner(self, learner_id: str) -> None:
        self._check_fitted()
        self.learner_counts_.pop(learner_id, None)
        self.learner_ability_.pop(learner_id, None)

    # state -----------------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        entries = [(lr, c, s, f) for lr, cs in self.learner_counts_.items() for c, (s, f) in cs.items()]
        items, ptr, flat = pack_lists(self.item_concepts_)
        return {
            "intercept": np.array([self.intercept_]),
            "coef": self.coef_,
            "concept_ids": self.concept_ids_,
            "ability_learner_ids": np.array(list(self.learner_ability_), dtype=str),
            "ability": np.array(list(self.learner_ability_.values()), dtype=np.float64),
            "count_learner_ids": np.array([e[0] for e in entries], dtype=str),
            "count_concept_ids": np.array([e[1] for e in entries], dtype=str),
            "counts": np.array([e[2:] for e in entries], dtype=np.int64).reshape(-1, 2),
            "item_ids": items,
            "item_concept_ptr": ptr,
            "item_concept_ids": flat,
            "optimiser": np.array([self.n_iter_, int(self.converged_)], dtype=np.int64),
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.intercept_ = float(state["intercept"][0])
        self.coef_ = state["coef"]
        self.concept_ids_ = state["concept_ids"]
        self.learner_ability_ = dict(zip(state["ability_learner_ids"].tolist(), state["ability"].tolist()))
        counts: Counts = {}
        for learner, concept, (s, f) in zip(state["count_learner_ids"].tolist(), state["count_concept_ids"].tolist(),
                                            state["counts"].tolist()):
            counts.setdefault(learner, {})[concept] = (s, f)
        self.learner_counts_ = counts
        self.item_concepts_ = unpack_lists(state["item_ids"], state["item_concept_ptr"], state["item_concept_ids"])
        self.n_iter_, converged = (int(v) for v in state["optimiser"])
        self.converged_ = bool(converged)
        self._index = {c: j for j, c in enumerate(self.concept_ids_.tolist())}


class PFA(_FactorModel):
    """Performance Factors Analysis: per-concept easiness plus effects of earlier successes and failures."""

    name = "pfa"
    description = "Performance Factors Analysis: logistic regression on prior successes/failures per concept"
    blocks = ("beta", "gamma", "rho")

    def _features(self, successes: Any, failures: Any) -> list[Any]:
        return [1.0, self._scale(successes), self._scale(failures)]


class AFM(_FactorModel):
    """Additive Factors Model: learner ability plus per-concept easiness and learning rate."""

    name = "afm"
    description = "Additive Factors Model: learner ability + per-concept easiness and learning rate"
    blocks = ("beta", "gamma")
    learner_ability = True
    nonnegative = ("gamma",)

    def _features(self, successes: Any, failures: Any) -> list[Any]:
        return [1.0, self._scale(successes + failures)]
