"""Online learner state: what the stream worker knows of each learner now, per deployed model.

The worker writes a learner's state after every answer it applies; the serving API reads it to
answer mastery and prediction requests without replaying history. A record carries the offset of
the last log entry applied to it, written in the same atomic step as the state, so a worker that
restarts after a crash skips entries it had already applied (exactly-once per learner).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from knowtrace.exceptions import KnowtraceError

__all__ = ["LearnerState", "StateError", "StateStore", "open_state"]


class StateError(KnowtraceError):
    """The state store cannot be opened, read or written."""


@dataclass
class LearnerState:
    """One learner under one model.

    ``arrays``: the model's own learner state (``model.get_learner_state``); ``mastery``: concept
    -> (P(correct) on a typical item, standard error or None) after the last answer; ``version``:
    the model artifact version that produced it; ``last_offset``: the last log offset applied.
    """

    model: str
    version: str
    n_answers: int = 0
    last_offset: int = -1
    updated_at: float = 0.0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    mastery: dict[str, tuple[float, float | None]] = field(default_factory=dict)


class StateStore(ABC):
    """Learner states keyed by (tenant, model name, learner id)."""

    @abstractmethod
    def get_many(self, tenant: str, model: str, learner_ids: Sequence[str]) -> dict[str, LearnerState]:
        """The stored states of those learners that have one."""

    def get(self, tenant: str, model: str, learner_id: str) -> LearnerState | None:
        """The stored state of one learner, or None."""
        return self.get_many(tenant, model, [learner_id]).get(learner_id)

    @abstractmethod
    def put_many(self, tenant: str, states: Mapping[tuple[str, str], LearnerState]) -> None:
        """Write states keyed by (model, learner id), all or none."""

    @abstractmethod
    def learners(self, tenant: str, model: str) -> list[str]:
        """Every learner id with a state under ``model``, sorted."""

    def close(self) -> None:
        """Release connections."""


def open_state(url: str) -> StateStore:
    """The store a URL names: ``sqlite:///path/to/state.db`` (embedded, default) or ``redis://host:port/db``."""
    if url.startswith("sqlite://"):
        from knowtrace.state.sqlite_store import SQLiteStateStore

        return SQLiteStateStore.from_url(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from knowtrace.state.redis_store import RedisStateStore

        return RedisStateStore.from_url(url)
    raise StateError(f"unknown state store URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")
