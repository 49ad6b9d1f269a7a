"""Incremental extraction from a real PostgreSQL: watermark, late updates, crash and re-run, bounded memory."""

from __future__ import annotations

import math
import time
from pathlib import Path

import psycopg
import pytest

from knowtrace.batch import PostgresDialect, SourceExtractor, dialect_for, extract, init_source, read_watermark
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.simulate import ClassroomSimulator

LEARNERS = 6
ATTEMPTS = LEARNERS * 6 * 3 * 12  # the simulator's defaults: 6 weeks, 3 sessions a week, 12 answers each


def lake_state(lake: Lake) -> tuple[list[str], set[Path], int]:
    """The committed loads, every file of the lake but its lock, and the silver row count."""
    files = {p.relative_to(lake.root) for p in lake.root.rglob("*") if p.is_file() and p.name != "writer.lock"}
    silver = lake.query("SELECT count(*) AS n FROM interactions")[0][0].as_py()
    return [m.load_id for m in lake.manifests()], files, silver


def bronze_ids(lake: Lake, load_id: str) -> list[int]:
    rows = lake.query("SELECT source_line FROM bronze_interactions WHERE load_id = ? ORDER BY source_line", [load_id])
    return rows.column("source_line").to_pylist()


def test_init_from_simulator_creates_the_reference_schema(pg_dsn: str, pg_exec) -> None:
    report = init_source(pg_dsn, simulate=LEARNERS, seed=3)
    assert (report.attempts, report.learners, report.classes) == (ATTEMPTS, LEARNERS, 1)
    assert (report.items, report.concepts) == (60, 8)
    tables = {r[0] for r in pg_exec("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"classes", "learners", "items", "concepts", "item_concepts", "prerequisites", "attempts"}
    assert pg_exec("SELECT indexdef FROM pg_indexes WHERE indexname = 'attempts_updated_at_id'")[0][0].endswith(
        "(updated_at, id)")
    assert pg_exec("SELECT count(*), count(DISTINCT learner_id) FROM attempts")[0] == (ATTEMPTS, LEARNERS)
    # the simulated answers are the simulator's: same learners, items and outcomes in the same order
    simulated = [r.fields for r in ClassroomSimulator(learners=LEARNERS, seed=3).read(None) if hasattr(r, "fields")]
    stored = pg_exec("SELECT learner_id, item_id, correct, answered_at, updated_at FROM attempts ORDER BY id")
    assert [(r[0], r[1], int(r[2]), r[3]) for r in stored] == [
        (f["learner_id"], f["item_id"], f["correct"], f["timestamp"]) for f in simulated]
    assert all(r[4] == r[3] for r in stored)  # history: updated when answered
    # an update moves updated_at forward (trigger), an explicit updated_at is kept
    pg_exec("UPDATE attempts SET score = 0.5 WHERE id = 1")
    assert pg_exec("SELECT updated_at > answered_at + interval '1 day' FROM attempts WHERE id = 1")[0][0]
    with pytest.raises(InputError, match="already has a table attempts"):
        init_source(pg_dsn, simulate=2)
    assert init_source(pg_dsn, simulate=2, replace=True).attempts == 2 * 6 * 3 * 12


def test_first_extract_loads_everything_and_a_second_adds_nothing(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=LEARNERS)
    lake = Lake(tmp_path / "lake")
    first = extract(pg_dsn, lake, tenant="school", batch_rows=100)
    assert (first.rows_read, first.events, first.added, first.rejected) == (ATTEMPTS, ATTEMPTS, ATTEMPTS, 0)
    assert (first.items, first.concepts, first.watermark_from) == (60, 8, None)
    last_id, last_updated = pg_exec("SELECT id, updated_at FROM attempts ORDER BY updated_at DESC, id DESC LIMIT 1")[0]
    watermark = read_watermark(lake, dialect="postgres", source=first.source, tenant="school")
    assert watermark is not None and (watermark.id, watermark.updated_at) == (last_id, last_updated.isoformat())
    silver = lake.table("interactions")
    assert silver.num_rows == ATTEMPTS and set(silver.column("source").to_pylist()) == {"batch"}
    assert silver.column("event_id").to_pylist()[0].startswith(f"{first.source}:attempt:")
    assert lake.query("SELECT count(*) FROM items WHERE tenant = 'school' AND len(concept_ids) > 0")[0][0].as_py() == 60
    before = lake_state(lake)

    second = extract(pg_dsn, lake, tenant="school", batch_rows=100)
    assert second.skipped and (second.rows_read, second.events, second.added) == (0, 0, 0)
    assert lake_state(lake) == before
    # another tenant has its own watermark
    assert extract(pg_dsn, lake, tenant="other").added == ATTEMPTS


def test_new_and_updated_attempts_are_picked_up_exactly(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=LEARNERS)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    pg_exec("UPDATE attempts SET score = 0.25, correct = false WHERE id IN (3, 50, 700)")
    new = [r[0] for r in pg_exec(
        "INSERT INTO attempts (learner_id, item_id, correct, answered_at, session_id) "
        "SELECT learner_id, item_id, true, now(), 'late' FROM attempts WHERE id IN (1, 2) RETURNING id")]
    report = extract(pg_dsn, lake, batch_rows=2)
    assert (report.rows_read, report.events, report.added, report.already_in_lake) == (5, 5, 2, 3)
    assert (report.items, report.concepts) == (0, 0)  # the catalog did not change: not loaded again
    assert bronze_ids(lake, report.load_id) == sorted([3, 50, 700, *new])
    updated = lake.query("SELECT score, correct FROM bronze_interactions WHERE load_id = ? AND source_line = 50",
                         [report.load_id]).to_pylist()
    assert updated == [{"score": 0.25, "correct": 0}]
    assert lake.table("interactions").num_rows == ATTEMPTS + 2
    assert extract(pg_dsn, lake).skipped


def test_a_late_update_replaces_the_answer_in_silver(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    pg_exec("UPDATE attempts SET score = 0.25, correct = false WHERE id = 7")
    extract(pg_dsn, lake)
    rows = lake.query("SELECT score FROM interactions WHERE event_id LIKE '%:attempt:7'").to_pylist()
    assert rows == [{"score": 0.25}]


def test_a_crash_mid_extract_leaves_the_lake_unchanged_and_a_rerun_completes(
        pg_dsn: str, pg_exec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_source(pg_dsn, simulate=LEARNERS)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake, batch_rows=64)
    pg_exec("UPDATE attempts SET score = 0.5 WHERE id % 10 = 0")
    changed = sorted(r[0] for r in pg_exec("SELECT id FROM attempts WHERE id % 10 = 0"))
    pg_exec("INSERT INTO attempts (learner_id, item_id, correct, answered_at) "
            "SELECT learner_id, item_id, false, now() FROM attempts WHERE id <= 40")
    expected = changed + list(range(ATTEMPTS + 1, ATTEMPTS + 41))
    before = lake_state(lake)
    watermark = read_watermark(lake, dialect="postgres", source=dialect_for(pg_dsn).default_source_name(),
                               tenant="default")

    stream = PostgresDialect.stream

    def crashing(self, conn, sql, params, batch_rows):
        for n, row in enumerate(stream(self, conn, sql, params, batch_rows)):
            if n == 150:
                raise RuntimeError("simulated crash mid-extract")
            yield row

    monkeypatch.setattr(PostgresDialect, "stream", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(pg_dsn, lake, batch_rows=64)
    monkeypatch.undo()
    assert lake_state(lake) == before
    assert read_watermark(lake, dialect="postgres", source=dialect_for(pg_dsn).default_source_name(),
                          tenant="default") == watermark
    assert not any((lake.root / "_staging").iterdir())

    report = extract(pg_dsn, lake, batch_rows=64)
    assert bronze_ids(lake, report.load_id) == expected
    assert (report.rows_read, report.added, report.already_in_lake) == (len(expected), 40, len(changed))
    silver = lake.table("interactions")
    assert silver.num_rows == ATTEMPTS + 40
    assert len(set(silver.column("event_id").to_pylist())) == silver.num_rows
    assert extract(pg_dsn, lake).skipped


def test_the_extractor_never_holds_more_than_batch_rows(
        pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_source(pg_dsn, simulate=2)
    total = 2 * 6 * 3 * 12
    lake = Lake(tmp_path / "lake")
    extractor = SourceExtractor(dialect_for(pg_dsn), lake, batch_rows=7)
    calls: list[tuple[int, int, int]] = []
    fetched = 0
    original = psycopg.ServerCursor.fetchmany

    def fetchmany(self, size: int = 0):  # the attempts query runs on a server-side cursor
        nonlocal fetched
        held = fetched - extractor.rows_read  # rows fetched before and not consumed yet
        rows = original(self, size)
        fetched += len(rows)
        calls.append((size, len(rows), held))
        return rows

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", fetchmany)
    report = extractor.run()
    assert report.rows_read == total
    assert len(calls) == math.ceil(total / 7) + 1  # the last fetch finds the end
    assert all(size == 7 and got <= 7 and held == 0 for size, got, held in calls)
    assert sum(got for _, got, _ in calls) == total


def test_rows_of_a_transaction_still_open_are_not_skipped(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    with psycopg.connect(pg_dsn) as writer:  # a transaction that commits after the next extract
        slow = writer.execute("INSERT INTO attempts (learner_id, item_id, correct) "
                              "SELECT learner_id, item_id, true FROM attempts WHERE id = 1 RETURNING id").fetchone()[0]
        time.sleep(0.01)
        fast = pg_exec("INSERT INTO attempts (learner_id, item_id, correct) "
                       "SELECT learner_id, item_id, false FROM attempts WHERE id = 2 RETURNING id")[0][0]
        held = extract(pg_dsn, lake)
        assert held.skipped and held.held_back == 1 and "transaction open" in held.held_by
        writer.commit()
    # without the hold-back the watermark would now be past the slow row's updated_at
    report = extract(pg_dsn, lake)
    assert bronze_ids(lake, report.load_id) == sorted([slow, fast])


def test_lag_leaves_recent_changes_for_the_next_extract(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    pg_exec("UPDATE attempts SET score = 0 WHERE id <= 3")
    waiting = extract(pg_dsn, lake, lag_s=3600)
    assert waiting.skipped and waiting.held_back == 3
    assert extract(pg_dsn, lake).rows_read == 3


def test_init_from_a_lake_round_trips(pg_dsn: str, tmp_path: Path) -> None:
    origin = Lake(tmp_path / "origin")
    origin.load(ClassroomSimulator(tenant="t1", learners=4, weeks=2, seed=5), None)
    origin.load(ClassroomSimulator(tenant="t2", learners=2, weeks=1, seed=6), None)
    with pytest.raises(InputError, match="2 tenants"):
        init_source(pg_dsn, from_lake=origin.root)
    report = init_source(pg_dsn, from_lake=origin.root, tenant="t1", batch_rows=50)
    assert (report.attempts, report.learners, report.items, report.concepts) == (4 * 2 * 3 * 12, 4, 60, 8)
    copy = Lake(tmp_path / "copy")
    extract(pg_dsn, copy, tenant="t1", batch_rows=50)
    columns = ("learner_id, item_id, concept_ids, correct, score, \"timestamp\", elapsed_ms, attempt, session_id, "
               "position")
    sql = f"SELECT {columns} FROM interactions ORDER BY learner_id, position"
    assert copy.query(sql).to_pylist() == origin.query(sql.replace("FROM interactions",
                                                                   "FROM interactions WHERE tenant = 't1'")).to_pylist()
    for sql in ("SELECT item_id, concept_ids FROM items WHERE tenant = 't1' ORDER BY item_id",
                "SELECT concept_id, name, list_sort(prerequisites) AS p FROM concepts WHERE tenant = 't1' "
                "ORDER BY concept_id"):
        assert copy.query(sql).to_pylist() == origin.query(sql).to_pylist()
