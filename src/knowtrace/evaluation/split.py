"""Deterministic splits of interactions by learner: a train/test holdout, and k-fold cross-validation
with a fixed held-out test set (the pyKT protocol)."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.exceptions import InputError
from knowtrace.models.data import as_table

__all__ = ["Fold", "LearnerSplit", "kfold_learners", "kfold_splits", "learner_hash", "learner_split"]


class LearnerSplit(NamedTuple):
    """All answers of the train learners, and all answers of the test learners."""

    train: pa.Table
    test: pa.Table


def learner_hash(learner_id: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) fixed by the learner id and the seed (stable across runs)."""
    digest = hashlib.blake2b(f"{seed}\x1f{learner_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def learner_split(table: Any, test_fraction: float = 0.2, seed: int = 0) -> LearnerSplit:
    """Split by learner: a learner is in test when its hash with ``seed`` is below ``test_fraction``.

    A learner's side does not depend on the other learners. When that puts every learner on one
    side (tiny tables), the learner with the lowest (or highest) hash is moved to the other side.
    """
    table = as_table(table)
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}", field="test_fraction")
    learners = pc.unique(table.column("learner_id")).to_pylist()
    hashes = np.array([learner_hash(str(learner), seed) for learner in learners])
    in_test = hashes < test_fraction
    if len(learners) >= 2 and not in_test.any():
        in_test[np.argmin(hashes)] = True
    elif len(learners) >= 2 and in_test.all():
        in_test[np.argmax(hashes)] = False
    test_ids = pa.array([lr for lr, t in zip(learners, in_test) if t], pa.string())
    mask = pc.is_in(table.column("learner_id"), value_set=test_ids)
    return LearnerSplit(table.filter(pc.invert(mask)), table.filter(mask))


class Fold(NamedTuple):
    """Fold ``fold`` (1-based) of a k-fold split: train on the other folds, validate on this one,
    score the held-out test learners (the same for every fold)."""

    fold: int
    train: pa.Table
    valid: pa.Table
    test: pa.Table


def kfold_learners(learners: Any, *, folds: int = 5, test_fraction: float = 0.2,
                   seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """(test learners, learners of each fold): ``round(test_fraction * n)`` learners (at least one)
    are held out as test, the others are dealt into ``folds`` folds of near-equal size.

    Learners are sorted, then shuffled by a generator seeded with ``seed``, so the same set of
    learners and the same seed always give the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}", field="test_fraction")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"folds must be an integer >= 2, got {folds!r}", field="folds")
    ids = sorted({str(learner) for learner in learners})
    n_test = max(1, int(round(test_fraction * len(ids))))
    if len(ids) - n_test < folds:
        raise InputError(f"{len(ids)} learners are too few for a held-out test set and {folds} folds "
                         f"(need at least {folds + 1})")
    shuffled = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    rest = shuffled[n_test:]
    bounds = np.linspace(0, len(rest), folds + 1).round().astype(int)
    return sorted(shuffled[:n_test]), [sorted(rest[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def kfold_splits(table: Any, *, folds: int = 5, test_fraction: float = 0.2, seed: int = 0) -> list[Fold]:
    """The ``folds`` folds of ``kfold_learners`` over the learners of ``table``, as tables of answers."""
    table = as_table(table)
    if "learner_id" not in table.column_names:
        raise InputError("interactions lack column learner_id", field="learner_id")
    learner = table.column("learner_id").cast(pa.string())
    if learner.null_count:
        raise InputError("empty ids in the interactions", field="learner_id")
    test_ids, fold_ids = kfold_learners(pc.unique(learner).to_pylist(), folds=folds,
                                        test_fraction=test_fraction, seed=seed)
    test = table.filter(pc.is_in(learner, value_set=pa.array(test_ids, pa.string())))
    out = []
    for k, valid_ids in enumerate(fold_ids, start=1):
        train_ids = [lr for j, ids in enumerate(fold_ids, start=1) if j != k for lr in ids]
        out.append(Fold(k, table.filter(pc.is_in(learner, value_set=pa.array(train_ids, pa.string()))),
                        table.filter(pc.is_in(learner, value_set=pa.array(valid_ids, pa.string()))), test))
    return out
