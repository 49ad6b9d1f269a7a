"""Any table of answers, CSV or Parquet, with a mapping from event fields to its columns.

The mapping is given as ``columns`` (event field -> column name) plus a few reading options, or
as a YAML file (``mapping``) holding the same keys::

    columns: {learner_id: user, item_id: question, correct: is_correct, timestamp: ts, concept_ids: skills}
    concept_separator: ";"          # several concepts in one text cell (default ";")
    timestamp_format: "%Y-%m-%d %H:%M:%S"   # strptime format; default ISO 8601
    timestamp_unit: ms              # or: the timestamps are epoch numbers in s, ms, us or ns
    timezone: UTC                   # the zone of timestamps written without one
    constants: {tenant: school-a}   # fields with the same value for every row

Without ``columns`` every column named like an event field maps to that field. Columns that are
not mapped are ignored. ``learner_id``, ``item_id`` and ``correct`` or ``score`` are required; a
row where they are empty is rejected. A timestamp without a time zone is rejected unless
``timezone`` says which zone it is in. A ``tenant`` constant overrides the importer's tenant.

Rejections name the line: for CSV the physical line of the row (the header is line 1); for
Parquet, which has no lines, the 1-based row number within the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers._tabular import (
    EPOCH_UNITS,
    CsvFile,
    clean_id,
    is_missing,
    parse_binary,
    parse_int,
    parse_timestamp,
    printable,
    resolve_timezone,
)
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection

__all__ = ["CsvImporter", "ParquetImporter", "TableImporter", "load_mapping"]

#: the event fields a column can be mapped to.
EVENT_FIELDS = (
    "event_id", "tenant", "learner_id", "item_id", "concept_ids", "correct", "score", "response",
    "timestamp", "seq", "elapsed_ms", "attempt", "session_id",
)
_ID_FIELDS = ("event_id", "tenant", "learner_id", "item_id", "session_id")
_INT_FIELDS = ("seq", "elapsed_ms", "attempt")
#: the keys a mapping (YAML file or keyword arguments) may hold.
MAPPING_KEYS = ("columns", "concept_separator", "timestamp_format", "timestamp_unit", "timezone", "constants")
_BATCH_ROWS = 65_536


def load_mapping(path: Path) -> dict[str, Any]:
    """The mapping settings of a YAML file; unknown keys raise ``InputError`` naming the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableFileError("mapping file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"cannot read the mapping file: {exc}", file=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"mapping is not valid YAML: {exc}", file=path) from exc
    if not isinstance(data, dict):
        raise InputError("mapping must be a YAML mapping with a 'columns' key", file=path)
    for key in data:
        if key not in MAPPING_KEYS:
            raise InputError(f"unknown mapping key {key!r}; known keys: {', '.join(MAPPING_KEYS)}",
                             file=path, field=str(key))
    return data


class TableImporter(Importer):
    """Shared by the CSV and Parquet importers: the column mapping and the cell conversions."""

    def __init__(
        self,
        *,
        tenant: str = "default",
        columns: dict[str, str] | None = None,
        mapping: Path | None = None,
        concept_separator: str | None = None,
        timestamp_format: str | None = None,
        timestamp_unit: str | None = None,
        timezone: str | None = None,
        constants: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(tenant=tenant)
        given = {"columns": columns, "concept_separator": concept_separator, "timestamp_format": timestamp_format,
                 "timestamp_unit": timestamp_unit, "timezone": timezone, "constants": constants}
        if mapping is not None:
            extra = [key for key, value in given.items() if value is not None]
            if extra:
                raise InputError(f"give the mapping either as a file or as options, not both ({', '.join(extra)})")
            given = {**dict.fromkeys(MAPPING_KEYS), **load_mapping(mapping)}
        self.mapping = Path(mapping) if mapping is not None else None
        where = str(mapping) if mapping is not None else None
        self.columns = _check_fields(given["columns"], "columns", where)
        self.constants = _check_fields(given["constants"], "constants", where, values_are_columns=False)
        both = sorted(set(self.columns or {}) & set(self.constants))
        if both:
            raise InputError(f"field(s) {', '.join(both)} are both mapped to a column and constant", file=where)
        self.concept_separator = str(given["concept_separator"] or ";")
        self.timestamp_format = given["timestamp_format"]
        self.timestamp_unit = given["timestamp_unit"]
        if self.timestamp_unit is not None and self.timestamp_unit not in EPOCH_UNITS:
            raise InputError(f"timestamp_unit must be one of {', '.join(EPOCH_UNITS)}, got {self.timestamp_unit!r}",
                             file=where, field="timestamp_unit")
        if self.timestamp_unit is not None and self.timestamp_format is not None:
            raise InputError("give timestamp_format or timestamp_unit, not both", file=where)
        self.timezone = given["timezone"]
        self._zone = resolve_timezone(self.timezone)
        if self.columns is not None:
            _check_required(self.columns, self.constants, where)
        self._constants: dict[str, Any] = {}
        for field, value in self.constants.items():
            try:
                self._constants[field] = self._convert(field, value)
            except ValueError as exc:
                raise InputError(f"constant {field}: {exc}", file=where, field=field) from None

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "columns": self.columns,
            "concept_separator": self.concept_separator,
            "timestamp_format": self.timestamp_format,
            "timestamp_unit": self.timestamp_unit,
            "timezone": self.timezone,
            "constants": {k: str(v) for k, v in self.constants.items()},
        }

    def _mapping_for(self, available: tuple[str, ...] | list[str], file: Path) -> dict[str, str]:
        """The field -> column mapping for a file with ``available`` columns."""
        if self.columns is not None:
            absent = [column for column in self.columns.values() if column not in available]
            if absent:
                raise UnreadableFileError(
                    f"mapped column(s) {', '.join(map(repr, absent))} not in the file; "
                    f"the columns are {', '.join(map(repr, available))}",
                    file=file,
                )
            return dict(self.columns)
        identity = {field: field for field in EVENT_FIELDS if field in available and field not in self.constants}
        try:
            _check_required(identity, self.constants, None)
        except InputError as exc:
            raise UnreadableFileError(
                f"{exc.reason} (no column mapping was given, so columns are matched by event field name); "
                f"the columns are {', '.join(map(repr, available))}",
                file=file,
            ) from None
        return identity

    def _record(self, values: dict[str, Any], mapping: dict[str, str], file: str, line: int,
                raw: str) -> RawEvent | Rejection:
        """The event of one row (``values``: event field -> cell), or why it is rejected."""
        fields: dict[str, Any] = {"tenant": self.tenant, **self._constants, "source": "import"}
        for field, value in values.items():
            try:
                converted = self._convert(field, value)
            except ValueError as exc:
                reason = str(exc) if str(exc).startswith(field) else f"{field}: {exc}"
                return Rejection(file, line, reason, field=mapping[field], raw=raw)
            if converted is not None:
                fields[field] = converted
        for field in ("learner_id", "item_id"):
            if not fields.get(field):
                return Rejection(file, line, f"{field} is empty", field=mapping.get(field, field), raw=raw)
        if fields.get("correct") is None and fields.get("score") is None:
            column = mapping.get("correct", mapping.get("score", "correct"))
            return Rejection(file, line, "no outcome: correct and score are both empty", field=column, raw=raw)
        return RawEvent(fields, file, line)

    def _convert(self, field: str, value: Any) -> Any:
        """A cell as the value of event ``field`` (None when empty); raise ``ValueError`` if it is not one."""
        if field == "concept_ids":
            return self._concepts(value)
        if is_missing(value):
            return None
        if field in _ID_FIELDS:
            return clean_id(value)
        if field == "correct":
            return parse_binary(value)
        if field == "score":
            return _score(value)
        if field in _INT_FIELDS:
            return parse_int(value)
        if field == "timestamp":
            return parse_timestamp(value, fmt=self.timestamp_format, unit=self.timestamp_unit,  # type: ignore[arg-type]
                                   zone=self._zone)
        return str(value)  # response

    def _concepts(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, (list, tuple)):
            parts = [clean_id(v) for v in value if not is_missing(v)]
        elif is_missing(value):
            return ()
        elif isinstance(value, str):
            parts = [clean_id(v) for v in value.split(self.concept_separator)]
        else:
            parts = [clean_id(value)]
        return tuple(p for p in parts if p)


class CsvImporter(TableImporter):
    """Import a CSV table through a column mapping."""

    format = "csv"
    description = "CSV table of answers with a column mapping (dict or YAML)"

    def __init__(self, *, encoding: str = "utf-8", **options: Any) -> None:
        """``encoding`` of the CSV text; ``options`` as for ``TableImporter``."""
        super().__init__(**options)
        self.encoding = encoding

    def options(self) -> dict[str, Any]:
        return {**super().options(), "encoding": self.encoding}

    def read(self, path: Path) -> Iterator[Record]:
        with CsvFile(Path(path), encoding=self.encoding) as table:
            mapping = self._mapping_for(table.header, table.path)
            index = {field: table.column(column) for field, column in mapping.items()}
            for row in table.rows():
                self.rows_read += 1
                if isinstance(row, Rejection):
                    yield row
                    continue
                values = {field: row.cells[i] for field, i in index.items()}
                yield self._record(values, mapping, table.file, row.line, row.raw())


class ParquetImporter(TableImporter):
    """Import a Parquet table through a column mapping, one row batch in memory at a time."""

    format = "parquet"
    description = "Parquet table of answers with a column mapping (dict or YAML)"

    def read(self, path: Path) -> Iterator[Record]:
        path = Path(path)
        parquet = _open_parquet(path)
        try:
            mapping = self._mapping_for(parquet.schema_arrow.names, path)
            columns = list(dict.fromkeys(mapping.values()))
            line = 0
            batches = parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns)
            while True:
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as exc:
                    raise UnreadableFileError(f"corrupt Parquet data after row {line}: {exc}", file=path) from exc
                if batch is None:
                    return
                for row in _microseconds(batch).to_pylist():
                    line += 1
                    self.rows_read += 1
                    values = {field: row[column] for field, column in mapping.items()}
                    yield self._record(values, mapping, str(path), line, printable(repr(row)))
        finally:
            parquet.close()


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise UnreadableFileError("no such file", file=path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, expected a Parquet file", file=path)
    if path.stat().st_size == 0:
        raise UnreadableFileError("file is empty", file=path)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"not a Parquet file: {exc}", file=path) from exc


