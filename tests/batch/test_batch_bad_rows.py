"""Bad source rows are quarantined with table, row id, field and reason; schema changes are reported or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowtrace.batch import SourceError, extract, init_source
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake

ATTEMPTS = 2 * 6 * 3 * 12


@pytest.fixture
def loose_source(pg_dsn: str, pg_exec) -> str:
    """The reference schema of 2 simulated learners, with the constraints a legacy source may lack."""
    init_source(pg_dsn, simulate=2)
    pg_exec("ALTER TABLE attempts ALTER COLUMN learner_id DROP NOT NULL")
    pg_exec("ALTER TABLE attempts DROP CONSTRAINT attempts_item_id_fkey")
    pg_exec("ALTER TABLE attempts DROP CONSTRAINT attempts_pkey")
    return pg_dsn


def insert(pg_exec, values: str, columns: str = "learner_id, item_id, correct, answered_at") -> int:
    return pg_exec(f"INSERT INTO attempts ({columns}) VALUES ({values}) RETURNING id")[0][0]


def test_bad_rows_are_quarantined_with_table_row_field_and_reason(loose_source: str, pg_exec, tmp_path: Path) -> None:
    null_learner = insert(pg_exec, "NULL, 'sim-item-001', true, now()")
    unknown_item = insert(pg_exec, "'sim-learner-0001', 'no-such-item', true, now()")
    future = insert(pg_exec, "'sim-learner-0001', 'sim-item-001', true, now() + interval '2 days'")
    insert(pg_exec, "5, 'sim-learner-0002', 'sim-item-002', false, now()",
           "id, learner_id, item_id, correct, answered_at")
    good = insert(pg_exec, "'sim-learner-0002', 'sim-item-003', true, now()")
    lake = Lake(tmp_path / "lake")
    pg_exec("ALTER TABLE attempts DROP CONSTRAINT attempts_score_check")
    bad_score = insert(pg_exec, "'sim-learner-0001', 'sim-item-001', 1.5, now()",
                       "learner_id, item_id, score, answered_at")
    report = extract(loose_source, lake)
    source = report.source
    total = ATTEMPTS + 6
    assert (report.rows_read, report.rejected, report.events) == (total, 6, total - 6)
    rows = lake.query("SELECT source_file, line, field, reason, raw FROM quarantine ORDER BY line, reason").to_pylist()
    assert {r["source_file"] for r in rows} == {f"{source}.attempts"}
    found = {(r["line"], r["field"]) for r in rows}
    assert found == {(5, "id"), (null_learner, "learner_id"), (unknown_item, "item_id"), (future, "answered_at"),
                     (bad_score, "score")}
    assert [r["line"] for r in rows].count(5) == 2  # both copies of the duplicated id
    reasons = {r["field"]: r["reason"] for r in rows}
    assert "appears 2 times" in reasons["id"] and "empty" in reasons["learner_id"]
    assert "unknown item 'no-such-item'" in reasons["item_id"] and "in the future" in reasons["answered_at"]
    assert json.loads(next(r["raw"] for r in rows if r["field"] == "item_id"))["item_id"] == "no-such-item"
    # the good rows are in, the rejected are not, and nothing is left out unaccounted
    silver = set(lake.table("interactions").column("event_id").to_pylist())
    assert f"{source}:attempt:{good}" in silver and f"{source}:attempt:{unknown_item}" not in silver
    assert f"{source}:attempt:5" not in silver and len(silver) == total - 6
    # a fix at the source moves updated_at: the next extract picks the row up
    pg_exec("UPDATE attempts SET item_id = 'sim-item-004' WHERE id = %s", unknown_item)
    fixed = extract(loose_source, lake)
    assert (fixed.rows_read, fixed.events, fixed.rejected) == (1, 1, 0)
    assert f"{source}:attempt:{unknown_item}" in set(lake.table("interactions").column("event_id").to_pylist())


def test_an_unanswered_attempt_waits_and_is_counted(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    started = insert(pg_exec, "'sim-learner-0001', 'sim-item-001', now()", "learner_id, item_id, started_at")
    waiting = extract(pg_dsn, lake)
    assert (waiting.rows_read, waiting.events, waiting.rejected, waiting.pending) == (1, 0, 0, 1)
    pg_exec("UPDATE attempts SET correct = true, answered_at = now() WHERE id = %s", started)
    answered = extract(pg_dsn, lake)
    assert (answered.rows_read, answered.events, answered.added, answered.pending) == (1, 1, 1, 0)
    elapsed = lake.query("SELECT elapsed_ms FROM interactions WHERE event_id LIKE ?", [f"%:attempt:{started}"])
    assert elapsed.to_pylist()[0]["elapsed_ms"] >= 0  # derived from started_at and answered_at


def test_an_added_column_is_ignored_and_reported(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    pg_exec("ALTER TABLE attempts ADD COLUMN device text DEFAULT 'tablet'")
    pg_exec("ALTER TABLE attempts DROP COLUMN response")
    lake = Lake(tmp_path / "lake")
    report = extract(pg_dsn, lake)
    assert report.events == ATTEMPTS and report.rejected == 0
    assert report.ignored_columns == ["attempts.device"] and "attempts.response" in report.missing_columns
    assert lake.manifests()[-1].options["ignored_columns"] == ["attempts.device"]


@pytest.mark.parametrize(("table", "column"), [("attempts", "learner_id"), ("attempts", "updated_at"),
                                               ("items", "id")])
def test_a_renamed_required_column_is_a_clear_error_and_nothing_is_loaded(
        pg_dsn: str, pg_exec, tmp_path: Path, table: str, column: str) -> None:
    init_source(pg_dsn, simulate=2)
    lake = Lake(tmp_path / "lake")
    extract(pg_dsn, lake)
    pg_exec("UPDATE attempts SET score = 0 WHERE id < 10")
    pg_exec(f"ALTER TABLE {table} RENAME COLUMN {column} TO {column}_v2")
    loads = [m.load_id for m in lake.manifests()]
    with pytest.raises(InputError, match=f"table {table}: required column '{column}' is missing") as error:
        extract(pg_dsn, lake)
    assert error.value.field == f"{table}.{column}" and f"{column}_v2" in str(error.value)
    assert [m.load_id for m in lake.manifests()] == loads
    pg_exec(f"ALTER TABLE {table} RENAME COLUMN {column}_v2 TO {column}")
    assert extract(pg_dsn, lake).rows_read == 9  # the changes wait for the schema to be fixed


def test_rows_that_can_never_be_extracted_are_reported(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    pg_exec("ALTER TABLE attempts ALTER COLUMN updated_at DROP NOT NULL")
    pg_exec("UPDATE attempts SET updated_at = NULL WHERE id <= 4")
    pg_exec("UPDATE attempts SET updated_at = now() + interval '1 day' WHERE id = 5")
    report = extract(pg_dsn, Lake(tmp_path / "lake"))
    assert (report.never_extracted, report.future_updates, report.held_back) == (4, 1, 1)
    assert report.rows_read == ATTEMPTS - 5


def test_a_source_that_fails_is_a_clear_error_and_nothing_is_loaded(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    init_source(pg_dsn, simulate=2)
    pg_exec("ALTER TABLE attempts ALTER COLUMN updated_at TYPE text")  # a legacy source: time stamps as text
    lake = Lake(tmp_path / "lake")
    with pytest.raises(SourceError, match="operator does not exist: text") as error:
        extract(pg_dsn, lake)
    assert "nothing was loaded" in str(error.value) and lake.manifests() == []
