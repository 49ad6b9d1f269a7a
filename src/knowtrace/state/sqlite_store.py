"""Learner states in one SQLite file: the embedded default.

One table ``learner_state`` keyed by (tenant, model, learner_id). The database runs in WAL mode,
so one writer process (the stream worker) and any number of reader processes (the API) work at
once: readers see the last committed ``put_many`` and never wait for the writer. Writes use
``synchronous=FULL``: a ``put_many`` that returned survives a power loss, which the worker relies
on before it acknowledges the log entries it applied.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from knowtrace.state.codec import checked_states, decode_arrays, decode_mastery, encode_arrays, encode_mastery
from knowtrace.state.store import LearnerState, StateError, StateStore

__all__ = ["SQLiteStateStore"]

SCHEMA_VERSION = 1
#: learner ids per ``IN (...)`` query, below SQLite's bound-parameter limit
CHUNK = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS learner_state (
    tenant      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    learner_id  TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    n_answers   INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    updated_at  REAL    NOT NULL,
    arrays      BLOB    NOT NULL,
    mastery     TEXT    NOT NULL,
    PRIMARY KEY (tenant, model, learner_id)
)
"""

UPSERT = """
INSERT INTO learner_state (tenant, model, learner_id, version, n_answers, last_offset, updated_at, arrays, mastery)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, model, learner_id) DO UPDATE SET
    version = excluded.version, n_answers = excluded.n_answers, last_offset = excluded.last_offset,
    updated_at = excluded.updated_at, arrays = excluded.arrays, mastery = excluded.mastery
"""


class SQLiteStateStore(StateStore):
    """Learner states in the SQLite database at ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are opened explicitly; one connection shared by threads under a lock
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state store {self.path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise StateError(f"{self.path} holds state store schema version {version}; this knowtrace "
                                     f"reads version {SCHEMA_VERSION}")
                self._conn.execute(SCHEMA)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise StateError(f"{self.path} is not a usable state store: {exc}") from exc
        except StateError:
            self._conn.close()
            raise

    @classmethod
    def from_url(cls, url: str) -> SQLiteStateStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise StateError(f"expected sqlite:///PATH (or sqlite:////ABSOLUTE/PATH), got {url!r}")
        return cls(url[len(prefix):])

    def __repr__(self) -> str:
        return f"SQLiteStateStore({str(self.path)!r})"

    def get_many(self, tenant: str, model: str, learner_ids: Sequence[str]) -> dict[str, LearnerState]:
        ids = list(dict.fromkeys(learner_ids))
        rows: list[tuple] = []
        with self._lock:
            try:
                for start in range(0, len(ids), CHUNK):
                    chunk = ids[start:start + CHUNK]
                    rows += self._conn.execute(
                        "SELECT learner_id, version, n_answers, last_offset, updated_at, arrays, mastery "
                        f"FROM learner_state WHERE tenant = ? AND model = ? AND learner_id IN "
                        f"({','.join('?' * len(chunk))})", (tenant, model, *chunk)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"cannot read learner states from {self.path}: {exc}") from exc
        out = {}
        for learner_id, version, n_answers, last_offset, updated_at, arrays, mastery in rows:
            where = f"{self.path}: state of learner {learner_id!r} (tenant {tenant!r}, model {model!r})"
            out[learner_id] = LearnerState(model=model, version=version, n_answers=n_answers,
                                           last_offset=last_offset, updated_at=updated_at,
                                           arrays=decode_arrays(arrays, where), mastery=decode_mastery(mastery, where))
        return out

    def put_many(self, tenant: str, states: Mapping[tuple[str, str], LearnerState]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(UPSERT, _rows(tenant, states))
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StateError(f"cannot write learner states to {self.path} (nothing was written): {exc}") from exc

    def learners(self, tenant: str, model: str) -> list[str]:
        with self._lock:
            try:
                rows = self._conn.execute("SELECT learner_id FROM learner_state WHERE tenant = ? AND model = ?",
                                          (tenant, model)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"cannot read learner ids from {self.path}: {exc}") from exc
        return sorted(r[0] for r in rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _rows(tenant: str, states: Mapping[tuple[str, str], LearnerState]) -> Iterator[tuple]:
    """Table rows of the states, encoded one by one as the insert consumes them."""
    for model, learner_id, state, where in checked_states(tenant, states):
        yield (tenant, model, learner_id, state.version, int(state.n_answers), int(state.last_offset),
               float(state.updated_at), encode_arrays(state.arrays), encode_mastery(state.mastery, where))
