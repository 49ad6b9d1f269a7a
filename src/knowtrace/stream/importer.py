"""A micro-batch of log entries as a lake input: events to bronze, rejections to quarantine."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from knowtrace.importers.base import Importer, RawEvent, Record, Rejection
from knowtrace.stream.log import LogEntry

__all__ = ["StreamBatchImporter", "stream_file"]


def stream_file(log_name: str) -> str:
    """The ``source_file`` of rows that came through the log ``log_name``; ``source_line`` holds the offset."""
    return f"stream:{log_name}"


class StreamBatchImporter(Importer):
    """Yields the entries of one micro-batch; the lake load records their offset range."""

    format: ClassVar[str] = "stream"
    description: ClassVar[str] = "events from the ingest API, through the event log"
    importable: ClassVar[bool] = False

    def __init__(self, entries: Sequence[LogEntry], *, log_name: str, consumer: str) -> None:
        super().__init__(tenant="*")
        self.entries = list(entries)
        self.log_name = log_name
        self.consumer = consumer

    def options(self) -> dict[str, Any]:
        offsets = [e.offset for e in self.entries]
        return {"log": self.log_name, "consumer": self.consumer, "count": len(offsets),
                "first_offset": min(offsets, default=None), "last_offset": max(offsets, default=None)}

    def read(self, path: Path | None = None) -> Iterator[Record]:
        file = stream_file(self.log_name)
        for entry in self.entries:
            self.rows_read += 1
            record = entry.record
            if record.kind == "event":
                yield RawEvent({**record.payload, "tenant": record.tenant, "source": "stream"}, file, entry.offset)
            else:
                payload = record.payload
                raw = payload.get("raw")
                yield Rejection(file, entry.offset, str(payload.get("reason") or "rejected by the ingest API"),
                                field=payload.get("field"),
                                raw=raw if isinstance(raw, str) or raw is None else json.dumps(raw, default=str))
