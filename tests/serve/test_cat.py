"""CAT sessions over HTTP: a whole test to its report, resumed after a restart, confined to the tenant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from knowtrace.cat import CatEngine, ItemBank
from knowtrace.registry import ModelRegistry
from knowtrace.serve.app import create_app
from knowtrace.serve.keys import ApiKeyStore
from knowtrace.serve.settings import ServeSettings

TENANT = "acme"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_session_runs_to_its_report_on_the_promoted_irt_bank(client: TestClient, acme_key: str,
                                                               lake_dir: Path) -> None:
    headers = bearer(acme_key)
    start = client.post("/v1/cat/sessions", json={"learner_id": "ada", "max_items": 6, "se_target": None, "seed": 3},
                        headers=headers)
    assert start.status_code == 201, start.text
    session = start.json()
    registry = ModelRegistry(lake_dir)
    bank = ItemBank.from_irt(registry.load(registry.promoted(TENANT, "irt")))  # type: ignore[arg-type]
    assert session["bank"]["kind"] == "registry" and session["bank"]["version"] == "v0001"
    assert session["bank"]["fingerprint"] == bank.fingerprint and session["bank"]["items"] == len(bank)
    assert session["learner_id"] == "ada" and session["n_items"] == 0 and not session["finished"]
    first = session["next_item"]["item_id"]
    assert first in bank
    assert session["next_item"]["concepts"] == list(bank.concepts[bank.index(first)])

    # the engine with the same bank, config and seed gives the same test
    reference = CatEngine(bank, _config(max_items=6)).start(seed=3)
    truth = np.random.default_rng(0)
    sid = session["session_id"]
    item = first
    steps = 0
    while True:
        assert item == reference.next_item()
        correct = bool(truth.random() < 0.6)
        estimate = reference.record(item, correct)
        answer = client.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": item, "correct": correct},
                             headers=headers)
        assert answer.status_code == 200, answer.text
        state = answer.json()
        steps += 1
        assert state["n_items"] == steps and state["theta"] == estimate.theta
        if state["finished"]:
            break
        item = state["next_item"]["item_id"]
    assert steps == 6 and state["stop_reason"] == "max length 6" and state["next_item"] is None
    report = state["report"]
    assert report["n_items"] == 6 and report["finished"] and len(report["trace"]) == 6
    assert report["concepts"] and {c["concept"] for c in report["concepts"]} <= set(bank.concept_ids)
    assert sum(c["items"] for c in report["concepts"]) >= 6

    read = client.get(f"/v1/cat/sessions/{sid}", headers=headers)
    assert read.status_code == 200 and read.json() == state
    over = client.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": item, "correct": True}, headers=headers)
    assert over.status_code == 409 and "finished" in over.json()["detail"]


def _config(max_items: int):  # type: ignore[no-untyped-def]
    from knowtrace.cat import CatConfig, EstimatorConfig, SelectorConfig, StoppingRule

    return CatConfig(estimator=EstimatorConfig(method="eap"), selector=SelectorConfig(name="maxinfo"),
                     stopping=StoppingRule(min_items=1, max_items=max_items, criterion=None))


def test_sessions_survive_a_restart_and_stay_in_their_tenant(settings: ServeSettings, acme_key: str,
                                                             other_key: str) -> None:
    headers = bearer(acme_key)
    with TestClient(create_app(settings)) as client:
        session = client.post("/v1/cat/sessions", json={"learner_id": "ada", "max_items": 10},
                               headers=headers).json()
        sid, item = session["session_id"], session["next_item"]["item_id"]
        wrong = client.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": "not-asked", "correct": 1},
                            headers=headers)
        assert wrong.status_code == 409 and wrong.json()["field"] == "item_id"
        assert client.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": item, "correct": 2},
                           headers=headers).status_code == 422
        first = client.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": item, "correct": 1},
                            headers=headers).json()
    with TestClient(create_app(settings)) as restarted:
        resumed = restarted.get(f"/v1/cat/sessions/{sid}", headers=headers)
        assert resumed.status_code == 200 and resumed.json() == first
        second = restarted.post(f"/v1/cat/sessions/{sid}/responses",
                                json={"item_id": first["next_item"]["item_id"], "correct": 0}, headers=headers)
        assert second.status_code == 200 and second.json()["n_items"] == 2
        hidden = restarted.get(f"/v1/cat/sessions/{sid}", headers=bearer(other_key))
        assert hidden.status_code == 404 and "no CAT session" in hidden.json()["detail"]
        assert restarted.post(f"/v1/cat/sessions/{sid}/responses", json={"item_id": "x", "correct": 1},
                              headers=bearer(other_key)).status_code == 404
        assert restarted.get("/v1/cat/sessions/no-such-session", headers=headers).status_code == 404


def test_a_bank_is_calibrated_from_the_lake_when_no_irt_is_promoted(client: TestClient, keys: ApiKeyStore) -> None:
    beta = bearer(keys.create("beta"))
    answer = client.post("/v1/cat/sessions", json={"learner_id": "x", "max_items": 3}, headers=beta)
    assert answer.status_code == 201, answer.text
    assert answer.json()["bank"]["kind"] == "lake" and answer.json()["bank"]["items"] > 0

    nobody = bearer(keys.create("empty"))
    missing = client.post("/v1/cat/sessions", json={"learner_id": "x"}, headers=nobody)
    assert missing.status_code == 404 and "no item bank for tenant 'empty'" in missing.json()["detail"]
    bad = client.post("/v1/cat/sessions", json={"learner_id": "x", "min_items": 5, "max_items": 2}, headers=nobody)
    assert bad.status_code == 422


def test_old_sessions_keep_their_bank_when_a_new_irt_is_promoted(client: TestClient, acme_key: str,
                                                                  lake_dir: Path) -> None:
    from knowtrace.lake import Lake
    from knowtrace.models import IRT

    headers = bearer(acme_key)
    old = client.post("/v1/cat/sessions", json={"learner_id": "ada"}, headers=headers).json()
    data = Lake(lake_dir).query("SELECT * FROM interactions WHERE tenant = ?", [TENANT])
    registry = ModelRegistry(lake_dir)
    version = registry.register(IRT(model="1pl").fit(data), tenant=TENANT, metrics={"auc": 0.9}, data_window={})
    registry.promote(TENANT, "irt", version.version)

    new = client.post("/v1/cat/sessions", json={"learner_id": "bob"}, headers=headers).json()
    assert new["bank"]["version"] == "v0002" and new["bank"]["fingerprint"] != old["bank"]["fingerprint"]
    answer = client.post(f"/v1/cat/sessions/{old['session_id']}/responses",
                         json={"item_id": old["next_item"]["item_id"], "correct": True}, headers=headers)
    assert answer.status_code == 200 and answer.json()["bank"] == old["bank"] and answer.json()["n_items"] == 1
