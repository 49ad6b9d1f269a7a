"""Writes the ordered rows of a keyed table's SQL as part files, cutting between learners.

The rows stream out of DuckDB as Arrow batches in the order the SQL gives them, and each part is
written back by DuckDB from its Arrow rows. A scan of Arrow rows carries no statistics, so every part
declares every column optional: DuckDB writes a column without NULLs as required, and parts written
by different builds would otherwise disagree on the schema, which readers of the folder refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.exceptions import LakeError
from knowtrace.lake.files import quote_path
from knowtrace.lake.parts import Key

__all__ = ["NotOrderedByLearner", "Piece", "write_cut", "write_per_part"]

_BATCH_ROWS = 65_536
_WRITE = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"


class NotOrderedByLearner(LakeError):
    """The SQL's rows are not ordered by (tenant, learner_id): they cannot be cut into key-range parts."""


@dataclass
class Piece:
    """One part written by ``write_cut``: its lower bound, first learner, learners and rows."""

    lo: Key | None
    first: Key
    learners: int
    rows: int
    segment: int


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Stream:
    """The rows of ``sql`` as Arrow batches, with the learner starts of each batch."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str, table: str) -> None:
        self.table = table
        # Arrow carries HUGEINT as decimal(38, 0); DuckDB's own Parquet writer stores it as a double
        described = con.execute(f"DESCRIBE {sql}").fetchall()
        self.as_double = {name for name, kind, *_ in described if kind in ("HUGEINT", "UHUGEINT")}
        self.reader = con.sql(sql).to_arrow_reader(_BATCH_ROWS)
        self.last: Key | None = None

    def batches(self) -> Iterator[tuple[pa.RecordBatch, list[tuple[int, Key]]]]:
        """Each batch with its learner starts ``(row, key)``; checks that keys only grow."""
        for batch in self.reader:
            if batch.num_rows == 0:
                continue
            tenants, learners = batch.column("tenant"), batch.column("learner_id")
            if tenants.null_count or learners.null_count:
                raise NotOrderedByLearner(f"{self.table} has rows without tenant or learner_id")
            changed = pc.or_(pc.not_equal(tenants.slice(1), tenants.slice(0, len(tenants) - 1)),
                             pc.not_equal(learners.slice(1), learners.slice(0, len(learners) - 1)))
            rows = [0, *(np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1).tolist()]
            starts = []
            for row in rows:
                key = (tenants[row].as_py(), learners[row].as_py())
                if self.last is not None and not self.last <= key:
                    raise NotOrderedByLearner(f"{self.table} is not ordered by tenant, learner_id")
                if key != self.last:
                    starts.append((row, key))
                self.last = key
            yield batch, starts

    def write(self, writer: duckdb.DuckDBPyConnection, batches: list[pa.RecordBatch], file: Path) -> None:
        table = pa.Table.from_batches(batches, schema=self.reader.schema)
        for name in self.as_double:
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pc.cast(table.column(name), pa.float64()))
        file.parent.mkdir(parents=True, exist_ok=True)
        writer.register("__kt_part", table)
        try:
            writer.execute(f"COPY (SELECT * FROM __kt_part) TO '{quote_path(file)}' ({_WRITE})")
        finally:
            writer.unregister("__kt_part")


def write_cut(con: duckdb.DuckDBPyConnection, sql: str, table: str, segments: Sequence[tuple[Key | None, Key | None]],
              part_rows: int, file_of: Callable[[int], Path]) -> list[Piece]:
    """Write the rows of ``sql`` as parts of about ``part_rows`` rows, a learner never split.

    ``segments``: the key intervals ``[lo, hi)`` the rows fall in, in order; a part never spans two,
    and the first part of each starts at its ``lo``. Part ``n`` goes to ``file_of(n)``.
    """
    stream = _Stream(con, sql, table)
    writer = con.cursor()
    pieces: list[Piece] = []
    pending: list[pa.RecordBatch] = []
    segment = -1
    open_piece: Piece | None = None

    def close() -> None:
        nonlocal pending, open_piece
        if open_piece is not None:
            stream.write(writer, pending, file_of(len(pieces)))
            pieces.append(open_piece)
        pending, open_piece = [], None

    try:
        for batch, starts in stream.batches():
            taken = 0
            for row, key in starts:
                moved = False
                while segment < 0 or (segments[segment][1] is not None and key >= segments[segment][1]):
                    segment += 1
                    moved = True
                    if segment >= len(segments):
                        raise LakeError(f"internal error: {table} has learner {key} after every part rebuilt")
                lo = segments[segment][0]
                if lo is not None and key < lo:
                    raise LakeError(f"internal error: {table} has learner {key} outside the parts rebuilt")
                if open_piece is not None and (moved or open_piece.rows + row - taken >= part_rows):
                    if row > taken:
                        pending.append(batch.slice(taken, row - taken))
                        open_piece.rows += row - taken
                        taken = row
                    close()
                if open_piece is None:
                    open_piece = Piece(lo=lo if moved else key, first=key, learners=0, rows=0, segment=segment)
                open_piece.learners += 1
            if taken < batch.num_rows:
                pending.append(batch.slice(taken))
                assert open_piece is not None
                open_piece.rows += batch.num_rows - taken
        close()
    finally:
        writer.close()
    return pieces


def write_per_part(con: duckdb.DuckDBPyConnection, sql: str, primary: str, primary_files: Sequence[Path],
                   file_of: Callable[[int], Path]) -> list[int]:
    """Write ``sql`` once per part: with the view ``primary`` holding part ``n``'s rows only, its rows go to
    ``file_of(n)``; returns the rows per file. Exact for a keyed table whose rows of a learner depend on
    that learner's rows of ``primary`` only, and bounded in memory by the size of a part."""
    rows = []
    for n, part in enumerate(primary_files):
        file = file_of(n)
        file.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"CREATE OR REPLACE VIEW {primary} AS SELECT * FROM read_parquet('{quote_path(part)}')")
        con.execute(f"COPY ({sql}) TO '{quote_path(file)}' ({_WRITE})")
        rows.append(int(con.execute(f"SELECT count(*) FROM read_parquet('{quote_path(file)}')").fetchall()[0][0]))
    return rows
