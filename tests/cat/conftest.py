"""Small banks shared by the CAT tests."""

from __future__ import annotations

import pytest

from knowtrace.cat import ItemBank


@pytest.fixture(scope="session")
def bank2() -> ItemBank:
    """A simulated 2PL bank of 200 items with concept tags and content areas."""
    return ItemBank.generate(200, model="2pl", seed=11, concepts=4, content_areas=3)


@pytest.fixture(scope="session")
def bank3() -> ItemBank:
    """A simulated 3PL bank of 150 items."""
    return ItemBank.generate(150, model="3pl", a_dist="uniform", seed=12)
