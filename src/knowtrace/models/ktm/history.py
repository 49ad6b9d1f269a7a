"""What a Knowledge Tracing Machine remembers of every learner: the counts its features need.

Per learner: right/wrong answer counts per concept and per item (codes of the ``FeatureSpace``;
concepts and items the space does not know have no columns and are not counted), over all
answers, and the
timestamp (seconds) and time taken (ms) of the learner's last answer. ``fit`` fills it from the
training rows, ``learn_one`` adds one answer, and ``prior`` hands it to ``design_matrix`` so
that a learner's later rows continue from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from knowtrace.models.data import Interactions, lookup
from knowtrace.models.ktm.features import CONCEPT_COUNTS, ITEM_COUNTS, FeatureSpace, Prior

__all__ = ["LearnerHistory"]


@dataclass
class _Learner:
    concepts: dict[int, list[int]] = field(default_factory=dict)  # concept code -> [right, wrong]
    items: dict[int, list[int]] = field(default_factory=dict)  # item code -> [right, wrong]
    answers: list[int] = field(default_factory=lambda: [0, 0])  # [right, wrong] over all answers
    last_time: float = float("nan")
    last_elapsed_ms: float = float("nan")


def _totals(learner: np.ndarray, code: np.ndarray, correct: np.ndarray, size: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(learner, code, right, wrong) per distinct (learner, code) pair."""
    key = learner.astype(np.int64) * size + code
    keys, inverse = np.unique(key, return_inverse=True)
    right = np.bincount(inverse, weights=correct, minlength=len(keys)).astype(np.int64)
    total = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
    return keys // max(size, 1), keys % max(size, 1), right, total - right


