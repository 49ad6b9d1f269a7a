"""Elo rating of learners and items (Pelánek 2016): online, with an uncertainty-decreasing K."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.base import Mastery, OnlineModel, check_learner_fields, learner_field
from knowtrace.models.data import Interactions, pack_lists, unpack_lists

__all__ = ["Elo"]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class Elo(OnlineModel):
    """Learner skill ``theta`` and item difficulty ``d`` with ``P(correct) = sigmoid(theta - d)``.

    After each answer both move by ``K(n) * (correct - P)`` with ``K(n) = k_a / (1 + k_b * n)``,
    ``n`` being how many answers that learner (or item) had so far. ``fit`` visits the training
    answers position by position across learners (every learner's first answer, then every
    second one, ...). New learners and items start at 0. A concept's mastery is the probability
    of answering an item of the concept's mean difficulty.
    """

    name = "elo"
    description = "Elo ratings of learners and items with an uncertainty-decreasing K factor"

    def __init__(self, *, k_a: float = 1.0, k_b: float = 0.05) -> None:
        self.k_a = k_a
        self.k_b = k_b

    def _check_params(self) -> None:
        if not self.k_a > 0:
            raise InputError(f"k_a must be > 0, got {self.k_a}", field="k_a")
        if not self.k_b >= 0:
            raise InputError(f"k_b must be >= 0, got {self.k_b}", field="k_b")

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        self._check_params()
        k_a, k_b = float(self.k_a), float(self.k_b)
        theta = [0.0] * len(data.learner_ids)
        n_learner = [0] * len(data.learner_ids)
        d = [0.0] * len(data.item_ids)
        n_item = [0] * len(data.item_ids)
        learner, item, correct = data.learner.tolist(), data.item.tolist(), data.correct.tolist()
        for r in np.lexsort((data.learner, data.step)).tolist():
            s, i = learner[r], item[r]
            error = correct[r] - _sigmoid(theta[s] - d[i])
            theta[s] += k_a / (1.0 + k_b * n_learner[s]) * error
            d[i] -= k_a / (1.0 + k_b * n_item[i]) * error
            n_learner[s] += 1
            n_item[i] += 1
        learner_ids, item_ids = data.learner_ids.tolist(), data.item_ids.tolist()
        self.learner_skill_ = dict(zip(learner_ids, theta))
        self.learner_answers_ = dict(zip(learner_ids, n_learner))
        self.item_difficulty_ = dict(zip(item_ids, d))
        self.item_answers_ = dict(zip(item_ids, n_item))
        self.item_concepts_ = data.item_concepts()
        self._concept_difficulty = None

    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        return _sigmoid(self.learner_skill_.get(learner_id, 0.0) - self.item_difficulty_.get(item_id, 0.0))

    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        theta = self.learner_skill_.get(learner_id, 0.0)
        d = self.item_difficulty_.get(item_id, 0.0)
        error = correct - _sigmoid(theta - d)
        n = self.learner_answers_.get(learner_id, 0)
        self.learner_skill_[learner_id] = theta + self.k_a / (1.0 + self.k_b * n) * error
        self.learner_answers_[learner_id] = n + 1
        # the item's concepts are catalog facts, not learned parameters: recorded even when frozen,
        # so a model deployed before an item existed still reports mastery of its concepts
        if concept_ids and item_id not in self.item_concepts_:
            self.item_concepts_[item_id] = tuple(concept_ids)
            self._concept_difficulty = None
        if update_shared:
            n = self.item_answers_.get(item_id, 0)
            self.item_difficulty_[item_id] = d - self.k_a / (1.0 + self.k_b * n) * error
            self.item_answers_[item_id] = n + 1
            self._concept_difficulty = None

    def known_items(self) -> frozenset[str] | None:
        self._check_fitted()
        return frozenset(self.item_difficulty_)

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        return self.item_concepts_.get(item_id, ())

    def concept_difficulty(self) -> dict[str, float]:
        """concept_id -> mean difficulty of the items that assess it."""
        self._check_fitted()
        # cached: ``mastery`` needs it for every learner, and only fit or shared updates change it
        cached = getattr(self, "_concept_difficulty", None)
        if cached is None:
            cached = self._concept_difficulty = self._mean_difficulty()
        return dict(cached)

    def _mean_difficulty(self) -> dict[str, float]:
        total: dict[str, float] = {}
        count: dict[str, int] = {}
        for item_id, concepts in self.item_concepts_.items():
            d = self.item_difficulty_.get(item_id, 0.0)
            for c in concepts:
                total[c] = total.get(c, 0.0) + d
                count[c] = count.get(c, 0) + 1
        return {c: total[c] / count[c] for c in sorted(total)}

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        theta = self.learner_skill_.get(learner_id, 0.0)
        return {c: (_sigmoid(theta - d), None) for c, d in self.concept_difficulty().items()}

    def get_learner_state(self, learner_id: str) -> dict[str, np.ndarray]:
        """``skill`` (theta) and ``answers`` (answers so far, which set K), each of shape (1,)."""
        self._check_fitted()
        return {"skill": np.array([self.learner_skill_.get(learner_id, 0.0)], dtype=np.float64),
                "answers": np.array([self.learner_answers_.get(learner_id, 0)], dtype=np.int64)}

    def set_learner_state(self, learner_id: str, state: Mapping[str, np.ndarray]) -> None:
        self._check_fitted()
        check_learner_fields(state, ("skill", "answers"), self.name)
        skill = learner_field(state, "skill", "f", 1, size=1)
        answers = learner_field(state, "answers", "i", 1, size=1)
        if answers[0] < 0:
            raise InputError(f"answers must be >= 0, got {int(answers[0])}", field="answers")
        self.learner_skill_[learner_id] = float(skill[0])
        self.learner_answers_[learner_id] = int(answers[0])

    def drop_learner(self, learner_id: str) -> None:
        self._check_fitted()
        self.learner_skill_.pop(learner_id, None)
        self.learner_answers_.pop(learner_id, None)

    def _get_state(self) -> dict[str, np.ndarray]:
        concept_items, concept_ptr, concept_ids = pack_lists(self.item_concepts_)
        return {
            "learner_ids": np.array(list(self.learner_skill_), dtype=str),
            "learner_skill": np.array(list(self.learner_skill_.values()), dtype=np.float64),
            "learner_answers": np.array([self.learner_answers_[k] for k in self.learner_skill_], dtype=np.int64),
            "item_ids": np.array(list(self.item_difficulty_), dtype=str),
            "item_difficulty": np.array(list(self.item_difficulty_.values()), dtype=np.float64),
            "item_answers": np.array([self.item_answers_[k] for k in self.item_difficulty_], dtype=np.int64),
            "concept_item_ids": concept_items,
            "concept_ptr": concept_ptr,
            "concept_ids": concept_ids,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        learners = state["learner_ids"].tolist()
        items = state["item_ids"].tolist()
        self.learner_skill_ = dict(zip(learners, state["learner_skill"].tolist()))
        self.learner_answers_ = dict(zip(learners, state["learner_answers"].tolist()))
        self.item_difficulty_ = dict(zip(items, state["item_difficulty"].tolist()))
        self.item_answers_ = dict(zip(items, state["item_answers"].tolist()))
        self.item_concepts_ = unpack_lists(state["concept_item_ids"], state["concept_ptr"], state["concept_ids"])
        self._concept_difficulty = None

