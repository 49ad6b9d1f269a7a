"""The CSV and Parquet table importers and their column mapping."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers import table as table_module
from knowtrace.importers.base import Importer, RawEvent, Rejection
from knowtrace.importers.table import CsvImporter, ParquetImporter

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)
MAPPING = {"learner_id": "user", "item_id": "question", "correct": "is_correct", "timestamp": "ts",
           "concept_ids": "skills"}


def read(importer: Importer, path: Path) -> tuple[list[RawEvent], list[Rejection]]:
    records = list(importer.read(path))
    events = [r for r in records if isinstance(r, RawEvent)]
    for event in events:
        InteractionEvent.model_validate(event.fields)
    assert len(events) + len([r for r in records if isinstance(r, Rejection)]) == len(records)
    return events, [r for r in records if isinstance(r, Rejection)]


def write(tmp_path: Path, text: str | bytes, name: str = "answers.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_identity_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "learner_id,item_id,correct,timestamp,score,extra\n"
                           "ann,q1,1,2024-03-01T09:30:00Z,,ignored\n"
                           "ann,q2,,2024-03-01T10:30:00+01:00,0.5,ignored\n")
    events, rejections = read(CsvImporter(), path)
    assert rejections == []
    assert events[0].fields == {"tenant": "default", "source": "import", "learner_id": "ann", "item_id": "q1",
                                "correct": 1, "timestamp": T0}  # empty score left out, extra column ignored
    assert events[1].fields["timestamp"] == T0 and events[1].fields["score"] == 0.5
    assert "correct" not in events[1].fields
    assert [e.line for e in events] == [2, 3]


def test_dict_mapping_epoch_ms_and_concepts(tmp_path: Path) -> None:
    path = write(tmp_path, "user,question,is_correct,ts,skills\nann,q1,true,1709285400000,fractions; decimals\n")
    importer = CsvImporter(columns=MAPPING, timestamp_unit="ms", constants={"tenant": "school-a"})
    events, _ = read(importer, path)
    fields = events[0].fields
    assert fields["timestamp"] == T0 and fields["correct"] == 1
    assert fields["concept_ids"] == ("fractions", "decimals")
    assert fields["tenant"] == "school-a"
    assert importer.options()["columns"] == MAPPING


def test_yaml_mapping(tmp_path: Path) -> None:
    mapping = write(tmp_path, """