class LearnerHistory:
    """Per-learner counts kept for the feature letters that need them."""

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self.keep_concepts = bool(set(space.letters) & CONCEPT_COUNTS)
        self.keep_items = bool(set(space.letters) & ITEM_COUNTS)
        self.learners: dict[str, _Learner] = {}

    @classmethod
    def from_view(cls, space: FeatureSpace, data: Interactions) -> LearnerHistory:
        """The counts at the end of every learner's rows of ``data``."""
        history = cls(space)
        ids = data.learner_ids.tolist()
        learners = {ids[code]: _Learner() for code in np.flatnonzero(np.diff(data.starts)).tolist()}
        last = data.starts[1:][np.diff(data.starts) > 0] - 1
        for name, values in (("last_time", data.timestamp_s), ("last_elapsed_ms", data.elapsed_ms)):
            if values is not None:
                for row in last.tolist():
                    setattr(learners[ids[data.learner[row]]], name, float(values[row]))
        right = np.bincount(data.learner, weights=data.correct, minlength=len(ids)).astype(np.int64)
        total = np.bincount(data.learner, minlength=len(ids))
        for code, state in zip(np.flatnonzero(total).tolist(), learners.values()):
            state.answers = [int(right[code]), int(total[code] - right[code])]
        n_concepts, n_items = len(space.concept_ids), len(space.item_ids)
        if history.keep_concepts and n_concepts:
            rows = data.row_concepts()
            concept = lookup(space.concept_ids, data.concept_ids)[data.concept_index]
            keep = concept >= 0
            pair = np.unique(rows[keep] * n_concepts + concept[keep])  # a concept listed twice counts once
            rows, concept = pair // n_concepts, pair % n_concepts
            for lr, c, r, w in zip(*(a.tolist() for a in _totals(data.learner[rows], concept,
                                                                   data.correct[rows], n_concepts))):
                learners[ids[lr]].concepts[c] = [r, w]
        if history.keep_items and n_items:
            item = lookup(space.item_ids, data.item_ids)[data.item]
            rows = np.flatnonzero(item >= 0)
            for lr, i, r, w in zip(*(a.tolist() for a in _totals(data.learner[rows], item[rows],
                                                                   data.correct[rows], n_items))):
                learners[ids[lr]].items[i] = [r, w]
        history.learners = learners
        return history

    def learn(self, learner_id: str, item_id: str, concept_ids: Sequence[str], correct: int,
              timestamp: float = float("nan"), elapsed_ms: float = float("nan")) -> None:
        """Add one answer of ``learner_id``."""
        state = self.learners.setdefault(learner_id, _Learner())
        at = 1 - int(correct)
        state.answers[at] += 1
        if self.keep_concepts and concept_ids:
            codes = lookup(self.space.concept_ids, np.array(sorted(set(concept_ids)), dtype=str))
            for code in codes[codes >= 0].tolist():
                state.concepts.setdefault(code, [0, 0])[at] += 1
        if self.keep_items:
            code = int(lookup(self.space.item_ids, np.array([item_id], dtype=str))[0])
            if code >= 0:
                state.items.setdefault(code, [0, 0])[at] += 1
        state.last_time, state.last_elapsed_ms = float(timestamp), float(elapsed_ms)

    def prior(self, learner_ids: np.ndarray) -> Prior:
        """What is known of the learners ``learner_ids`` (a view's learner vocabulary)."""
        c_learner, c_code, c_counts, i_learner, i_code, i_counts = [], [], [], [], [], []
        last = np.full((len(learner_ids), 2), np.nan)
        answers = np.zeros((len(learner_ids), 2))
        for code, learner_id in enumerate(learner_ids.tolist()):
            state = self.learners.get(learner_id)
            if state is None:
                continue
            last[code] = state.last_time, state.last_elapsed_ms
            answers[code] = state.answers
            c_learner += [code] * len(state.concepts)
            c_code += state.concepts.keys()
            c_counts += state.concepts.values()
            i_learner += [code] * len(state.items)
            i_code += state.items.keys()
            i_counts += state.items.values()
        c = np.array(c_counts, dtype=np.float64).reshape(-1, 2)
        i = np.array(i_counts, dtype=np.float64).reshape(-1, 2)
        return Prior(np.array(c_learner, dtype=np.int64), np.array(c_code, dtype=np.int64), c[:, 0], c[:, 1],
                     np.array(i_learner, dtype=np.int64), np.array(i_code, dtype=np.int64), i[:, 0], i[:, 1],
                     last[:, 0].copy(), last[:, 1].copy(), answers[:, 0].copy(), answers[:, 1].copy())

    def to_state(self) -> dict[str, np.ndarray]:
        """The history as arrays (learners in insertion order)."""
        names = list(self.learners)
        states = list(self.learners.values())
        concepts = [(n, c, r, w) for n, s in enumerate(states) for c, (r, w) in s.concepts.items()]
        items = [(n, i, r, w) for n, s in enumerate(states) for i, (r, w) in s.items.items()]
        return {
            "history_learner_ids": np.array(names, dtype=str),
            "history_last": np.array([(s.last_time, s.last_elapsed_ms) for s in states], dtype=np.float64
                                     ).reshape(-1, 2),
            "history_concepts": np.array(concepts, dtype=np.int64).reshape(-1, 4),
            "history_items": np.array(items, dtype=np.int64).reshape(-1, 4),
            "history_answers": np.array([s.answers for s in states], dtype=np.int64).reshape(-1, 2),
        }

    @classmethod
    def from_state(cls, space: FeatureSpace, state: Mapping[str, np.ndarray]) -> LearnerHistory:
        """The history written by ``to_state``."""
        history = cls(space)
        learners = [_Learner(last_time=t, last_elapsed_ms=e) for t, e in state["history_last"].tolist()]
        # artifacts written before the r/x letters have no totals; their letters never use them
        for learner, answers in zip(learners, state.get("history_answers", np.zeros((0, 2))).tolist()):
            learner.answers = [int(a) for a in answers]
        for n, c, r, w in state["history_concepts"].tolist():
            learners[n].concepts[c] = [r, w]
        for n, i, r, w in state["history_items"].tolist():
            learners[n].items[i] = [r, w]
        history.learners = dict(zip(state["history_learner_ids"].tolist(), learners))
        return history
