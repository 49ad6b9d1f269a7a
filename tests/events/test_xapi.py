"""The xAPI mapping: round trips both ways, statements from other stores, and precise errors."""

from __future__ import annotations

import copy
import doctest
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import knowtrace.events.xapi as xapi
from knowtrace.events.event import EventSource, InteractionEvent
from knowtrace.events.xapi import (
    CMI_INTERACTION,
    EXT_ATTEMPT,
    EXT_CONCEPTS,
    EXT_EVENT_ID,
    EXT_SEQ,
    EXT_SESSION,
    EXT_TENANT,
    KNOWTRACE_NAMESPACE,
    VERB_ANSWERED,
    event_to_statement,
    format_iso_duration,
    parse_iso_duration,
    statement_to_event,
)
from knowtrace.exceptions import InputError

T0 = datetime(2024, 3, 5, 9, 30, 15, 123000, tzinfo=timezone.utc)
STATEMENT_ID = "0b4a3c52-1d1e-4c2a-9a55-6f3f8f2c7d10"


def make_event(**overrides: Any) -> InteractionEvent:
    """An event with every field set; ``overrides`` replace fields (None clears one)."""
    fields: dict[str, Any] = {
        "tenant": "school-7",
        "learner_id": "ada",
        "item_id": "fractions/q 12",
        "concept_ids": ("fractions", "division"),
        "correct": 1,
        "score": 0.75,
        "response": "3/4",
        "timestamp": T0,
        "seq": 4,
        "elapsed_ms": 12345,
        "attempt": 2,
        "session_id": "lesson-9",
        "source": EventSource.STREAM,
    }
    fields.update(overrides)
    return InteractionEvent(**fields)


def lrs_statement(**overrides: Any) -> dict[str, Any]:
    """A statement as a generic learning record store returns it: mbox actor, no knowtrace extensions."""
    statement: dict[str, Any] = {
        "id": STATEMENT_ID,
        "actor": {"objectType": "Agent", "name": "Ada L.", "mbox": "mailto:ada@example.org"},
        "verb": {"id": VERB_ANSWERED, "display": {"en-GB": "answered"}},
        "object": {
            "objectType": "Activity",
            "id": "http://example.org/activities/quiz-1/q3",
            "definition": {"type": CMI_INTERACTION, "interactionType": "choice"},
        },
        "result": {"success": True, "score": {"scaled": 1.0}, "response": "b", "duration": "PT1M30S"},
        "context": {"platform": "Moodle", "contextActivities": {"grouping": [{"id": "http://example.org/c/f"}]}},
        "timestamp": "2024-03-05T10:30:15.123+01:00",
        "stored": "2024-03-05T09:31:00.000Z",
        "authority": {"objectType": "Agent", "account": {"homePage": "http://lrs.example.org", "name": "moodle"}},
        "version": "1.0.3",
    }
    statement.update(overrides)
    return statement


