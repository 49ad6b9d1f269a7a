from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from knowtrace.events import EventSource, InteractionEvent, derive_event_id


def test_outcome_fields_derive_each_other() -> None:
    assert InteractionEvent(learner_id="a", item_id="q", correct=0).score == 0.0
    assert InteractionEvent(learner_id="a", item_id="q", score=1.0).correct == 1
    assert InteractionEvent(learner_id="a", item_id="q", score=0.5).correct == 0
    with pytest.raises(ValidationError, match="needs correct"):
        InteractionEvent(learner_id="a", item_id="q")


@pytest.mark.parametrize("bad", [2, -1, 0.5, "yes", "2"])
def test_correct_must_be_binary(bad: object) -> None:
    with pytest.raises(ValidationError, match="correct must be 0 or 1"):
        InteractionEvent(learner_id="a", item_id="q", correct=bad)


def test_timestamps_must_be_aware_and_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        InteractionEvent(learner_id="a", item_id="q", correct=1, timestamp=datetime(2026, 1, 1))
    event = InteractionEvent(learner_id="a", item_id="q", correct=1,
                             timestamp=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)


def test_event_id_is_deterministic_and_content_sensitive() -> None:
    base = {"learner_id": "ada", "item_id": "q1", "correct": 1, "seq": 3}
    one = InteractionEvent(**base)
    assert one.event_id == InteractionEvent(**base).event_id
    assert one.event_id == InteractionEvent(**{**base, "correct": "1", "learner_id": " ada "}).event_id
    for change in ({"correct": 0}, {"seq": 4}, {"tenant": "other"}, {"learner_id": "bob"}, {"response": "-"}):
        assert InteractionEvent(**{**base, **change}).event_id != one.event_id, change
    assert InteractionEvent(**base, event_id="given").event_id == "given"


def test_event_id_parts_cannot_run_into_each_other() -> None:
    a = derive_event_id({"learner_id": "a1:b", "item_id": "c"})
    b = derive_event_id({"learner_id": "a", "item_id": "b1:c"})
    assert a != b


def test_concepts_are_deduplicated_in_order_and_extra_fields_refused() -> None:
    event = InteractionEvent(learner_id="a", item_id="q", correct=1, concept_ids=["x", "y", "x"])
    assert event.concept_ids == ("x", "y") and event.source is EventSource.IMPORT
    with pytest.raises(ValidationError, match="extra"):
        InteractionEvent(learner_id="a", item_id="q", correct=1, colour="red")


@pytest.mark.parametrize(("field", "value"), [("learner_id", ""), ("elapsed_ms", -1), ("attempt", 0),
                                              ("score", 1.5), ("score", float("nan"))])
def test_field_ranges(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        InteractionEvent(**{"learner_id": "a", "item_id": "q", "correct": 1, field: value})
    assert info.value.errors()[0]["loc"] == (field,)