def _microseconds(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with nanosecond timestamps cut to microseconds, which Python datetimes can hold."""
    arrays = list(batch.columns)
    for i, array in enumerate(arrays):
        if pa.types.is_timestamp(array.type) and array.type.unit == "ns":
            arrays[i] = array.cast(pa.timestamp("us", array.type.tz), safe=False)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _score(value: Any) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number in [0, 1], got {printable(str(value), 40)!r}") from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"expected a number in [0, 1], got {score!r}")
    return score


def _check_fields(given: Any, key: str, where: str | None, *, values_are_columns: bool = True) -> Any:
    """Validate ``columns`` (field -> column name) or ``constants`` (field -> value)."""
    if given is None:
        return None if values_are_columns else {}
    if not isinstance(given, dict):
        kind = "column name" if values_are_columns else "value"
        raise InputError(f"{key} must be a mapping of event field -> {kind}", file=where, field=key)
    for field, value in given.items():
        if field not in EVENT_FIELDS:
            raise InputError(f"{key}: unknown event field {field!r}; known: {', '.join(EVENT_FIELDS)}",
                             file=where, field=str(field))
        if values_are_columns and (not isinstance(value, str) or not value):
            raise InputError(f"{key}: the column for {field} must be a column name, got {value!r}",
                             file=where, field=field)
    return {str(field): value for field, value in given.items()}


def _check_required(columns: dict[str, str], constants: dict[str, Any], where: str | None) -> None:
    has = set(columns) | set(constants)
    missing = [field for field in ("learner_id", "item_id") if field not in has]
    if not has & {"correct", "score"}:
        missing.append("correct or score")
    if missing:
        raise InputError(f"no column for {', '.join(missing)}", file=where)
