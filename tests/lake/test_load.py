from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from knowtrace.events.catalog import Concept, Item
from knowtrace.exceptions import LakeError, QueryError, UnreadableFileError
from knowtrace.importers import DkvmnImporter, Importer, RawEvent, Record, Rejection
from knowtrace.lake import Lake


class ListImporter(Importer):
    """Yields the records it was given (a test double for any input format)."""

    def __init__(self, records: list[Record], fail_after: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.records = records
        self.fail_after = fail_after

    format = "test-list"

    def read(self, path: Path | None) -> Iterator[Record]:
        for n, record in enumerate(self.records):
            if self.fail_after is not None and n == self.fail_after:
                raise RuntimeError("disk on fire")
            self.rows_read += 1
            yield record

    def options(self) -> dict:
        return {"n": len(self.records), "first": repr(self.records[:1])}


def raw(learner: str, item: str, correct: object, seq: int, line: int, **more: object) -> RawEvent:
    return RawEvent({"learner_id": learner, "item_id": item, "correct": correct, "seq": seq, **more}, "mem", line)


def count(lake: Lake, table: str = "interactions") -> int:
    return lake.query(f"SELECT count(*) AS n FROM {table}").to_pylist()[0]["n"]


def dkvmn_file(tmp_path: Path, text: str, name: str = "tiny_train.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_lake_exposes_every_table(lake: Lake) -> None:
    for table in ("interactions", "items", "concepts", "learner_sequences", "item_stats", "concept_stats",
                  "quarantine", "loads", "bronze_interactions"):
        assert count(lake, table) == 0
    assert "position" in lake.query("SELECT * FROM interactions").schema.names


def test_load_is_idempotent_and_orders_learners(lake: Lake, tmp_path: Path) -> None:
    path = dkvmn_file(tmp_path, "3\n1,2,1\n0,1,1\n1\n2\n0\n")
    first = lake.load(DkvmnImporter(), path)
    assert (first.events, first.added, first.rejected) == (4, 4, 0)
    assert lake.load(DkvmnImporter(), path).skipped
    forced = lake.load(DkvmnImporter(), path, force=True)
    assert (forced.added, forced.duplicates) == (0, 4)
    assert count(lake) == 4 and count(lake, "bronze_interactions") == 8
    rows = lake.query("SELECT learner_id, item_id, correct, position FROM interactions").to_pylist()
    assert rows == [
        {"learner_id": "tiny_train:1", "item_id": "1", "correct": 0, "position": 0},
        {"learner_id": "tiny_train:1", "item_id": "2", "correct": 1, "position": 1},
        {"learner_id": "tiny_train:1", "item_id": "1", "correct": 1, "position": 2},
        {"learner_id": "tiny_train:2", "item_id": "2", "correct": 0, "position": 0},
    ]
    sequences = lake.query("SELECT learner_id, item_ids, corrects FROM learner_sequences").to_pylist()
    assert sequences[0] == {"learner_id": "tiny_train:1", "item_ids": ["1", "2", "1"], "corrects": [0, 1, 1]}


def test_same_content_from_two_files_is_not_the_same_learner(lake: Lake, tmp_path: Path) -> None:
    text = "2\n1,2\n0,1\n"
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, text, "a_train.csv"))
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, text, "a_test.csv"))
    assert lake.query("SELECT count(DISTINCT learner_id) AS n FROM interactions").to_pylist() == [{"n": 2}]


def test_bad_records_are_quarantined_with_line_field_and_reason(lake: Lake, tmp_path: Path) -> None:
    path = dkvmn_file(tmp_path, "2\n1,2\n0,1\n2\n1,2\n0,7\n1\n3\n1\n")
    report = lake.load(DkvmnImporter(), path)
    assert (report.events, report.rejected) == (3, 1)
    bad = lake.query("SELECT source_file, line, field, reason, load_id FROM quarantine").to_pylist()
    assert bad == [{"source_file": str(path), "line": 6, "field": "answers",
                    "reason": "record 2 (learner tiny_train:2): answer 2 is '7', expected 0 or 1",
                    "load_id": report.load_id}]


