"""Ingest: API keys, /v1/events batches with rejections, request limits, xAPI statements."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from knowtrace.events import InteractionEvent, event_to_statement
from knowtrace.lake import Lake
from knowtrace.serve.app import create_app
from knowtrace.serve.keys import ApiKeyStore
from knowtrace.serve.settings import ServeSettings
from knowtrace.stream.log import LogEntry, open_log
from knowtrace.stream.worker import StreamWorker

TENANT = "acme"
XAPI = {"X-Experience-API-Version": "1.0.3"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def log_entries(settings: ServeSettings) -> list[LogEntry]:
    """Everything the event log holds, oldest first."""
    log = open_log(settings.stream_url)
    try:
        consumer = log.consumer("inspect", "test")
        return consumer.read(100_000)
    finally:
        log.close()


def event(learner: str = "ada", item: str = "q1", correct: int = 1, **more: object) -> dict[str, object]:
    return {"learner_id": learner, "item_id": item, "correct": correct,
            "timestamp": "2026-01-05T10:00:00+00:00", **more}


# -- auth ------------------------------------------------------------------------------------


def test_every_v1_and_xapi_route_needs_a_valid_key(client: TestClient, keys: ApiKeyStore, acme_key: str) -> None:
    missing = client.post("/v1/events", json=event())
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/events", json=event(), headers={"Authorization": "Basic abc"}).status_code == 401
    malformed = client.post("/v1/events", json=event(), headers=bearer("nope"))
    assert malformed.status_code == 401 and "malformed" in malformed.json()["detail"]
    key_id = acme_key.split("_")[1]
    forged = f"kt_{key_id}_{'x' * 43}"
    assert client.post("/v1/events", json=event(), headers=bearer(forged)).json()["detail"] == "unknown API key"
    for method, path in [("get", "/v1/learners/ada/mastery"), ("post", "/v1/predict"),
                         ("get", "/v1/learners/ada/next-items"), ("post", "/v1/cat/sessions"),
                         ("get", "/v1/cat/sessions/abc"), ("post", "/xapi/statements")]:
        assert getattr(client, method)(path).status_code == 401, path

    assert client.post("/v1/events", json=event(), headers=bearer(acme_key)).status_code == 202
    keys.revoke(key_id)
    revoked = client.post("/v1/events", json=event(), headers=bearer(acme_key))
    assert revoked.status_code == 401 and f"API key {key_id} was revoked" in revoked.json()["detail"]


def test_healthz_needs_no_key_and_reports_the_lag(client: TestClient, acme_key: str) -> None:
    before = client.get("/healthz").json()
    assert before["status"] == "ok" and before["lag"] == {"lake": 0, "state": 0} and before["log_length"] == 0
    client.post("/v1/events", json=[event(), event(item="q2")], headers=bearer(acme_key))
    after = client.get("/healthz").json()
    assert after["log_length"] == 2 and after["lag"] == {"lake": 2, "state": 2}


def test_healthz_is_503_when_the_log_cannot_open(lake_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    app = create_app(ServeSettings(lake=lake_dir, stream_url=f"sqlite:///{blocker}/events.db"))
    with TestClient(app) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["status"] == "unavailable"


# -- /v1/events --------------------------------------------------------------------------------


def test_one_event_is_stored_with_the_key_tenant_and_stream_source(client: TestClient, acme_key: str,
                                                                  settings: ServeSettings) -> None:
    answer = client.post("/v1/events", json=event(concept_ids=["add"], source="batch"), headers=bearer(acme_key))
    assert answer.status_code == 202
    body = answer.json()
    expected = InteractionEvent(tenant=TENANT, learner_id="ada", item_id="q1", correct=1, concept_ids=("add",),
                                timestamp="2026-01-05T10:00:00+00:00", source="stream")
    assert body == {"accepted": 1, "rejected": [], "event_ids": [expected.event_id]}
    [entry] = log_entries(settings)
    assert entry.record.kind == "event" and entry.record.tenant == TENANT
    assert InteractionEvent.model_validate(entry.record.payload) == expected


def test_a_batch_with_invalid_events_keeps_the_valid_ones_and_records_each_rejection(
        client: TestClient, acme_key: str, settings: ServeSettings) -> None:
    batch = [
        event(learner="ada"),
        event(learner="bob", correct=2),                       # correct must be 0/1
        "not an object",
        event(learner="cy", tenant="other"),                    # another tenant
        event(learner="dee", tenant=TENANT, item="q2"),         # its own tenant: fine
        {"learner_id": "eve", "item_id": "q3"},                 # no outcome
        event(learner="fay", unknown_field=1),                  # extra field
        event(learner="gus", timestamp="2026-01-05T10:00:00"),  # no time zone
    ]
    answer = client.post("/v1/events", json=batch, headers=bearer(acme_key))
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 2 and len(body["event_ids"]) == 2
    rejected = {r["index"]: r for r in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 5, 6, 7]
    assert rejected[1]["field"] == "correct" and "correct must be 0 or 1" in rejected[1]["reason"]
    assert rejected[2]["field"] is None and "must be a JSON object" in rejected[2]["reason"]
    assert rejected[3] == {"index": 3, "field": "tenant",
                           "reason": "tenant 'other' does not match the API key's tenant 'acme'"}
    assert "needs correct" in rejected[5]["reason"]
    assert rejected[6]["field"] == "unknown_field"
    assert rejected[7]["field"] == "timestamp"

    entries = log_entries(settings)
    assert [e.record.kind for e in entries] == ["event", "rejection", "rejection", "rejection", "event", "rejection",
                                                "rejection", "rejection"]
    offsets = [e.offset for e in entries]
    assert offsets == sorted(offsets)
    events = [e.record.payload for e in entries if e.record.kind == "event"]
    assert [e["learner_id"] for e in events] == ["ada", "dee"] and [e["event_id"] for e in events] == body["event_ids"]
    rejections = [e.record.payload for e in entries if e.record.kind == "rejection"]
    assert [r["index"] for r in rejections] == [1, 2, 3, 5, 6, 7]
    assert json.loads(rejections[0]["raw"]) == batch[1] and rejections[0]["field"] == "correct"
    assert json.loads(rejections[1]["raw"]) == "not an object"
    assert all(e.record.tenant == TENANT for e in entries)


def test_the_worker_moves_accepted_events_to_the_lake_and_rejections_to_quarantine(
        client: TestClient, acme_key: str, settings: ServeSettings, lake_dir: Path) -> None:
    batch = [event(learner="api-ada"), event(learner="api-bob", correct="yes"), event(learner="api-cy", item="q9")]
    assert client.post("/v1/events", json=batch, headers=bearer(acme_key)).status_code == 202
    lake = Lake(lake_dir)
    log = open_log(settings.stream_url)
    try:
        StreamWorker(lake, log, None, None, refresh_seconds=0.0).drain()
    finally:
        log.close()
    rows = lake.query("SELECT learner_id, item_id, tenant, source FROM interactions WHERE learner_id LIKE 'api-%' "
                      "ORDER BY learner_id").to_pylist()
    assert rows == [{"learner_id": "api-ada", "item_id": "q1", "tenant": TENANT, "source": "stream"},
                    {"learner_id": "api-cy", "item_id": "q9", "tenant": TENANT, "source": "stream"}]
    [quarantined] = lake.query("SELECT field, reason, raw FROM quarantine WHERE source_file LIKE 'stream:%'").to_pylist()
    assert quarantined["field"] == "correct" and "correct must be 0 or 1" in quarantined["reason"]
    assert json.loads(quarantined["raw"]) == batch[1]


def test_a_batch_without_any_valid_event_is_422_and_still_kept(client: TestClient, acme_key: str,
                                                               settings: ServeSettings) -> None:
    answer = client.post("/v1/events", json=[event(correct=5), 3], headers=bearer(acme_key))
    assert answer.status_code == 422
    assert answer.json()["accepted"] == 0 and [r["index"] for r in answer.json()["rejected"]] == [0, 1]
    assert [e.record.kind for e in log_entries(settings)] == ["rejection", "rejection"]


def test_malformed_json_is_400_naming_the_position(client: TestClient, acme_key: str,
                                                   settings: ServeSettings) -> None:
    headers = {**bearer(acme_key), "Content-Type": "application/json"}
    answer = client.post("/v1/events", content=b'[{"learner_id": "ada",\n  "item_id": }]', headers=headers)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("malformed JSON at line 2 column 14 (char 36)")
    assert client.post("/v1/events", content=b'{"correct": NaN}', headers=headers).status_code == 400
    assert client.post("/v1/events", content=b"\xff\xfe", headers=headers).status_code == 400
    assert client.post("/v1/events", content=b"", headers=headers).status_code == 400
    assert log_entries(settings) == []


@pytest.mark.parametrize("body", ["3", '"text"', "null", "[]", "true"])
def test_a_body_that_is_not_an_event_or_array_is_422(client: TestClient, acme_key: str, body: str) -> None:
    answer = client.post("/v1/events", content=body.encode(), headers=bearer(acme_key))
    assert answer.status_code == 422, answer.text


def test_limits_on_body_bytes_and_events_per_request(lake_dir: Path, acme_key: str) -> None:
    settings = ServeSettings(lake=lake_dir, max_events_per_request=3, max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        too_many = client.post("/v1/events", json=[event(item=f"q{i}") for i in range(4)], headers=bearer(acme_key))
        assert too_many.status_code == 413 and "the limit is 3 per request" in too_many.json()["detail"]
        assert client.post("/v1/events", json=[event(item=f"q{i}") for i in range(3)],
                           headers=bearer(acme_key)).status_code == 202
        big = client.post("/v1/events", json=event(response="x" * 3000), headers=bearer(acme_key))
        assert big.status_code == 413 and "2,048 bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(5):
                yield b" " * 1000

        streamed = client.post("/v1/events", content=chunks(), headers=bearer(acme_key))
        assert streamed.status_code == 413
        # the limit holds for every route, and xAPI answers carry their version header even then
        predict = client.post("/v1/predict", json={"learner_id": "ada", "item_ids": ["q" * 500] * 5},
                              headers=bearer(acme_key))
        assert predict.status_code == 413
        assert client.post("/v1/predict", content=chunks(), headers=bearer(acme_key)).status_code == 413
        xapi = client.post("/xapi/statements", content=b" " * 3000, headers={**bearer(acme_key), **XAPI})
        assert xapi.status_code == 413 and xapi.headers["X-Experience-API-Version"] == "1.0.3"
        assert log_entries(settings)[-1].offset == 3


# -- xAPI ---------------------------------------------------------------------------------------


def statement(learner: str = "ada", item: str = "q1", correct: int = 1, **more: object) -> dict[str, object]:
    made = event_to_statement(InteractionEvent(learner_id=learner, item_id=item, correct=correct,
                                               timestamp="2026-01-05T10:00:00+00:00"))
    made["context"]["extensions"].pop("https://knowtrace.dev/xapi/tenant")  # type: ignore[index]
    made["context"]["extensions"].pop("https://knowtrace.dev/xapi/event-id")  # type: ignore[index]
    made["id"] = str(uuid.uuid4())
    return {**made, **more}


def test_xapi_needs_the_version_header(client: TestClient, acme_key: str) -> None:
    missing = client.post("/xapi/statements", json=statement(), headers=bearer(acme_key))
    assert missing.status_code == 400 and "X-Experience-API-Version" in missing.json()["detail"]
    assert missing.headers["X-Experience-API-Version"] == "1.0.3"
    wrong = client.post("/xapi/statements", json=statement(), headers={**bearer(acme_key),
                                                                       "X-Experience-API-Version": "0.95"})
    assert wrong.status_code == 400 and "1.0.x" in wrong.json()["detail"]


def test_xapi_statements_are_stored_once_and_conflicts_are_409(client: TestClient, acme_key: str,
                                                               settings: ServeSettings) -> None:
    headers = {**bearer(acme_key), **XAPI}
    first, second = statement(), statement(learner="bob", correct=0)
    answer = client.post("/xapi/statements", json=[first, second], headers=headers)
    assert answer.status_code == 200 and answer.json() == [first["id"], second["id"]]
    assert answer.headers["X-Experience-API-Version"] == "1.0.3"
    entries = log_entries(settings)
    assert [e.record.statement_id for e in entries] == [first["id"], second["id"]]
    assert entries[0].record.payload["event_id"] == f"xapi-{first['id']}"
    assert entries[0].record.payload["tenant"] == TENANT and entries[0].record.payload["source"] == "stream"
    assert entries[0].record.content_hash != entries[1].record.content_hash

    again = client.post("/xapi/statements", json={**first, "stored": "2026-02-01T00:00:00Z"}, headers=headers)
    assert again.status_code == 200 and again.json() == [first["id"]]
    assert len(log_entries(settings)) == 2  # same content: nothing new

    changed = {**first, "result": {"success": False}}
    conflict = client.post("/xapi/statements", json=[statement(), changed], headers=headers)
    assert conflict.status_code == 409 and conflict.json()["statement_ids"] == [first["id"]]
    assert first["id"] in conflict.json()["detail"]
    assert len(log_entries(settings)) == 2  # nothing of the request was stored


def test_xapi_statement_without_id_gets_one(client: TestClient, acme_key: str, settings: ServeSettings) -> None:
    given = statement()
    del given["id"]
    answer = client.post("/xapi/statements", json=given, headers={**bearer(acme_key), **XAPI})
    assert answer.status_code == 200
    [statement_id] = answer.json()
    assert str(uuid.UUID(statement_id)) == statement_id
    [entry] = log_entries(settings)
    assert entry.record.statement_id == statement_id and entry.record.payload["event_id"] == f"xapi-{statement_id}"


def test_xapi_put_stores_under_the_statement_id(client: TestClient, acme_key: str, settings: ServeSettings) -> None:
    given = statement()
    statement_id = given.pop("id")
    headers = {**bearer(acme_key), **XAPI}
    answer = client.put("/xapi/statements", params={"statementId": statement_id}, json=given, headers=headers)
    assert answer.status_code == 204
    assert [e.record.statement_id for e in log_entries(settings)] == [statement_id]
    other = client.put("/xapi/statements", params={"statementId": str(uuid.uuid4())},
                       json={**given, "id": statement_id}, headers=headers)
    assert other.status_code == 400 and "differs from statementId" in other.json()["detail"]


def test_an_invalid_statement_rejects_the_request_but_is_quarantined(client: TestClient, acme_key: str,
                                                                      settings: ServeSettings) -> None:
    headers = {**bearer(acme_key), **XAPI}
    bad_verb = statement(verb={"id": "http://adlnet.gov/expapi/verbs/attempted"})
    other_tenant = statement()
    other_tenant["context"] = {"extensions": {"https://knowtrace.dev/xapi/tenant": "other",
                                              "https://knowtrace.dev/xapi/seq": 1}}
    answer = client.post("/xapi/statements", json=[statement(), bad_verb, other_tenant], headers=headers)
    assert answer.status_code == 400
    body = answer.json()
    assert body["detail"].startswith("statement 1 is invalid (field verb)")
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "verb"), (2, 'context.extensions["https://knowtrace.dev/xapi/tenant"]')]
    assert "does not match the API key's tenant 'acme'" in body["rejected"][1]["reason"]
    entries = log_entries(settings)
    assert [e.record.kind for e in entries] == ["rejection", "rejection"]
    assert json.loads(entries[0].record.payload["raw"]) == bad_verb
    assert all(e.record.statement_id is None for e in entries)


def test_another_tenant_cannot_collide_with_statement_ids(client: TestClient, acme_key: str,
                                                          other_key: str) -> None:
    given = statement()
    assert client.post("/xapi/statements", json=given, headers={**bearer(acme_key), **XAPI}).status_code == 200
    changed = {**given, "result": {"success": False}}
    assert client.post("/xapi/statements", json=changed, headers={**bearer(other_key), **XAPI}).status_code == 200
