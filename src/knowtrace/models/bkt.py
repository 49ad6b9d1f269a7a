"""Bayesian Knowledge Tracing (Corbett & Anderson 1995): a two-state hidden Markov model per concept.

A learner either knows a concept or not. Before their first answer on it they know it with
probability ``prior`` P(L0); after each answer an unknown concept becomes known with probability
``learn`` P(T) (and, with ``forgets=True``, a known one is forgotten with probability ``forget``
P(F); otherwise P(F) = 0). An answer is correct with probability ``1 - slip`` when the concept is
known and ``guess`` when it is not.

Sequences: for each (learner, concept) the learner's answers to items tagged with the concept, in
history order. An answer to an item with k concepts belongs to the k concept sequences (it updates
each concept's knowledge) but gets one prediction: the ``combine`` of the k concepts' P(correct)
(default the mean; ``"min"``, the weakest concept, and ``"product"``, all concepts needed, are the
alternatives). A row without concepts uses the concepts its item has in other training rows; an
item never tagged is its own concept (a unit of kind *item*, kept apart from the concepts: it has
parameters and per-learner state but is not reported by ``mastery``).

Fitting is EM (Baum–Welch), vectorised over all sequences of all concepts and ``restarts`` random
starting points at once (see ``bkt_em``); each concept keeps the restart with the best
log-likelihood. A concept's EM stops when an E-step raises its log-likelihood by at most ``tol``
per answer, or after ``max_iter`` E-steps. Restart 0 starts from ``prior=0.4, learn=0.1,
guess=0.2, slip=0.1, forget=0.05``, the others from ``prior ~ U(0, 1)``, ``learn ~ U(0, 0.4)``,
``guess ~ U(0, 0.4)``, ``slip ~ U(0, 0.3)`` and ``forget ~ U(0, 0.2)`` (numpy PCG64 seeded by
``seed``). ``guess`` is kept below ``max_guess`` and ``slip`` below ``max_slip``. The defaults (1
and 1) leave them free, as pyBKT fits, which predicts best on the DKVMN splits (docs/models.md);
0.5 each (any pair with ``max_guess + max_slip <= 1``) makes a known concept always make a correct
answer likelier, so the latent state keeps its meaning (identifiability) where mastery is read as
"knows it". Every parameter stays within [1e-6, 1 - 1e-6].

Concepts with fewer than ``min_answers`` training answers, and concepts never seen in training,
use the *fallback* parameters: the per-parameter median over the concepts that have enough
answers, or, when none has, one BKT fitted on all training sequences pooled. With ``smoothing``
s > 0 the best fit of every concept is then refined by MAP-EM (empirical Bayes): each parameter
gets a Beta prior worth s pseudo-observations centred on the fallback, which pulls concepts with
little data towards the population and leaves large ones nearly unchanged (s = 10 was best on the
ASSIST2009 and STATICS ``valid1`` splits among 0, 3, 10, 30, 100; 0 gives plain maximum
likelihood). ``unit_loglik_`` is then the log-posterior up to a constant.

``learn_one`` updates the learner's P(L) of the answer's concepts; the parameters change only
with ``fit``. ``mastery`` gives per concept the P(correct) of a typical item of the concept,
``P(L) (1 - slip) + (1 - P(L)) guess``, with as uncertainty the standard deviation of that success
probability over the learner's unknown knowledge state, ``|1 - slip - guess| sqrt(P(L)(1 - P(L)))``
(P(L) itself is ``knowledge``).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from typing import Any, Literal

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.base import Mastery, OnlineModel, check_learner_fields, learner_field
from knowtrace.models.bkt_em import (
    FORGET,
    GUESS,
    LEARN,
    PARAMS,
    PRIOR,
    SLIP,
    Bounds,
    EMResult,
    baum_welch,
    forward_filter,
)
from knowtrace.models.data import Interactions, pack_lists, unpack_lists

__all__ = ["BKT"]

CONCEPT, ITEM = 0, 1
Unit = tuple[int, str]  # (CONCEPT or ITEM, id)
EPS = 1e-6
START = np.array([0.4, 0.1, 0.2, 0.1, 0.05])
Combine = Literal["mean", "min", "product"]


class BKT(OnlineModel):
    """Bayesian Knowledge Tracing with per-concept prior, learn, guess, slip (and forget) fitted by EM."""

    name = "bkt"
    description = "Bayesian Knowledge Tracing: a two-state HMM per concept, fitted by EM with restarts"

    def __init__(self, *, forgets: bool = False, restarts: int = 5, max_iter: int = 100, tol: float = 1e-6,
                 seed: int = 0, max_guess: float = 1.0, max_slip: float = 1.0, min_answers: int = 10,
                 smoothing: float = 10.0, combine: Combine = "mean") -> None:
        self.forgets = forgets
        self.restarts = restarts
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.max_guess = max_guess
        self.max_slip = max_slip
        self.min_answers = min_answers
        self.smoothing = smoothing
        self.combine = combine

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        return {"restarts": 2, "max_iter": 30}

    def _check_params(self) -> None:
        for field in ("restarts", "max_iter"):
            value = getattr(self, field)
            if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= 1):
                raise InputError(f"{field} must be a positive integer, got {value!r}", field=field)
        if not (isinstance(self.min_answers, Integral) and self.min_answers >= 0):
            raise InputError(f"min_answers must be an integer >= 0, got {self.min_answers!r}", field="min_answers")
        if not self.smoothing >= 0:
            raise InputError(f"smoothing must be >= 0, got {self.smoothing}", field="smoothing")
        if not self.tol >= 0:
            raise InputError(f"tol must be >= 0, got {self.tol}", field="tol")
        for field in ("max_guess", "max_slip"):
            value = getattr(self, field)
            if not 2 * EPS < value <= 1:
                raise InputError(f"{field} must be in (0, 1], got {value}", field=field)
        if self.combine not in ("mean", "min", "product"):
            raise InputError(f"combine must be 'mean', 'min' or 'product', got {self.combine!r}", field="combine")
        if not isinstance(self.forgets, (bool, np.bool_)):
            raise InputError(f"forgets must be True or False, got {self.forgets!r}", field="forgets")
        if not isinstance(self.seed, Integral):
            raise InputError(f"seed must be an integer, got {self.seed!r}", field="seed")

    def _bounds(self) -> Bounds:
        lower = np.full(5, EPS)
        upper = np.array([1 - EPS, 1 - EPS, self.max_guess - EPS, self.max_slip - EPS, 1 - EPS])
        if not self.forgets:
            lower[FORGET] = upper[FORGET] = 0.0
        return Bounds(lower, upper)

    # fitting ---------------------------------------------------------------------------------

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        self._check_params()
        if data.n == 0:
            raise InputError("BKT cannot be fit on no interactions", field="interactions")
        self.item_concepts_ = data.item_concepts()
        pair_row, pair_unit, kinds, ids = _pairs(data, self.item_concepts_)
        n_units = len(kinds)
        learner = data.learner[pair_row]
        obs, lengths, seq_learner, seq_unit, _ = _sequences(learner, pair_unit, data.correct[pair_row], n_units)

        rng = np.random.default_rng(self.seed)
        result = self._em(obs, lengths, seq_unit, self._starts(rng, n_units), n_units)
        loglik = result.loglik.reshape(self.restarts, n_units)
        task = np.argmax(loglik, axis=0) * n_units + np.arange(n_units) if n_units else np.zeros(0, dtype=np.int64)
        params, loglik, iterations, converged = (result.params[task], result.loglik[task], result.n_iter[task],
                                                 result.converged[task])
        answers = np.bincount(pair_unit, minlength=n_units)
        enough = answers >= self.min_answers
        if enough.any():
            fallback = np.median(params[enough], axis=0)
        else:  # one BKT for all sequences pooled
            pooled = self._em(obs, lengths, np.zeros(len(lengths), dtype=np.int64), self._starts(rng, 1), 1)
            fallback = pooled.params[int(np.argmax(pooled.loglik))]
        if self.smoothing > 0 and n_units:  # MAP towards the population, from the best ML fit
            shrunk = baum_welch(obs, lengths, seq_unit, params, bounds=self._bounds(), forgets=self.forgets,
                                max_iter=self.max_iter, tol=float(self.tol), pseudo=float(self.smoothing),
                                centre=fallback)
            params, loglik, converged = shrunk.params, shrunk.loglik, shrunk.converged
            iterations = iterations + shrunk.n_iter
        params = params.copy()
        params[~enough] = fallback

        self.unit_kinds_ = kinds
        self.unit_ids_ = ids
        self.unit_params_ = params
        self.unit_answers_ = answers.astype(np.int64)
        self.unit_fallback_ = (~enough).astype(np.int8)
        self.unit_loglik_ = loglik
        self.unit_iterations_ = iterations.astype(np.int64)
        self.unit_converged_ = converged.astype(np.int8)
        self.fallback_ = fallback
        self._index()

        _, after = forward_filter(obs, lengths, params[seq_unit, PRIOR], params[seq_unit])
        state: dict[str, dict[Unit, float]] = {}
        learner_ids = data.learner_ids[seq_learner].tolist()
        for lr, k, i, p in zip(learner_ids, kinds[seq_unit].tolist(), ids[seq_unit].tolist(), after.tolist()):
            state.setdefault(lr, {})[(k, i)] = p
        self.learner_state_ = state

    def _starts(self, rng: np.random.Generator, n_units: int) -> np.ndarray:
        """Starting parameters (restarts * n_units x 5): restart 0 at ``START``, the others random."""
        init = np.empty((self.restarts, n_units, 5))
        init[0] = START
        shape = (self.restarts - 1, n_units)
        init[1:, :, PRIOR] = rng.uniform(0.0, 1.0, shape)
        init[1:, :, LEARN] = rng.uniform(0.0, 0.4, shape)
        init[1:, :, GUESS] = rng.uniform(0.0, 0.4, shape)
        init[1:, :, SLIP] = rng.uniform(0.0, 0.3, shape)
        init[1:, :, FORGET] = rng.uniform(0.0, 0.2, shape)
        return init.reshape(-1, 5)

    def _em(self, obs: np.ndarray, lengths: np.ndarray, seq_unit: np.ndarray, init: np.ndarray,
            n_units: int) -> EMResult:
        """EM of every (restart, unit) pair, the sequences repeated once per restart."""
        r = self.restarts
        seq_task = (np.arange(r)[:, None] * n_units + seq_unit[None, :]).ravel()
        return baum_welch(np.tile(obs, r), np.tile(lengths, r), seq_task, init, bounds=self._bounds(),
                          forgets=self.forgets, max_iter=self.max_iter, tol=float(self.tol))

    def _index(self) -> None:
        kinds, ids = self.unit_kinds_.tolist(), self.unit_ids_.tolist()
        self._row = {(k, i): j for j, (k, i) in enumerate(zip(kinds, ids))}
        self.concept_ids_ = self.unit_ids_[self.unit_kinds_ == CONCEPT]

    # predicting ------------------------------------------------------------------------------

    def _unit_params(self, kinds: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Parameter rows (units x 5) of units, the fallback for units not fitted."""
        rows = np.array([self._row.get((k, i), -1) for k, i in zip(kinds.tolist(), ids.tolist())], dtype=np.int64)
        return np.where((rows >= 0)[:, None], self.unit_params_[np.maximum(rows, 0)], self.fallback_) \
            if len(self.unit_params_) else np.tile(self.fallback_, (len(rows), 1))

    def _predict(self, data: Interactions) -> np.ndarray:
        pair_row, pair_unit, kinds, ids = _pairs(data, self.item_concepts_)
        n_units = len(kinds)
        params = self._unit_params(kinds, ids)
        obs, lengths, seq_learner, seq_unit, order = _sequences(data.learner[pair_row], pair_unit,
                                                                data.correct[pair_row], n_units)
        start = params[seq_unit, PRIOR].copy()
        learner_ids = data.learner_ids[seq_learner]
        known = np.flatnonzero(np.isin(learner_ids, np.array(list(self.learner_state_), dtype=str)))
        for s, lr, k, i in zip(known.tolist(), learner_ids[known].tolist(), kinds[seq_unit[known]].tolist(),
                               ids[seq_unit[known]].tolist()):
            p = self.learner_state_[lr].get((k, i))
            if p is not None:
                start[s] = p
        before, _ = forward_filter(obs, lengths, start, params[seq_unit])
        p_learned = np.empty(len(pair_row))
        p_learned[order] = before
        unit_params = params[pair_unit]
        p_correct = p_learned * (1.0 - unit_params[:, SLIP]) + (1.0 - p_learned) * unit_params[:, GUESS]
        return self._combine_rows(p_correct, pair_row, data.n)

    def _combine_rows(self, p: np.ndarray, pair_row: np.ndarray, n: int) -> np.ndarray:
        """One prediction per row from its concepts' (``pair_row`` is sorted, every row present)."""
        if n == 0:
            return np.zeros(0)
        starts = np.flatnonzero(np.r_[True, pair_row[1:] != pair_row[:-1]])
        if self.combine == "min":
            return np.minimum.reduceat(p, starts)
        if self.combine == "product":
            return np.multiply.reduceat(p, starts)
        return np.add.reduceat(p, starts) / np.diff(np.r_[starts, len(p)])

    def _units_of(self, item_id: str, concept_ids: tuple[str, ...]) -> list[Unit]:
        return [(CONCEPT, c) for c in dict.fromkeys(concept_ids)] or [(ITEM, item_id)]

    def _params_of(self, unit: Unit) -> np.ndarray:
        row = self._row.get(unit)
        return self.unit_params_[row] if row is not None else self.fallback_

    def _learned(self, learner_id: str, unit: Unit, params: np.ndarray) -> float:
        return self.learner_state_.get(learner_id, {}).get(unit, float(params[PRIOR]))

    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        p = []
        for unit in self._units_of(item_id, concept_ids):
            params = self._params_of(unit)
            learned = self._learned(learner_id, unit, params)
            p.append(learned * (1.0 - params[SLIP]) + (1.0 - learned) * params[GUESS])
        values = np.array(p)
        return float(self._combine_rows(values, np.zeros(len(values), dtype=np.int64), 1)[0])

    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        state = self.learner_state_.setdefault(learner_id, {})
        for unit in self._units_of(item_id, concept_ids):
            prior, learn, guess, slip, forget = (float(v) for v in self._params_of(unit))
            p = state.get(unit, prior)
            x = p * ((1.0 - slip) if correct else slip)
            f = x / (x + (1.0 - p) * (guess if correct else 1.0 - guess))
            state[unit] = learn + f * (1.0 - forget - learn)
        if update_shared and concept_ids and item_id not in self.item_concepts_:
            self.item_concepts_[item_id] = tuple(concept_ids)

    def known_items(self) -> frozenset[str] | None:
        self._check_fitted()
        own = self.unit_ids_[self.unit_kinds_ == ITEM].tolist()
        return frozenset(self.item_concepts_) | frozenset(own)

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        return self.item_concepts_.get(item_id, ())

    # reading the model -----------------------------------------------------------------------

    def _concepts_of(self, learner_id: str) -> list[str]:
        extra = [i for k, i in self.learner_state_.get(learner_id, {}) if k == CONCEPT and (k, i) not in self._row]
        return self.concept_ids_.tolist() + sorted(extra)

    def knowledge(self, learner_id: str) -> dict[str, float]:
        """concept_id -> P(the learner knows the concept) before their next answer on it."""
        self._check_fitted()
        out = {}
        for concept in self._concepts_of(learner_id):
            unit = (CONCEPT, concept)
            out[concept] = float(self._learned(learner_id, unit, self._params_of(unit)))
        return out

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        out: Mastery = {}
        for concept, learned in self.knowledge(learner_id).items():
            params = self._params_of((CONCEPT, concept))
            guess, slip = float(params[GUESS]), float(params[SLIP])
            p = learned * (1.0 - slip) + (1.0 - learned) * guess
            out[concept] = (p, abs(1.0 - slip - guess) * float(np.sqrt(learned * (1.0 - learned))))
        return out

    def get_learner_state(self, learner_id: str) -> dict[str, np.ndarray]:
        """P(L) of every unit the learner has answered on: ``unit_kinds`` (0 concept, 1 item),
        ``unit_ids`` and ``learned``; empty for a learner never seen (every unit at its prior)."""
        self._check_fitted()
        units = self.learner_state_.get(learner_id, {})
        return {"unit_kinds": np.array([k for k, _ in units], dtype=np.int8),
                "unit_ids": np.array([i for _, i in units], dtype=str),
                "learned": np.array(list(units.values()), dtype=np.float64)}

    def set_learner_state(self, learner_id: str, state: Mapping[str, np.ndarray]) -> None:
        self._check_fitted()
        check_learner_fields(state, ("unit_kinds", "unit_ids", "learned"), self.name)
        kinds = learner_field(state, "unit_kinds", "i", 1)
        ids = learner_field(state, "unit_ids", "U", 1, size=len(kinds))
        learned = learner_field(state, "learned", "f", 1, size=len(kinds))
        kind_list, learned_list = kinds.tolist(), learned.tolist()  # a few units: lists beat numpy here
        if any(k != CONCEPT and k != ITEM for k in kind_list):
            raise InputError(f"unit_kinds must be {CONCEPT} (concept) or {ITEM} (item)", field="unit_kinds")
        if any(not 0.0 <= p <= 1.0 for p in learned_list):
            raise InputError("learned must be probabilities in [0, 1]", field="learned")
        units = {(k, i): p for k, i, p in zip(kind_list, ids.tolist(), learned_list)}
        if len(units) != len(kinds):
            raise InputError("unit_kinds and unit_ids repeat a unit", field="unit_ids")
        self.learner_state_[learner_id] = units

    def drop_learner(self, learner_id: str) -> None:
        self._check_fitted()
        self.learner_state_.pop(learner_id, None)

    def concept_parameters(self) -> dict[str, dict[str, float]]:
        """concept_id -> its fitted {prior, learn, guess, slip, forget} (the fallback where it had too few answers)."""
        self._check_fitted()
        rows = np.flatnonzero(self.unit_kinds_ == CONCEPT)
        return {str(self.unit_ids_[j]): dict(zip(PARAMS, self.unit_params_[j].tolist())) for j in rows}

    # state -----------------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        entries = [(lr, k, i, p) for lr, units in self.learner_state_.items() for (k, i), p in units.items()]
        items, ptr, flat = pack_lists(self.item_concepts_)
        return {
            "unit_kinds": self.unit_kinds_,
            "unit_ids": self.unit_ids_,
            "unit_params": self.unit_params_,
            "unit_answers": self.unit_answers_,
            "unit_fallback": self.unit_fallback_,
            "unit_loglik": self.unit_loglik_,
            "unit_iterations": self.unit_iterations_,
            "unit_converged": self.unit_converged_,
            "fallback": self.fallback_,
            "state_learner_ids": np.array([e[0] for e in entries], dtype=str),
            "state_unit_kinds": np.array([e[1] for e in entries], dtype=np.int8),
            "state_unit_ids": np.array([e[2] for e in entries], dtype=str),
            "state_learned": np.array([e[3] for e in entries], dtype=np.float64),
            "item_ids": items,
            "item_concept_ptr": ptr,
            "item_concept_ids": flat,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.unit_kinds_ = state["unit_kinds"].astype(np.int8)
        self.unit_ids_ = state["unit_ids"].astype(str)
        self.unit_params_ = state["unit_params"].astype(np.float64).reshape(-1, 5)
        self.unit_answers_ = state["unit_answers"]
        self.unit_fallback_ = state["unit_fallback"]
        self.unit_loglik_ = state["unit_loglik"]
        self.unit_iterations_ = state["unit_iterations"]
        self.unit_converged_ = state["unit_converged"]
        self.fallback_ = state["fallback"].astype(np.float64)
        learners: dict[str, dict[Unit, float]] = {}
        for lr, k, i, p in zip(state["state_learner_ids"].tolist(), state["state_unit_kinds"].tolist(),
                               state["state_unit_ids"].tolist(), state["state_learned"].tolist()):
            learners.setdefault(lr, {})[(int(k), i)] = p
        self.learner_state_ = learners
        self.item_concepts_ = unpack_lists(state["item_ids"], state["item_concept_ptr"], state["item_concept_ids"])
        self._index()


def _pairs(data: Interactions, item_concepts: Mapping[str, tuple[str, ...]]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, unit) of every answer-unit pair sorted by row, and the kind and id of every unit.

    Units are the concepts of ``data`` (kinds CONCEPT, sorted), then the concepts ``item_concepts``
    gives untagged rows that ``data`` lacks, then the untagged items without concepts (kind ITEM).
    """
    rows = data.row_concepts()
    units = data.concept_index
    concept_list = data.concept_ids.tolist()
    untagged = np.flatnonzero(np.diff(data.concept_ptr) == 0)
    item_units: list[str] = []
    if len(untagged):
        code = {c: j for j, c in enumerate(concept_list)}
        extra: dict[str, int] = {}
        codes_of_item: dict[int, list[int]] = {}
        for k in np.unique(data.item[untagged]).tolist():
            item_id = str(data.item_ids[k])
            concepts = item_concepts.get(item_id, ())
            if concepts:
                codes = [code[c] if c in code else extra.setdefault(c, len(concept_list) + len(extra))
                         for c in concepts]
            else:
                codes = [-1 - len(item_units)]
                item_units.append(item_id)
            codes_of_item[k] = codes
        per_row = [codes_of_item[k] for k in data.item[untagged].tolist()]
        counts = np.array([len(c) for c in per_row], dtype=np.int64)
        extra_units = np.array([u for c in per_row for u in c], dtype=np.int64)
        n_concepts = len(concept_list) + len(extra)
        extra_units = np.where(extra_units < 0, n_concepts - 1 - extra_units, extra_units)
        rows = np.concatenate((rows, np.repeat(untagged, counts)))
        units = np.concatenate((units, extra_units))
        order = np.argsort(rows, kind="stable")
        rows, units = rows[order], units[order]
        concept_list = concept_list + list(extra)
    kinds = np.array([CONCEPT] * len(concept_list) + [ITEM] * len(item_units), dtype=np.int8)
    ids = np.array(concept_list + item_units, dtype=str)
    return rows.astype(np.int64), units.astype(np.int64), kinds, ids


def _sequences(learner: np.ndarray, unit: np.ndarray, correct: np.ndarray, n_units: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Answers grouped into (learner, unit) sequences in history order: (answers, lengths,
    learner and unit of each sequence, the pair at each answer). Pairs must come in history order
    within each learner."""
    key = learner.astype(np.int64) * max(n_units, 1) + unit
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.r_[True, sorted_key[1:] != sorted_key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    lengths = np.diff(np.r_[starts, len(key)]).astype(np.int64)
    seq_key = sorted_key[starts]
    return correct[order].astype(np.int8), lengths, seq_key // max(n_units, 1), seq_key % max(n_units, 1), order