def error_of(statement: Any, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        statement_to_event(statement, **kwargs)
    return info.value


def test_docstrings_run() -> None:
    assert doctest.testmod(xapi).failed == 0


# --------------------------------------------------------------------------- event -> statement


def test_statement_has_the_knowtrace_shape() -> None:
    event = make_event()
    statement = event_to_statement(event)
    assert statement["id"] == str(uuid.uuid5(KNOWTRACE_NAMESPACE, event.event_id))
    assert statement["actor"] == {
        "objectType": "Agent",
        "account": {"homePage": "https://knowtrace.dev", "name": "ada"},
    }
    assert statement["verb"] == {"id": VERB_ANSWERED, "display": {"en-US": "answered"}}
    assert statement["object"] == {
        "objectType": "Activity",
        "id": "https://knowtrace.dev/items/fractions%2Fq%2012",
        "definition": {"type": CMI_INTERACTION},
    }
    assert statement["result"] == {
        "success": True,
        "score": {"scaled": 0.75},
        "response": "3/4",
        "duration": "PT12.345S",
    }
    assert statement["timestamp"] == "2024-03-05T09:30:15.123Z"
    assert "registration" not in statement["context"]
    assert statement["context"]["extensions"] == {
        EXT_TENANT: "school-7",
        EXT_EVENT_ID: event.event_id,
        EXT_CONCEPTS: ["fractions", "division"],
        EXT_SESSION: "lesson-9",
        EXT_ATTEMPT: 2,
        EXT_SEQ: 4,
    }
    assert json.loads(json.dumps(statement)) == statement


def test_homepage_and_activity_base_are_configurable() -> None:
    statement = event_to_statement(make_event(), homepage="https://lms.example", activity_base="urn:x:items:")
    assert statement["actor"]["account"]["homePage"] == "https://lms.example"
    assert statement["object"]["id"] == "urn:x:items:fractions%2Fq%2012"


def test_statement_id_is_deterministic_and_keeps_uuid_event_ids() -> None:
    assert event_to_statement(make_event())["id"] == event_to_statement(make_event())["id"]
    assert event_to_statement(make_event())["id"] != event_to_statement(make_event(seq=5))["id"]
    own = str(uuid.uuid4())
    assert event_to_statement(make_event(event_id=own))["id"] == own
    assert event_to_statement(make_event(event_id=own.upper()))["id"] == own
    assert event_to_statement(make_event(event_id="xapi-" + own))["id"] == own


def test_registration_only_for_uuid_sessions() -> None:
    session = str(uuid.uuid4())
    assert event_to_statement(make_event(session_id=session))["context"]["registration"] == session
    assert "registration" not in event_to_statement(make_event(session_id=None))["context"]
    assert EXT_SESSION not in event_to_statement(make_event(session_id=None))["context"]["extensions"]


def test_optional_fields_are_left_out() -> None:
    event = InteractionEvent(learner_id="ada", item_id="q1", correct=0, seq=0)
    statement = event_to_statement(event)
    assert "timestamp" not in statement
    assert statement["result"] == {"success": False, "score": {"scaled": 0.0}}
    assert set(statement["context"]["extensions"]) == {EXT_TENANT, EXT_EVENT_ID, EXT_SEQ}


def test_mailto_learner_becomes_mbox_and_iri_item_stays_whole() -> None:
    statement = event_to_statement(make_event(learner_id="mailto:ada@example.org", item_id="http://ex.org/q/1"))
    assert statement["actor"] == {"objectType": "Agent", "mbox": "mailto:ada@example.org"}
    assert statement["object"]["id"] == "http://ex.org/q/1"


def test_microseconds_and_other_zones_are_written_in_utc() -> None:
    stamp = datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert event_to_statement(make_event(timestamp=stamp))["timestamp"] == "2023-12-31T23:00:00.123456Z"


# --------------------------------------------------------------------------- round trips


ROUND_TRIP_CASES = {
    "all fields": {},
    "score only": {"correct": None, "score": 0.4},
    "wrong answer": {"correct": 0, "score": 0.0},
    "no clock, ordered by seq": {"timestamp": None, "seq": 0},
    "uuid session": {"session_id": "5D3F1C2A-0000-4000-8000-00000000ABCD"},
    "uuid event id": {"event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"},
    "producer event id": {"event_id": "tablet-3/answer/17"},
    "mbox learner": {"learner_id": "mailto:ada@example.org"},
    "iri item": {"item_id": "https://other.example/items/q?id=3&x=%20"},
    "item under the base": {"item_id": "https://knowtrace.dev/items/q1"},
    "unicode and symbols": {"item_id": "Brüche #3 / 50% ?", "learner_id": "élève 1", "response": "½"},
    "microseconds": {"timestamp": T0.replace(microsecond=654321)},
    "no optional fields": {
        "concept_ids": (),
        "response": None,
        "elapsed_ms": None,
        "attempt": None,
        "session_id": None,
        "tenant": "default",
    },
    "zero duration": {"elapsed_ms": 0},
    "long duration": {"elapsed_ms": 3 * 86_400_000 + 7},
    "batch source": {"source": EventSource.BATCH},
}


@pytest.mark.parametrize("overrides", ROUND_TRIP_CASES.values(), ids=ROUND_TRIP_CASES.keys())
def test_event_statement_event_keeps_every_field(overrides: dict[str, Any]) -> None:
    event = make_event(**overrides)
    statement = json.loads(json.dumps(event_to_statement(event)))
    back = statement_to_event(statement, source=event.source)
    assert back.model_dump() == event.model_dump()


def test_round_trip_with_custom_base_and_tenant() -> None:
    event = make_event(item_id="q/1")
    statement = event_to_statement(event, activity_base="https://lms.example/a/")
    back = statement_to_event(statement, tenant="school-7", activity_base="https://lms.example/a/")
    assert back.item_id == "q/1"
    assert back == event


def knowtrace_statement_without_extensions() -> dict[str, Any]:
    return {
        "id": STATEMENT_ID,
        "actor": {"objectType": "Agent", "account": {"homePage": "https://knowtrace.dev", "name": "ada"}},
        "verb": {"id": VERB_ANSWERED, "display": {"en-US": "answered"}},
        "object": {
            "objectType": "Activity",
            "id": "https://knowtrace.dev/items/q%2F1",
            "definition": {"type": CMI_INTERACTION},
        },
        "result": {"success": False, "score": {"scaled": 0.25}, "response": "7", "duration": "PT2.5S"},
        "timestamp": "2024-03-05T09:30:15.123Z",
    }


@pytest.mark.parametrize("with_extensions", [False, True])
def test_statement_event_statement_keeps_the_statement(with_extensions: bool) -> None:
    statement = knowtrace_statement_without_extensions()
    if with_extensions:
        statement = event_to_statement(statement_to_event(statement))
    event = statement_to_event(statement)
    again = event_to_statement(event)
    for key in ("id", "actor", "verb", "object", "result", "timestamp"):
        assert again[key] == statement[key], key
    if with_extensions:
        assert again == statement


def test_event_id_comes_from_the_statement_id_without_extension() -> None:
    event = statement_to_event(knowtrace_statement_without_extensions())
    assert event.event_id == "xapi-" + STATEMENT_ID
    assert event.item_id == "q/1"
    assert (event.correct, event.score, event.elapsed_ms) == (0, 0.25, 2500)
    upper = knowtrace_statement_without_extensions() | {"id": STATEMENT_ID.upper()}
    assert statement_to_event(upper).event_id == "xapi-" + STATEMENT_ID


def test_statement_without_id_gets_a_content_derived_event_id() -> None:
    statement = knowtrace_statement_without_extensions()
    del statement["id"]
    first, second = statement_to_event(statement), statement_to_event(copy.deepcopy(statement))
    assert first.event_id == second.event_id
    assert first.event_id.startswith("ev-")


# --------------------------------------------------------------------------- other stores' shapes


def test_generic_lrs_statement() -> None:
    event = statement_to_event(lrs_statement())
    assert event.learner_id == "mailto:ada@example.org"
    assert event.item_id == "http://example.org/activities/quiz-1/q3"
    assert (event.correct, event.score, event.response) == (1, 1.0, "b")
    assert event.elapsed_ms == 90_000
    assert event.timestamp == datetime(2024, 3, 5, 9, 30, 15, 123000, tzinfo=timezone.utc)
    assert event.tenant == "default"
    assert event.concept_ids == ()  # contextActivities are not read
    assert event.event_id == "xapi-" + STATEMENT_ID
    assert event.source is EventSource.STREAM
    assert (event.seq, event.attempt, event.session_id) == (None, None, None)


@pytest.mark.parametrize(
    ("actor", "learner_id"),
    [
        ({"mbox_sha1sum": "a" * 40}, "a" * 40),
        ({"openid": "https://id.example.org/ada"}, "https://id.example.org/ada"),
        ({"account": {"homePage": "https://lms.example", "name": "u-17"}}, "u-17"),
        ({"objectType": "Agent", "mbox": "mailto:x@y.z"}, "mailto:x@y.z"),
    ],
)
def test_actor_identifiers(actor: dict[str, Any], learner_id: str) -> None:
    assert statement_to_event(lrs_statement(actor=actor)).learner_id == learner_id


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ({"raw": 15, "min": 0, "max": 20}, 0.75),
        ({"raw": 15, "max": 20}, 0.75),
        ({"raw": 3, "min": 1, "max": 5}, 0.5),
        ({"raw": 25, "min": 0, "max": 20}, 1.0),
        ({"raw": -5, "min": 0, "max": 20}, 0.0),
        ({"scaled": 0.3, "raw": 1, "max": 2}, 0.3),
        ({"scaled": 1}, 1.0),
        ({"scaled": 0}, 0.0),
    ],
)
def test_scores_are_normalised(score: dict[str, Any], expected: float) -> None:
    result = {"score": score}
    event = statement_to_event(lrs_statement(result=result))
    assert event.score == pytest.approx(expected)
    assert event.correct == int(expected >= 1.0)


