"""DeployedModels: the promoted version, re-checked at most every poll interval, swapped without restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from knowtrace.lake import Lake
from knowtrace.models import Elo
from knowtrace.registry import ModelRegistry
from knowtrace.serve.app import create_app
from knowtrace.registry.deployment import DeployedModels, DeploymentError
from knowtrace.serve.settings import ServeSettings

TENANT = "acme"


class CountingRegistry(ModelRegistry):
    """The lake's registry, counting how often the promoted version is read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    def promoted(self, tenant: str, model_name: str) -> Any:
        self.reads += 1
        return super().promoted(tenant, model_name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_promotions_are_polled_and_swapped_in(lake_dir: Path) -> None:
    registry, clock = CountingRegistry(lake_dir), Clock()
    deployed = DeployedModels(registry, poll_seconds=5.0, clock=clock)
    first = deployed.get(TENANT, "elo")
    assert first is not None and first.version == "v0001" and isinstance(first.model, Elo)
    assert first.item_ids() == frozenset(first.model.item_difficulty_)
    assert deployed.get(TENANT, "dkt") is None and deployed.get("other", "elo") is None

    data = Lake(lake_dir).query("SELECT * FROM interactions WHERE tenant = ?", [TENANT])
    new = registry.register(Elo(k_a=0.3).fit(data), tenant=TENANT, metrics={"auc": 0.9}, data_window={})
    registry.promote(TENANT, "elo", new.version)
    reads = registry.reads
    clock.now += 4.9
    assert deployed.get(TENANT, "elo") is first and registry.reads == reads  # within the poll interval
    clock.now += 0.2
    second = deployed.get(TENANT, "elo")
    assert second is not None and second.version == "v0002" and second.model.k_a == 0.3
    assert registry.reads == reads + 1
    clock.now += 10
    assert deployed.get(TENANT, "elo") is second  # same version: not loaded again


def test_a_version_that_cannot_load_keeps_the_loaded_one(lake_dir: Path) -> None:
    registry, clock = ModelRegistry(lake_dir), Clock()
    deployed = DeployedModels(registry, poll_seconds=1.0, clock=clock)
    first = deployed.get(TENANT, "elo")
    assert first is not None
    data = Lake(lake_dir).query("SELECT * FROM interactions WHERE tenant = ?", [TENANT])
    new = registry.register(Elo(k_a=0.3).fit(data), tenant=TENANT, metrics={"auc": 0.9}, data_window={})
    registry.promote(TENANT, "elo", new.version)
    (new.path / "state.npz").write_bytes(b"corrupt")
    clock.now += 2
    assert deployed.get(TENANT, "elo") is first

    fresh = DeployedModels(registry, poll_seconds=1.0, clock=clock)
    with pytest.raises(DeploymentError, match="the promoted elo model of tenant 'acme' cannot be loaded"):
        fresh.get(TENANT, "elo")


def test_the_api_answers_503_when_the_promoted_model_cannot_load(lake_dir: Path, settings: ServeSettings,
                                                                  acme_key: str) -> None:
    promoted = ModelRegistry(lake_dir).promoted(TENANT, "elo")
    assert promoted is not None
    (promoted.path / "state.npz").write_bytes(b"corrupt")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/predict", json={"learner_id": "ada", "item_ids": ["q1"], "model": "elo"},
                             headers={"Authorization": f"Bearer {acme_key}"})
    assert answer.status_code == 503 and "cannot be loaded" in answer.json()["detail"]
