"""Shared by the table-shaped importers: streaming CSV rows with physical line numbers, and
parsing the cell values (ids, 0/1 outcomes, integers, timestamps) every format needs.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers.base import Rejection, undecodable

__all__ = [
    "CsvFile",
    "Row",
    "clean_id",
    "epoch_to_datetime",
    "is_missing",
    "parse_binary",
    "parse_int",
    "parse_timestamp",
    "printable",
    "resolve_timezone",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_UNITS = ("s", "ms", "us", "ns")
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_INTEGRAL_FLOAT = re.compile(r"^([+-]?\d+)\.0*$")
_SURROGATE = re.compile("[\udc80-\udcff]")  # a byte that did not decode (surrogateescape)
_BOMS = ("\ufeff", "\u00ef\u00bb\u00bf")  # the UTF-8 BOM read as UTF-8, and read as Latin-1


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV data row: the physical line it starts on and its cells (one per header column)."""

    line: int
    cells: list[str]

    def raw(self) -> str:
        """The row as text, for a rejection."""
        return printable(",".join(self.cells))


class CsvFile:
    """A CSV file opened for streaming: its header, then its rows one at a time.

    ``encoding`` is a Python codec name, or ``"auto"``: UTF-8, except that a cell holding bytes
    that are not UTF-8 is decoded as Windows-1252 (Latin-1 where that fails), which reads both the
    UTF-8 and the Latin-1 releases of a data set. With any other encoding a cell that does not
    decode rejects its row. A UTF-8 byte-order mark is ignored. Use as a context manager.
    """

    def __init__(self, path: Path, *, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self.file = str(self.path)
        self.auto = encoding == "auto"
        if not self.path.exists():
            raise UnreadableFileError("no such file", file=self.path)
        if self.path.is_dir():
            raise UnreadableFileError("is a folder, expected a CSV file", file=self.path)
        try:
            self._handle: IO[str] = self.path.open(
                "r", encoding="utf-8" if self.auto else encoding, errors="surrogateescape", newline=""
            )
        except LookupError as exc:
            raise InputError(f"unknown encoding {encoding!r}") from exc
        except OSError as exc:
            raise UnreadableFileError(f"cannot open: {exc.strerror}", file=self.path) from exc
        try:
            self._reader = csv.reader(self._handle)
            self.header = self._read_header()
        except BaseException:
            self._handle.close()
            raise
        self._index = {name: i for i, name in reversed(list(enumerate(self.header)))}
        self._repeated = set(self.duplicates())

    def _read_header(self) -> tuple[str, ...]:
        try:
            first = next(self._reader, None)
        except csv.Error as exc:
            raise UnreadableFileError(f"not a CSV file: {exc}", file=self.path) from exc
        if first is None:
            raise UnreadableFileError("file is empty", file=self.path)
        if not first or not any(cell.strip() for cell in first):
            raise UnreadableFileError("line 1 is blank: expected a header row of column names", file=self.path)
        cells = [self._decode(cell) for cell in first]
        for bom in _BOMS:
            if cells[0].startswith(bom):
                cells[0] = cells[0][len(bom):]
        for number, cell in enumerate(cells, start=1):
            bad = undecodable(cell)
            if bad:
                raise UnreadableFileError(f"header column {number} is {bad}; is this a CSV text file?", file=self.path)
        return tuple(cell.strip() for cell in cells)

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def duplicates(self) -> list[str]:
        """Column names that occur more than once in the header."""
        return sorted(name for name, count in Counter(self.header).items() if count > 1)

    def available(self) -> str:
        """The header, for error messages."""
        return ", ".join(repr(name) for name in self.header)

    def column(self, name: str) -> int:
        """The index of column ``name``; raise ``UnreadableFileError`` if it is missing or repeated."""
        found = self.find(name)
        if found is None:
            raise UnreadableFileError(f"no column {name!r}; the columns are {self.available()}", file=self.path)
        return found

    def find(self, *aliases: str) -> int | None:
        """The index of the first of ``aliases`` in the header, or None; a repeated name is an error."""
        for name in aliases:
            if name in self._index:
                if name in self._repeated:
                    raise UnreadableFileError(f"column {name!r} appears more than once in the header", file=self.path)
                return self._index[name]
        return None

    def resolve(self, wanted: Mapping[str, Sequence[str]], required: Iterable[str]) -> dict[str, int]:
        """Map each wanted name to the index of the first of its aliases present in the header.

        Names in ``required`` that are missing raise ``UnreadableFileError`` listing them all.
        """
        found = {name: self.find(*aliases) for name, aliases in wanted.items()}
        missing = [" or ".join(repr(a) for a in wanted[name]) for name in required if found[name] is None]
        if missing:
            raise UnreadableFileError(
                f"missing required column(s) {', '.join(missing)}; the columns are {self.available()}",
                file=self.path,
            )
        return {name: index for name, index in found.items() if index is not None}

    def rows(self) -> Iterator[Row | Rejection]:
        """Yield each data row, or a ``Rejection`` for a row that cannot be split into the header's cells.

        Blank lines are skipped (they hold no record). A row's line is the physical line it starts
        on (the header is line 1), also when a quoted cell spans several lines.
        """
        width = len(self.header)
        end = self._reader.line_num
        while True:
            start = end + 1
            try:
                cells = next(self._reader, None)
            except csv.Error as exc:
                end = self._reader.line_num
                yield Rejection(self.file, start, f"malformed CSV: {exc}")
                continue
            end = self._reader.line_num
            if cells is None:
                return
            if not cells:
                continue
            clean = all(cell.isascii() for cell in cells) or not any(map(_SURROGATE.search, cells))
            row = Row(start, cells if clean else [self._decode(cell) for cell in cells])
            if len(cells) != width:
                span = f" (lines {start}-{end}: unbalanced quote?)" if end > start else ""
                yield Rejection(self.file, start, f"row has {len(cells)} cells, the header has {width}{span}",
                                raw=row.raw())
                continue
            problem = None if clean else self._undecodable(row)
            if problem is not None:
                yield problem
                continue
            yield row

    def _decode(self, cell: str) -> str:
        if not self.auto or not _SURROGATE.search(cell):
            return cell
        data = cell.encode("utf-8", "surrogateescape")
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def _undecodable(self, row: Row) -> Rejection | None:
        for name, cell in zip(self.header, row.cells):
            bad = undecodable(cell)
            if bad:
                return Rejection(self.file, row.line, bad, field=name, raw=row.raw())
        return None


def printable(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, with undecodable bytes written as ``\\xNN``."""
    return text[:limit].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def clean_id(value: object) -> str:
    """An id as text: stripped, and ``"12.0"`` (a number written by a float column) as ``"12"``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    match = _INTEGRAL_FLOAT.match(text)
    return match.group(1) if match else text


def parse_int(value: object) -> int:
    """An integer from ``12``, ``"12"`` or ``"12.0"``; raise ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    text = clean_id(value)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {printable(str(value), 40)!r}") from None


_TRUE = {"1", "1.0", "true"}
_FALSE = {"0", "0.0", "false"}


def parse_binary(value: object) -> int:
    """0 or 1 from ``0``/``1``, ``0.0``/``1.0`` or ``true``/``false`` (any case); else ``ValueError``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ValueError(f"expected 0 or 1 (or true/false), got {printable(str(value), 40)!r}")


def resolve_timezone(name: str | None) -> tzinfo | None:
    """The time zone named ``name`` (IANA name such as ``"Europe/Paris"``, or ``"UTC"``)."""
    if name is None:
        return None
    if name.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'",
                         field="timezone") from None


def epoch_to_datetime(value: object, unit: Literal["s", "ms", "us", "ns"] = "s") -> datetime:
    """The UTC time ``value`` ``unit``s after 1970-01-01; raise ``ValueError`` if not a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected an epoch time in {unit}, got {value!r}")
    if isinstance(value, int):
        number: int | float = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"expected an epoch time in {unit}, got {printable(text, 40)!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"expected an epoch time in {unit}, got {value!r}")
    try:
        if isinstance(number, int):  # exact: whole microseconds, no float rounding
            return EPOCH + timedelta(microseconds=number * 10**6 // _PER_SECOND[unit])
        return EPOCH + timedelta(seconds=number / _PER_SECOND[unit])
    except OverflowError:
        raise ValueError(f"epoch time {value!r} {unit} is out of range") from None


def parse_timestamp(
    value: object,
    *,
    fmt: str | None = None,
    unit: Literal["s", "ms", "us", "ns"] | None = None,
    zone: tzinfo | None = None,
) -> datetime:
    """A timezone-aware UTC datetime from an ISO 8601 text, a ``fmt`` (strptime) text, an epoch
    number in ``unit``, or a datetime. A time without a zone is read in ``zone``; with no ``zone``
    it raises ``ValueError``.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif unit is not None:
        return epoch_to_datetime(value, unit)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is a number: set timestamp_unit (s or ms) to read epoch times")
    else:
        text = str(value).strip()
        try:
            if fmt is not None:
                moment = datetime.strptime(text, fmt)
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            expected = f"the format {fmt!r}" if fmt is not None else "an ISO 8601 date-time"
            hint = "; epoch numbers need timestamp_unit (s or ms)" if text.replace(".", "", 1).isdigit() else ""
            raise ValueError(f"timestamp {printable(text, 60)!r} is not {expected}{hint}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        if zone is None:
            raise ValueError(
                f"timestamp {moment.isoformat()!r} has no time zone: set timezone (e.g. 'UTC') to say which it is in"
            )
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)


def is_missing(value: Any) -> bool:
    """True for None, NaN and blank text: a cell with no value."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()
