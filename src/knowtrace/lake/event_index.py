"""The event index of a build: which learners' bronze rows share an event id.

Silver keeps one row per ``(tenant, event_id)``; when rows of several learners carry the same event id,
which learner keeps it depends on all of them, so a partial build must recompute those learners
together. The index holds, for every bronze row of the build's loads, ``k = hash(tenant, event_id)``
and the learner, in chunk files under ``<build>/_index/events`` (carried to the next build by hard
link, one new chunk per build); ``shared.parquet`` lists the rows of the keys seen with more than
one learner. A hash collision only ties learners that need not be tied: more work, never a wrong
table. ``hash`` is DuckDB's, so an index is only reused by the same DuckDB version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from knowtrace.lake.files import link_or_copy, quote_path

__all__ = ["EventIndex", "IndexUpdate"]

INDEX_DIR = "_index"
CHUNK_DIR = f"{INDEX_DIR}/events"
SHARED_FILE = f"{INDEX_DIR}/shared.parquet"
#: more chunks than this are merged into one (a build adds one chunk)
MAX_CHUNKS = 16

Key = tuple[str, str]


@dataclass
class IndexUpdate:
    """What indexing a build's new loads found: their learners, every group of learners tied by an event id,
    and how many new rows carry the event id of an earlier row (``old_hits``; a hash collision counts too)."""

    new_learners: set[Key] = field(default_factory=set)
    new_rows: int = 0
    tied: list[list[Key]] = field(default_factory=list)
    old_hits: int = 0


def _files_sql(files: Sequence[Path]) -> str:
    return "[" + ", ".join(f"'{quote_path(f)}'" for f in files) + "]"


class EventIndex:
    """Reads and writes the event index of the build in ``out`` with the DuckDB connection ``con``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, out: Path) -> None:
        self.con = con
        self.out = out
        self.chunks: list[str] = []

    def info(self, shared_rows: int) -> dict[str, Any]:
        return {"chunks": list(self.chunks), "shared_rows": shared_rows}

    def _chunk_path(self, name: str) -> Path:
        return self.out / CHUNK_DIR / name

    def link_chunks(self, previous: Path, chunks: Sequence[str]) -> None:
        """Carry the chunks of the build in ``previous`` into this one."""
        for name in chunks:
            link_or_copy(previous / CHUNK_DIR / name, self._chunk_path(name))
            self.chunks.append(name)

    def add_chunk(self, bronze_files: Sequence[Path]) -> Path | None:
        """Index ``bronze_files`` (bronze interactions) as a new chunk; None when there are none."""
        if not bronze_files:
            return None
        name = f"{self.out.name}-{len(self.chunks):03d}.parquet"
        path = self._chunk_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(
            f"COPY (SELECT hash(tenant, event_id) AS k, tenant, learner_id "
            f"FROM read_parquet({_files_sql(bronze_files)}, union_by_name = true)) "
            f"TO '{quote_path(path)}' (FORMAT parquet, COMPRESSION zstd)")
        self.chunks.append(name)
        return path

    def compact(self) -> None:
        """Merge the chunks into one when there are too many to read quickly."""
        if len(self.chunks) <= MAX_CHUNKS:
            return
        paths = [self._chunk_path(c) for c in self.chunks]
        name = f"{self.out.name}-all.parquet"
        self.con.execute(f"COPY (SELECT * FROM read_parquet({_files_sql(paths)})) "
                         f"TO '{quote_path(self._chunk_path(name))}' (FORMAT parquet, COMPRESSION zstd)")
        for path in paths:
            path.unlink()
        self.chunks = [name]

    def rows(self) -> int:
        if not self.chunks:
            return 0
        paths = [self._chunk_path(c) for c in self.chunks]
        return int(self.con.execute(f"SELECT count(*) FROM read_parquet({_files_sql(paths)})").fetchone()[0])  # type: ignore[index]

    def write_all_shared(self, *, any_duplicates: bool) -> int:
        """Find the keys with rows of several learners over every chunk (none without duplicate events)."""
        paths = [self._chunk_path(c) for c in self.chunks]
        if not any_duplicates or not paths:
            return self._write_shared("SELECT NULL::UBIGINT AS k, NULL::VARCHAR AS tenant, "
                                      "NULL::VARCHAR AS learner_id WHERE FALSE")
        return self._write_shared(
            f"""WITH idx AS (SELECT k, tenant, learner_id FROM read_parquet({_files_sql(paths)})),
                repeated AS (SELECT k FROM idx GROUP BY k HAVING count(*) > 1),
                learners AS (SELECT DISTINCT k, tenant, learner_id FROM idx WHERE k IN (SELECT k FROM repeated))
                SELECT k, tenant, learner_id FROM learners QUALIFY count(*) OVER (PARTITION BY k) > 1""")

    def update_shared(self, previous: Path, new_chunk: Path | None) -> tuple[IndexUpdate, int]:
        """Add to the previous build's shared keys those the new chunk brings; return the new learners and
        every tied group."""
        old_chunks = [self._chunk_path(c) for c in self.chunks if new_chunk is None or self._chunk_path(c) != new_chunk]
        update = IndexUpdate()
        con = self.con
        con.execute(f"CREATE OR REPLACE TEMP VIEW __kt_shared_old AS SELECT k, tenant, learner_id "
                    f"FROM read_parquet('{quote_path(previous / SHARED_FILE)}')")
        if new_chunk is None:
            shared_sql = "SELECT * FROM __kt_shared_old"
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE __kt_new AS SELECT k, tenant, learner_id "
                        f"FROM read_parquet('{quote_path(new_chunk)}')")
            update.new_rows = int(con.execute("SELECT count(*) FROM __kt_new").fetchone()[0])  # type: ignore[index]
            update.new_learners = {(t, lr) for t, lr in con.execute(
                "SELECT DISTINCT tenant, learner_id FROM __kt_new").fetchall()}
            hits = (f"SELECT k, tenant, learner_id FROM read_parquet({_files_sql(old_chunks)}) "
                    "WHERE k IN (SELECT k FROM __kt_new)") if old_chunks else \
                "SELECT * FROM __kt_new WHERE FALSE"
            if old_chunks:
                update.old_hits = int(con.execute(
                    f"SELECT count(*) FROM __kt_new WHERE k IN (SELECT k FROM read_parquet({_files_sql(old_chunks)}))"
                ).fetchall()[0][0])
            shared_sql = f"""
                SELECT DISTINCT k, tenant, learner_id FROM (
                    SELECT * FROM __kt_shared_old
                    UNION ALL
                    SELECT k, tenant, learner_id FROM (
                        SELECT DISTINCT k, tenant, learner_id FROM ({hits} UNION ALL SELECT * FROM __kt_new) AS seen
                    ) AS distinct_seen QUALIFY count(*) OVER (PARTITION BY k) > 1
                ) AS shared"""
        shared_rows = self._write_shared(shared_sql)
        groups: dict[int, list[Key]] = {}
        for k, tenant, learner in con.execute(
                f"SELECT k, tenant, learner_id FROM read_parquet('{quote_path(self.out / SHARED_FILE)}')").fetchall():
            groups.setdefault(k, []).append((tenant, learner))
        update.tied = list(groups.values())
        return update, shared_rows

    def _write_shared(self, sql: str) -> int:
        path = self.out / SHARED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"COPY ({sql}) TO '{quote_path(path)}' (FORMAT parquet, COMPRESSION zstd)")
        return int(self.con.execute(f"SELECT count(*) FROM read_parquet('{quote_path(path)}')").fetchone()[0])  # type: ignore[index]
