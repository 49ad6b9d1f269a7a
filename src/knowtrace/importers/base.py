"""What every importer produces, and the registry that maps format names to importers.

An importer turns one input (a file or a folder) into a stream of records, in bounded memory:

- ``RawEvent``: the fields of one ``InteractionEvent`` and the line it starts on; the lake
  validates it, and a record that fails validation becomes a quarantined rejection;
- ``Rejection``: a record the importer itself could not parse, with line, field and reason;
- ``Item`` / ``Concept`` (from ``knowtrace.events.catalog``): catalog facts the input carries.

Nothing is ever dropped silently: every record read ends up as an event or a rejection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from knowtrace.events.catalog import Concept, Item
from knowtrace.exceptions import InputError, UnreadableFileError

__all__ = [
    "IMPORTERS",
    "Importer",
    "RawEvent",
    "Record",
    "Rejection",
    "get_importer",
    "open_text_lines",
]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """Unvalidated event fields read from ``file`` at ``line`` (1-based)."""

    fields: dict[str, Any]
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot become an event, and why."""

    file: str
    line: int | None
    reason: str
    field: str | None = None
    raw: str | None = None


Record = RawEvent | Rejection | Item | Concept

#: format name -> importer class; filled by ``Importer.__init_subclass__``.
IMPORTERS: dict[str, type[Importer]] = {}


class Importer(ABC):
    """Reads one input format. Subclasses set ``format`` and implement ``read``.

    ``rows_read`` counts the physical records consumed (lines, CSV rows), which can exceed the
    number of events when one answer spans several rows.
    """

    format: ClassVar[str]
    description: ClassVar[str] = ""
    #: False for importers the lake uses internally (not offered by ``knowtrace import``)
    importable: ClassVar[bool] = True

    def __init__(self, *, tenant: str = "default") -> None:
        self.tenant = tenant
        self.rows_read = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("format")
        if name and cls.__dict__.get("importable", True):
            IMPORTERS[name] = cls

    @abstractmethod
    def read(self, path: Path) -> Iterator[Record]:
        """Yield the records of ``path``; raise ``UnreadableFileError`` if it cannot be read at all."""

    def options(self) -> dict[str, Any]:
        """The settings that change what ``read`` yields (part of the load fingerprint)."""
        return {"tenant": self.tenant}


def get_importer(name: str) -> type[Importer]:
    """The importer class registered under ``name``."""
    import knowtrace.importers  # noqa: F401  (registers the built-in formats)
    import knowtrace.simulate  # noqa: F401  (registers the simulator)

    try:
        return IMPORTERS[name]
    except KeyError:
        raise InputError(f"unknown import format {name!r}; known: {', '.join(sorted(IMPORTERS))}") from None


def open_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a text file without its line ending, one line in memory.

    Bytes that are not UTF-8 are kept as surrogate escapes so that the caller can reject just that
    line (see ``undecodable``). A missing, unreadable or empty file raises ``UnreadableFileError``.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("no such file", file=path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, expected a file", file=path)
    try:
        handle = path.open("r", encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open: {exc.strerror}", file=path) from exc
    with handle:
        empty = True
        for number, line in enumerate(handle, start=1):
            empty = False
            yield number, line.rstrip("\r\n")
        if empty:
            raise UnreadableFileError("file is empty", file=path)


def undecodable(text: str) -> str | None:
    """Describe the first non-UTF-8 byte in ``text`` (read with surrogateescape), or None."""
    for column, char in enumerate(text, start=1):
        if "\udc80" <= char <= "\udcff":
            return f"not valid UTF-8: byte 0x{ord(char) - 0xDC00:02x} at column {column}"
    return None
