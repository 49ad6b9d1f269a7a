"""What the event log backends share: checking and encoding records, and options of log URLs."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import parse_qsl

from knowtrace.stream.log import LogError, LogRecord

__all__ = ["DEFAULT_CLAIM_IDLE_MS", "dump_payloads", "load_record", "ms_option", "url_options"]

#: how long a consumer may hold entries without reading again before another consumer of its group takes them
DEFAULT_CLAIM_IDLE_MS = 30_000

KINDS = ("event", "rejection")


def dump_payloads(records: Sequence[LogRecord]) -> list[str]:
    """The JSON text of each record's payload; a LogError names the first record that cannot be logged."""
    texts = []
    for index, record in enumerate(records):
        if record.kind not in KINDS:
            raise LogError(f"record {index}: kind must be one of {', '.join(KINDS)}, got {record.kind!r}")
        if not isinstance(record.tenant, str) or not record.tenant:
            raise LogError(f"record {index}: tenant must be a non-empty string, got {record.tenant!r}")
        if record.statement_id is not None and not record.content_hash:
            raise LogError(f"record {index}: statement_id {record.statement_id!r} comes without a content_hash")
        try:
            texts.append(json.dumps(record.payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
        except (TypeError, ValueError) as exc:
            raise LogError(f"record {index}: payload is not JSON: {exc}") from None
    return texts


def load_record(kind: str, tenant: str, payload: str | bytes, statement_id: str | None,
                content_hash: str | None) -> LogRecord:
    """A record as stored by a backend."""
    return LogRecord(kind, tenant, json.loads(payload), statement_id, content_hash)  # type: ignore[arg-type]


def url_options(url: str, query: str, known: Collection[str]) -> dict[str, str]:
    """The ``?name=value`` options of a log URL; a LogError names any option not in ``known``."""
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise LogError(f"event log URL {url!r}: unknown option(s) {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(known))})")
    return options


def ms_option(url: str, options: dict[str, Any], name: str, default: int) -> int:
    """A non-negative number of milliseconds from the URL options."""
    value = options.get(name, default)
    try:
        milliseconds = int(value)
    except ValueError:
        milliseconds = -1
    if milliseconds < 0:
        raise LogError(f"event log URL {url!r}: {name} must be a whole number of milliseconds >= 0, got {value!r}")
    return milliseconds
