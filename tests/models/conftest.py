"""Silver-like interaction tables built from the simulator, without the lake."""

from __future__ import annotations


import pyarrow as pa
import pytest

from knowtrace.simulate import simulated_interactions

def silver_table(**simulator: int) -> pa.Table:
    """Simulated answers as a silver ``interactions`` table."""
    return simulated_interactions(**simulator)


SMALL = {"learners": 40, "items": 16, "concepts": 4, "weeks": 2, "sessions_per_week": 2, "answers_per_session": 8}


@pytest.fixture(scope="session")
def small_table() -> pa.Table:
    """About 1,300 answers of 40 simulated learners."""
    return silver_table(**SMALL, seed=3)


