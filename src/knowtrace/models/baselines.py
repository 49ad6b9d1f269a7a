"""Baselines every learner model must beat: the global and the per-item correct rate."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.base import KnowledgeModel, Mastery
from knowtrace.models.data import Interactions, lookup

__all__ = ["GlobalRate", "ItemRate"]


def _concept_items(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(concept code, item code) pairs seen in ``data``, unique."""
    rows = data.row_concepts()
    pairs = np.unique(np.stack([data.concept_index, data.item[rows]]), axis=1)
    return pairs[0], pairs[1]


class GlobalRate(KnowledgeModel):
    """Predicts the training correct rate for every answer."""

    name = "global_rate"
    description = "Training correct rate for every answer (baseline)"

    def __init__(self) -> None:
        """No hyperparameters."""

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        self.rate_ = float(data.correct.mean()) if data.n else 0.5
        self.concept_ids_ = data.concept_ids.copy()

    def _predict(self, data: Interactions) -> np.ndarray:
        return np.full(data.n, self.rate_)

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        se = float(np.sqrt(self.rate_ * (1 - self.rate_) / self.n_train_)) if self.n_train_ else None
        return {str(c): (self.rate_, se) for c in self.concept_ids_}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"rate": np.array([self.rate_]), "concept_ids": self.concept_ids_}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.rate_ = float(state["rate"][0])
        self.concept_ids_ = state["concept_ids"]


class ItemRate(KnowledgeModel):
    """Predicts the item's training correct rate, smoothed toward the global rate.

    ``rate_i = (correct_i + smoothing * global) / (answers_i + smoothing)``; items not seen in
    training get the global rate. A concept's mastery is the mean rate of its items.
    """

    name = "item_rate"
    description = "Item's training correct rate, smoothed toward the global rate (baseline)"

    def __init__(self, *, smoothing: float = 1.0) -> None:
        self.smoothing = smoothing

    @classmethod
    def _test_params(cls) -> dict[str, float]:
        return {"smoothing": 2.0}

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        if self.smoothing < 0:
            raise InputError(f"smoothing must be >= 0, got {self.smoothing}", field="smoothing")
        self.global_rate_ = float(data.correct.mean()) if data.n else 0.5
        answers = np.bincount(data.item, minlength=len(data.item_ids)).astype(np.float64)
        right = np.bincount(data.item, weights=data.correct, minlength=len(data.item_ids))
        self.item_rate_ = (right + self.smoothing * self.global_rate_) / (answers + self.smoothing)
        self.item_ids_ = data.item_ids.copy()
        concept, item = _concept_items(data)
        self.concept_ids_ = data.concept_ids.copy()
        self.concept_rate_ = (np.bincount(concept, weights=self.item_rate_[item], minlength=len(data.concept_ids))
                              / np.maximum(np.bincount(concept, minlength=len(data.concept_ids)), 1))

    def _predict(self, data: Interactions) -> np.ndarray:
        codes = lookup(self.item_ids_, data.item_ids)[data.item]
        return np.append(self.item_rate_, self.global_rate_)[codes]  # code -1 (unseen item) -> global

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        return {str(c): (float(p), None) for c, p in zip(self.concept_ids_, self.concept_rate_)}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            "global_rate": np.array([self.global_rate_]),
            "item_ids": self.item_ids_,
            "item_rate": self.item_rate_,
            "concept_ids": self.concept_ids_,
            "concept_rate": self.concept_rate_,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.global_rate_ = float(state["global_rate"][0])
        self.item_ids_ = state["item_ids"]
        self.item_rate_ = state["item_rate"]
        self.concept_ids_ = state["concept_ids"]
        self.concept_rate_ = state["concept_rate"]
