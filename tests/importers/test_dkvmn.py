from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from knowtrace.events.catalog import Item
from knowtrace.exceptions import UnreadableFileError
from knowtrace.importers import DkvmnImporter, RawEvent, Rejection


def records(path: Path, **options) -> list:
    return list(DkvmnImporter(**options).read(path))


def write(tmp_path: Path, text: str | bytes, name: str = "split_train.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_reads_learners_in_order_with_ids_from_file_and_record(tmp_path: Path) -> None:
    path = write(tmp_path, "3\n5,5,7\n0,1,1\n2\n7,9\n1,0\n")
    events = [r for r in records(path) if isinstance(r, RawEvent)]
    assert [(e.fields["learner_id"], e.fields["item_id"], e.fields["correct"], e.fields["seq"]) for e in events] == [
        ("split_train:1", "5", "0", 0), ("split_train:1", "5", "1", 1), ("split_train:1", "7", "1", 2),
        ("split_train:2", "7", "1", 0), ("split_train:2", "9", "0", 1),
    ]
    assert events[0].line == 3 and events[3].line == 6


def test_trailing_commas_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "2\n82,82,\n0,1,\n")
    events = [r for r in records(path) if isinstance(r, RawEvent)]
    assert len(events) == 2 and not [r for r in records(path) if isinstance(r, Rejection)]


def test_items_emitted_once_with_concepts_from_map(tmp_path: Path) -> None:
    qmatrix = write(tmp_path, "1,0,0\n0,0,1\n", "q.csv")
    path = write(tmp_path, "3\n1,2,1\n1,1,0\n")
    items = [r for r in records(path, concept_map=qmatrix) if isinstance(r, Item)]
    assert [(i.item_id, i.concept_ids) for i in items] == [("1", ("1",)), ("2", ("3",))]


def test_ids_as_concepts(tmp_path: Path) -> None:
    path = write(tmp_path, "1\n4\n1\n")
    event = next(r for r in records(path, ids_are="concepts") if isinstance(r, RawEvent))
    assert event.fields["concept_ids"] == ("4",)


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        ("3\n1,2,3\n0,2,1\n", 3, "answers", "answer 2 is '2', expected 0 or 1"),
        ("3\n1,2\n0,1\n", 1, "length", "length line says 3 but the record has 2 answers"),
        ("2\n1,2\n0,1,1\n", 3, "answers", "2 ids but 3 answers"),
        ("x\n", 1, "length", "expected a length line"),
        ("2\n1,2\n", 1, "record", "truncated record 2"),
    ],
)
def test_corrupt_record_is_rejected_with_line_and_reason(tmp_path: Path, text: str, line: int, field: str,
                                                         reason: str) -> None:
    path = write(tmp_path, "1\n9\n1\n" + text)
    out = records(path)
    rejections = [r for r in out if isinstance(r, Rejection)]
    assert len(rejections) >= 1
    first = rejections[0]
    assert first.line == line + 3 and first.field == field and reason in first.reason
    assert [r.fields["learner_id"] for r in out if isinstance(r, RawEvent)][:1] == ["split_train:1"]


def test_non_utf8_byte_rejects_only_that_record(tmp_path: Path) -> None:
    path = write(tmp_path, b"1\n9\n1\n2\n1,\xff\n0,1\n1\n3\n0\n")
    out = records(path)
    rejections = [r for r in out if isinstance(r, Rejection)]
    assert len(rejections) == 1 and "not valid UTF-8: byte 0xff" in rejections[0].reason and rejections[0].line == 5
    assert Counter(r.fields["learner_id"] for r in out if isinstance(r, RawEvent)) == {"split_train:1": 1,
                                                                                       "split_train:3": 1}


def test_empty_and_missing_files_fail_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="empty"):
        records(write(tmp_path, ""))
    with pytest.raises(UnreadableFileError, match="no such file"):
        records(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("folder", "name", "learners", "answers"),
    [
        ("assist2009_updated", "assist2009_updated_train.csv", 2921, 224218),
        ("assist2009_updated", "assist2009_updated_test.csv", 1230, 101419),
        ("STATICS", "STATICS_train.csv", 229, 130184),
        ("dkt_assistments", "builder_train.csv", 3361, 407967),
        ("dkt_assistments", "builder_test.csv", 856, 117567),
    ],
)
def test_real_splits_match_their_provenance_counts(shared_data: Path, folder: str, name: str, learners: int,
                                                    answers: int) -> None:
    out = records(shared_data / folder / name)
    events = [r for r in out if isinstance(r, RawEvent)]
    assert not [r for r in out if isinstance(r, Rejection)]
    assert len(events) == answers
    assert len({e.fields["learner_id"] for e in events}) == learners


def test_statics_qmatrix_gives_one_skill_per_item(shared_data: Path) -> None:
    items = [r for r in records(shared_data / "STATICS" / "STATICS_test.csv",
                                concept_map=shared_data / "STATICS" / "Qmatrix.csv") if isinstance(r, Item)]
    assert len(items) == 1218 and all(len(i.concept_ids) == 1 for i in items)
