"""Interaction tables for the evaluation tests: simulated, hand-made, and DKVMN split files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.simulate import simulated_interactions


@pytest.fixture(scope="session")
def simulated_table() -> pa.Table:
    """About 13,000 answers of 120 simulated learners, validated and ordered like silver."""
    return simulated_interactions(learners=120, weeks=4, seed=11)




def write_dkvmn_split(folder: Path, name: str, *, learners: int = 30, items: int = 8, seed: int = 0) -> None:
    """Write ``<name>_train1/valid1/test.csv`` of random three-line records (and ``_train2/valid2``) in ``folder``.

    Learner ``j`` answers items ``1..items`` in a random order; it is right more often on low ids, and
    learners with a higher ``j`` are stronger.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def records(count: int, offset: int) -> str:
        lines = []
        for j in range(count):
            length = int(rng.integers(3, 2 * items))
            ids = rng.integers(1, items + 1, size=length)
            ability = (j + offset) / (learners + 20) * 3 - 1.5
            p = 1 / (1 + np.exp(-(ability - (ids - items / 2) / items * 3)))
            answers = (rng.random(length) < p).astype(int)
            lines += [str(length), ",".join(map(str, ids)), ",".join(map(str, answers))]
        return "\n".join(lines) + "\n"

    for fold in (1, 2):
        (folder / f"{name}_train{fold}.csv").write_text(records(learners, 0))
        (folder / f"{name}_valid{fold}.csv").write_text(records(learners // 3, 5))
    (folder / f"{name}_test.csv").write_text(records(learners // 2, 10))


@pytest.fixture(scope="session")
def dkvmn_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic DKVMN split folder ``toy`` (8 items, no concept map)."""
    folder = tmp_path_factory.mktemp("dkvmn") / "toy"
    write_dkvmn_split(folder, "toy")
    return folder


@pytest.fixture(scope="session")
def dkvmn_writer() -> Callable[..., None]:
    """``write_dkvmn_split`` as a fixture."""
    return write_dkvmn_split