def test_success_and_score_are_independent() -> None:
    event = statement_to_event(lrs_statement(result={"success": True, "score": {"raw": 1, "max": 2}}))
    assert (event.correct, event.score) == (1, 0.5)
    event = statement_to_event(lrs_statement(result={"success": False}))
    assert (event.correct, event.score) == (0, 0.0)


@pytest.mark.parametrize(
    ("verb", "result", "correct"),
    [
        ("passed", {"score": {"scaled": 0.8}}, 1),
        ("failed", {"score": {"scaled": 0.8}}, 0),
        ("passed", {"success": True}, 1),
        ("completed", {"success": False}, 0),
        ("completed", {"score": {"scaled": 1.0}}, 1),
    ],
)
def test_other_accepted_verbs(verb: str, result: dict[str, Any], correct: int) -> None:
    statement = lrs_statement(verb={"id": f"http://adlnet.gov/expapi/verbs/{verb}"}, result=result)
    assert statement_to_event(statement).correct == correct


def test_timestamp_falls_back_to_stored() -> None:
    statement = lrs_statement()
    del statement["timestamp"]
    assert statement_to_event(statement).timestamp == datetime(2024, 3, 5, 9, 31, tzinfo=timezone.utc)


def test_registration_is_the_session_without_extension() -> None:
    registration = str(uuid.uuid4())
    statement = lrs_statement(context={"registration": registration})
    assert statement_to_event(statement).session_id == registration


