"""Interaction events, their xAPI mapping, the item catalog and the concept graph."""

from knowtrace.events.catalog import Concept, Item, ItemCatalog
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.events.event import EVENT_ID_FIELDS, EventSource, InteractionEvent, derive_event_id
from knowtrace.events.xapi import event_to_statement, statement_to_event

__all__ = [
    "EVENT_ID_FIELDS",
    "Concept",
    "ConceptGraph",
    "EventSource",
    "InteractionEvent",
    "Item",
    "ItemCatalog",
    "derive_event_id",
    "event_to_statement",
    "statement_to_event",
]
