"""Errors raised by knowtrace.

Hierarchy::

    KnowtraceError
    ├── InputError            a record or file the caller gave is wrong (names file, line, field)
    │   └── UnreadableFileError   a whole file cannot be read (missing, not text, empty, wrong format)
    ├── ConceptCycleError     the prerequisite graph has a cycle (names the cycle)
    ├── LakeError             the lake on disk is missing, corrupt or was written by another version
    │   └── QueryError            SQL over the lake failed (carries the engine's message)
    └── MissingExtraError     an optional part is used without its extra installed (gives the pip line)
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConceptCycleError",
    "InputError",
    "KnowtraceError",
    "LakeError",
    "MissingExtraError",
    "QueryError",
    "UnreadableFileError",
]


class KnowtraceError(Exception):
    """Base class of every error knowtrace raises on purpose."""


class InputError(KnowtraceError, ValueError):
    """A record or a file given to knowtrace is not what was expected."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class UnreadableFileError(InputError):
    """A whole input file cannot be read: nothing from it is loaded."""


class ConceptCycleError(KnowtraceError, ValueError):
    """The concept prerequisite graph contains a cycle."""

    def __init__(self, cycle: list[str], *, file: str | Path | None = None) -> None:
        self.cycle = list(cycle)
        self.file = str(file) if file is not None else None
        prefix = f"{self.file}: " if self.file else ""
        super().__init__(prefix + "prerequisite cycle: " + " -> ".join(self.cycle))


class LakeError(KnowtraceError):
    """The lake directory is missing, inconsistent or from an incompatible version."""


class QueryError(LakeError):
    """A SQL query over the lake failed."""


class MissingExtraError(KnowtraceError, ImportError):
    """An optional dependency is needed; the message says which extra installs it."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{package} is not installed; install it with: pip install 'knowtrace[{extra}]'")
