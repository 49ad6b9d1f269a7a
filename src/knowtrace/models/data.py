"""A columnar, integer-coded view of silver interactions shared by all learner models.

``Interactions.from_table`` turns the lake's ``interactions`` table (a ``pyarrow.Table``) into
numpy arrays ordered by learner then position: learner and item codes into sorted id
vocabularies, the concepts of every row as CSR offsets/indices, and ``correct`` as int8.
``order`` maps the view back to the input rows (``view.to_input_order`` undoes the sort).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError

__all__ = ["Interactions", "as_table", "fingerprint", "lookup", "pack_lists", "unpack_lists", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("learner_id", "item_id", "correct")


def as_table(data: Any) -> pa.Table:
    """The interactions as a ``pyarrow.Table``: from a Table, a RecordBatch(Reader), an object with
    ``.to_arrow()`` or any Arrow C stream (a DuckDB relation, a polars DataFrame)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    to_arrow = getattr(data, "to_arrow", None)
    if callable(to_arrow):
        return as_table(to_arrow())
    if hasattr(data, "__arrow_c_stream__"):  # DuckDB relations, polars frames, ...
        return pa.RecordBatchReader.from_stream(data).read_all()
    raise InputError(f"expected interactions as a pyarrow Table, RecordBatchReader, an object with "
                     f".to_arrow() or an Arrow stream, got {type(data).__name__}")


def fingerprint(table: pa.Table) -> str | None:
    """A short hash of the ``event_id`` column in row order (None without that column)."""
    if "event_id" not in table.column_names:
        return None
    ids = table.column("event_id").cast(pa.large_string()).combine_chunks()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(len(ids)).encode())
    if ids.null_count:
        ids = pc.fill_null(ids, "")
    if len(ids):
        _, offsets_buf, data_buf = ids.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[ids.offset: ids.offset + len(ids) + 1]
        digest.update((offsets - offsets[0]).tobytes())
        digest.update(memoryview(data_buf)[int(offsets[0]): int(offsets[-1])])
    return digest.hexdigest()


def _encode(column: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique ids) of a string column; nulls are an error."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise InputError("empty ids in the interactions", field=name)
    encoded = pc.dictionary_encode(column.cast(pa.string()))
    ids = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=str)
    perm = np.argsort(ids, kind="stable")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[perm] = np.arange(len(ids))
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)]
    return codes, ids[perm]


