"""Interaction events, their xAPI mapping, the item catalog and the concept graph."""

from knowtrace.events.event import EVENT_ID_FIELDS, EventSource, InteractionEvent, derive_event_id

__all__ = ["EVENT_ID_FIELDS", "EventSource", "InteractionEvent", "derive_event_id"]