def test_validation_failures_are_quarantined_naming_the_field(lake: Lake) -> None:
    records = [raw("ada", "q1", 1, 0, 1), raw("ada", "q2", 1, 1, 2, elapsed_ms=-5),
               raw("bob", "q1", 1, 0, 3, timestamp="2026-01-01T10:00:00")]
    report = lake.load(ListImporter(records), None)
    assert (report.events, report.rejected) == (1, 2)
    bad = lake.query("SELECT line, field, reason FROM quarantine ORDER BY line").to_pylist()
    assert [(b["line"], b["field"]) for b in bad] == [(2, "elapsed_ms"), (3, "timestamp")]
    assert "timezone" in bad[1]["reason"]


def test_failed_load_leaves_nothing_visible(lake: Lake, tmp_path: Path) -> None:
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, "1\n1\n1\n"))
    records = [raw("ada", f"q{i}", 1, i, i + 1) for i in range(100)]
    with pytest.raises(RuntimeError, match="disk on fire"):
        lake.load(ListImporter(records, fail_after=50), None)
    assert count(lake) == 1 and count(lake, "bronze_interactions") == 1 and count(lake, "loads") == 1
    assert not any(lake.layout.staging.iterdir())
    assert len(list(lake.layout.bronze("interactions").iterdir())) == 1


def test_crash_between_publish_and_commit_is_cleaned_up(lake: Lake, tmp_path: Path) -> None:
    path = dkvmn_file(tmp_path, "1\n1\n1\n")
    report = lake.load(DkvmnImporter(), path)
    # simulate a writer killed after moving its files into bronze but before writing its manifest
    orphan = lake.layout.bronze("interactions") / "20990101T000000000000Z-dead00"
    shutil.copytree(lake.layout.bronze("interactions") / str(report.load_id), orphan)
    assert count(lake, "bronze_interactions") == 1  # uncommitted loads are never read
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, "1\n2\n0\n", "other_train.csv"))
    assert not orphan.exists()
    assert count(lake) == 2


def test_silver_lagging_behind_committed_loads_is_rebuilt(lake: Lake, tmp_path: Path) -> None:
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, "1\n1\n1\n"))
    report = lake.load(DkvmnImporter(), dkvmn_file(tmp_path, "1\n2\n0\n", "b_train.csv"))
    build = lake.current_build()
    assert build is not None and report.load_id in build["loads"]
    # a crash after the manifest but before the silver swap: point silver back at a build without it
    build_file = lake.root / "silver" / ".." / "build.json"
    info = json.loads(build_file.read_text())
    info["loads"].remove(report.load_id)
    build_file.write_text(json.dumps(info))
    lake.rebuild()
    assert count(lake) == 2 and report.load_id in (lake.current_build() or {})["loads"]


def test_catalog_records_fill_items_and_concepts(lake: Lake) -> None:
    records: list[Record] = [
        Concept(concept_id="add", name="Addition"),
        Concept(concept_id="mul", name="Multiplication", prerequisites=("add",)),
        Item(item_id="q1", concept_ids=("mul",), a=1.2, b=0.3),
        raw("ada", "q1", 1, 0, 1), raw("ada", "q9", 0, 1, 2, concept_ids=["add"]),
    ]
    lake.load(ListImporter(records), None)
    items = lake.query("SELECT item_id, concept_ids, a, b FROM items ORDER BY item_id").to_pylist()
    assert items == [{"item_id": "q1", "concept_ids": ["mul"], "a": 1.2, "b": 0.3},
                     {"item_id": "q9", "concept_ids": ["add"], "a": None, "b": None}]
    concepts = lake.query("SELECT concept_id, name, prerequisites FROM concepts").to_pylist()
    assert concepts == [{"concept_id": "add", "name": "Addition", "prerequisites": []},
                        {"concept_id": "mul", "name": "Multiplication", "prerequisites": ["add"]}]


def test_timestamps_order_before_seq_and_are_utc(lake: Lake) -> None:
    records = [raw("ada", "late", 1, 0, 1, timestamp="2026-01-02T00:00:00+01:00"),
               raw("ada", "early", 0, 1, 2, timestamp="2026-01-01T00:00:00-05:00")]
    lake.load(ListImporter(records), None)
    rows = lake.query("SELECT item_id, position, CAST(timestamp AS VARCHAR) AS ts FROM interactions").to_pylist()
    assert [r["item_id"] for r in rows] == ["early", "late"]
    assert rows[0]["ts"].startswith("2026-01-01 05:00:00")


