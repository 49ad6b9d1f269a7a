"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

import pytest

from knowtrace.events import InteractionEvent
from knowtrace.lake import Lake
from knowtrace.lake.frames import events_to_table

#: the public datasets, laid beside the repository (``../shared/data``)
SHARED_DATA = Path(os.environ.get("KNOWTRACE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public datasets; tests that need it skip where it is absent (fail in CI)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have the real datasets at {SHARED_DATA}")
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty lake in a temporary folder."""
    return Lake(tmp_path / "lake")


def answers_table(answers: list[tuple[str, str, tuple[str, ...], int]], load_id: str = "test") -> pa.Table:
    """A silver-like table from (learner, item, concepts, correct), in history order per learner."""
    positions: dict[str, int] = {}
    events = []
    for learner, item, concepts, correct in answers:
        positions[learner] = positions.get(learner, -1) + 1
        events.append(InteractionEvent(learner_id=learner, item_id=item, concept_ids=concepts, correct=correct,
                                       seq=positions[learner]))
    return events_to_table(events, load_id=load_id)


@pytest.fixture(scope="session")
def make_table() -> Callable[[list[tuple[str, str, tuple[str, ...], int]]], pa.Table]:
    """``answers_table`` as a fixture (test modules cannot import conftest)."""
    return answers_table


@pytest.fixture(scope="session")
def make_answers() -> Callable[[list[tuple[str, str, tuple[str, ...], int]]], pa.Table]:
    """``answers_table`` as a fixture (the name the evaluation tests use)."""
    return answers_table
