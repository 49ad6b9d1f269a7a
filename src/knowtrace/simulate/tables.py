"""Simulated classes as in-memory silver tables, for experiments and tests without a lake."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from knowtrace.events.event import InteractionEvent
from knowtrace.importers.base import RawEvent
from knowtrace.lake.frames import events_to_table
from knowtrace.simulate.classroom import ClassroomSimulator

__all__ = ["simulated_interactions"]


def simulated_interactions(**simulator: Any) -> pa.Table:
    """The answers of ``ClassroomSimulator(**simulator)`` (SIMULATED data) as a silver ``interactions`` table."""
    events = (InteractionEvent.model_validate(r.fields) for r in ClassroomSimulator(**simulator).read(None)
              if isinstance(r, RawEvent))
    return events_to_table(events, load_id="simulated")
