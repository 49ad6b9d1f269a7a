"""In-memory interaction tables shaped and ordered exactly like the lake's silver ``interactions``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import pyarrow as pa

from knowtrace.events.event import InteractionEvent
from knowtrace.lake.schema import SILVER_INTERACTIONS

__all__ = ["events_to_table"]

_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


def events_to_table(events: Iterable[InteractionEvent], *, load_id: str = "in-memory") -> pa.Table:
    """Events as a silver ``interactions`` table: one row per event id (first wins), ordered per learner
    by timestamp (missing first), then ``seq``, then event id, with ``position`` counted from 0."""
    rows, seen = [], set()
    for event in events:
        if (event.tenant, event.event_id) in seen:
            continue
        seen.add((event.tenant, event.event_id))
        rows.append({**event.to_row(), "load_id": load_id})
    rows.sort(key=lambda r: (r["tenant"], r["learner_id"], r["timestamp"] is not None, r["timestamp"] or _EPOCH,
                             r["seq"] is None, r["seq"] or 0, r["event_id"]))
    previous, position = None, 0
    for row in rows:
        learner = (row["tenant"], row["learner_id"])
        position = position + 1 if learner == previous else 0
        previous = learner
        row["position"] = position
    return pa.Table.from_pylist(rows, schema=SILVER_INTERACTIONS)
