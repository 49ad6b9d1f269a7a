"""A wide response matrix: one CSV row per learner, one column per item, 0/1 cells.

Every column is an item (its header is the item id) except ``learner_column`` when one is named.
Without a learner column a learner is ``<file stem>:<n>`` for the n-th data row (from 1). A cell
holding one of the ``missing`` tokens is an unanswered item: no event and no rejection. Any other
cell must be 0/1 (also ``0.0``/``1.0``, ``true``/``false``). Matrices carry no clock times: the
answers of a learner are ordered by ``seq`` = the item's position among the item columns (from 0).
A learner id that repeats in the learner column rejects the later row (one row per learner).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from knowtrace.events.catalog import Item
from knowtrace.exceptions import UnreadableFileError
from knowtrace.importers._tabular import CsvFile, parse_binary, printable
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection

__all__ = ["MatrixImporter"]

MISSING = ("", "NA", "NaN", "nan", ".", "-")


class MatrixImporter(Importer):
    """Import a learner x item 0/1 response matrix."""

    format = "matrix"
    description = "wide learner x item 0/1 response matrix CSV (header = item ids)"

    def __init__(
        self,
        *,
        tenant: str = "default",
        learner_column: str | None = None,
        missing: tuple[str, ...] = MISSING,
    ) -> None:
        super().__init__(tenant=tenant)
        self.learner_column = learner_column
        self.missing = tuple(missing)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "learner_column": self.learner_column, "missing": list(self.missing)}

    def read(self, path: Path) -> Iterator[Record]:
        missing = {token.strip() for token in self.missing}
        with CsvFile(Path(path)) as table:
            repeated = table.duplicates()
            if repeated:
                raise UnreadableFileError(
                    f"column name(s) {', '.join(map(repr, repeated))} appear more than once: items must be unique",
                    file=table.path,
                )
            learner_index = table.column(self.learner_column) if self.learner_column is not None else None
            items = [(i, name) for i, name in enumerate(table.header) if i != learner_index]
            unnamed = [i + 1 for i, name in items if not name]
            if unnamed:
                raise UnreadableFileError(
                    f"column(s) {unnamed} have no name, so no item id (an unnamed row-label column? "
                    "name it as the learner column)",
                    file=table.path,
                )
            if not items:
                raise UnreadableFileError("no item columns", file=table.path)
            for _, name in items:
                yield Item(item_id=name, tenant=self.tenant)
            stem = table.path.stem
            number = 0
            first_line: dict[str, int] = {}
            for row in table.rows():
                self.rows_read += 1
                number += 1
                if isinstance(row, Rejection):
                    yield row
                    continue
                if learner_index is None:
                    learner = f"{stem}:{number}"
                else:
                    learner = row.cells[learner_index].strip()
                    if not learner:
                        yield Rejection(table.file, row.line, "empty learner id: none of the row's answers is loaded",
                                        field=self.learner_column, raw=row.raw())
                        continue
                    if learner in first_line:
                        yield Rejection(table.file, row.line,
                                        f"learner {learner!r} already has a row at line {first_line[learner]}: "
                                        "none of this row's answers is loaded", field=self.learner_column,
                                        raw=row.raw())
                        continue
                    first_line[learner] = row.line
                for seq, (index, name) in enumerate(items):
                    text = row.cells[index].strip()
                    if text in missing:
                        continue
                    try:
                        correct = parse_binary(text)
                    except ValueError as exc:
                        yield Rejection(table.file, row.line, f"learner {learner}: {exc}", field=name,
                                        raw=printable(text))
                        continue
                    yield RawEvent(
                        {
                            "tenant": self.tenant,
                            "learner_id": learner,
                            "item_id": name,
                            "correct": correct,
                            "seq": seq,
                            "source": "import",
                        },
                        table.file,
                        row.line,
                    )
