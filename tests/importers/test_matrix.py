"""The response-matrix importer: one event per answered cell."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from knowtrace.events.catalog import Item
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import UnreadableFileError
from knowtrace.importers.base import RawEvent, Rejection
from knowtrace.importers.matrix import MatrixImporter


def read(path: Path, **options: Any) -> tuple[list[RawEvent], list[Rejection], list[Item]]:
    records = list(MatrixImporter(**options).read(path))
    events = [r for r in records if isinstance(r, RawEvent)]
    for event in events:
        InteractionEvent.model_validate(event.fields)
    return events, [r for r in records if isinstance(r, Rejection)], [r for r in records if isinstance(r, Item)]


def write(tmp_path: Path, text: str | bytes, name: str = "quiz.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_cells_become_events_in_column_order(tmp_path: Path) -> None:
    path = write(tmp_path, "q1,q2,q3\n1,0,NA\n,TRUE,0.0\n1.0,false,-\n")
    events, rejections, items = read(path)
    assert rejections == []
    assert [i.item_id for i in items] == ["q1", "q2", "q3"]
    assert [(e.fields["learner_id"], e.fields["item_id"], e.fields["correct"], e.fields["seq"], e.line)
            for e in events] == [
        ("quiz:1", "q1", 1, 0, 2), ("quiz:1", "q2", 0, 1, 2),
        ("quiz:2", "q2", 1, 1, 3), ("quiz:2", "q3", 0, 2, 3),
        ("quiz:3", "q1", 1, 0, 4), ("quiz:3", "q2", 0, 1, 4),
    ]
    assert all(e.fields["source"] == "import" and e.fields["tenant"] == "default" for e in events)


def test_learner_column_and_custom_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "student,a,b\nann,1,?\nbob,0,1\n,1,1\nann,0,0\n")
    importer = MatrixImporter(learner_column="student", missing=("?",), tenant="t")
    records = list(importer.read(path))
    events = [r for r in records if isinstance(r, RawEvent)]
    rejections = [r for r in records if isinstance(r, Rejection)]
    assert [(e.fields["learner_id"], e.fields["item_id"]) for e in events] == [("ann", "a"), ("bob", "a"), ("bob", "b")]
    assert [(r.line, r.field) for r in rejections] == [(4, "student"), (5, "student")]
    assert "line 2" in rejections[1].reason
    assert importer.rows_read == 4
    assert [i.item_id for i in records if isinstance(i, Item)] == ["a", "b"]
    assert importer.options() == {"tenant": "t", "learner_column": "student", "missing": ["?"]}


def test_bad_cells_are_rejected_naming_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, b"x,y\n1,2\nyes,0\n0,1,1\n1,\xff\n")
    events, rejections, _ = read(path)
    assert [(e.fields["learner_id"], e.fields["item_id"]) for e in events] == [("quiz:1", "x"), ("quiz:2", "y")]
    assert [(r.line, r.field) for r in rejections] == [(2, "y"), (3, "x"), (4, None), (5, "y")]
    assert "'2'" in rejections[0].reason and "0xff" in rejections[3].reason


def test_unreadable_matrices(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="more than once"):
        read(write(tmp_path, "a,b,a\n1,0,1\n"))
    with pytest.raises(UnreadableFileError, match="no column 'id'"):
        read(write(tmp_path, "a,b\n1,0\n"), learner_column="id")
    with pytest.raises(UnreadableFileError, match="no name"):
        read(write(tmp_path, ",a,b\n1,1,0\n"))
    with pytest.raises(UnreadableFileError, match="empty"):
        read(write(tmp_path, ""))
    with pytest.raises(UnreadableFileError, match="no item columns"):
        read(write(tmp_path, "id\nann\n"), learner_column="id")


@pytest.mark.realdata
def test_lsat(shared_data: Path) -> None:
    events, rejections, items = read(shared_data / "lsat" / "LSAT.csv")
    assert rejections == [] and len(events) == 5000
    assert len({e.fields["learner_id"] for e in events}) == 1000
    assert [i.item_id for i in items] == [f"Item {n}" for n in range(1, 6)]
    answers: dict[str, list[int]] = defaultdict(list)
    for event in events:
        answers[event.fields["item_id"]].append(event.fields["correct"])
    rates = [round(sum(v) / len(v), 3) for v in answers.values()]
    assert rates == [0.924, 0.709, 0.553, 0.763, 0.870]
    assert len({InteractionEvent(**e.fields).event_id for e in events}) == 5000
