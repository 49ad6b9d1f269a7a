"""Staged Parquet writing: rows are buffered in columns and flushed in bounded batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["StagedTableWriter"]


class StagedTableWriter:
    """Append rows (dicts) to Parquet files under ``folder``, ``batch_rows`` at a time.

    Nothing is created until the first row arrives, so an empty table leaves no file.
    """

    def __init__(self, folder: Path, schema: pa.Schema, *, batch_rows: int = 65536,
                 file_rows: int = 4_000_000) -> None:
        self.folder = folder
        self.schema = schema
        self.batch_rows = batch_rows
        self.file_rows = file_rows
        self.rows = 0
        self._columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_index = 0
        self._rows_in_file = 0

    def append(self, row: dict[str, Any]) -> None:
        for name, column in self._columns.items():
            column.append(row.get(name))
        self._buffered += 1
        self.rows += 1
        if self._buffered >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        table = pa.Table.from_pydict(self._columns, schema=self.schema)
        if self._writer is None or self._rows_in_file >= self.file_rows:
            self._open_next()
        assert self._writer is not None
        self._writer.write_table(table)
        self._rows_in_file += table.num_rows
        self._columns = {name: [] for name in self.schema.names}
        self._buffered = 0

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"part-{self._file_index:05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._file_index += 1
        self._rows_in_file = 0

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
