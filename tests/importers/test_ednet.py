"""The EdNet KT1 importer: per-learner files scored against contents/questions.csv."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from knowtrace.events.catalog import Item
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers.base import RawEvent, Rejection
from knowtrace.importers.ednet import EdnetKt1Importer

QUESTIONS = """question_id,bundle_id,explanation_id,correct_answer,part,tags,deployed_at
q1,b1,e1,b,1,1;2;179,1558093217098
q2,b2,e2,a,1,-1,1558093219720
q3,b2,e3,c,2,7,1558093222784
"""
HEADER = "timestamp,solving_id,question_id,user_answer,elapsed_time\n"


def split(records: list) -> tuple[list[RawEvent], list[Rejection], list[Item]]:
    events = [r for r in records if isinstance(r, RawEvent)]
    for event in events:
        InteractionEvent.model_validate(event.fields)
    return events, [r for r in records if isinstance(r, Rejection)], [r for r in records if isinstance(r, Item)]


def read(path: Path, **options: Any) -> tuple[list[RawEvent], list[Rejection], list[Item]]:
    return split(list(EdnetKt1Importer(**options).read(path)))


@pytest.fixture
def ednet(tmp_path: Path) -> Path:
    """An EdNet-like tree: KT1/u2.csv, KT1/u10.csv and contents/questions.csv; returns the KT1 folder."""
    (tmp_path / "contents").mkdir()
    (tmp_path / "contents" / "questions.csv").write_text(QUESTIONS)
    kt1 = tmp_path / "KT1"
    kt1.mkdir()
    (kt1 / "u10.csv").write_text(HEADER + "1565096190868,1,q1,b,38000\n1565096190868,1,q2,c,38000\n")
    (kt1 / "u2.csv").write_text(HEADER + "1565096221062,1,q3,c,24000\n1565096293432,2,q404,a,1000\n"
                                         "1565096293999,3,q1,a,oops\n")
    (kt1 / "notes.txt").write_text("not a learner file")
    return kt1


def test_folder_of_learners(ednet: Path) -> None:
    importer = EdnetKt1Importer()
    events, rejections, items = split(list(importer.read(ednet)))
    assert [(e.fields["learner_id"], e.fields["item_id"], e.fields["correct"]) for e in events] == [
        ("u2", "q3", 1), ("u10", "q1", 1), ("u10", "q2", 0),  # natural order: u2 before u10
    ]
    first = events[1].fields
    assert first["timestamp"] == datetime(2019, 8, 6, 12, 56, 30, 868000, tzinfo=timezone.utc)
    assert first["session_id"] == "u10:1" and first["elapsed_ms"] == 38000 and first["response"] == "b"
    assert first["concept_ids"] == ("1", "2", "179") and first["seq"] == 0
    assert events[2].fields["concept_ids"] == ()  # tag -1: no concept
    assert events[2].fields["seq"] == 1
    assert [(Path(r.file).name, r.line, r.field) for r in rejections] == [
        ("u2.csv", 3, "question_id"), ("u2.csv", 4, "elapsed_time"),
    ]
    assert "q404" in rejections[0].reason
    assert importer.rows_read == 5
    assert [(i.item_id, i.concept_ids, i.metadata) for i in items] == [
        ("q3", ("7",), {"part": "2", "bundle_id": "b2"}),
        ("q1", ("1", "2", "179"), {"part": "1", "bundle_id": "b1"}),
        ("q2", (), {"part": "1", "bundle_id": "b2"}),
    ]


def test_single_file_and_explicit_questions(ednet: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "answers.csv"
    elsewhere.write_text(QUESTIONS.replace("q1,b1,e1,b", "q1,b1,e1,d"))
    events, _, _ = read(ednet / "u10.csv", questions=elsewhere, tenant="santa")
    assert [e.fields["correct"] for e in events] == [0, 0]
    assert {e.fields["tenant"] for e in events} == {"santa"}
    assert EdnetKt1Importer(questions=elsewhere).options() == {"tenant": "default", "questions": str(elsewhere)}


def test_questions_csv_must_be_found(tmp_path: Path) -> None:
    (tmp_path / "KT1").mkdir()
    (tmp_path / "KT1" / "u1.csv").write_text(HEADER + "1565096190868,1,q1,b,38000\n")
    with pytest.raises(InputError, match="questions.csv"):
        read(tmp_path / "KT1")
    with pytest.raises(UnreadableFileError, match="no such file"):
        read(tmp_path / "KT1", questions=tmp_path / "nope.csv")


def test_unreadable_learner_file(ednet: Path) -> None:
    (ednet / "u3.csv").write_text("")
    (ednet / "u4.csv").write_text("timestamp,question_id\n1,q1\n")
    events, rejections, _ = read(ednet)
    assert len(events) == 3  # the other learners are still read
    unread = [(Path(r.file).name, r.line) for r in rejections if r.line is None]
    assert unread == [("u3.csv", None), ("u4.csv", None)]
    with pytest.raises(UnreadableFileError, match="empty"):
        read(ednet / "u3.csv")
    with pytest.raises(UnreadableFileError, match="user_answer"):
        read(ednet / "u4.csv")


def test_bad_rows(ednet: Path) -> None:
    path = ednet / "u5.csv"
    path.write_bytes(HEADER.encode() + b"yesterday,1,q1,b,1\n1565096190868,,q1,b,1\n1565096190868,1,q1,\xe9,1\n"
                     b"1565096190868,1,q1\n")
    events, rejections, _ = read(path)
    assert events == []
    assert [(r.line, r.field) for r in rejections] == [(2, "timestamp"), (3, "solving_id"), (4, "user_answer"),
                                                       (5, None)]


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="no u"):
        read(tmp_path)
    with pytest.raises(UnreadableFileError, match="no such file"):
        read(tmp_path / "absent")


@pytest.mark.realdata
def test_real_kt1_user(shared_data: Path) -> None:
    importer = EdnetKt1Importer()
    events, rejections, items = split(list(importer.read(shared_data / "ednet_sample" / "KT1" / "u1.csv")))
    assert rejections == []  # every question id is in questions.csv
    assert len(events) == 1082 and importer.rows_read == 1082
    assert round(sum(e.fields["correct"] for e in events) / len(events), 4) == 0.6959
    assert len(items) == 926
    assert len({e.fields["session_id"] for e in events}) == 671
    stamps = [e.fields["timestamp"] for e in events]
    assert stamps[0] == datetime(2019, 8, 6, 12, 56, 30, 868000, tzinfo=timezone.utc)
    assert max(stamps) == datetime(2019, 9, 28, 5, 10, 43, 41000, tzinfo=timezone.utc)
    assert len({InteractionEvent(**e.fields).event_id for e in events}) == 1082
