"""What only the SQLite event log does: its file, its locking, its format checks."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from knowtrace.stream import LogError, LogRecord, open_log
from knowtrace.stream import sqlite_log
from knowtrace.stream.sqlite_log import SQLiteEventLog


def event(n: int) -> LogRecord:
    return LogRecord("event", "default", {"n": n})


def test_a_relative_url_names_a_file_below_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = open_log("sqlite:///logs/events.db")
    log.append([event(0)])
    log.close()
    assert (tmp_path / "logs" / "events.db").is_file()
    assert log.name == "events"


def test_the_file_is_in_wal_mode_and_every_commit_is_synced(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "events.db")
    with closing(sqlite3.connect(tmp_path / "events.db")) as other, other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log._db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    log.close()


def test_a_log_locked_too_long_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_log, "BUSY_TIMEOUT_S", 0.2)
    log = SQLiteEventLog(tmp_path / "events.db")
    other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LogError, match="locked by another process for more than 0.2 s"):
            log.append([event(0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert log.append([event(0)]).appended == 1
    log.close()


def test_a_foreign_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    with closing(sqlite3.connect(path)) as foreign, foreign:
        foreign.execute("CREATE TABLE attempts (id INTEGER)")
    with pytest.raises(LogError, match="service.db is an SQLite database but not a knowtrace event log"):
        SQLiteEventLog(path)
    with closing(sqlite3.connect(path)) as foreign, foreign:
        assert foreign.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_log_of_another_format_version_is_refused(tmp_path: Path) -> None:
    SQLiteEventLog(tmp_path / "events.db").close()
    with closing(sqlite3.connect(tmp_path / "events.db")) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(LogError, match="format version '99'"):
        SQLiteEventLog(tmp_path / "events.db")


def test_offsets_are_not_reused_after_everything_was_trimmed(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "events.db")
    offsets = log.append([event(n) for n in range(3)]).offsets
    consumer = log.consumer("lake")
    consumer.ack([entry.offset for entry in consumer.read(3)])
    assert log.trim() == 3 and log.length() == 0
    assert log.append([event(3)]).offsets == [offsets[-1] + 1]  # type: ignore[operator]
    assert [entry.offset for entry in consumer.read(3)] == [offsets[-1] + 1]  # type: ignore[operator]
    log.close()


def test_threads_may_share_one_log(tmp_path: Path) -> None:
    log = SQLiteEventLog(tmp_path / "events.db")
    threads = [threading.Thread(target=lambda t=t: [log.append([event(t * 100 + n)]) for n in range(25)])
               for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.record.payload["n"] for e in log.consumer("lake").read(1000)) == sorted(
        t * 100 + n for t in range(4) for n in range(25))
    log.close()