columns: {learner_id: user, item_id: question, correct: is_correct, timestamp: ts, concept_ids: skills}
concept_separator: "|"
timestamp_format: "%d/%m/%Y %H:%M"
timezone: Europe/Paris
constants: {session_id: exam}
""", "mapping.yaml")
    path = write(tmp_path, "user,question,is_correct,ts,skills\nann,q1,0,01/03/2024 10:30,a|b\n")
    events, rejections = read(CsvImporter(mapping=mapping), path)
    assert rejections == []
    assert events[0].fields["timestamp"] == T0  # 10:30 in Paris (UTC+1 in March)
    assert events[0].fields["concept_ids"] == ("a", "b")
    assert events[0].fields["session_id"] == "exam"


def test_bad_mappings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'concept_sep'") as info:
        CsvImporter(mapping=write(tmp_path, "columns: {learner_id: u}\nconcept_sep: ';'\n", "m.yaml"))
    assert info.value.field == "concept_sep"
    with pytest.raises(InputError, match="'learner'"):
        CsvImporter(columns={"learner": "u", "item_id": "i", "correct": "c"})
    with pytest.raises(InputError, match="correct or score"):
        CsvImporter(columns={"learner_id": "u", "item_id": "i"})
    with pytest.raises(InputError, match="timestamp_unit"):
        CsvImporter(columns=MAPPING, timestamp_unit="minutes")
    with pytest.raises(InputError, match="time zone"):
        CsvImporter(columns=MAPPING, timezone="Mars/Olympus")
    with pytest.raises(InputError, match="not both"):
        CsvImporter(columns=MAPPING, mapping=tmp_path / "m.yaml")
    with pytest.raises(InputError, match="YAML"):
        CsvImporter(mapping=write(tmp_path, "columns: {a: [\n", "broken.yaml"))
    with pytest.raises(UnreadableFileError, match="not found"):
        CsvImporter(mapping=tmp_path / "absent.yaml")


def test_bad_rows_are_rejected_with_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, b'user,question,is_correct,ts,skills\n'
                           b'ann,q1,maybe,2024-03-01T09:30:00Z,\n'
                           b'ann,q1,1,2024-03-01 09:30:00,\n'
                           b',q1,1,2024-03-01T09:30:00Z,\n'
                           b'ann,q1,,2024-03-01T09:30:00Z,\n'
                           b'ann,q1,1,March 1st,\n'
                           b'ann,q\xe91,1,2024-03-01T09:30:00Z,\n'
                           b'"ann\nbob",q2,1,2024-03-01T09:30:00Z,\n'
                           b'ann,q3,1\n'
                           b'ann,q4,1,2024-03-01T09:30:00Z,\n')
    importer = CsvImporter(columns=MAPPING)
    events, rejections = read(importer, path)
    assert [(r.line, r.field) for r in rejections] == [
        (2, "is_correct"), (3, "ts"), (4, "user"), (5, "is_correct"), (6, "ts"), (7, "question"), (10, None),
    ]
    assert "no time zone" in rejections[1].reason and "timezone" in rejections[1].reason
    assert "0xe9" in rejections[5].reason
    assert [(e.fields["learner_id"], e.line) for e in events] == [("ann\nbob", 8), ("ann", 11)]
    assert importer.rows_read == 9


def test_naive_timestamps_with_a_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, "user,question,is_correct,ts,skills\nann,q1,1,2024-03-01 04:30:00,\n")
    events, _ = read(CsvImporter(columns=MAPPING, timezone="America/New_York"), path)
    assert events[0].fields["timestamp"] == T0


def test_unreadable_csv(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="'ts'.*the columns are 'user', 'question'"):
        list(CsvImporter(columns=MAPPING).read(write(tmp_path, "user,question,is_correct,time,skills\n")))
    with pytest.raises(UnreadableFileError, match="learner_id"):
        list(CsvImporter().read(write(tmp_path, "user,item_id,correct\nann,q1,1\n")))
    with pytest.raises(UnreadableFileError, match="empty"):
        list(CsvImporter().read(write(tmp_path, "")))


def parquet_table() -> pa.Table:
    return pa.table({
        "user": ["ann", "ann", "bob", None],
        "question": ["q1", "q2", "q1", "q1"],
        "is_correct": [1, 0, None, 1],
        "ts": pa.array([T0, T0, T0, T0], type=pa.timestamp("ns", tz="UTC")),
        "skills": [["a", "b"], [], None, ["a"]],
        "unused": [1.5, 2.5, 3.5, 4.5],
    })


def test_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "answers.parquet"
    pq.write_table(parquet_table(), path, row_group_size=2)
    monkeypatch.setattr(table_module, "_BATCH_ROWS", 3)  # rows numbered across batches
    importer = ParquetImporter(columns=MAPPING)
    events, rejections = read(importer, path)
    assert [(e.fields["learner_id"], e.fields["item_id"], e.fields["concept_ids"], e.line) for e in events] == [
        ("ann", "q1", ("a", "b"), 1), ("ann", "q2", (), 2),
    ]
    assert events[0].fields["timestamp"] == T0
    assert [(r.line, r.field) for r in rejections] == [(3, "is_correct"), (4, "user")]
    assert importer.rows_read == 4


def test_csv_and_parquet_give_the_same_events(tmp_path: Path) -> None:
    rows = {"learner_id": ["ann", "bob"], "item_id": ["q1", "q2"], "correct": [1, 0], "seq": [0, 1],
            "elapsed_ms": [1200, 800], "session_id": ["s1", "s2"], "concept_ids": ["a;b", "c"],
            "timestamp": ["2024-03-01T09:30:00+00:00", "2024-03-01T09:31:00+00:00"]}
    csv_path = write(tmp_path, "\n".join([",".join(rows)] + [",".join(str(v[i]) for v in rows.values())
                                                              for i in range(2)]) + "\n")
    parquet_path = tmp_path / "answers.parquet"
    typed: dict[str, Any] = {**rows, "timestamp": [datetime.fromisoformat(t) for t in rows["timestamp"]],
                             "concept_ids": [["a", "b"], ["c"]]}
    pq.write_table(pa.table(typed), parquet_path)
    from_csv, _ = read(CsvImporter(), csv_path)
    from_parquet, _ = read(ParquetImporter(), parquet_path)
    assert [InteractionEvent(**e.fields) for e in from_csv] == [InteractionEvent(**e.fields) for e in from_parquet]
    assert from_csv[0].fields["concept_ids"] == ("a", "b") and from_csv[0].fields["elapsed_ms"] == 1200


def test_unreadable_parquet(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="not a Parquet file"):
        list(ParquetImporter().read(write(tmp_path, "learner_id,item_id,correct\nann,q1,1\n")))
    with pytest.raises(UnreadableFileError, match="empty"):
        list(ParquetImporter().read(write(tmp_path, b"", "empty.parquet")))
    with pytest.raises(UnreadableFileError, match="no such file"):
        list(ParquetImporter().read(tmp_path / "absent.parquet"))
    path = tmp_path / "answers.parquet"
    pq.write_table(parquet_table(), path)
    with pytest.raises(UnreadableFileError, match="'learner'.*'user'"):
        list(ParquetImporter(columns={**MAPPING, "learner_id": "learner"}).read(path))
