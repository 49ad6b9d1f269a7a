"""The dialect seam: everything the batch path says differently to PostgreSQL and to SQLite.

The rest of the batch path writes portable SQL with ``?`` placeholders and row values
(``(updated_at, id) > (?, ?)``) and calls these methods for connections, transactions, catalog
introspection, the source clock, streaming reads and bulk writes.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from knowtrace.exceptions import InputError, KnowtraceError, MissingExtraError

__all__ = ["Dialect", "PostgresDialect", "SourceClock", "SourceError", "SqliteDialect", "dialect_for"]

#: the reference tables, children before parents (the order to drop them in)
REFERENCE_TABLES = ("attempts", "item_concepts", "items", "prerequisites", "concepts", "learners", "classes")


class SourceError(KnowtraceError):
    """The source database failed while it was being read (the lake is left as it was)."""


@dataclass(frozen=True)
class SourceClock:
    """The source's clock when an extract starts, and the exclusive upper bound of ``updated_at`` it reads.

    ``bound`` is ``now - lag``, or earlier when a transaction still open on the source started before
    that (``held_by`` says which): rows that transaction writes carry an ``updated_at`` at or after its
    start, so reading up to its start cannot skip them when it commits later.
    """

    now: datetime
    bound: datetime
    bound_text: str
    held_by: str | None = None


class Dialect(ABC):
    """How to talk to one kind of source database."""

    name: ClassVar[str]
    schema_file: ClassVar[str]

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    @property
    @abstractmethod
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions the database driver raises."""

    # -- connections and transactions ----------------------------------------------------------

    @abstractmethod
    def connect(self, *, create: bool = False) -> Any:
        """A new connection in autocommit mode (``transaction`` opens transactions explicitly)."""

    @abstractmethod
    @contextmanager
    def transaction(self, conn: Any, *, snapshot: bool = False) -> Iterator[None]:
        """A transaction: committed when the block ends, rolled back on error.

        ``snapshot``: read-only, and every statement sees the same snapshot of the database.
        """

    def sql(self, text: str) -> str:
        """``text`` with this dialect's placeholders (``?`` in the portable text)."""
        return text

    def rows(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a (small) query."""
        return list(conn.execute(self.sql(sql), tuple(params)).fetchall())

    def scalar(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a query."""
        return conn.execute(self.sql(sql), tuple(params)).fetchone()[0]

    @abstractmethod
    def stream(self, conn: Any, sql: str, params: Sequence[Any], batch_rows: int) -> Iterator[tuple[Any, ...]]:
        """Yield the rows of ``sql`` one by one, never holding more than ``batch_rows`` of them."""

    # -- introspection -------------------------------------------------------------------------

    @abstractmethod
    def columns(self, conn: Any, table: str) -> list[str] | None:
        """The column names of ``table`` in order, or None if there is no such table."""

    @abstractmethod
    def is_unique(self, conn: Any, table: str, column: str) -> bool:
        """Whether the database enforces that ``column`` of ``table`` is unique."""

    @abstractmethod
    def clock(self, conn: Any, lag_s: float) -> SourceClock:
        """The source clock and the upper bound of an extract starting now (call outside a transaction)."""

    # -- time stamps ---------------------------------------------------------------------------

    @abstractmethod
    def watermark_text(self, value: Any) -> str:
        """An ``updated_at`` value as read, as the text a watermark keeps."""

    @abstractmethod
    def watermark_param(self, text: str) -> Any:
        """A watermark's ``updated_at`` text as a parameter that compares exactly like the column."""

    @abstractmethod
    def updated_param(self, value: datetime) -> Any:
        """A moment as a parameter compared with, or written to, ``updated_at``."""

    @abstractmethod
    def time_param(self, value: datetime | None) -> Any:
        """An answer time (``started_at``, ``answered_at``) as a parameter to write."""

    @abstractmethod
    def read_time(self, value: Any) -> datetime | None:
        """A time stamp column's value as an aware UTC datetime; ``ValueError`` if it is not one."""

    # -- writing (``knowtrace source init``) -------------------------------------------------------

    def schema_sql(self) -> str:
        """The reference schema in this dialect."""
        return resources.files("knowtrace.batch").joinpath(self.schema_file).read_text(encoding="utf-8")

    @abstractmethod
    def create_schema(self, conn: Any, *, replace: bool) -> None:
        """Create the reference tables (dropping them first if ``replace``, else refusing if present)."""

    @abstractmethod
    def bulk_insert(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` to ``table``."""

    @abstractmethod
    def insert_missing(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert the ``rows`` whose key is not in ``table`` yet."""

    @abstractmethod
    def default_source_name(self) -> str:
        """The name the source is known by when none is given (the database name, the file stem)."""

    def _refuse_existing(self, conn: Any, replace: bool) -> None:
        if not replace and self.columns(conn, "attempts") is not None:
            raise InputError("the source already has a table attempts; pass --replace (replace=True) to drop "
                             "the reference tables and create them again", field="dsn")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _columns_sql(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3 (the ``postgres`` extra); streams with a server-side cursor."""

    name = "postgres"
    schema_file = "schema.sql"
    cursor_name = "knowtrace_extract"

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (_psycopg().Error,)

    def connect(self, *, create: bool = False) -> Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.dsn, autocommit=True)
        except psycopg.Error as exc:
            raise InputError(f"cannot connect to the PostgreSQL source: {str(exc).strip()}", field="dsn") from None

    @contextmanager
    def transaction(self, conn: Any, *, snapshot: bool = False) -> Iterator[None]:
        psycopg = _psycopg()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ if snapshot else None
        conn.read_only = True if snapshot else None
        with conn.transaction():
            yield

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def stream(self, conn: Any, sql: str, params: Sequence[Any], batch_rows: int) -> Iterator[tuple[Any, ...]]:
        with conn.cursor(name=self.cursor_name) as cursor:
            cursor.itersize = batch_rows
            cursor.execute(self.sql(sql), tuple(params))
            while True:
                batch = cursor.fetchmany(batch_rows)
                if not batch:
                    return
                batch.reverse()
                while batch:
                    yield batch.pop()

    def columns(self, conn: Any, table: str) -> list[str] | None:
        if self.scalar(conn, "SELECT to_regclass(?) IS NULL", [table]):
            return None
        return [r[0] for r in self.rows(
            conn, "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?) AND attnum > 0 "
                  "AND NOT attisdropped ORDER BY attnum", [table])]

    def is_unique(self, conn: Any, table: str, column: str) -> bool:
        return bool(self.scalar(conn, """
            SELECT EXISTS (
                SELECT 1 FROM pg_index AS i
                JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = to_regclass(?) AND i.indisunique AND i.indnkeyatts = 1
                  AND i.indpred IS NULL AND a.attname = ?
            )""", [table, column]))

    def clock(self, conn: Any, lag_s: float) -> SourceClock:
        # one statement, outside any transaction: the activity it sees is from after ``now``, so a
        # transaction that is still open when the extract's snapshot is taken either shows up here or
        # started after ``now`` (and then writes updated_at >= now >= bound).
        now, oldest, pid = conn.execute(
            """SELECT now(), a.xact_start, a.pid FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (
                   SELECT xact_start, pid FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND backend_type = 'client backend' AND xact_start IS NOT NULL
                   ORDER BY xact_start LIMIT 1
               ) AS a ON true""").fetchone()
        now = _utc(now)
        bound = now - timedelta(seconds=lag_s)
        held_by = None
        if oldest is not None and _utc(oldest) < bound:
            bound = _utc(oldest)
            held_by = f"a transaction open on the source since {bound.isoformat()} (backend pid {pid})"
        return SourceClock(now=now, bound=bound, bound_text=bound.isoformat(), held_by=held_by)

    def watermark_text(self, value: Any) -> str:
        if not isinstance(value, datetime):
            raise InputError(f"table attempts: updated_at must be a timestamp, got {value!r}", field="updated_at")
        return _utc(value).isoformat()

    def watermark_param(self, text: str) -> Any:
        return datetime.fromisoformat(text)

    def updated_param(self, value: datetime) -> Any:
        return _utc(value)

    def time_param(self, value: datetime | None) -> Any:
        return None if value is None else _utc(value)

    def read_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return _utc(value)
        if isinstance(value, str):
            return _utc(datetime.fromisoformat(value))
        raise ValueError(f"not a time stamp: {value!r}")

    def create_schema(self, conn: Any, *, replace: bool) -> None:
        self._refuse_existing(conn, replace)
        if replace:
            conn.execute(f"DROP TABLE IF EXISTS {', '.join(REFERENCE_TABLES)} CASCADE")
            conn.execute("DROP FUNCTION IF EXISTS attempts_touch() CASCADE")
        conn.execute(self.schema_sql())

    def bulk_insert(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with conn.cursor() as cursor, cursor.copy(f'COPY "{table}" ({_columns_sql(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def insert_missing(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join(["%s"] * len(columns))
            with conn.cursor() as cursor:
                cursor.executemany(f'INSERT INTO "{table}" ({_columns_sql(columns)}) VALUES ({marks}) '
                                   "ON CONFLICT DO NOTHING", rows)

    def default_source_name(self) -> str:
        psycopg = _psycopg()
        try:
            name = psycopg.conninfo.conninfo_to_dict(self.dsn).get("dbname")
        except psycopg.ProgrammingError as exc:
            raise InputError(f"not a PostgreSQL DSN: {exc}", field="dsn") from None
        if name:
            return str(name)
        with self.connect() as conn:
            return str(conn.info.dbname)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("psycopg", "postgres") from None
    return psycopg


SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class SqliteDialect(Dialect):
    """SQLite, the embedded stand-in: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    Time stamps are UTC ISO 8601 text; ``updated_at`` is written as ``YYYY-MM-DDTHH:MM:SS.SSSZ``
    (SQLite's own ``strftime('%Y-%m-%dT%H:%M:%fZ')``), so comparing the text compares the time.
    """

    name = "sqlite"
    schema_file = "schema_sqlite.sql"

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        match = re.fullmatch(r"sqlite://(/.+)", dsn)
        if match is None:
            raise InputError(f"expected sqlite:///PATH (or sqlite:////ABSOLUTE/PATH), got {dsn!r}", field="dsn")
        self.path = Path(match.group(1)[1:])

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def connect(self, *, create: bool = False) -> Any:
        if not create and not self.path.is_file():
            raise InputError(f"no SQLite database at {self.path}", field="dsn")
        try:
            return sqlite3.connect(f"{self.path.absolute().as_uri()}?mode={'rwc' if create else 'rw'}",
                                   uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open the SQLite source {self.path}: {exc}", field="dsn") from None

    @contextmanager
    def transaction(self, conn: Any, *, snapshot: bool = False) -> Iterator[None]:
        # a deferred transaction reads one snapshot (WAL) or holds the shared lock (rollback journal)
        conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def stream(self, conn: Any, sql: str, params: Sequence[Any], batch_rows: int) -> Iterator[tuple[Any, ...]]:
        cursor = conn.cursor()
        try:
            cursor.arraysize = batch_rows
            cursor.execute(sql, tuple(params))
            while True:
                batch = cursor.fetchmany(batch_rows)
                if not batch:
                    return
                batch.reverse()
                while batch:
                    yield batch.pop()
        finally:
            cursor.close()

    def columns(self, conn: Any, table: str) -> list[str] | None:
        rows = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        return [r[1] for r in rows] if rows else None

    def is_unique(self, conn: Any, table: str, column: str) -> bool:
        keys = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall() if r[5]]
        if keys == [column]:
            return True
        for _, index, unique, _, partial in conn.execute(f'PRAGMA index_list("{table}")').fetchall():
            if unique and not partial:
                if [r[2] for r in conn.execute(f'PRAGMA index_info("{index}")').fetchall()] == [column]:
                    return True
        return False

    def clock(self, conn: Any, lag_s: float) -> SourceClock:
        now_text, bound_text = conn.execute(f"SELECT {SQLITE_NOW}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
                                            (f"{-lag_s:+.3f} seconds",)).fetchone()
        return SourceClock(now=_utc(datetime.fromisoformat(now_text)),
                           bound=_utc(datetime.fromisoformat(bound_text)), bound_text=bound_text)

    def watermark_text(self, value: Any) -> str:
        if not isinstance(value, str):
            raise InputError(f"table attempts: updated_at must be ISO 8601 text, got {value!r}", field="updated_at")
        return value

    def watermark_param(self, text: str) -> Any:
        return text

    def updated_param(self, value: datetime) -> Any:
        value = _utc(value)
        return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"

    def time_param(self, value: datetime | None) -> Any:
        return None if value is None else f"{_utc(value):%Y-%m-%dT%H:%M:%S.%f}Z"

    def read_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"not ISO 8601 text: {value!r}")
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time stamp: {value!r}") from None

    def create_schema(self, conn: Any, *, replace: bool) -> None:
        self._refuse_existing(conn, replace)
        if replace:
            for table in REFERENCE_TABLES:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        statement = ""
        for line in self.schema_sql().splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                conn.execute(statement)
                statement = ""

    def bulk_insert(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join(["?"] * len(columns))
            conn.executemany(f'INSERT INTO "{table}" ({_columns_sql(columns)}) VALUES ({marks})', rows)

    def insert_missing(self, conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join(["?"] * len(columns))
            conn.executemany(f'INSERT OR IGNORE INTO "{table}" ({_columns_sql(columns)}) VALUES ({marks})', rows)

    def default_source_name(self) -> str:
        return self.path.stem


def dialect_for(dsn: str, expect: str | None = None) -> Dialect:
    """The dialect of ``dsn`` (``sqlite:///…`` is SQLite, anything else PostgreSQL); ``expect`` must match."""
    dsn = dsn.strip()
    if not dsn:
        raise InputError("the DSN is empty", field="dsn")
    dialect: Dialect = SqliteDialect(dsn) if dsn.startswith("sqlite:") else PostgresDialect(dsn)
    if expect is not None and dialect.name != expect:
        hint = "sqlite:///PATH" if expect == "sqlite" else "postgresql://USER@HOST:PORT/DBNAME"
        raise InputError(f"this is the {expect} extractor: expected a DSN like {hint}", field="dsn")
    return dialect
