"""A learner x item 0/1 response matrix, with unanswered cells, built from an array, a wide CSV or answer logs.

Cells are stored densely (float64, NaN = unanswered) when at least a quarter of them are answered,
else sparsely as (learner, item, correct) triplets. From answer logs, a learner who answered an
item several times contributes the FIRST answer (in the learner's order) only, as calibration
assumes one answer per learner and item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp

from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers._tabular import parse_binary, printable
from knowtrace.importers.matrix import MISSING
from knowtrace.models.data import Interactions

__all__ = ["ResponseMatrix"]

#: below this share of answered cells the matrix is stored sparsely
DENSE_MIN_FILL = 0.25


@dataclass(frozen=True, eq=False)
class ResponseMatrix:
    """0/1 answers of ``learner_ids`` (rows) to ``item_ids`` (columns).

    ``values`` is a dense float64 array with NaN for unanswered cells, or None when the answers are
    held sparsely in ``rows``/``cols``/``correct`` (one entry per answered cell).
    """

    learner_ids: np.ndarray
    item_ids: np.ndarray
    values: np.ndarray | None = None
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    correct: np.ndarray | None = None

    # construction ----------------------------------------------------------------------------

    @classmethod
    def from_array(cls, values: Any, *, item_ids: Any = None, learner_ids: Any = None) -> ResponseMatrix:
        """A matrix from a 2-D array of 0/1 with NaN (or None) for unanswered cells.

        Raises ``InputError`` naming the item of a value other than 0, 1 or missing, and when no
        cell is answered at all.
        """
        try:
            if _has_none(values):
                array = np.array(values, dtype=object)
                array = np.where(np.equal(array, None), np.nan, array).astype(np.float64)
            else:
                array = np.array(values, dtype=np.float64)  # a copy: later changes to ``values`` stay out
        except (TypeError, ValueError) as exc:
            raise InputError(f"responses must be numbers 0/1 or missing: {exc}") from None
        if array.ndim != 2:
            raise InputError(f"responses must be a learner x item matrix, got {array.ndim} dimension(s)")
        n, m = array.shape
        items = _ids(item_ids, m, "item", "item_ids")
        learners = _ids(learner_ids, n, "learner", "learner_ids")
        bad = ~np.isnan(array) & (array != 0) & (array != 1)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InputError(f"learner {learners[row]!r} has {array[row, col]!r}; answers must be 0, 1 or missing",
                             field=str(items[col]))
        if array.size == 0 or np.isnan(array).all():
            raise InputError("the response matrix has no answers (every cell is missing)")
        return cls._make(learners, items, dense=array)

    @classmethod
    def from_pairs(cls, learner: np.ndarray, item: np.ndarray, correct: np.ndarray, *, learner_ids: np.ndarray,
                   item_ids: np.ndarray) -> ResponseMatrix:
        """A matrix from one (learner code, item code, 0/1) triplet per answered cell (no repeats)."""
        learner = np.asarray(learner, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        correct = np.asarray(correct, dtype=np.float64)
        if len(correct) == 0:
            raise InputError("the response matrix has no answers (every cell is missing)")
        if np.any((correct != 0) & (correct != 1)):
            raise InputError("answers must be 0 or 1", field="correct")
        key = learner * len(item_ids) + item
        if len(np.unique(key)) != len(key):
            raise InputError("a learner answers an item at most once in a response matrix")
        return cls._make(np.asarray(learner_ids, dtype=str), np.asarray(item_ids, dtype=str),
                         rows=learner, cols=item, correct=correct)

    @classmethod
    def from_interactions(cls, data: Interactions) -> ResponseMatrix:
        """The first answer of every learner to every item of an ``Interactions`` view."""
        n_items = len(data.item_ids)
        key = data.learner.astype(np.int64) * max(n_items, 1) + data.item
        _, first = np.unique(key, return_index=True)  # rows are in (learner, step) order
        return cls.from_pairs(data.learner[first], data.item[first], data.correct[first],
                              learner_ids=data.learner_ids, item_ids=data.item_ids)

    @classmethod
    def from_table(cls, table: Any) -> ResponseMatrix:
        """The first answer of every learner to every item of silver interactions."""
        return cls.from_interactions(Interactions.from_table(table))

    @classmethod
    def from_csv(cls, path: str | Path, *, learner_column: str | None = None,
                 missing: tuple[str, ...] = MISSING) -> ResponseMatrix:
        """A wide CSV: a header of item ids, one row per learner, 0/1 cells (``missing`` tokens = unanswered).

        Without ``learner_column`` learners are ``<file stem>:<n>`` for the n-th data row (from 1).
        """
        path = Path(path)
        if not path.is_file():
            raise UnreadableFileError("no such file" if not path.exists() else "not a file", file=path)
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(autogenerate_column_names=False),
                convert_options=pacsv.ConvertOptions(null_values=[t for t in missing if t],
                                                     strings_can_be_null=True, quoted_strings_can_be_null=True),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise UnreadableFileError(f"not a readable CSV response matrix: {exc}", file=path) from None
        names = table.column_names
        if len(set(names)) != len(names):
            raise UnreadableFileError("item column names repeat; items must be unique", file=path)
        if learner_column is not None:
            if learner_column not in names:
                raise InputError(f"no learner column {learner_column!r}", file=path, field=learner_column)
            learners = np.asarray(table.column(learner_column).cast(pa.string()).to_pylist(), dtype=object)
            if any(v is None or not str(v).strip() for v in learners):
                raise InputError("empty learner id", file=path, field=learner_column)
            learner_ids = np.array([str(v).strip() for v in learners], dtype=str)
            if len(np.unique(learner_ids)) != len(learner_ids):
                raise InputError("a learner id repeats; one row per learner", file=path, field=learner_column)
            table = table.drop([learner_column])
        else:
            learner_ids = np.array([f"{path.stem}:{i + 1}" for i in range(table.num_rows)], dtype=str)
        if table.num_columns == 0:
            raise UnreadableFileError("no item columns", file=path)
        columns = [_binary_column(table.column(name), name, path) for name in table.column_names]
        values = np.column_stack(columns) if columns else np.zeros((table.num_rows, 0))
        if table.num_rows == 0 or np.isnan(values).all():
            raise InputError("the response matrix has no answers (every cell is missing)", file=path)
        return cls._make(learner_ids, np.array(table.column_names, dtype=str), dense=values)

    @classmethod
    def _make(cls, learner_ids: np.ndarray, item_ids: np.ndarray, *, dense: np.ndarray | None = None,
              rows: np.ndarray | None = None, cols: np.ndarray | None = None,
              correct: np.ndarray | None = None) -> ResponseMatrix:
        """Store dense or sparse, whichever suits the fill."""
        n, m = len(learner_ids), len(item_ids)
        if dense is not None:
            answered = ~np.isnan(dense)
            fill = answered.mean() if dense.size else 0.0
            if fill >= DENSE_MIN_FILL:
                return cls(learner_ids, item_ids, values=dense)
            rows, cols = np.nonzero(answered)
            return cls(learner_ids, item_ids, rows=rows.astype(np.int64), cols=cols.astype(np.int64),
                       correct=dense[rows, cols].astype(np.float64))
        assert rows is not None and cols is not None and correct is not None
        if n * m and len(correct) / (n * m) >= DENSE_MIN_FILL:
            values = np.full((n, m), np.nan)
            values[rows, cols] = correct
            return cls(learner_ids, item_ids, values=values)
        return cls(learner_ids, item_ids, rows=rows, cols=cols, correct=correct)

    # shape and summaries ---------------------------------------------------------------------

    @property
    def n_learners(self) -> int:
        """Number of rows."""
        return len(self.learner_ids)

    @property
    def n_items(self) -> int:
        """Number of columns."""
        return len(self.item_ids)

    @property
    def is_dense(self) -> bool:
        """Whether the cells are held as a dense array."""
        return self.values is not None

    def triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, correct) of every answered cell."""
        if self.values is not None:
            rows, cols = np.nonzero(~np.isnan(self.values))
            return rows.astype(np.int64), cols.astype(np.int64), self.values[rows, cols]
        assert self.rows is not None and self.cols is not None and self.correct is not None
        return self.rows, self.cols, self.correct

    def item_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(answers, correct answers) per item."""
        if self.values is not None:
            answered = np.count_nonzero(~np.isnan(self.values), axis=0)
            return answered.astype(np.int64), np.count_nonzero(self.values == 1, axis=0).astype(np.int64)
        _, cols, correct = self.triplets()
        return (np.bincount(cols, minlength=self.n_items).astype(np.int64),
                np.bincount(cols, weights=correct, minlength=self.n_items).astype(np.int64))

    def learner_counts(self) -> np.ndarray:
        """Answers per learner."""
        if self.values is not None:
            return np.count_nonzero(~np.isnan(self.values), axis=1).astype(np.int64)
        rows, _, _ = self.triplets()
        return np.bincount(rows, minlength=self.n_learners).astype(np.int64)

    def subset(self, learners: np.ndarray | None = None, items: np.ndarray | None = None) -> ResponseMatrix:
        """The rows ``learners`` and columns ``items`` (boolean masks or index arrays; None = all);
        the matrix itself when that is all of it."""
        li = np.arange(self.n_learners) if learners is None else _as_index(learners, self.n_learners)
        ii = np.arange(self.n_items) if items is None else _as_index(items, self.n_items)
        if np.array_equal(li, np.arange(self.n_learners)) and np.array_equal(ii, np.arange(self.n_items)):
            return self
        if self.values is not None:
            return ResponseMatrix(self.learner_ids[li], self.item_ids[ii], values=self.values[np.ix_(li, ii)])
        rows, cols, correct = self.triplets()
        new_row = np.full(self.n_learners, -1, dtype=np.int64)
        new_row[li] = np.arange(len(li))
        new_col = np.full(self.n_items, -1, dtype=np.int64)
        new_col[ii] = np.arange(len(ii))
        keep = (new_row[rows] >= 0) & (new_col[cols] >= 0)
        return ResponseMatrix(self.learner_ids[li], self.item_ids[ii], rows=new_row[rows[keep]],
                              cols=new_col[cols[keep]], correct=correct[keep])

    def design(self) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | sp.csr_matrix | None]:
        """(correct indicator, answered indicator), float64 matrices of the matrix's shape, dense or
        CSR; a dense matrix with every cell answered has None for the second."""
        if self.values is not None:
            answered = ~np.isnan(self.values)
            if answered.all():  # 0/1 already: the values themselves, no copy
                return self.values, None
            return np.where(answered, self.values, 0.0), answered.astype(np.float64)
        rows, cols, correct = self.triplets()
        shape = (self.n_learners, self.n_items)
        x1 = sp.csr_matrix((correct, (rows, cols)), shape=shape)
        x1.eliminate_zeros()
        mask = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
        return x1, mask

    def to_dense(self) -> np.ndarray:
        """The matrix as a dense float64 array, NaN where unanswered."""
        if self.values is not None:
            return self.values
        out = np.full((self.n_learners, self.n_items), np.nan)
        rows, cols, correct = self.triplets()
        out[rows, cols] = correct
        return out


def _has_none(values: Any) -> bool:
    if isinstance(values, np.ndarray):
        return values.dtype == object and bool(np.equal(values, None).any())
    try:
        return any(v is None for row in values for v in row)
    except TypeError:
        return False


def _ids(ids: Any, size: int, prefix: str, field: str) -> np.ndarray:
    if ids is None:
        return np.array([f"{prefix}{k + 1}" for k in range(size)], dtype=str)
    out = np.asarray([str(v) for v in ids], dtype=str)
    if len(out) != size:
        raise InputError(f"{len(out)} {field} for {size} {prefix}s", field=field)
    if len(np.unique(out)) != len(out):
        raise InputError(f"{field} repeat; they must be unique", field=field)
    return out


def _as_index(selector: np.ndarray, size: int) -> np.ndarray:
    selector = np.asarray(selector)
    if selector.dtype == bool:
        return np.flatnonzero(selector)
    return selector.astype(np.int64)


def _binary_column(column: pa.ChunkedArray, name: str, path: Path) -> np.ndarray:
    """A CSV column as float64 0/1 with NaN for missing; ``InputError`` naming the item and line
    at the first other value."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = column.cast(pa.float64()).to_numpy()
        values = np.asarray(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isnan(values) & (values != 0) & (values != 1))
        if len(bad):
            value = values[bad[0]]
            shown = int(value) if math.isfinite(value) and value.is_integer() else value
            raise InputError(f"expected 0 or 1 (or missing), got {shown!r}", file=path, line=int(bad[0]) + 2,
                             field=name)
        return values
    text = column.cast(pa.string())
    out = np.full(len(text), np.nan)
    cells = text.to_pylist()
    for row, cell in enumerate(cells):
        if cell is None or not cell.strip() or cell.strip() in MISSING:
            continue
        try:
            out[row] = parse_binary(cell)
        except ValueError:
            raise InputError(f"expected 0 or 1 (or missing), got {printable(cell, 40)!r}", file=path,
                             line=row + 2, field=name) from None
    return out
