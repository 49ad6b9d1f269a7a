"""The durable event log between the ingest API and the stream worker.

Producers ``append`` records; an append that returns is durable (it survives a kill -9 of every
process). Consumers read through a named *group*: every record is delivered to the group until it
is acknowledged, so a consumer that dies before ``ack`` gets its records again (``redelivered``).
Offsets are 64-bit integers that grow with the log; each backend maps its own positions onto them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from knowtrace.exceptions import KnowtraceError

__all__ = [
    "AppendResult",
    "Consumer",
    "EventLog",
    "LogEntry",
    "LogError",
    "LogRecord",
    "StatementConflict",
    "open_log",
]


class LogError(KnowtraceError):
    """The event log cannot be opened, written or read."""


class StatementConflict(LogError):
    """An xAPI statement id is already stored with different content (HTTP 409)."""

    def __init__(self, statement_ids: Sequence[str]) -> None:
        self.statement_ids = list(statement_ids)
        super().__init__(f"statement id(s) already stored with different content: {', '.join(self.statement_ids[:10])}")


@dataclass(frozen=True)
class LogRecord:
    """What the API hands to the worker.

    ``kind`` "event": ``payload`` is an ``InteractionEvent`` dumped with ``model_dump(mode="json")``.
    ``kind`` "rejection": ``payload`` holds ``reason``, ``field``, ``raw`` (the offending JSON text)
    and ``index`` (its place in the request) so the worker quarantines it.
    ``statement_id``/``content_hash``: set for xAPI statements; the log keeps every statement id
    of the tenant with the hash of its content, atomically with the append.
    """

    kind: Literal["event", "rejection"]
    tenant: str
    payload: dict[str, Any]
    statement_id: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True)
class LogEntry:
    """A record as read back: its offset, and whether this group may have seen it before."""

    offset: int
    record: LogRecord
    redelivered: bool = False


@dataclass
class AppendResult:
    """``offsets[i]`` is the offset of ``records[i]``, or None where the record was an xAPI
    statement already stored with the same content (then nothing was appended for it)."""

    offsets: list[int | None] = field(default_factory=list)

    @property
    def appended(self) -> int:
        return sum(o is not None for o in self.offsets)


class Consumer(ABC):
    """One reader of a group. Within a group each record is processed by one consumer at a time."""

    group: str
    name: str

    @abstractmethod
    def read(self, limit: int, block_ms: int = 0) -> list[LogEntry]:
        """Up to ``limit`` records not yet acknowledged by the group, oldest first: first those an
        earlier consumer of this name (a process that died), or a consumer that stopped answering, was
        given but did not ack, flagged ``redelivered``, then new ones. A consumer object never hands
        out a record twice while it holds it unacknowledged. Waits up to ``block_ms`` when there is nothing."""

    @abstractmethod
    def ack(self, offsets: Sequence[int]) -> None:
        """Mark records processed by this group; they are not delivered to it again."""

    def close(self) -> None:
        """Release connections."""


class EventLog(ABC):
    """An append-only, durable log of ``LogRecord``s with consumer groups."""

    #: names the log in lake manifests and bronze ``source_file`` (``stream:<name>``)
    name: str

    @abstractmethod
    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        """Append atomically and durably: all records or none.

        For records with a ``statement_id``: if the tenant already has that id with another
        ``content_hash`` (or two records of the call share an id with different hashes), raise
        ``StatementConflict`` and append nothing; with the same hash, skip the record (offset None).
        """

    @abstractmethod
    def consumer(self, group: str, name: str = "worker") -> Consumer:
        """A consumer of ``group`` (created at the start of the log if new)."""

    @abstractmethod
    def length(self) -> int:
        """Records appended so far (after trimming: records still held)."""

    @abstractmethod
    def lag(self, group: str) -> int:
        """Records appended and not yet acknowledged by ``group``."""

    def close(self) -> None:
        """Release connections."""


def open_log(url: str) -> EventLog:
    """The log a URL names: ``sqlite:///path/to/log.db`` (embedded, default) or ``redis://host:port/db``.

    A Redis URL may carry ``?stream=NAME`` (default ``knowtrace:events``).
    """
    if url.startswith("sqlite://"):
        from knowtrace.stream.sqlite_log import SQLiteEventLog

        return SQLiteEventLog.from_url(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from knowtrace.stream.redis_log import RedisEventLog

        return RedisEventLog.from_url(url)
    raise LogError(f"unknown event log URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")