def test_tables_are_plain_parquet_that_other_readers_open(lake: Lake, tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")
    lake.load(DkvmnImporter(), dkvmn_file(tmp_path, "2\n1,2\n0,1\n"))
    frame = polars.read_parquet(lake.root / "silver" / "interactions" / "*.parquet")
    assert frame.height == 2 and frame["position"].to_list() == [0, 1]
    assert pq.read_table(lake.root / "gold" / "item_stats").num_rows == 2


def test_query_errors_and_unknown_inputs_are_clear(lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="nope"):
        lake.query("SELECT nope FROM interactions")
    with pytest.raises(UnreadableFileError, match="missing.csv"):
        lake.load(DkvmnImporter(), tmp_path / "missing.csv")
    assert count(lake, "loads") == 0


def test_refuses_folders_that_are_not_lakes_and_other_versions(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "file.txt").write_text("x")
    with pytest.raises(LakeError, match="not a knowtrace lake"):
        Lake(tmp_path / "stuff")
    lake = Lake(tmp_path / "lake")
    lake.layout.version_file.write_text(json.dumps({"lake_format": 99}))
    with pytest.raises(LakeError, match="format 99"):
        Lake(tmp_path / "lake")


def test_rejection_from_importer_keeps_raw_text(lake: Lake) -> None:
    lake.load(ListImporter([Rejection("f.csv", 7, "broken", field="x", raw="a,b,c")]), None)
    assert lake.query("SELECT raw, line FROM quarantine").to_pylist() == [{"raw": "a,b,c", "line": 7}]


def test_catalog_files_load_and_a_cycle_across_loads_is_refused(lake: Lake, tmp_path: Path) -> None:
    from knowtrace.exceptions import ConceptCycleError
    from knowtrace.importers import ConceptGraphImporter, ItemCatalogImporter

    items = tmp_path / "items.csv"
    items.write_text("item_id,concept_ids,b,grade\nq1,add;mul,0.5,3\nq2,mul,,4\n")
    graph = tmp_path / "graph.csv"
    graph.write_text("concept_id,prerequisite_id\nmul,add\nfrac,mul\n")
    lake.load(ItemCatalogImporter(), items)
    lake.load(ConceptGraphImporter(), graph)
    rows = lake.query("SELECT item_id, concept_ids, b, metadata FROM items ORDER BY item_id").to_pylist()
    assert rows[0] == {"item_id": "q1", "concept_ids": ["add", "mul"], "b": 0.5, "metadata": '{"grade": "3"}'}
    assert lake.query("SELECT prerequisites FROM concepts WHERE concept_id = 'frac'").to_pylist() == [
        {"prerequisites": ["mul"]}]
    closing = tmp_path / "closing.csv"
    closing.write_text("concept_id,prerequisite_id\nadd,frac\n")
    with pytest.raises(ConceptCycleError, match="add -> frac -> mul -> add"):
        lake.load(ConceptGraphImporter(), closing)
    assert count(lake, "loads") == 2 and count(lake, "bronze_concepts") == 3


def test_in_memory_tables_match_the_lake_silver_table(lake: Lake) -> None:
    from knowtrace.events import InteractionEvent
    from knowtrace.lake.frames import events_to_table
    from knowtrace.simulate import ClassroomSimulator, simulated_interactions

    params = {"learners": 15, "weeks": 1, "seed": 4}
    lake.load(ClassroomSimulator(**params), None)
    from_lake = lake.table("interactions").drop_columns(["load_id"])
    in_memory = simulated_interactions(**params).drop_columns(["load_id"])
    assert from_lake.equals(in_memory)
    mixed = [InteractionEvent(learner_id="a", item_id="x", correct=1, seq=2),
             InteractionEvent(learner_id="a", item_id="y", correct=1, timestamp="2026-01-01T00:00:00Z"),
             InteractionEvent(learner_id="a", item_id="z", correct=0, seq=1)]
    lake.load(ListImporter([RawEvent(e.model_dump(exclude={"event_id"}), "m", i) for i, e in enumerate(mixed)]), None)
    ordered = lake.query("SELECT item_id FROM interactions WHERE learner_id = 'a'").column("item_id").to_pylist()
    assert ordered == events_to_table(mixed).column("item_id").to_pylist() == ["z", "x", "y"]
