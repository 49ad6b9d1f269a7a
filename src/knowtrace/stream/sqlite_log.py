"""The embedded event log: one SQLite file that every process on the machine may append to and read.

The file is in WAL mode with ``synchronous=FULL``: an append has reached the disk when it returns.
Each consumer group keeps the offset below which everything is acknowledged, the acknowledgements
above it (they may come out of order), how far it has handed entries out, and which consumer holds
which handed-out range, so that a consumer that stops answering loses its entries to another.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from knowtrace.stream.log import AppendResult, Consumer, EventLog, LogEntry, LogError, LogRecord, StatementConflict
from knowtrace.stream.records import DEFAULT_CLAIM_IDLE_MS, dump_payloads, load_record, ms_option, url_options

__all__ = ["SQLiteConsumer", "SQLiteEventLog"]

FORMAT = "knowtrace-event-log"
FORMAT_VERSION = "1"
#: how long a statement waits for another process's transaction before the log reports it locked
BUSY_TIMEOUT_S = 10.0
#: how often a blocking read looks for new entries
POLL_S = 0.02

SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # AUTOINCREMENT: offsets are never reused, even after trim() deleted the newest entries
    """CREATE TABLE entries (
        offset INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, kind TEXT NOT NULL,
        payload TEXT NOT NULL, statement_id TEXT, content_hash TEXT, appended_at REAL NOT NULL)""",
    """CREATE TABLE statements (
        tenant TEXT NOT NULL, statement_id TEXT NOT NULL, content_hash TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (tenant, statement_id)) WITHOUT ROWID""",
    """CREATE TABLE groups (
        name TEXT PRIMARY KEY, acked_upto INTEGER NOT NULL, delivered_upto INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE acks (
        grp TEXT NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY (grp, offset)) WITHOUT ROWID""",
    """CREATE TABLE deliveries (
        grp TEXT NOT NULL, first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL,
        consumer TEXT NOT NULL, delivered_at REAL NOT NULL, PRIMARY KEY (grp, first_offset)) WITHOUT ROWID""",
    f"INSERT INTO meta VALUES ('format', '{FORMAT}'), ('version', '{FORMAT_VERSION}')",
]

ENTRY_COLUMNS = "e.offset, e.kind, e.tenant, e.payload, e.statement_id, e.content_hash"

PENDING_SQL = f"""
    SELECT {ENTRY_COLUMNS} FROM deliveries d JOIN entries e ON e.offset BETWEEN d.first_offset AND d.last_offset
    WHERE d.grp = :group AND d.consumer = :consumer AND e.offset > :acked
      AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.grp = :group AND a.offset = e.offset)
    ORDER BY e.offset LIMIT :limit"""

FIRST_UNACKED_SQL = """
    SELECT e.offset FROM entries e WHERE e.offset > :acked AND e.offset <= :delivered
      AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.grp = :group AND a.offset = e.offset)
    ORDER BY e.offset LIMIT 1"""

DROP_SETTLED_DELIVERIES_SQL = """
    DELETE FROM deliveries AS d WHERE d.grp = :group AND (d.last_offset <= :acked OR NOT EXISTS (
        SELECT 1 FROM entries e WHERE e.offset BETWEEN max(d.first_offset, :acked + 1) AND d.last_offset
          AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.grp = :group AND a.offset = e.offset)))"""


def _log_error(path: Path, exc: sqlite3.Error) -> LogError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LogError(f"event log {path}: locked by another process for more than {BUSY_TIMEOUT_S:g} s")
    if "not a database" in text:
        return LogError(f"{path} is not a knowtrace event log (not an SQLite database)")
    return LogError(f"event log {path}: {text}")


class _Database:
    """One connection to the log file, usable from several threads one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path.is_dir():
            raise LogError(f"event log {path} is a directory; give the path of a file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(f"cannot create the folder of event log {path}: {exc.strerror}") from None
        try:
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _log_error(path, exc) from None
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        # look before switching to WAL: a foreign SQLite file must be left as it was
        if self._tables():
            self._check_format()
        try:
            self.conn.execute("PRAGMA journal_mode=WAL").fetchone()
            self.conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise _log_error(self.path, exc) from None
        with self.transaction() as conn:
            if not self._tables():
                for statement in SCHEMA:
                    conn.execute(statement)
        self._check_format()

    def _tables(self) -> set[str]:
        try:
            return {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} - {
                "sqlite_sequence"}
        except sqlite3.Error as exc:
            raise _log_error(self.path, exc) from None

    def _check_format(self) -> None:
        try:
            stored = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error:
            stored = {}
        if stored.get("format") != FORMAT:
            raise LogError(f"{self.path} is an SQLite database but not a knowtrace event log")
        if stored.get("version") != FORMAT_VERSION:
            raise LogError(f"event log {self.path} has format version {stored.get('version')!r}; "
                           f"this knowtrace reads version {FORMAT_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: other processes wait for it (up to the busy timeout)."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _log_error(self.path, exc) from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _log_error(self.path, exc) from None
                raise

    def scalar(self, sql: str, params: Sequence[object] = ()) -> int | None:
        """The first column of the first row of a read-only query."""
        with self._lock:
            try:
                row = self.conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise _log_error(self.path, exc) from None
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class SQLiteEventLog(EventLog):
    """An event log in one SQLite file: no server; several processes may append and read at once.

    ``claim_idle_ms``: how long a consumer may keep entries it was given without reading again
    before another consumer of its group is given them.
    """

    def __init__(self, path: str | Path, *, claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.claim_idle_ms = claim_idle_ms
        self._db = _Database(self.path)
        self._consumers: list[SQLiteConsumer] = []

    @classmethod
    def from_url(cls, url: str) -> SQLiteEventLog:
        """The log at ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, with the
        option ``?claim_idle_ms=N``."""
        match = re.fullmatch(r"sqlite:///([^?]+)(?:\?(.*))?", url)
        if match is None or match.group(1) == ":memory:":
            raise LogError(f"expected sqlite:///PATH (or sqlite:////ABSOLUTE/PATH) for the event log, got {url!r}")
        options = url_options(url, match.group(2) or "", {"claim_idle_ms"})
        return cls(match.group(1), claim_idle_ms=ms_option(url, options, "claim_idle_ms", DEFAULT_CLAIM_IDLE_MS))

    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        payloads = dump_payloads(records)
        now = time.time()
        with self._db.transaction() as conn:
            fresh = self._fresh(conn, records)
            (base,) = conn.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'entries'"
                                   ).fetchone()
            offsets: list[int | None] = [None] * len(records)
            for position, index in enumerate(fresh, start=base + 1):
                offsets[index] = position
            conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", [
                (offsets[i], records[i].tenant, records[i].kind, payloads[i], records[i].statement_id,
                 records[i].content_hash, now) for i in fresh])
            conn.executemany("INSERT INTO statements VALUES (?, ?, ?, ?)", [
                (records[i].tenant, records[i].statement_id, records[i].content_hash, offsets[i])
                for i in fresh if records[i].statement_id is not None])
        return AppendResult(offsets)

    @staticmethod
    def _fresh(conn: sqlite3.Connection, records: Sequence[LogRecord]) -> list[int]:
        """The indexes of the records to append; StatementConflict if a statement id clashes."""
        known: dict[tuple[str, str], str] = {}
        fresh, conflicts = [], []
        for index, record in enumerate(records):
            if record.statement_id is None:
                fresh.append(index)
                continue
            key = (record.tenant, record.statement_id)
            if key not in known:
                row = conn.execute("SELECT content_hash FROM statements WHERE tenant = ? AND statement_id = ?",
                                   key).fetchone()
                if row is None:
                    known[key] = record.content_hash  # type: ignore[assignment]
                    fresh.append(index)
                    continue
                known[key] = row[0]
            if known[key] != record.content_hash:
                conflicts.append(record.statement_id)
        if conflicts:
            raise StatementConflict(list(dict.fromkeys(conflicts)))
        return fresh

    def consumer(self, group: str, name: str = "worker") -> SQLiteConsumer:
        consumer = SQLiteConsumer(self, group, name)
        self._consumers.append(consumer)
        return consumer

    def length(self) -> int:
        return int(self._db.scalar("SELECT count(*) FROM entries") or 0)

    def lag(self, group: str) -> int:
        lag = self._db.scalar("""SELECT (SELECT count(*) FROM entries WHERE offset > g.acked_upto)
                                        - (SELECT count(*) FROM acks WHERE grp = g.name)
                                 FROM groups g WHERE g.name = ?""", (group,))
        return self.length() if lag is None else int(lag)

    def trim(self) -> int:
        """Delete the entries every group has acknowledged (none while no group exists); how many.
        Statement ids stay, so a statement sent again is still recognised."""
        with self._db.transaction() as conn:
            (acked,) = conn.execute("SELECT min(acked_upto) FROM groups").fetchone()
            if acked is None:
                return 0
            return conn.execute("DELETE FROM entries WHERE offset <= ?", (acked,)).rowcount

    def close(self) -> None:
        """Release the connections of the log and of its consumers."""
        for consumer in self._consumers:
            consumer.close()
        self._db.close()


