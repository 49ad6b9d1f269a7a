"""A silver-like interaction table from the simulator, for the evaluation tests."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowtrace.simulate import simulated_interactions


@pytest.fixture(scope="session")
def simulated_table() -> pa.Table:
    """About 13,000 answers of 120 simulated learners, validated and ordered like silver."""
    return simulated_interactions(learners=120, weeks=4, seed=11)
