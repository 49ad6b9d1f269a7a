"""The SQLite stand-in goes through the same code: init, extract, incremental, bad rows, crash."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowtrace.batch import SqliteDialect, dialect_for, extract, init_source, read_watermark
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake

ATTEMPTS = 3 * 6 * 3 * 12


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    path = tmp_path / "service.db"
    dsn = f"sqlite:///{path}"
    init_source(dsn, simulate=3)
    conn = sqlite3.connect(path, isolation_level=None)
    yield dsn, conn
    conn.close()


def settle() -> None:
    """SQLite's clock has millisecond steps: let a change be strictly before the next extract's bound."""
    time.sleep(0.003)


def test_sqlite_init_and_incremental_extract(sqlite_source, tmp_path: Path) -> None:
    dsn, conn = sqlite_source
    assert conn.execute("SELECT count(*), count(DISTINCT learner_id) FROM attempts").fetchone() == (ATTEMPTS, 3)
    assert conn.execute("SELECT count(*) FROM attempts WHERE updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
                        "answered_at)").fetchone() == (ATTEMPTS,)
    lake = Lake(tmp_path / "lake")
    first = extract(dsn, lake, dialect="sqlite", batch_rows=50)
    assert (first.dialect, first.source, first.rows_read, first.added) == ("sqlite", "service", ATTEMPTS, ATTEMPTS)
    assert extract(dsn, lake).skipped

    conn.execute("UPDATE attempts SET score = 0.5 WHERE id IN (10, 20)")
    conn.execute("INSERT INTO attempts (learner_id, item_id, correct, answered_at) "
                 "VALUES ('sim-learner-0001', 'sim-item-001', 1, '2026-11-01T10:00:00.000000Z')")
    settle()
    second = extract(dsn, lake, batch_rows=50)
    assert (second.rows_read, second.added, second.already_in_lake) == (3, 1, 2)
    lines = lake.query("SELECT source_line FROM bronze_interactions WHERE load_id = ? ORDER BY 1", [second.load_id])
    assert lines.column("source_line").to_pylist() == [10, 20, ATTEMPTS + 1]
    watermark = read_watermark(lake, dialect="sqlite", source="service", tenant="default")
    assert watermark is not None and watermark.id == ATTEMPTS + 1 and watermark.updated_at.endswith("Z")
    assert lake.table("interactions").num_rows == ATTEMPTS + 1
    # --full reads everything again: nothing is duplicated, the catalog comes again
    full = extract(dsn, lake, full=True)
    assert (full.watermark_from, full.rows_read, full.added, full.items) == (None, ATTEMPTS + 1, 0, 60)
    assert lake.table("interactions").num_rows == ATTEMPTS + 1


def test_sqlite_bad_rows_and_a_crash(sqlite_source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, conn = sqlite_source
    conn.execute("INSERT INTO attempts (learner_id, item_id, correct, answered_at) "
                 "VALUES ('sim-learner-0001', 'nope', 1, '2026-11-01T10:00:00Z')")
    conn.execute("INSERT INTO attempts (learner_id, item_id, correct, answered_at) "
                 "VALUES ('sim-learner-0001', 'sim-item-001', 1, 'yesterday')")
    conn.execute("ALTER TABLE attempts ADD COLUMN device TEXT")
    settle()
    lake = Lake(tmp_path / "lake")
    stream = SqliteDialect.stream

    def crashing(self, conn, sql, params, batch_rows):
        for n, row in enumerate(stream(self, conn, sql, params, batch_rows)):
            if n == 100:
                raise RuntimeError("simulated crash mid-extract")
            yield row

    monkeypatch.setattr(SqliteDialect, "stream", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(dsn, lake, batch_rows=32)
    monkeypatch.undo()
    assert lake.manifests() == [] and lake.table("interactions").num_rows == 0

    report = extract(dsn, lake, batch_rows=32)
    assert (report.rows_read, report.events, report.rejected) == (ATTEMPTS + 2, ATTEMPTS, 2)
    assert report.ignored_columns == ["attempts.device"]
    rows = lake.query("SELECT line, field, reason FROM quarantine ORDER BY line").to_pylist()
    assert [(r["line"], r["field"]) for r in rows] == [(ATTEMPTS + 1, "item_id"), (ATTEMPTS + 2, "answered_at")]
    assert "not an ISO 8601 time stamp: 'yesterday'" in rows[1]["reason"]


def test_sqlite_dsn_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected sqlite:///PATH"):
        dialect_for("sqlite:/x.db")
    with pytest.raises(InputError, match="no SQLite database"):
        extract(f"sqlite:///{tmp_path / 'missing.db'}", Lake(tmp_path / "lake"))
    with pytest.raises(InputError, match="this is the postgres extractor"):
        dialect_for(f"sqlite:///{tmp_path / 'x.db'}", "postgres")
    with pytest.raises(InputError, match="exactly one source of data"):
        init_source(f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "missing.db").exists()
