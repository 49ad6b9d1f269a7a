"""Silver-like interaction tables built from the simulator, without the lake."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from knowtrace.events.event import InteractionEvent
from knowtrace.lake.frames import events_to_table
from knowtrace.simulate import simulated_interactions

def silver_table(**simulator: int) -> pa.Table:
    """Simulated answers as a silver ``interactions`` table."""
    return simulated_interactions(**simulator)


SMALL = {"learners": 40, "items": 16, "concepts": 4, "weeks": 2, "sessions_per_week": 2, "answers_per_session": 8}


@pytest.fixture(scope="session")
def small_table() -> pa.Table:
    """About 1,300 answers of 40 simulated learners."""
    return silver_table(**SMALL, seed=3)


def tiny_table(answers: list[tuple[str, str, tuple[str, ...], int]]) -> pa.Table:
    """A silver-like table from (learner, item, concepts, correct) in history order per learner."""
    positions: dict[str, int] = {}
    events = []
    for learner, item, concepts, correct in answers:
        positions[learner] = positions.get(learner, -1) + 1
        events.append(InteractionEvent(learner_id=learner, item_id=item, concept_ids=concepts, correct=correct,
                                       seq=positions[learner]))
    return events_to_table(events, load_id="load-test")


@pytest.fixture(scope="session")
def make_table() -> Callable[[list[tuple[str, str, tuple[str, ...], int]]], pa.Table]:
    """``tiny_table`` as a fixture (test modules cannot import conftest)."""
    return tiny_table
