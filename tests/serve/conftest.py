"""A lake with a simulated class of tenant ``acme`` and fitted Elo, BKT and IRT models promoted in its
registry; each test gets its own copy, an app on it (SQLite log and state store) and API keys."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

# Starlette 1.10 asks for httpx2 instead of the pinned httpx 0.28; the client works the same with both
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from knowtrace.lake import Lake
from knowtrace.models import BKT, IRT, Elo
from knowtrace.registry import ModelRegistry
from knowtrace.serve.app import create_app
from knowtrace.serve.keys import ApiKeyStore
from knowtrace.serve.settings import ServeSettings
from knowtrace.simulate.classroom import ClassroomSimulator
from knowtrace.state.store import open_state
from knowtrace.stream.log import open_log
from knowtrace.stream.worker import StateSink, WorkerStats, registry_models

TENANT = "acme"
LAKE_ONLY_TENANT = "beta"


def fit_models(lake: Lake, tenant: str = TENANT) -> dict[str, Any]:
    """Elo, BKT and IRT fitted on the tenant's answers in the lake."""
    data = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
    return {"elo": Elo().fit(data), "bkt": BKT().fit(data), "irt": IRT().fit(data)}


@pytest.fixture(scope="session")
def base_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "lake"
    lake = Lake(root)
    lake.load(ClassroomSimulator(tenant=TENANT, learners=30, items=16, concepts=4, weeks=2, sessions_per_week=2,
                                 answers_per_session=8, seed=1), None)
    # a second tenant with answers in the lake but no model in the registry
    lake.load(ClassroomSimulator(tenant=LAKE_ONLY_TENANT, learners=40, items=10, concepts=2, weeks=1,
                                 sessions_per_week=2, answers_per_session=8, seed=2), None)
    registry = ModelRegistry(root)
    for name, model in fit_models(lake).items():
        version = registry.register(model, tenant=TENANT, metrics={"auc": 0.7}, data_window={"tenant": TENANT})
        registry.promote(TENANT, name, version.version)
    return root


@pytest.fixture
def lake_dir(base_lake: Path, tmp_path: Path) -> Path:
    """A private copy of the base lake."""
    target = tmp_path / "lake"
    shutil.copytree(base_lake, target, symlinks=True)
    return target


@pytest.fixture
def settings(lake_dir: Path) -> ServeSettings:
    return ServeSettings(lake=lake_dir, model_poll_seconds=0.0)


@pytest.fixture
def keys(lake_dir: Path) -> ApiKeyStore:
    return ApiKeyStore.for_lake(lake_dir)


@pytest.fixture
def acme_key(keys: ApiKeyStore) -> str:
    return keys.create(TENANT)


@pytest.fixture
def other_key(keys: ApiKeyStore) -> str:
    return keys.create("other")


@pytest.fixture
def client(settings: ServeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def apply_state(settings: ServeSettings, lake_dir: Path) -> Callable[[], int]:
    """Run the stream worker's state sink over what the log holds (as ``knowtrace worker`` would)."""

    def run() -> int:
        log, store = open_log(settings.stream_url), open_state(settings.state_url)
        try:
            sink = StateSink(store, log, registry_models(Lake(lake_dir), poll_seconds=0.0), poll_ms=0, max_wait_s=0.0)
            stats = WorkerStats()
            while sink.step(stats) > 0:
                pass
            return stats.state_updates
        finally:
            log.close()
            store.close()

    return run
