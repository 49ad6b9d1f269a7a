"""The ASSISTments importer: multi-skill rows merged into one event, wherever they are in the file."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from knowtrace.events.catalog import Concept, Item
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import UnreadableFileError
from knowtrace.importers.assistments import AssistmentsImporter
from knowtrace.importers.base import RawEvent, Rejection

HEADER_2009 = (
    "order_id,assignment_id,user_id,assistment_id,problem_id,original,correct,attempt_count,ms_first_response,"
    "tutor_mode,answer_type,sequence_id,student_class_id,position,type,base_sequence_id,skill_id,skill_name,"
    "teacher_id,school_id,hint_count,hint_total,overlap_time,template_id,answer_id,answer_text,first_action,"
    "bottom_hint,opportunity,opportunity_original"
).split(",")


def row(order: Any, user: Any, problem: Any, correct: Any, skill: Any = "", name: str = "", **extra: Any) -> dict:
    """One 2009-style row; columns not given get plausible values."""
    values = {column: "" for column in HEADER_2009}
    values.update(
        order_id=order, assignment_id=277618, user_id=user, assistment_id=33139, problem_id=problem, original=1,
        correct=correct, attempt_count=1, ms_first_response=32454, tutor_mode="tutor", answer_type="algebra",
        sequence_id=5948, student_class_id=13241, position=126, type="MasteryLearning", base_sequence_id=5948,
        skill_id=skill, skill_name=name, teacher_id=22763, school_id=73, hint_count=0, hint_total=3,
        overlap_time=32454, template_id=30799, answer_text="26", first_action=0, opportunity=1,
        opportunity_original=1,
    )
    values.update(extra)
    return values


def write(path: Path, rows: list[dict], header: list[str] = HEADER_2009, encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read(path: Path, **options: Any) -> tuple[list[RawEvent], list[Rejection], list[Item], list[Concept], int]:
    importer = AssistmentsImporter(**options)
    records = list(importer.read(path))
    events = [r for r in records if isinstance(r, RawEvent)]
    for event in events:  # every event the importer yields is a valid canonical event
        InteractionEvent.model_validate(event.fields)
    return (
        events,
        [r for r in records if isinstance(r, Rejection)],
        [r for r in records if isinstance(r, Item)],
        [r for r in records if isinstance(r, Concept)],
        importer.rows_read,
    )


@pytest.fixture
def skill_builder(tmp_path: Path) -> Path:
    """A small skill-builder file: multi-skill orders adjacent and not, one bad row."""
    rows = [
        row(100, 7, 51, 1, 1, "Box and Whisker"),            # line 2: order 100, two adjacent skills
        row(100, 7, 51, 1, 2, "Circle Graph"),               # line 3
        row(101, 7, 52, 0, 1, "Box and Whisker"),            # line 4: order 101 ... continues at line 8
        row(102, 8, 51, 1, 1, "Box and Whisker", ms_first_response=-7759),  # line 5: negative time
        row(103, 8, 53, 2, 1, "Box and Whisker"),            # line 6: bad correct
        row(104, 8, 54, 0, "", "", attempt_count=0),         # line 7: no skill
        row(101, 7, 52, 0, 3, "Histogram"),                  # line 8: order 101 again, far from line 4
        row(105, 9, 55, 0.5, 3, "Histogram"),                # line 9: partial credit
        row(100, 7, 51, 1, 3, "Histogram"),                  # line 10: order 100, a third skill
        row(106, 9, 56, 1, "9_15", "Ordering_Decimals"),     # line 11: collapsed multi-skill id
    ]
    return write(tmp_path / "skill_builder_data.csv", rows)


def test_each_answer_is_one_event_with_all_its_skills(skill_builder: Path) -> None:
    events, rejections, _, _, rows_read = read(skill_builder)
    by_order = {e.fields["seq"]: e for e in events}
    assert sorted(by_order) == [100, 101, 102, 104, 105, 106]
    assert len(events) == len(by_order)  # no answer counted twice
    assert by_order[100].fields["concept_ids"] == ("1", "2", "3")
    assert by_order[100].line == 2
    assert by_order[101].fields["concept_ids"] == ("1", "3")  # rows 4 and 8 merged
    assert by_order[104].fields["concept_ids"] == ()
    assert by_order[106].fields["concept_ids"] == ("9", "15")
    assert rows_read == 10
    assert [(r.line, r.field) for r in rejections] == [(6, "correct")]
    assert "2" in rejections[0].reason


def test_fields(skill_builder: Path) -> None:
    events, *_ = read(skill_builder, tenant="school")
    by_order = {e.fields["seq"]: e.fields for e in events}
    first = by_order[100]
    assert first["learner_id"] == "7" and first["item_id"] == "51" and first["correct"] == 1
    assert first["session_id"] == "277618" and first["response"] == "26"
    assert first["elapsed_ms"] == 32454 and first["attempt"] == 1
    assert first["tenant"] == "school" and first["source"] == "import"
    assert first["event_id"] == "assistments:order_id:100"
    assert first["timestamp"] is None
    assert by_order[102]["elapsed_ms"] is None  # negative ms_first_response: unknown, answer kept
    assert by_order[104]["attempt"] is None  # attempt_count 0
    assert by_order[105]["score"] == 0.5 and "correct" not in by_order[105]
    assert InteractionEvent(**by_order[105]).correct == 0


def test_items_and_concepts_once_each(skill_builder: Path) -> None:
    _, _, items, concepts, _ = read(skill_builder)
    assert {c.concept_id: c.name for c in concepts} == {
        "1": "Box and Whisker", "2": "Circle Graph", "3": "Histogram", "9": None, "15": None,
    }
    assert len(concepts) == 5
    skills = {i.item_id: i.concept_ids for i in items}
    assert len(items) == len(skills)
    assert skills == {"51": ("1", "2", "3"), "52": ("1", "3"), "54": (), "55": ("3",), "56": ("15", "9")}


def test_rows_of_one_order_that_disagree_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", [row(1, 7, 51, 1, 1), row(2, 7, 52, 1, 1), row(1, 8, 51, 1, 2)])
    events, rejections, *_ = read(path)
    assert len(events) == 2
    assert [(r.line, r.field) for r in rejections] == [(4, "user_id")]
    assert "line 2" in rejections[0].reason
    assert next(e for e in events if e.fields["seq"] == 1).fields["concept_ids"] == ("1",)


def test_2012_release_column_names(tmp_path: Path) -> None:
    header = ["problem_log_id", "skill", "problem_id", "user_id", "assignment_id", "start_time", "end_time",
              "correct", "attempt_count", "ms_first_response", "skill_id", "answer_text"]
    rows = [
        {"problem_log_id": 5, "skill": "Equation Solving", "problem_id": 9, "user_id": 3, "assignment_id": 1,
         "start_time": "2012-09-09 15:40:58.0", "end_time": "", "correct": 1, "attempt_count": 1,
         "ms_first_response": 1200, "skill_id": 40, "answer_text": "x=2"},
        {"problem_log_id": 6, "skill": "", "problem_id": 9, "user_id": 3, "assignment_id": 1,
         "start_time": "yesterday", "end_time": "", "correct": 0, "attempt_count": 1,
         "ms_first_response": 1200, "skill_id": "", "answer_text": ""},
    ]
    path = write(tmp_path / "2012.csv", rows, header=header)
    events, rejections, _, concepts, _ = read(path, timezone="America/New_York")
    assert len(events) == 1
    fields = events[0].fields
    assert fields["event_id"] == "assistments:problem_log_id:5"
    assert fields["timestamp"] == datetime(2012, 9, 9, 19, 40, 58, tzinfo=timezone.utc)
    assert fields["concept_ids"] == ("40",)
    assert [c.name for c in concepts] == ["Equation Solving"]
    assert [(r.line, r.field) for r in rejections] == [(3, "start_time")]


def test_latin1_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    write(path, [row(1, 7, 51, 1, 1, "Fractions", answer_text="caf\u00e9"), row(2, 7, 52, 0, 2, "R\u00e9sum\u00e9")],
          encoding="latin-1")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    events, rejections, _, concepts, _ = read(path)
    assert rejections == []
    assert {e.fields["response"] for e in events} == {"caf\u00e9", "26"}
    assert "R\u00e9sum\u00e9" in {c.name for c in concepts}


def test_non_utf8_byte_rejects_only_its_row_in_strict_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", [row(1, 7, 51, 1, 1, answer_text="A"), row(2, 7, 52, 0, 1)])
    path.write_bytes(path.read_bytes().replace(b",A,", b",\xff,"))
    events, rejections, *_ = read(path, encoding="utf-8")
    assert [e.fields["seq"] for e in events] == [2]
    assert [(r.line, r.field) for r in rejections] == [(2, "answer_text")]
    assert "0xff" in rejections[0].reason


def test_missing_required_column(tmp_path: Path) -> None:
    header = [c for c in HEADER_2009 if c != "correct"]
    path = write(tmp_path / "a.csv", [{k: v for k, v in row(1, 7, 51, 1).items() if k != "correct"}], header=header)
    with pytest.raises(UnreadableFileError, match="'correct'") as info:
        list(AssistmentsImporter().read(path))
    assert info.value.file == str(path)


def test_empty_and_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match="empty"):
        list(AssistmentsImporter().read(empty))
    with pytest.raises(UnreadableFileError, match="no such file"):
        list(AssistmentsImporter().read(tmp_path / "absent.csv"))


def test_short_row_and_empty_ids_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", [row(1, "", 51, 1), row(2, 7, 52, 1)])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("3,277618,7\n")
    events, rejections, _, _, rows_read = read(path)
    assert len(events) == 1 and rows_read == 3
    assert [(r.line, r.field) for r in rejections] == [(2, "user_id"), (4, None)]
    assert "cells" in rejections[1].reason


def test_options() -> None:
    assert AssistmentsImporter(tenant="t", encoding="latin-1").options() == {
        "tenant": "t", "encoding": "latin-1", "timezone": "UTC",
    }


def test_file_sorted_by_skill_merges_repeats_far_apart(tmp_path: Path) -> None:
    """The 2009-2010 release lists rows skill by skill: an order's rows can be thousands of rows apart."""
    rows = [row(order, order % 50, 1000 + order % 300, order % 2, skill) for skill in (1, 2) for order in range(3000)]
    events, rejections, _, _, rows_read = read(write(tmp_path / "sorted.csv", rows))
    assert rejections == [] and rows_read == 6000
    assert len(events) == 3000
    assert all(e.fields["concept_ids"] == ("1", "2") for e in events)
    assert {e.line for e in events} == set(range(2, 3002))
