"""Serving: mastery, predict and next items from the learner state the stream worker writes, with the
models promoted in the registry, and a new promotion picked up while the app runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from knowtrace.lake import Lake
from knowtrace.models import Elo, OnlineModel
from knowtrace.registry import ModelRegistry

TENANT = "acme"
NEWCOMER = "newcomer"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def answers(learner: str, pattern: list[tuple[str, int]], day: int = 10) -> list[dict[str, Any]]:
    return [{"learner_id": learner, "item_id": item, "correct": correct,
             "timestamp": f"2026-10-{day:02d}T09:{minute:02d}:00+00:00"} for minute, (item, correct) in enumerate(pattern)]


def promoted_model(lake_dir: Path, name: str) -> OnlineModel:
    registry = ModelRegistry(lake_dir)
    model = registry.load(registry.promoted(TENANT, name))
    assert isinstance(model, OnlineModel)
    return model


def replay(model: OnlineModel, events: list[dict[str, Any]]) -> OnlineModel:
    for event in events:
        model.learn_one(event, update_shared=False)
    return model


def items_of(lake_dir: Path, concept: str) -> list[str]:
    rows = Lake(lake_dir).query("SELECT item_id FROM items WHERE tenant = ? AND list_contains(concept_ids, ?) "
                                "ORDER BY item_id", [TENANT, concept]).to_pylist()
    return [r["item_id"] for r in rows]


@pytest.fixture
def newcomer_events(lake_dir: Path) -> list[dict[str, Any]]:
    """A learner new to the models who gets every item of concept-01 wrong and of concept-02 right."""
    pattern = [(i, 0) for i in items_of(lake_dir, "concept-01")] + [(i, 1) for i in items_of(lake_dir, "concept-02")]
    return answers(NEWCOMER, pattern)


def test_mastery_comes_from_the_state_the_worker_stored(client: TestClient, acme_key: str, lake_dir: Path,
                                                        apply_state: Callable[[], int],
                                                        newcomer_events: list[dict[str, Any]]) -> None:
    headers = bearer(acme_key)
    assert client.get(f"/v1/learners/{NEWCOMER}/mastery", headers=headers).status_code == 404
    assert client.post("/v1/events", json=newcomer_events, headers=headers).status_code == 202
    assert apply_state() == 2 * len(newcomer_events)  # elo and bkt

    default = client.get(f"/v1/learners/{NEWCOMER}/mastery", headers=headers)
    assert default.status_code == 200
    body = default.json()
    assert body["model"] == "bkt" and body["version"] == "v0001" and body["n_answers"] == len(newcomer_events)
    expected = replay(promoted_model(lake_dir, "bkt"), newcomer_events).mastery(NEWCOMER)
    assert set(body["concepts"]) == set(expected)
    for concept, (p, se) in expected.items():
        assert body["concepts"][concept]["p"] == pytest.approx(p)
        assert body["concepts"][concept]["se"] == pytest.approx(se)
    assert body["concepts"]["concept-01"]["p"] < body["concepts"]["concept-02"]["p"]

    elo = client.get(f"/v1/learners/{NEWCOMER}/mastery", params={"model": "elo"}, headers=headers).json()
    expected_elo = replay(promoted_model(lake_dir, "elo"), newcomer_events).mastery(NEWCOMER)
    assert {c: v["p"] for c, v in elo["concepts"].items()} == pytest.approx({c: p for c, (p, _) in expected_elo.items()})
    assert all(v["se"] is None for v in elo["concepts"].values())

    missing = client.get(f"/v1/learners/{NEWCOMER}/mastery", params={"model": "dkt"}, headers=headers)
    assert missing.status_code == 404 and "has no state under model 'dkt'" in missing.json()["detail"]
    unknown = client.get(f"/v1/learners/{NEWCOMER}/mastery", params={"model": "nope"}, headers=headers)
    assert unknown.status_code == 422 and "known models" in unknown.json()["detail"]


def test_another_tenant_sees_none_of_the_learner(client: TestClient, acme_key: str, other_key: str,
                                                apply_state: Callable[[], int],
                                                newcomer_events: list[dict[str, Any]]) -> None:
    client.post("/v1/events", json=newcomer_events, headers=bearer(acme_key))
    apply_state()
    assert client.get(f"/v1/learners/{NEWCOMER}/mastery", headers=bearer(acme_key)).status_code == 200
    assert client.get(f"/v1/learners/{NEWCOMER}/mastery", headers=bearer(other_key)).status_code == 404
    answer = client.post("/v1/predict", json={"learner_id": NEWCOMER, "item_ids": ["sim-item-001"]},
                         headers=bearer(other_key))
    assert answer.status_code == 404 and "knowtrace pipeline run" in answer.json()["detail"]


def test_predict_restores_the_stored_state_and_flags_unknown_items(
        client: TestClient, acme_key: str, lake_dir: Path, apply_state: Callable[[], int],
        newcomer_events: list[dict[str, Any]]) -> None:
    headers = bearer(acme_key)
    client.post("/v1/events", json=newcomer_events, headers=headers)
    apply_state()
    hard, easy = items_of(lake_dir, "concept-01")[0], items_of(lake_dir, "concept-02")[0]
    request = {"learner_id": NEWCOMER, "item_ids": [hard, easy, "never-seen"], "model": "elo"}
    answer = client.post("/v1/predict", json=request, headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"] == "elo" and body["version"] == "v0001" and body["learner_state"] == "stored"
    assert body["n_answers"] == len(newcomer_events) and body["warnings"] == []
    elo = replay(promoted_model(lake_dir, "elo"), newcomer_events)
    assert [p["p"] for p in body["predictions"]] == pytest.approx([elo.predict_one(NEWCOMER, i)
                                                                    for i in request["item_ids"]])
    assert [p["known_item"] for p in body["predictions"]] == [True, True, False]
    assert body["unknown_items"] == ["never-seen"]

    fresh = promoted_model(lake_dir, "elo")
    stranger = client.post("/v1/predict", json={**request, "learner_id": "stranger"}, headers=headers).json()
    assert stranger["learner_state"] == "model" and stranger["n_answers"] is None
    assert [p["p"] for p in stranger["predictions"]] == pytest.approx([fresh.predict_one("stranger", i)
                                                                       for i in request["item_ids"]])
    # the learner's answers moved the prediction, and the deployed model was left as it was
    assert body["predictions"][0]["p"] != pytest.approx(stranger["predictions"][0]["p"])
    again = client.post("/v1/predict", json={**request, "learner_id": "stranger"}, headers=headers).json()
    assert again["predictions"] == stranger["predictions"]

    bkt = client.post("/v1/predict", json={"learner_id": NEWCOMER, "item_ids": [hard, easy]}, headers=headers).json()
    expected = replay(promoted_model(lake_dir, "bkt"), newcomer_events)
    assert bkt["model"] == "bkt" and [p["p"] for p in bkt["predictions"]] == pytest.approx(
        [expected.predict_one(NEWCOMER, hard), expected.predict_one(NEWCOMER, easy)])

    not_deployed = client.post("/v1/predict", json={**request, "model": "dkt"}, headers=headers)
    assert not_deployed.status_code == 404
    assert "no dkt model is deployed for tenant 'acme'" in not_deployed.json()["detail"]
    assert "knowtrace registry promote" in not_deployed.json()["detail"]
    assert client.post("/v1/predict", json={**request, "item_ids": []}, headers=headers).status_code == 422


def test_next_items_rank_by_target_and_leave_out_unmastered_prerequisites(
        client: TestClient, acme_key: str, lake_dir: Path, apply_state: Callable[[], int],
        newcomer_events: list[dict[str, Any]]) -> None:
    headers = bearer(acme_key)
    client.post("/v1/events", json=newcomer_events, headers=headers)
    apply_state()
    mastery = client.get(f"/v1/learners/{NEWCOMER}/mastery", params={"model": "elo"}, headers=headers).json()
    p = {c: v["p"] for c, v in mastery["concepts"].items()}
    threshold = (p["concept-01"] + p["concept-02"]) / 2  # concept-01 below it, concept-02 above
    assert p["concept-01"] < threshold < p["concept-02"]
    answer = client.get(f"/v1/learners/{NEWCOMER}/next-items",
                        params={"target": 0.6, "n": 4, "model": "elo", "mastered": threshold}, headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["candidate_source"] == "model" and body["learner_state"] == "stored"

    lake = Lake(lake_dir)
    graph = lake.concept_graph(TENANT)
    concepts = {r["item_id"]: r["concept_ids"] for r in
                lake.query("SELECT item_id, concept_ids FROM items WHERE tenant = ?", [TENANT]).to_pylist()}
    blocked = {item for item, cs in concepts.items()
               if any(p.get(needed, 0.0) < threshold for c in cs for needed in graph.prerequisites(c))}
    assert blocked and {e["item_id"] for e in body["excluded_for_prerequisites"]} == blocked
    assert body["excluded_count"] == len(blocked) and body["candidates"] == len(concepts)
    for excluded in body["excluded_for_prerequisites"]:
        assert all(v < threshold for v in excluded["unmastered_prerequisites"].values())

    elo = replay(promoted_model(lake_dir, "elo"), newcomer_events)
    ranked = sorted((abs(elo.predict_one(NEWCOMER, i) - 0.6), i) for i in concepts if i not in blocked)[:4]
    assert [i["item_id"] for i in body["items"]] == [i for _, i in ranked]
    assert [i["distance"] for i in body["items"]] == pytest.approx([d for d, _ in ranked])

    everything = client.get(f"/v1/learners/{NEWCOMER}/next-items", params={"model": "elo", "mastered": 0.0, "n": 100},
                            headers=headers).json()
    assert everything["excluded_count"] == 0 and len(everything["items"]) == len(concepts)
    assert client.get(f"/v1/learners/{NEWCOMER}/next-items", params={"target": 1.5}, headers=headers).status_code == 422


def test_a_new_promotion_is_served_without_restart(client: TestClient, acme_key: str, lake_dir: Path,
                                                   apply_state: Callable[[], int],
                                                   newcomer_events: list[dict[str, Any]]) -> None:
    headers = bearer(acme_key)
    client.post("/v1/events", json=newcomer_events, headers=headers)
    apply_state()
    request = {"learner_id": NEWCOMER, "item_ids": ["sim-item-001", "sim-item-002"], "model": "elo"}
    before = client.post("/v1/predict", json=request, headers=headers).json()
    assert before["version"] == "v0001"

    lake = Lake(lake_dir)
    data = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [TENANT])
    retrained = Elo(k_a=0.4, k_b=0.2).fit(data)
    registry = ModelRegistry(lake_dir)
    version = registry.register(retrained, tenant=TENANT, metrics={"auc": 0.8}, data_window={})
    registry.promote(TENANT, "elo", version.version)

    after = client.post("/v1/predict", json=request, headers=headers).json()
    assert after["version"] == "v0002"
    # the stored state was written by v0001: until the worker applies an answer the model's own is used
    assert after["learner_state"] == "model" and "written by version v0001" in after["warnings"][0]
    assert [p["p"] for p in after["predictions"]] == pytest.approx(
        [retrained.predict_one(NEWCOMER, i) for i in request["item_ids"]])

    more = answers(NEWCOMER, [("sim-item-001", 1)], day=11)
    client.post("/v1/events", json=more, headers=headers)
    apply_state()
    current = client.post("/v1/predict", json=request, headers=headers).json()
    assert current["learner_state"] == "stored" and current["n_answers"] == 1
    expected = replay(registry.load(registry.promoted(TENANT, "elo")), more)  # type: ignore[arg-type]
    assert [p["p"] for p in current["predictions"]] == pytest.approx(
        [expected.predict_one(NEWCOMER, i) for i in request["item_ids"]])