def test_tenant_parameter() -> None:
    assert statement_to_event(lrs_statement(), tenant="school-7").tenant == "school-7"
    own = event_to_statement(make_event())
    assert statement_to_event(own, tenant="school-7").tenant == "school-7"
    assert statement_to_event(own).tenant == "school-7"


def test_source_parameter() -> None:
    assert statement_to_event(lrs_statement(), source="batch").source is EventSource.BATCH


# --------------------------------------------------------------------------- errors


def without(key: str) -> dict[str, Any]:
    statement = lrs_statement()
    del statement[key]
    return statement


def with_extension(iri: str, value: Any) -> dict[str, Any]:
    statement = event_to_statement(make_event())
    statement["context"]["extensions"][iri] = value
    return statement


def ext_path(iri: str) -> str:
    return f'context.extensions["{iri}"]'


ERROR_CASES: dict[str, tuple[Any, str | None]] = {
    "not an object": ([1, 2], None),
    "no actor": (without("actor"), "actor"),
    "actor without identifier": (lrs_statement(actor={"name": "Ada"}), "actor"),
    "actor with two identifiers": (
        lrs_statement(actor={"mbox": "mailto:a@b.c", "account": {"homePage": "h", "name": "n"}}),
        "actor",
    ),
    "group actor": (lrs_statement(actor={"objectType": "Group", "mbox": "mailto:a@b.c"}), "actor.objectType"),
    "mbox without mailto": (lrs_statement(actor={"mbox": "ada@example.org"}), "actor.mbox"),
    "bad sha1": (lrs_statement(actor={"mbox_sha1sum": "xyz"}), "actor.mbox_sha1sum"),
    "empty account name": (lrs_statement(actor={"account": {"homePage": "h", "name": ""}}), "actor.account.name"),
    "no verb": (without("verb"), "verb"),
    "other verb": (lrs_statement(verb={"id": "http://adlnet.gov/expapi/verbs/experienced"}), "verb"),
    "no object": (without("object"), "object"),
    "statement ref object": (
        lrs_statement(object={"objectType": "StatementRef", "id": STATEMENT_ID}),
        "object.objectType",
    ),
    "object without id": (lrs_statement(object={"objectType": "Activity"}), "object.id"),
    "no result": (without("result"), "result"),
    "empty result": (lrs_statement(result={"response": "b"}), "result"),
    "passed but unsuccessful": (
        lrs_statement(verb={"id": "http://adlnet.gov/expapi/verbs/passed"}, result={"success": False}),
        "result.success",
    ),
    "success as text": (lrs_statement(result={"success": "true"}), "result.success"),
    "negative scaled": (lrs_statement(result={"score": {"scaled": -0.5}}), "result.score.scaled"),
    "scaled above one": (lrs_statement(result={"score": {"scaled": 1.5}}), "result.score.scaled"),
    "scaled as bool": (lrs_statement(result={"score": {"scaled": True}}), "result.score.scaled"),
    "raw without max": (lrs_statement(result={"score": {"raw": 3}}), "result.score.max"),
    "max not above min": (lrs_statement(result={"score": {"raw": 3, "min": 5, "max": 5}}), "result.score.max"),
    "bad duration": (lrs_statement(result={"success": True, "duration": "90 seconds"}), "result.duration"),
    "duration in months": (lrs_statement(result={"success": True, "duration": "P1M"}), "result.duration"),
    "response not text": (lrs_statement(result={"success": True, "response": 3}), "result.response"),
    "bad id": (lrs_statement(id="not-a-uuid"), "id"),
    "bad registration": (lrs_statement(context={"registration": "r1"}), "context.registration"),
    "no time at all": ({k: v for k, v in lrs_statement().items() if k not in ("timestamp", "stored")}, "timestamp"),
    "timestamp without zone": (lrs_statement(timestamp="2024-03-05T10:30:15"), "timestamp"),
    "timestamp garbage": (lrs_statement(timestamp="yesterday"), "timestamp"),
    "stored garbage": (
        {k: v for k, v in lrs_statement(stored="soon").items() if k != "timestamp"},
        "stored",
    ),
    "attempt as text": (with_extension(EXT_ATTEMPT, "2"), ext_path(EXT_ATTEMPT)),
    "attempt zero": (with_extension(EXT_ATTEMPT, 0), ext_path(EXT_ATTEMPT)),
    "negative seq": (with_extension(EXT_SEQ, -1), ext_path(EXT_SEQ)),
    "concepts not a list": (with_extension(EXT_CONCEPTS, "fractions"), ext_path(EXT_CONCEPTS)),
    "concept not text": (with_extension(EXT_CONCEPTS, ["a", 2]), ext_path(EXT_CONCEPTS) + "[1]"),
    "empty concept": (with_extension(EXT_CONCEPTS, ["a", " "]), ext_path(EXT_CONCEPTS)),
    "empty event id": (with_extension(EXT_EVENT_ID, ""), ext_path(EXT_EVENT_ID)),
    "empty tenant": (with_extension(EXT_TENANT, ""), ext_path(EXT_TENANT)),
    "blank item id": (lrs_statement(object={"id": " "}), "object.id"),
}


