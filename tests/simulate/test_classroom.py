"""The simulated classroom: determinism, sizes, the prerequisite graph and learning effects."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

from knowtrace.events.catalog import Concept, Item
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError
from knowtrace.importers.base import IMPORTERS, RawEvent
from knowtrace.simulate import ClassroomSimulator


@pytest.fixture(scope="module")
def records() -> list:
    return list(ClassroomSimulator(tenant="school").read(None))


def events_of(records: list) -> list[dict]:
    return [r.fields for r in records if isinstance(r, RawEvent)]


def test_registered_as_importer() -> None:
    assert IMPORTERS["simulated"] is ClassroomSimulator
    assert "simulated" in ClassroomSimulator.description.lower()


def test_same_seed_same_records_other_seed_other_records() -> None:
    small = {"learners": 5, "weeks": 2}
    assert list(ClassroomSimulator(**small, seed=7).read(None)) == list(ClassroomSimulator(**small, seed=7).read(None))
    assert events_of(list(ClassroomSimulator(**small, seed=7).read(None))) != events_of(
        list(ClassroomSimulator(**small, seed=8).read(None)))


def test_counts_and_record_order(records: list) -> None:
    sim = ClassroomSimulator(tenant="school")
    kinds = [type(r).__name__ for r in records]
    assert kinds == ["Concept"] * 8 + ["Item"] * 60 + ["RawEvent"] * (200 * 6 * 3 * 12)
    assert sim.n_events == 43_200
    events = [r for r in records if isinstance(r, RawEvent)]
    assert [r.line for r in events[:3]] == [1, 2, 3] and events[-1].line == len(events)
    assert {r.file for r in events} == {"simulator"}
    generated = ClassroomSimulator(learners=3, weeks=1)
    n = sum(isinstance(r, RawEvent) for r in generated.read(None))
    assert generated.rows_read == n == 3 * 3 * 12


def test_events_are_valid_and_labelled(records: list) -> None:
    events = events_of(records)
    learners = sorted({e["learner_id"] for e in events})
    assert learners[0] == "sim-learner-0001" and len(learners) == 200
    sample = [InteractionEvent(**e) for e in events[:: 97]]
    assert all(e.tenant == "school" and e.source == "import" and e.attempt == 1 for e in sample)
    per_learner: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        per_learner[e["learner_id"]].append(e)
    for history in per_learner.values():
        assert [e["seq"] for e in history] == list(range(len(history)))
        times = [e["timestamp"] for e in history]
        assert all(t.tzinfo is not None for t in times) and times == sorted(times)
        assert len({e["session_id"] for e in history}) == 18
    gaps = np.diff([e["timestamp"].timestamp() for e in per_learner["sim-learner-0001"]])
    assert gaps.min() > 1 and np.median(gaps) < 300 and gaps.max() > 86_400  # seconds apart, days between sessions
    elapsed = np.array([e["elapsed_ms"] for e in events])
    correct = np.array([e["correct"] for e in events])
    assert elapsed.min() > 0 and np.median(elapsed[correct == 0]) > np.median(elapsed[correct == 1])


def test_items_carry_true_parameters(records: list) -> None:
    items = [r for r in records if isinstance(r, Item)]
    concepts = {c.concept_id for c in records if isinstance(c, Concept)}
    assert all(i.metadata == {"simulated": "true"} and i.a > 0 and i.b is not None for i in items)
    assert all(1 <= len(i.concept_ids) <= 2 and set(i.concept_ids) <= concepts for i in items)
    assert {c for i in items for c in i.concept_ids} == concepts
    assert any(len(i.concept_ids) == 2 for i in items)
    used = {e["item_id"] for e in events_of(records)}
    assert used == {i.item_id for i in items}


def test_prerequisite_graph_is_acyclic(records: list) -> None:
    concepts = [r for r in records if isinstance(r, Concept)]
    assert concepts[0].prerequisites == () and concepts[0].name
    assert all(1 <= len(c.prerequisites) <= 2 for c in concepts[1:])
    remaining = {c.concept_id: set(c.prerequisites) for c in concepts}
    while remaining:  # Kahn: repeatedly remove concepts whose prerequisites are all removed
        ready = [c for c, pre in remaining.items() if not pre & remaining.keys()]
        assert ready, f"cycle among {sorted(remaining)}"
        for c in ready:
            del remaining[c]


def test_harder_items_are_answered_correctly_less_often(records: list) -> None:
    b = {r.item_id: r.b for r in records if isinstance(r, Item)}
    right, total = defaultdict(int), defaultdict(int)
    for e in events_of(records):
        right[e["item_id"]] += e["correct"]
        total[e["item_id"]] += 1
    items = sorted(b)
    rate = np.array([right[i] / total[i] for i in items])
    difficulty = np.array([b[i] for i in items])
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(difficulty), rank(rate))[0, 1] < -0.5


def test_practice_raises_the_correct_rate(records: list) -> None:
    attempts: dict[tuple[str, str], int] = defaultdict(int)
    early, late = [], []
    for e in events_of(records):
        key = (e["learner_id"], e["concept_ids"][0])
        (early if attempts[key] < 3 else late if attempts[key] >= 15 else []).append(e["correct"])
        attempts[key] += 1
    assert np.mean(late) > np.mean(early) + 0.05


def test_options_name_every_hyperparameter() -> None:
    options = ClassroomSimulator(learners=3, seed=5).options()
    assert options == {
        "tenant": "default", "learners": 3, "items": 60, "concepts": 8, "weeks": 6, "sessions_per_week": 3,
        "answers_per_session": 12, "seed": 5, "start": "2026-09-07T08:00:00+00:00",
    }


@pytest.mark.parametrize("bad", [{"learners": 0}, {"items": 4, "concepts": 8}, {"sessions_per_week": 8},
                                 {"start": "2026-09-07T08:00:00"}, {"start": "monday"}, {"weeks": 1.5}])
def test_bad_hyperparameters(bad: dict) -> None:
    with pytest.raises(InputError):
        ClassroomSimulator(**bad)


def test_default_size_is_fast() -> None:
    started = time.perf_counter()
    n = sum(1 for _ in ClassroomSimulator(seed=1).read(None))
    assert n == 8 + 60 + 43_200
    assert time.perf_counter() - started < 10
