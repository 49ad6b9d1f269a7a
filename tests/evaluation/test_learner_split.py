"""Learner splits are deterministic, disjoint and complete."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowtrace.evaluation import learner_hash, learner_split
from knowtrace.exceptions import InputError


def learners(table: pa.Table) -> set[str]:
    return set(table.column("learner_id").to_pylist())


def test_deterministic_disjoint_and_complete(simulated_table: pa.Table) -> None:
    train, test = learner_split(simulated_table, test_fraction=0.2, seed=0)
    again = learner_split(simulated_table, test_fraction=0.2, seed=0)
    assert again.train.equals(train) and again.test.equals(test)
    assert not learners(train) & learners(test)
    assert learners(train) | learners(test) == learners(simulated_table)
    assert train.num_rows + test.num_rows == simulated_table.num_rows
    assert 0.08 < len(learners(test)) / len(learners(simulated_table)) < 0.35
    assert learners(learner_split(simulated_table, test_fraction=0.2, seed=1).test) != learners(test)


def test_a_learners_side_does_not_depend_on_others(simulated_table: pa.Table) -> None:
    half = simulated_table.slice(0, simulated_table.num_rows // 2)
    test_all = learners(learner_split(simulated_table, seed=3).test)
    assert learners(learner_split(half, seed=3).test) == test_all & learners(half)
    assert learner_hash("sim-learner-0001", 0) == learner_hash("sim-learner-0001", 0)
    assert 0 <= learner_hash("x", 5) < 1


def test_tiny_tables_keep_both_sides() -> None:
    table = pa.table({"learner_id": ["a", "a", "b"], "item_id": ["q", "r", "q"], "correct": [1, 0, 1]})
    for seed in range(10):
        train, test = learner_split(table, test_fraction=0.2, seed=seed)
        assert train.num_rows and test.num_rows
    with pytest.raises(InputError):
        learner_split(table, test_fraction=1.0)
