"""The real-time path: the durable event log between the ingest API and the stream worker."""

from knowtrace.stream.log import (
    AppendResult,
    Consumer,
    EventLog,
    LogEntry,
    LogError,
    LogRecord,
    StatementConflict,
    open_log,
)

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