@pytest.mark.parametrize(("statement", "field"), ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_errors_name_the_json_path(statement: Any, field: str | None) -> None:
    error = error_of(statement)
    assert error.field == field
    if field is not None:
        assert repr(field) in str(error)


def test_statement_for_another_tenant_is_rejected() -> None:
    error = error_of(event_to_statement(make_event()), tenant="school-8")
    assert error.field == ext_path(EXT_TENANT)
    assert "school-7" in error.reason


def test_error_reasons_are_readable() -> None:
    assert "verbs/experienced" in error_of(ERROR_CASES["other verb"][0]).reason
    assert "exactly one of mbox" in error_of(ERROR_CASES["actor with two identifiers"][0]).reason
    assert "negative" in error_of(ERROR_CASES["negative scaled"][0]).reason
    assert "'90 seconds'" in error_of(ERROR_CASES["bad duration"][0]).reason
    assert "time zone" in error_of(ERROR_CASES["timestamp without zone"][0]).reason


def test_the_input_statement_is_not_changed() -> None:
    statement = lrs_statement()
    before = copy.deepcopy(statement)
    statement_to_event(statement)
    assert statement == before


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT12.345S", 12345),
        ("PT1M30S", 90_000),
        ("PT90S", 90_000),
        ("PT1H", 3_600_000),
        ("P1DT2H3M4.5S", 93_784_500),
        ("P2W", 1_209_600_000),
        ("P0Y0M1D", 86_400_000),
        ("PT0S", 0),
        ("PT0.0005S", 0),
        ("PT0.0015S", 2),
        ("PT1,5S", 1500),
        ("PT0.001S", 1),
    ],
)
def test_parse_iso_duration(text: str, ms: int) -> None:
    assert parse_iso_duration(text) == ms


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1M", "PT1.5.5S", "PT-1S", "P1Y", "PT1S ", "pt1s", "PT1H2D"])
def test_parse_iso_duration_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_iso_duration(text)
    assert info.value.field == "result.duration"


@pytest.mark.parametrize(
    ("ms", "text"), [(12345, "PT12.345S"), (12000, "PT12S"), (12300, "PT12.3S"), (0, "PT0S"), (5, "PT0.005S")]
)
def test_format_iso_duration(ms: int, text: str) -> None:
    assert format_iso_duration(ms) == text
    assert parse_iso_duration(text) == ms
