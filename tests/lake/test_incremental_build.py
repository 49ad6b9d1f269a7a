"""Incremental builds of silver and gold give exactly the tables a full build gives.

Every check builds the lake's committed bronze once more with the plain engine build (one file per
table, the SQL files run over everything) and compares each table file by file in read order: same
column names and types, same rows in the same order, values equal (scores are multiples of 1/4, so
float averages are exact whatever the order of summation).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knowtrace.events.catalog import Concept, Item
from knowtrace.importers import Importer, RawEvent, Record
from knowtrace.lake import SILVER_AND_GOLD, DuckDBEngine, Lake, TransformStep
from knowtrace.lake import appender, incremental, learner_index, medians, parts, schema
from knowtrace.lake.aggregates import MERGE_RULES, PARTIAL_RULES, merge_rule_for, rule_for
from knowtrace.lake.incremental import PartitionedBuilder
from knowtrace.lake.learner_index import index_files, index_sql, write_learner_index
from knowtrace.lake.overlay import Deltas, keyed_source


class ListImporter(Importer):
    """Yields the records it was given."""

    format = "test-list"

    def __init__(self, records: list[Record], name: str = "") -> None:
        super().__init__()
        self.records = records
        self.name = name

    def read(self, path: Path | None) -> Iterator[Record]:
        for record in self.records:
            self.rows_read += 1
            yield record

    def options(self) -> dict[str, Any]:
        return {"name": self.name, "records": repr(self.records)}


def day(d: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, d, hour, tzinfo=timezone.utc)


def answer(event_id: str | None, learner: str, item: str, correct: int | None = 1, line: int = 1,
           **more: Any) -> RawEvent:
    fields = {"learner_id": learner, "item_id": item, "correct": correct, **more}
    if event_id is not None:
        fields["event_id"] = event_id
    if correct is None and "score" not in fields:
        fields["score"] = 0.5
    return RawEvent(fields, "mem", line)


def load(lake: Lake, records: list[Record], name: str, *, build: bool = True) -> None:
    lake.load(ListImporter(records, name), None, build=build)


def read_tables(folder: Path) -> dict[str, pa.Table]:
    """Every silver/gold table under ``folder``: its part files read in name order (the order a lake reads),
    merged with the build's appended rows when it has some; the part files of a table have one schema
    (readers of the folder need it)."""
    build = (folder / "silver").resolve().parent
    info = build / "build.json"
    layout = json.loads(info.read_text()).get("layout") if info.exists() else None
    deltas = Deltas.from_layout(layout)
    tables = {}
    for step in SILVER_AND_GOLD:
        files = sorted((folder / step.layer / step.table).glob("*.parquet"))
        assert files, f"{step.layer}.{step.table} has no file"
        schemas = {pq.read_schema(f) for f in files}
        assert len(schemas) == 1, f"{step.table}: the part files disagree on the schema: {schemas}"
        tables[step.table] = pa.concat_tables([pq.read_table(f) for f in files])
        source = keyed_source(build, step, deltas, primary=step.table == "interactions")
        if isinstance(source, str):  # appended rows: read as the lake reads them, in the schema of the parts
            tables[step.table] = duckdb.sql(source).to_arrow_table().cast(tables[step.table].schema)
    return tables


def assert_same_as_full_build(lake: Lake, tmp_path: Path) -> dict[str, Any]:
    """The lake's current build equals a plain full build of the same loads; returns its build.json."""
    build = lake.current_build()
    assert build is not None
    reference = tmp_path / f"reference-{build['build_id']}"
    counts = DuckDBEngine().build(lake._bronze_sources(build["loads"]), SILVER_AND_GOLD, reference)
    expected, actual = read_tables(reference), read_tables(lake.root)
    for table, want in expected.items():
        got = actual[table]
        assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in want.schema], table
        assert got.to_pylist() == want.to_pylist(), f"{table} differs from a full build ({build.get('kind')} build)"
        assert build["rows"][table] == counts[table] == want.num_rows
    # what readers see through the lake's views, in the views' order
    assert lake.query("SELECT * FROM interactions").to_pylist() == expected["interactions"].to_pylist()
    assert lake.table("learner_sequences").to_pylist() == expected["learner_sequences"].to_pylist()
    return build


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of a few rows (so that tiny lakes have many), and incremental builds however much they touch."""
    monkeypatch.setattr(parts, "MIN_PART_ROWS", 4)
    monkeypatch.setattr(incremental, "MAX_INCREMENTAL_SHARE", 1.0)


def test_edge_cases_build_incrementally_as_in_full(small_parts: None, lake: Lake, tmp_path: Path) -> None:
    load(lake, [
        # ada: timestamps and seq mixed, a missing timestamp orders first
        answer("a1", "ada", "q1", 1, 1, timestamp=day(2), elapsed_ms=100, attempt=1, concept_ids=["add", "mul"]),
        answer("a2", "ada", "q2", 0, 2, seq=1, elapsed_ms=300, attempt=2, concept_ids=["mul"]),
        answer("a3", "ada", "q1", None, 3, seq=0, score=0.5, elapsed_ms=200, concept_ids=["add", "mul"]),
        answer("a4", "ada", "q3", 1, 4, timestamp=day(1, 12), seq=7, elapsed_ms=400, concept_ids=["frac"]),
        answer("b1", "bob", "q2", 1, 5, source="batch", timestamp=day(1), score=1.0),
        answer("b3", "bob", "q4", 0, 6, source="stream", timestamp=day(1, 1), seq=3, elapsed_ms=10),
        answer("c1", "ada", "q1", 1, 7, tenant="other", timestamp=day(5), attempt=1, concept_ids=["geo"]),
        # learners in other parts answering the same items: per-part counts must not add up twice
        *[answer(f"m{i}", f"mia{i}", "q1" if i % 2 else "q5", i % 2, 8 + i, timestamp=day(3, i), elapsed_ms=i * 7,
                 concept_ids=["add", "mul"] if i % 2 else []) for i in range(6)],
    ], "first")
    first = assert_same_as_full_build(lake, tmp_path)
    assert first["kind"] == "full" and first["full_reason"] == "no previous build"
    assert len(first["layout"]["parts"]) > 3

    load(lake, [
        answer("a1", "ada", "q1", 0, 1, timestamp=day(2)),  # the first arrival of a1 stays
        answer("a5", "ada", "q2", 1, 2, timestamp=day(3), elapsed_ms=50),  # twice in one load: the earlier line
        answer("a5", "ada", "q2", 0, 3, timestamp=day(3), elapsed_ms=60),
        answer("b1", "bob", "q2", 0, 4, source="batch", timestamp=day(1), score=0.25),  # batch: the newest load
        answer("b2", "bob", "q4", 1, 5, source="stream"),
        answer("c2", "cy", "q1", 0, 6, tenant="other", timestamp=day(5), attempt=3, elapsed_ms=7),
    ], "second")
    second = assert_same_as_full_build(lake, tmp_path)
    assert second["kind"] == "incremental" and second["incremental"]["parts_kept"] > 0

    load(lake, [
        answer("a0", "ada", "q9", 1, 1, timestamp=day(1)),  # earlier than ada's answers: her positions shift
        answer("z1", "aaron", "q1", 1, 2, timestamp=day(4)),  # a learner before every key
        answer("z2", "zoe", "q2", 0, 3, timestamp=day(4)),  # and one after every key
        answer("z3", "aaa", "q1", 1, 4, tenant="aaa"),  # a tenant before every tenant
    ], "third")
    third = assert_same_as_full_build(lake, tmp_path)
    assert third["kind"] == "incremental"

    load(lake, [Concept(concept_id="mul", name="Multiplication", prerequisites=("add",)),
                Item(item_id="q1", concept_ids=("add",), name="one"),
                Item(item_id="q7", concept_ids=("geo",))], "catalog only")
    catalog = assert_same_as_full_build(lake, tmp_path)
    assert catalog["kind"] == "incremental" and catalog["incremental"]["parts_rebuilt"] == 0


def test_event_ids_shared_by_learners_keep_their_owner(small_parts: None, lake: Lake, tmp_path: Path) -> None:
    load(lake, [answer(f"{learner}-{k}", learner, f"q{k}", k % 2, timestamp=day(1, k))
                for learner in ("l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7") for k in range(3)]
         + [answer("shared", "l2", "q9", 1, timestamp=day(2))], "base")
    assert len(assert_same_as_full_build(lake, tmp_path)["layout"]["parts"]) >= 4
    # a later arrival of the same id by another learner: l2 keeps it
    load(lake, [answer("shared", "l6", "q9", 0, timestamp=day(2))], "stream copy")
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["layout"]["index"]["shared_rows"] == 2
    # l6 alone changes: the losing copy must not come back to l6
    load(lake, [answer("l6-new", "l6", "q1", 1, timestamp=day(3))], "l6 only")
    assert assert_same_as_full_build(lake, tmp_path)["kind"] == "incremental"
    # a batch row re-read with another learner: the newest load wins, the old owner loses it
    load(lake, [answer("attempt-9", "l1", "q3", 1, source="batch", timestamp=day(2))], "batch 1")
    load(lake, [answer("attempt-9", "l5", "q3", 0, source="batch", timestamp=day(2))], "batch 2")
    assert assert_same_as_full_build(lake, tmp_path)["layout"]["index"]["shared_rows"] == 4
    load(lake, [answer("l1-new", "l1", "q2", 1, timestamp=day(4))], "l1 only")
    assert_same_as_full_build(lake, tmp_path)
    rows = lake.query("SELECT learner_id FROM interactions WHERE event_id IN ('shared', 'attempt-9') "
                      "ORDER BY event_id").column("learner_id").to_pylist()
    assert rows == ["l5", "l2"]


def test_deferred_loads_refresh_incrementally(small_parts: None, lake: Lake, tmp_path: Path) -> None:
    load(lake, [answer(None, f"s{i:02d}", f"q{i % 4}", i % 2, timestamp=day(1, i % 24)) for i in range(30)], "base")
    for batch in range(3):  # the stream worker's micro-batches: bronze only
        load(lake, [answer(None, f"s{(batch * 7 + i) % 40:02d}", "q1", 1, timestamp=day(2 + batch, i))
                    for i in range(4)], f"micro {batch}", build=False)
    assert len(lake.pending_loads()) == 3
    assert lake.refresh() is not None
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["kind"] == "incremental" and build["incremental"]["new_loads"] == 3
    assert lake.pending_loads() == [] and lake.refresh() is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_load_sequences_build_as_in_full(small_parts: None, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lake = Lake(tmp_path / "lake")
    learners = [(rng.choice(["t1", "t2"]), f"{rng.choice('abcxyz')}{n:03d}") for n in range(25)]
    event_ids = [f"ev{n}" for n in range(60)]  # drawn from a small pool: duplicates within and across learners
    kinds = []
    for number in range(7):
        records: list[Record] = []
        for line in range(rng.randint(1, 25)):
            tenant, learner = rng.choice(learners[: 10 + 3 * number])  # new learners arrive over time
            records.append(answer(
                rng.choice(event_ids) if rng.random() < 0.3 else None, learner, f"q{rng.randint(1, 6)}",
                rng.choice([0, 1, None]), line, tenant=tenant,
                source=rng.choice(["import", "stream", "batch"]),
                timestamp=None if rng.random() < 0.15 else day(1) + timedelta(minutes=rng.randint(0, 5000)),
                seq=None if rng.random() < 0.3 else rng.randint(0, 9), score=rng.choice([0.0, 0.25, 0.75, 1.0]),
                attempt=rng.choice([None, 1, 2]), elapsed_ms=rng.choice([None, rng.randint(1, 9000)]),
                concept_ids=rng.sample(["c1", "c2", "c3"], rng.randint(0, 2))))
        if rng.random() < 0.3:
            records.append(Item(item_id=f"q{rng.randint(1, 8)}", tenant="t1", concept_ids=("c2",), a=1.0))
        deferred = rng.random() < 0.3 and number < 6
        load(lake, records, f"load {number}", build=not deferred)
        if not deferred:
            kinds.append(assert_same_as_full_build(lake, tmp_path)["kind"])
    assert kinds[0] == "full" and "incremental" in kinds


def test_full_builds_when_an_incremental_one_cannot_be_trusted(lake: Lake, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "MIN_PART_ROWS", 4)
    load(lake, [answer(None, f"p{i:02d}", "q1", i % 2, timestamp=day(1, i)) for i in range(24)], "base")
    assert lake.current_build()["full_reason"] == "no previous build"  # type: ignore[index]
    # most learners answer: rebuilding everything is as cheap
    load(lake, [answer(None, f"p{i:02d}", "q2", 1, timestamp=day(2, i)) for i in range(20)], "most")
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["kind"] == "full" and "touch" in build["full_reason"]
    load(lake, [answer(None, "p03", "q3", 1, timestamp=day(3))], "one")
    assert assert_same_as_full_build(lake, tmp_path)["kind"] == "incremental"

    assert lake.rebuild(full=False) is not None  # nothing new: every part kept
    assert lake.current_build()["incremental"]["parts_rebuilt"] == 0  # type: ignore[index]
    lake.rebuild()
    assert lake.current_build()["full_reason"] == "full rebuild requested"  # type: ignore[index]

    def edit_build(change: Any) -> None:
        file = lake.root / "silver" / ".." / "build.json"
        info = json.loads(file.read_text())
        change(info)
        file.write_text(json.dumps(info))

    for change, reason in [
        (lambda info: info.pop("layout"), "no parts"),  # e.g. a build of the Spark engine or of an older knowtrace
        (lambda info: info["layout"].update(signature="other"), "transforms changed"),
        (lambda info: info["layout"].update(duckdb="0.0.1"), "DuckDB 0.0.1"),
    ]:
        edit_build(change)
        load(lake, [answer(None, "p05", "q4", 1, timestamp=day(4), seq=len(reason))], reason)
        build = assert_same_as_full_build(lake, tmp_path)
        assert build["kind"] == "full" and reason in build["full_reason"]

    # a load the current build holds is no longer committed (its manifest was removed)
    gone = lake.manifests()[-1]
    (lake.layout.loads / f"{gone.load_id}.json").unlink()
    assert lake.refresh() is None  # opening the writer recovers: silver/gold rebuilt without it
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["kind"] == "full" and "gone" in build["full_reason"] and gone.load_id not in build["loads"]


def test_kept_parts_are_hard_links_of_the_previous_build(small_parts: None, lake: Lake) -> None:
    load(lake, [answer(None, f"h{i:02d}", "q1", 1, timestamp=day(1, i)) for i in range(20)], "base")
    before = {f.name: f.stat().st_ino for f in (lake.root / "silver" / "interactions").glob("*.parquet")}
    # older than h19's answer: not an append, so the part holding h19 is rebuilt
    load(lake, [answer(None, "h19", "q2", 0, timestamp=day(1, 0))], "last learner")
    build = lake.current_build()
    assert build is not None and build["kind"] == "incremental" and "mode" not in build["incremental"]
    after = {f.name: f.stat().st_ino for f in (lake.root / "silver" / "interactions").glob("*.parquet")}
    kept = build["incremental"]["parts_kept"]
    assert kept == len(before) - 1 and sum(1 for name, inode in after.items() if before.get(name) == inode) == kept


def test_an_interrupted_incremental_build_leaves_the_current_one(small_parts: None, lake: Lake, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    load(lake, [answer(None, f"k{i:02d}", "q1", 1, timestamp=day(1, i)) for i in range(12)], "base")
    current = lake.current_build()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(PartitionedBuilder, "_write_others", crash)
        with pytest.raises(OSError, match="disk full"):
            load(lake, [answer(None, "k03", "q2", 0, timestamp=day(2))], "crashing")
    assert lake.current_build() == current
    assert_same_as_full_build(lake, tmp_path)  # silver/gold still the previous build, whole
    assert lake.pending_loads()  # the load is committed, silver/gold lag behind it
    load(lake, [answer(None, "k04", "q2", 0, timestamp=day(2))], "next")  # recovery builds both loads
    build = assert_same_as_full_build(lake, tmp_path)
    assert lake.pending_loads() == [] and build["kind"] == "incremental"
    assert sorted(os.listdir(lake.layout.builds)) == [build["build_id"]]


class _Step(TransformStep):
    """A transform step with SQL of its own."""

    def __init__(self, layer: str, table: str, sql: str) -> None:
        super().__init__(layer, table)
        object.__setattr__(self, "_sql", sql)

    @property
    def sql(self) -> str:
        return self._sql  # type: ignore[attr-defined, no-any-return]


def test_a_keyed_table_not_ordered_by_learner_is_built_unpartitioned(lake: Lake, tmp_path: Path) -> None:
    load(lake, [answer(None, f"u{i}", "q1", 1) for i in range(5)], "base")
    silver = next(s for s in SILVER_AND_GOLD if s.table == "interactions")
    reversed_order = silver.sql.replace("ORDER BY tenant, learner_id, position",
                                        "ORDER BY tenant, learner_id DESC, position")
    assert reversed_order != silver.sql
    steps = [_Step(s.layer, s.table, reversed_order) if s is silver else s for s in SILVER_AND_GOLD]
    empty = {"interactions": schema.BRONZE_INTERACTIONS, "items": schema.BRONZE_ITEMS,
             "concepts": schema.BRONZE_CONCEPTS}
    result = PartitionedBuilder(DuckDBEngine(), steps, empty_bronze=empty).build(
        lake._bronze_files(lake.current_build()["loads"]), lake.current_build()["loads"],  # type: ignore[index]
        tmp_path / "build")
    assert result.info["kind"] == "full" and "not ordered" in result.info["full_reason"]
    assert "layout" not in result.info and result.counts["interactions"] == 5


def test_partial_and_merge_rules_reproduce_the_current_sql_files() -> None:
    for step in SILVER_AND_GOLD:
        if step.table in MERGE_RULES:
            assert merge_rule_for(step) is not None, (
                f"{step.layer}_{step.table}.sql changed: update (and test) its merge rule in knowtrace.lake.aggregates; "
                "until then loads are not appended")
        if step.table in PARTIAL_RULES:
            assert rule_for(step) is not None, (
                f"{step.layer}_{step.table}.sql changed: update (and test) its rule in knowtrace.lake.aggregates, "
                "or remove the rule; until then that table is recomputed in full on every build")


def test_a_lake_without_answers_yet_builds_in_full_then_incrementally(small_parts: None, lake: Lake,
                                                                        tmp_path: Path) -> None:
    load(lake, [Concept(concept_id="add"), Item(item_id="q1", concept_ids=("add",))], "catalog")
    empty = assert_same_as_full_build(lake, tmp_path)
    assert empty["rows"]["interactions"] == 0 and empty["layout"]["parts"] == []
    load(lake, [answer(None, f"e{i}", "q1", 1, timestamp=day(1, i)) for i in range(10)], "answers")
    assert assert_same_as_full_build(lake, tmp_path)["full_reason"] == "the previous build has no rows to keep"
    load(lake, [answer(None, "e9", "q1", 0, timestamp=day(2))], "more")
    assert assert_same_as_full_build(lake, tmp_path)["kind"] == "incremental"


def test_days_of_new_answers_are_appended_without_rewriting_parts(small_parts: None, lake: Lake, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    learners = [f"d{i:02d}" for i in range(16)]
    load(lake, [answer(None, learner, f"q{k % 3}", (i + k) % 2, timestamp=day(1, k), elapsed_ms=10 * k,
                       concept_ids=["add"] if k % 2 else ["add", "mul"])
                for i, learner in enumerate(learners) for k in range(4)], "base")
    parts_before = {f.name: f.stat().st_ino for f in (lake.root / "gold" / "learner_sequences").glob("*.parquet")}
    monkeypatch.setattr(appender, "MAX_DELTA_FILES", 2)  # the third day merges the delta files
    monkeypatch.setattr(appender, "MAX_DELTA_SHARE", 1.0)
    monkeypatch.setattr(learner_index, "MAX_INDEX_FILES", 2)
    monkeypatch.setattr(medians, "WINDOW", 1)  # median windows of 3-4 values: days slide them or outgrow them
    for d in range(2, 6):
        # existing learners spread over every part, each answering items seen and unseen; a newcomer; one event
        # sent twice by the same learner (the first copy stays)
        records = [answer(f"day{d}-{learner}", learner, f"q{(d + i) % 5}", (d * i) % 2, line=i,
                          timestamp=day(d, i % 24), elapsed_ms=d * i, concept_ids=["mul"] if i % 3 else ["geo"])
                   for i, learner in enumerate(learners) if (i + d) % 3]
        records += [answer(f"new-{d}", f"n{d}", "q1", 1, timestamp=day(d)),
                    answer(f"day{d}-d01", "d01", "q4", 0, line=99, timestamp=day(d, 23))]
        load(lake, records, f"day {d}")
        build = assert_same_as_full_build(lake, tmp_path)
        assert build["kind"] == "incremental" and build["incremental"]["mode"] == "append", build.get("full_reason")
        assert build["incremental"]["parts_rebuilt"] == 0
        files = build["layout"]["deltas"]["files"]
        assert len(files["interactions"]) == len(files["learner_sequences"]) <= 2
    after = {f.name: f.stat().st_ino for f in (lake.root / "gold" / "learner_sequences").glob("*.parquet")}
    assert after == parts_before  # the parts are the first build's files
    # the learner index the appends kept up to date is the one a build computes from the whole of silver
    con = lake.connect()
    folder = lake.layout.silver.resolve().parent
    kept = con.sql(f"SELECT * FROM ({index_sql(folder, index_files(build['layout']))}) AS i "
                   "ORDER BY tenant, learner_id").to_arrow_table()
    write_learner_index(con, tmp_path)
    fresh = con.sql(f"SELECT * FROM ({index_sql(tmp_path, ['index.parquet'])}) AS i ORDER BY tenant, learner_id")
    assert kept.num_rows == 20 and kept.to_pylist() == fresh.to_arrow_table().to_pylist()
    con.close()
    assert sum(b.num_rows for b in lake.scan("interactions", batch_rows=7)) == build["rows"]["interactions"]
    assert sorted(r["learner_id"] for b in lake.scan("learner_sequences", columns=["learner_id"])
                  for r in b.to_pylist()) == sorted(lake.table("learner_sequences").column("learner_id").to_pylist())

    # an answer older than its learner's last is not an append: the build folds the appended rows back in
    load(lake, [answer("late", "d03", "q1", 1, timestamp=day(1, 1))], "late answer")
    late = assert_same_as_full_build(lake, tmp_path)
    assert late["kind"] == "full" and "appended rows" in late["full_reason"] and "deltas" not in late["layout"]
    load(lake, [answer("again", "d03", "q2", 1, timestamp=day(9))], "after the fold")
    assert assert_same_as_full_build(lake, tmp_path)["incremental"]["mode"] == "append"


def test_appends_stop_at_their_share_or_at_another_learners_event_id(small_parts: None, lake: Lake,
                                                                     tmp_path: Path) -> None:
    load(lake, [answer(f"b{i}", f"a{i:02d}", "q1", i % 2, timestamp=day(1, i)) for i in range(12)], "base")
    load(lake, [answer("x1", "a01", "q2", 1, timestamp=day(2))], "small")
    assert assert_same_as_full_build(lake, tmp_path)["incremental"]["mode"] == "append"
    # the id of a02's answer, sent for a05: the learners are tied, not an append
    load(lake, [answer("b2", "a05", "q2", 1, timestamp=day(3))], "foreign id")
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["kind"] == "full" and "event id of an earlier answer" in build["full_reason"]
    load(lake, [answer(None, f"a{i:02d}", "q3", 1, timestamp=day(4, i)) for i in range(4)], "a third of the lake")
    build = assert_same_as_full_build(lake, tmp_path)
    assert build["kind"] == "incremental" and "mode" not in build["incremental"]  # the parts of a00..a03 rebuilt
    assert f"over {appender.MAX_DELTA_SHARE:.0%}" in build["incremental"]["not_appended"]
