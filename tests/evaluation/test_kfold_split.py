"""k-fold learner splits: a fixed test set, folds that partition the other learners, deterministic."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowtrace.evaluation import kfold_learners, kfold_splits
from knowtrace.exceptions import InputError


def learners(table: pa.Table) -> set[str]:
    return set(table.column("learner_id").to_pylist())


def test_folds_partition_the_non_test_learners(simulated_table: pa.Table) -> None:
    folds = kfold_splits(simulated_table, folds=5, test_fraction=0.2, seed=0)
    everyone = learners(simulated_table)
    test = learners(folds[0].test)
    assert len(test) == round(0.2 * len(everyone))
    assert [f.fold for f in folds] == [1, 2, 3, 4, 5]
    valid_sets = [learners(f.valid) for f in folds]
    assert set().union(*valid_sets) == everyone - test
    assert sum(len(v) for v in valid_sets) == len(everyone - test)  # pairwise disjoint
    assert max(map(len, valid_sets)) - min(map(len, valid_sets)) <= 1
    for fold, valid in zip(folds, valid_sets):
        assert learners(fold.test) == test  # the same held-out learners in every fold
        assert learners(fold.train) == everyone - test - valid
        assert fold.train.num_rows + fold.valid.num_rows + fold.test.num_rows == simulated_table.num_rows


def test_deterministic_with_the_seed(simulated_table: pa.Table) -> None:
    ids = simulated_table.column("learner_id").to_pylist()
    first = kfold_learners(ids, seed=7)
    assert kfold_learners(list(reversed(ids)), seed=7) == first  # input order does not matter
    assert kfold_learners(ids, seed=8) != first
    again = kfold_splits(simulated_table, seed=7)
    assert all(a.valid.equals(b.valid) for a, b in zip(kfold_splits(simulated_table, seed=7), again))


def test_errors() -> None:
    with pytest.raises(InputError, match="too few"):
        kfold_learners(["a", "b", "c", "d", "e"], folds=5)
    with pytest.raises(InputError, match="folds"):
        kfold_learners(["a", "b", "c"], folds=1)
    with pytest.raises(InputError, match="test_fraction"):
        kfold_learners(["a", "b", "c"], test_fraction=0.0)
    test, folds = kfold_learners([f"l{i}" for i in range(6)], folds=5)
    assert len(test) == 1 and all(len(f) == 1 for f in folds)
