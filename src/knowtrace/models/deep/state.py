"""What a sequence model keeps per learner between answers, without the learner's whole history.

``RecurrentStates`` (DKT): the number of answers and two recurrent states, ``(h, c)`` of an LSTM or
``h`` of a GRU, as float32: the state of the window that predicts the learner's next answer and
the state of the window after it (which starts ``stride`` answers later; see
``knowtrace.models.deep.sequences``). ``CachedAnswers`` (SAKT, AKT): the number of answers and
the last ``window`` answers in the model's codes (tokens, item code, correct), from which the
attention keys and values of the next prediction are computed.

A learner the store has never seen has no answers and the model's start state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.deep.sequences import Encoded, trim_tokens

__all__ = ["CachedAnswers", "RecurrentStates"]


class RecurrentStates:
    """learner_id -> (answers so far, float32 array (2, n_parts, hidden) of two recurrent states)."""

    def __init__(self, n_parts: int, hidden: int) -> None:
        self.n_parts, self.hidden = n_parts, hidden
        self.index: dict[str, int] = {}
        self.ids: list[str] = []  # row -> learner id
        self.counts = np.zeros(0, dtype=np.int64)
        self.states = np.zeros((0, 2, n_parts, hidden), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def count(self, learner_id: str) -> int:
        """Answers of the learner so far."""
        row = self.index.get(learner_id)
        return 0 if row is None else int(self.counts[row])

    def get(self, learner_id: str) -> tuple[int, np.ndarray | None]:
        """(answers so far, its two states or None for a learner never seen)."""
        row = self.index.get(learner_id)
        if row is None:
            return 0, None
        return int(self.counts[row]), self.states[row].copy()

    def put(self, learner_id: str, count: int, states: np.ndarray) -> None:
        """Set the learner's answer count and states."""
        states = np.asarray(states, dtype=np.float32)
        if states.shape != (2, self.n_parts, self.hidden):
            raise InputError(f"a learner state must have shape {(2, self.n_parts, self.hidden)}, got {states.shape}",
                             field="state")
        row = self.index.get(learner_id)
        if row is None:
            row = len(self.index)
            if row == len(self.counts):
                grow = max(16, row)
                self.counts = np.concatenate([self.counts, np.zeros(grow, dtype=np.int64)])
                self.states = np.concatenate([self.states, np.zeros((grow, *self.states.shape[1:]), np.float32)])
            self.index[learner_id] = row
            self.ids.append(learner_id)
        self.counts[row] = count
        self.states[row] = states

    def drop(self, learner_id: str) -> None:
        """Forget a learner (its row is reused: the last row moves into it)."""
        row = self.index.pop(learner_id, None)
        if row is None:
            return
        moved = self.ids.pop()
        last = len(self.ids)
        if row != last:
            self.index[moved], self.ids[row] = row, moved
            self.counts[row], self.states[row] = self.counts[last], self.states[last]
        self.counts[last] = 0

    def put_many(self, learner_ids: Sequence[str], counts: np.ndarray, states: np.ndarray) -> None:
        """Set many learners at once (learners new to the store)."""
        for learner_id, count, state in zip(learner_ids, counts.tolist(), states):
            self.put(learner_id, count, state)

    def lookup(self, learner_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(answer counts, rows into ``states`` or -1) of learners."""
        rows = np.array([self.index.get(x, -1) for x in learner_ids], dtype=np.int64)
        counts = np.where(rows >= 0, self.counts[np.maximum(rows, 0)] if len(self.counts) else 0, 0)
        return counts.astype(np.int64), rows

    def to_state(self) -> dict[str, np.ndarray]:
        """All learners as named arrays."""
        n = len(self.index)
        return {"learner_ids": np.array(self.ids, dtype=str), "learner_counts": self.counts[:n].copy(),
                "learner_states": self.states[:n].copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], n_parts: int, hidden: int) -> RecurrentStates:
        """The store written by ``to_state``."""
        store = cls(n_parts, hidden)
        ids = np.asarray(state["learner_ids"], dtype=str).tolist()
        counts = np.asarray(state["learner_counts"], dtype=np.int64)
        states = np.asarray(state["learner_states"], dtype=np.float32)
        if states.shape != (len(ids), 2, n_parts, hidden) or counts.shape != (len(ids),):
            raise ValueError(f"learner states of shape {states.shape} do not fit {len(ids)} learners, "
                             f"{n_parts} state part(s) of size {hidden}")
        store.index = {x: j for j, x in enumerate(ids)}
        store.ids = list(ids)
        store.counts, store.states = counts.copy(), states.copy()
        return store


class CachedAnswers:
    """learner_id -> (answers so far, the last ``window`` answers as an ``Encoded``)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.counts: dict[str, int] = {}
        self.answers: dict[str, Encoded] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def count(self, learner_id: str) -> int:
        """Answers of the learner so far."""
        return self.counts.get(learner_id, 0)

    def get(self, learner_id: str) -> tuple[int, Encoded | None]:
        """(answers so far, the cached answers or None for a learner never seen)."""
        return self.counts.get(learner_id, 0), self.answers.get(learner_id)

    def put(self, learner_id: str, count: int, answers: Encoded) -> None:
        """Set the learner's answer count and cached answers (the last ``window`` are kept)."""
        if answers.n > count:
            raise InputError(f"{answers.n} cached answers for a learner with {count} answers", field="state")
        keep = answers.take(np.arange(max(answers.n - self.window, 0), answers.n))
        keep = Encoded(trim_tokens(keep.tokens), keep.item, keep.correct)
        self.counts[learner_id], self.answers[learner_id] = int(count), keep

    def drop(self, learner_id: str) -> None:
        """Forget a learner."""
        self.counts.pop(learner_id, None)
        self.answers.pop(learner_id, None)

    def append(self, learner_id: str, answer: Encoded) -> None:
        """Add one answer to the learner's cache."""
        count, cached = self.get(learner_id)
        self.put(learner_id, count + 1, Encoded.concat([cached, answer]) if cached is not None else answer)

    def to_state(self) -> dict[str, np.ndarray]:
        """All learners as named arrays (answers in CSR form by learner)."""
        ids = list(self.counts)
        parts = [self.answers[x] for x in ids]
        flat = Encoded.concat(parts)
        ptr = np.concatenate(([0], np.cumsum([p.n for p in parts]))).astype(np.int64)
        return {"learner_ids": np.array(ids, dtype=str),
                "learner_counts": np.array([self.counts[x] for x in ids], dtype=np.int64),
                "cache_ptr": ptr, "cache_tokens": flat.tokens.astype(np.int32),
                "cache_item": flat.item.astype(np.int32), "cache_correct": flat.correct.astype(np.int8)}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], window: int) -> CachedAnswers:
        """The store written by ``to_state``."""
        store = cls(window)
        ids = np.asarray(state["learner_ids"], dtype=str).tolist()
        counts = np.asarray(state["learner_counts"], dtype=np.int64).tolist()
        ptr = np.asarray(state["cache_ptr"], dtype=np.int64)
        tokens = np.asarray(state["cache_tokens"], dtype=np.int64)
        flat = Encoded(tokens.reshape(len(tokens), -1), np.asarray(state["cache_item"], dtype=np.int64),
                       np.asarray(state["cache_correct"], dtype=np.int64))
        if len(ptr) != len(ids) + 1 or len(counts) != len(ids) or ptr[-1] != flat.n:
            raise ValueError("the cached answers do not match the learners")
        for j, x in enumerate(ids):
            store.put(x, counts[j], flat.take(np.arange(ptr[j], ptr[j + 1])))
        return store