class SQLiteConsumer(Consumer):
    """A reader of one group of an SQLite event log, with its own connection."""

    def __init__(self, log: SQLiteEventLog, group: str, name: str) -> None:
        self.group, self.name = group, name
        self._claim_idle_s = log.claim_idle_ms / 1000
        self._db = _Database(log.path)
        #: offsets this consumer object handed out and that are not acked yet: not handed out again
        self._in_hand: set[int] = set()
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO groups VALUES (?, 0, 0)", (group,))

    def read(self, limit: int, block_ms: int = 0) -> list[LogEntry]:
        if limit < 1:
            raise LogError(f"read limit must be at least 1, got {limit}")
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            with self._db.transaction() as conn:
                entries = self._take(conn, limit)
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            time.sleep(min(POLL_S, remaining))

    def _take(self, conn: sqlite3.Connection, limit: int) -> list[LogEntry]:
        acked, delivered = conn.execute("SELECT acked_upto, delivered_upto FROM groups WHERE name = ?",
                                        (self.group,)).fetchone()
        now = time.time()
        # this consumer is alive: it keeps what it holds, and takes what idle consumers hold
        conn.execute("UPDATE deliveries SET consumer = :consumer, delivered_at = :now "
                     "WHERE grp = :group AND (consumer = :consumer OR delivered_at <= :idle_since)",
                     {"consumer": self.name, "now": now, "group": self.group, "idle_since": now - self._claim_idle_s})
        held = conn.execute(PENDING_SQL, {"group": self.group, "consumer": self.name, "acked": acked,
                                          "limit": limit + len(self._in_hand)}).fetchall()
        held = [row for row in held if row[0] not in self._in_hand][:limit]
        new = []
        if len(held) < limit:
            new = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.offset > ? ORDER BY e.offset LIMIT ?",
                               (delivered, limit - len(held))).fetchall()
            if new:
                conn.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)",
                             (self.group, new[0][0], new[-1][0], self.name, now))
                conn.execute("UPDATE groups SET delivered_upto = ? WHERE name = ?", (new[-1][0], self.group))
        self._in_hand.update(row[0] for rows in (held, new) for row in rows)
        return [LogEntry(row[0], load_record(*row[1:]), redelivered)
                for rows, redelivered in ((held, True), (new, False)) for row in rows]

    def ack(self, offsets: Sequence[int]) -> None:
        if not offsets:
            return
        self._in_hand.difference_update(int(o) for o in offsets)
        with self._db.transaction() as conn:
            acked, delivered = conn.execute("SELECT acked_upto, delivered_upto FROM groups WHERE name = ?",
                                            (self.group,)).fetchone()
            # only entries handed out count, as with Redis: acking an undelivered offset does nothing
            conn.executemany("INSERT OR IGNORE INTO acks SELECT ?, offset FROM entries WHERE offset = ?",
                             [(self.group, o) for o in {int(o) for o in offsets} if acked < o <= delivered])
            params = {"group": self.group, "acked": acked, "delivered": delivered}
            unacked = conn.execute(FIRST_UNACKED_SQL, params).fetchone()
            watermark = delivered if unacked is None else unacked[0] - 1
            if watermark > acked:
                conn.execute("UPDATE groups SET acked_upto = ? WHERE name = ?", (watermark, self.group))
                conn.execute("DELETE FROM acks WHERE grp = ? AND offset <= ?", (self.group, watermark))
            conn.execute(DROP_SETTLED_DELIVERIES_SQL, {"group": self.group, "acked": watermark})

    def close(self) -> None:
        self._db.close()
