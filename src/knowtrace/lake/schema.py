"""Arrow schemas of the lake's tables. Column order here is the order on disk."""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "BRONZE_CONCEPTS",
    "BRONZE_INTERACTIONS",
    "BRONZE_ITEMS",
    "EVENT_COLUMNS",
    "QUARANTINE",
    "SILVER_INTERACTIONS",
]

UTC_US = pa.timestamp("us", tz="UTC")

EVENT_COLUMNS = pa.schema(
    [
        ("event_id", pa.string()),
        ("tenant", pa.string()),
        ("learner_id", pa.string()),
        ("item_id", pa.string()),
        ("concept_ids", pa.list_(pa.string())),
        ("correct", pa.int8()),
        ("score", pa.float64()),
        ("response", pa.string()),
        ("timestamp", UTC_US),
        ("seq", pa.int64()),
        ("elapsed_ms", pa.int64()),
        ("attempt", pa.int32()),
        ("session_id", pa.string()),
        ("source", pa.string()),
    ]
)

BRONZE_INTERACTIONS = pa.schema(
    list(EVENT_COLUMNS)
    + [
        ("load_id", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
    ]
)

BRONZE_ITEMS = pa.schema(
    [
        ("tenant", pa.string()),
        ("item_id", pa.string()),
        ("concept_ids", pa.list_(pa.string())),
        ("name", pa.string()),
        ("a", pa.float64()),
        ("b", pa.float64()),
        ("c", pa.float64()),
        ("metadata", pa.string()),
        ("load_id", pa.string()),
    ]
)

BRONZE_CONCEPTS = pa.schema(
    [
        ("tenant", pa.string()),
        ("concept_id", pa.string()),
        ("name", pa.string()),
        ("prerequisites", pa.list_(pa.string())),
        ("load_id", pa.string()),
    ]
)

#: the silver ``interactions`` table: an event per row, its load, and its place in the learner's history
SILVER_INTERACTIONS = pa.schema(list(EVENT_COLUMNS) + [("load_id", pa.string()), ("position", pa.int64())])

QUARANTINE = pa.schema(
    [
        ("load_id", pa.string()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("quarantined_at", UTC_US),
    ]
)
