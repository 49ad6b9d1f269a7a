"""Deterministic train/test splits of interactions by learner."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.exceptions import InputError
from knowtrace.models.data import as_table

__all__ = ["LearnerSplit", "learner_hash", "learner_split"]


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
