"""The learner index of a build: per learner, what an append build needs to know of their earlier answers.

One row per learner of silver ``interactions``: the position of their last answer, that answer's
ordering fields (event id, timestamp, seq, source, load id: a struct, so that NULL fields stay), and the
sorted distinct items and concepts they answered. Every build writes it: full and part builds from the
whole of silver, append builds by updating the rows of the learners who answered. It lets an append
build read a few thousand small rows instead of the answers of its learners.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from knowtrace.lake.files import quote_path

__all__ = ["INDEX_FILE", "update_learner_index", "write_learner_index"]

INDEX_FILE = "_learners/index.parquet"

_ENTRY = """
    max(position) AS position,
    arg_max({'event_id': event_id, 'timestamp': "timestamp", 'seq': seq, 'source': source, 'load_id': load_id},
            position) AS last,
    list_sort(list(DISTINCT item_id)) AS items,
    list_sort(list_distinct(flatten(list(concept_ids)))) AS concepts"""


def _copy(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> None:
    file = out / INDEX_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{quote_path(file)}' (FORMAT parquet, COMPRESSION zstd)")


def write_learner_index(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """Index every learner of the view ``interactions`` into the build ``out``."""
    _copy(con, f"SELECT tenant, learner_id, {_ENTRY} FROM interactions GROUP BY tenant, learner_id", out)


def update_learner_index(con: duckdb.DuckDBPyConnection, previous: Path, out: Path, added: str) -> None:
    """The index of ``previous`` with the learners of the rows ``added`` (a view or table, later answers
    than the indexed ones) updated, into the build ``out``."""
    old = f"read_parquet('{quote_path(previous / INDEX_FILE)}')"
    _copy(con, f"""
        WITH fresh AS (SELECT tenant, learner_id, {_ENTRY} FROM {added} GROUP BY tenant, learner_id)
        SELECT * FROM (
            SELECT kept.* FROM {old} AS kept ANTI JOIN fresh USING (tenant, learner_id)
            UNION ALL BY NAME
            SELECT f.tenant, f.learner_id, f.position, f.last,
                list_sort(list_distinct(list_concat(coalesce(o.items, []), f.items))) AS items,
                list_sort(list_distinct(list_concat(coalesce(o.concepts, []), f.concepts))) AS concepts
            FROM fresh AS f LEFT JOIN {old} AS o ON o.tenant = f.tenant AND o.learner_id = f.learner_id
        ) AS updated ORDER BY tenant, learner_id""", out)
