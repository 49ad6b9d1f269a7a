"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knowtrace.lake import Lake

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