def lookup(vocabulary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Codes of ``ids`` in the sorted ``vocabulary``; -1 where an id is not in it."""
    ids = np.asarray(ids, dtype=str)
    if len(vocabulary) == 0 or len(ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    at = np.searchsorted(vocabulary, ids)
    at_clipped = np.minimum(at, len(vocabulary) - 1)
    found = (at < len(vocabulary)) & (vocabulary[at_clipped] == ids)
    return np.where(found, at_clipped, -1).astype(np.int64)


def pack_lists(mapping: dict[str, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, CSR offsets, flat values) of a str -> tuple-of-str mapping, for ``.npz`` storage."""
    values = list(mapping.values())
    ptr = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(np.int64)
    return np.array(list(mapping), dtype=str), ptr, np.array([x for v in values for x in v], dtype=str)


def unpack_lists(keys: np.ndarray, ptr: np.ndarray, flat: np.ndarray) -> dict[str, tuple[str, ...]]:
    """The mapping stored by ``pack_lists``."""
    p, f = ptr.tolist(), flat.tolist()
    return {key: tuple(f[p[j]:p[j + 1]]) for j, key in enumerate(keys.tolist())}


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interactions as integer codes, rows ordered by (learner, position).

    ``learner[r]`` indexes ``learner_ids``, ``item[r]`` indexes ``item_ids`` and the concepts of
    row ``r`` are ``concept_ids[concept_index[concept_ptr[r]:concept_ptr[r + 1]]]``. ``starts``
    holds the first row of each learner's history (plus ``n`` at the end); ``step[r]`` is the
    0-based index of row ``r`` within its learner's history. Row ``r`` is input row ``order[r]``.
    ``timestamp_s`` (seconds since the epoch) and ``elapsed_ms`` are float arrays, NaN where the
    answer has none, or None when the table has no such column.
    """

    learner: np.ndarray
    learner_ids: np.ndarray
    item: np.ndarray
    item_ids: np.ndarray
    concept_ptr: np.ndarray
    concept_index: np.ndarray
    concept_ids: np.ndarray
    correct: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    step: np.ndarray
    graph: ConceptGraph | None = None
    timestamp_s: np.ndarray | None = None
    elapsed_ms: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.correct)

    @classmethod
    def from_table(cls, table: Any, *, graph: ConceptGraph | None = None) -> Interactions:
        """The view of a silver ``interactions`` table (or anything ``as_table`` accepts), with the
        concept prerequisite ``graph`` of its tenant when known."""
        table = as_table(table)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(f"interactions lack column(s) {', '.join(missing)}")
        if "tenant" in table.column_names and len(pc.unique(table.column("tenant"))) > 1:
            raise InputError("a model is fit on one tenant's interactions; filter the table by tenant first")
        n = table.num_rows
        learner, learner_ids = _encode(table.column("learner_id"), "learner_id")
        item, item_ids = _encode(table.column("item_id"), "item_id")
        correct_col = table.column("correct")
        if correct_col.null_count:
            raise InputError("interactions have rows without a 0/1 outcome", field="correct")
        raw = np.asarray(correct_col.to_numpy())
        correct = raw.astype(np.int8)
        if n and (correct.min() < 0 or correct.max() > 1 or not np.array_equal(correct, raw)):
            raise InputError("correct must be 0 or 1", field="correct")
        ptr, index, concept_ids = _concepts(table, n)

        position = _position(table)
        order = np.lexsort((position, learner)) if position is not None else np.argsort(learner, kind="stable")
        order = order.astype(np.int64, copy=False)
        timestamp_s, elapsed_ms = _float_column(table, "timestamp"), _float_column(table, "elapsed_ms")
        if not np.array_equal(order, np.arange(n)):
            learner, item, correct = learner[order], item[order], correct[order]
            ptr, index = _take_csr(ptr, index, order)
            timestamp_s = timestamp_s[order] if timestamp_s is not None else None
            elapsed_ms = elapsed_ms[order] if elapsed_ms is not None else None
        counts = np.bincount(learner, minlength=len(learner_ids))
        starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        step = np.arange(n, dtype=np.int64) - np.repeat(starts[:-1], counts)
        return cls(learner, learner_ids, item, item_ids, ptr, index, concept_ids, correct, order, starts, step, graph,
                   timestamp_s=timestamp_s, elapsed_ms=elapsed_ms)

    def to_input_order(self, values: np.ndarray) -> np.ndarray:
        """Values computed per view row, rearranged to the rows of the input table."""
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def item_concepts(self) -> dict[str, tuple[str, ...]]:
        """item_id -> the concepts of its first row that has any (items never tagged are left out)."""
        rows = np.flatnonzero(np.diff(self.concept_ptr))
        if len(rows) == 0:
            return {}
        _, first = np.unique(self.item[rows], return_index=True)
        flat = self.concept_ids[self.concept_index].tolist()
        ptr = self.concept_ptr.tolist()
        return {str(self.item_ids[self.item[r]]): tuple(flat[ptr[r]:ptr[r + 1]]) for r in rows[first].tolist()}

    def row_concepts(self) -> np.ndarray:
        """The row of every (row, concept) pair, aligned with ``concept_index``."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.concept_ptr))


def _position(table: pa.Table) -> np.ndarray | None:
    """The within-learner order key: ``position``, else ``seq``, else None (input order)."""
    for name in ("position", "seq"):
        if name in table.column_names and table.column(name).null_count == 0:
            return np.asarray(table.column(name).to_numpy(), dtype=np.int64)
    return None


def _float_column(table: pa.Table, name: str) -> np.ndarray | None:
    """A numeric or timestamp column as float64 (timestamps in seconds since the epoch), NaN where
    null; None without that column."""
    if name not in table.column_names:
        return None
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    scale = 1.0
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
        scale = 1e-6
    elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
        raise InputError(f"{name} must be numeric, got {column.type}", field=name)
    values = pc.fill_null(pc.cast(column, pa.float64()), float("nan")).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64) * scale


def _concepts(table: pa.Table, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CSR offsets, concept codes, sorted concept ids) of the ``concept_ids`` list column."""
    if "concept_ids" not in table.column_names or n == 0:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    column = table.column("concept_ids").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    ptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    flat = pc.list_flatten(column)
    if len(flat) == 0:
        return ptr, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    index, concept_ids = _encode(flat, "concept_ids")
    return ptr, index, concept_ids


def _take_csr(ptr: np.ndarray, index: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``order`` of a CSR structure."""
    lengths = np.diff(ptr)[order]
    new_ptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    gather = np.repeat(ptr[:-1][order] - new_ptr[:-1], lengths) + np.arange(new_ptr[-1], dtype=np.int64)
    return new_ptr, index[gather]
