"""Reading an item-to-concept map: a Q-matrix or an id/concept table."""

from __future__ import annotations

import csv
from pathlib import Path

from knowtrace.exceptions import InputError, UnreadableFileError

__all__ = ["read_concept_map"]


def read_concept_map(path: Path) -> dict[str, tuple[str, ...]]:
    """Map item id -> concept ids from ``path``.

    Two layouts are recognised: a Q-matrix (no header, one 0/1 row per item, item ``i`` on row
    ``i`` counting from 1, concept ``j`` in column ``j`` counting from 1), and a table whose first
    two columns are item id and concept id(s) (comma, tab or semicolon separated; several concepts
    in one cell separated by ``;`` or ``_``; a non-numeric header row is skipped).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UnreadableFileError("concept map not found", file=path) from exc
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"concept map is not UTF-8 text ({exc.reason})", file=path) from exc
    rows = [r for r in csv.reader(text.splitlines(), dialect=_sniff(text)) if any(c.strip() for c in r)]
    if not rows:
        raise UnreadableFileError("concept map is empty", file=path)
    if len(rows[0]) > 2 and all(c.strip() in {"0", "1", "0.0", "1.0"} for c in rows[0]):
        return _qmatrix(rows, path)
    mapping: dict[str, tuple[str, ...]] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise InputError("expected an item id and a concept id", file=path, line=number)
        if number == 1 and not row[0].strip().isdigit() and not row[1].strip().replace("_", "").isdigit():
            continue  # header
        item = row[0].strip()
        concepts = tuple(c for c in (x.strip() for x in row[1].replace("_", ";").split(";")) if c)
        mapping[item] = tuple(dict.fromkeys(mapping.get(item, ()) + concepts))
    return mapping


def _qmatrix(rows: list[list[str]], path: Path) -> dict[str, tuple[str, ...]]:
    width = len(rows[0])
    mapping = {}
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InputError(f"Q-matrix row has {len(row)} columns, expected {width}", file=path, line=number)
        try:
            flags = [float(c) for c in row]
        except ValueError as exc:
            raise InputError(f"Q-matrix cell is not 0/1 ({exc})", file=path, line=number) from exc
        mapping[str(number)] = tuple(str(j) for j, f in enumerate(flags, start=1) if f >= 0.5)
    return mapping


def _sniff(text: str) -> type[csv.Dialect]:
    first = text.splitlines()[0] if text else ""
    if "\t" in first:
        return csv.excel_tab
    if ";" in first and "," not in first:
        class Semicolon(csv.excel):
            delimiter = ";"
        return Semicolon
    return csv.excel
