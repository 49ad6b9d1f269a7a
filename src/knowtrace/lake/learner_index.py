"""The learner index of a build: per learner, what an append build needs to know of their earlier answers.

One row per learner of silver ``interactions``: the position of their last answer, that answer's
ordering fields (event id, timestamp, seq, source, load id: a struct, so that NULL fields stay), and the
sorted distinct items and concepts they answered. Full and part builds write it from the whole of
silver (``index.parquet``); an append build adds a file with the updated rows of the learners who
answered, which supersede the older ones (files merged into one beyond ``MAX_INDEX_FILES``). It lets an
append build read a few thousand small rows instead of the answers of its learners.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from knowtrace.lake.files import link_or_copy, quote_path

__all__ = ["INDEX_DIR", "MAX_INDEX_FILES", "index_files", "index_sql", "update_learner_index", "write_learner_index"]

INDEX_DIR = "_learners"
BASE_FILE = "index.parquet"
MAX_INDEX_FILES = 8

_ENTRY = """
    max(position) AS position,
    arg_max({'event_id': event_id, 'timestamp': "timestamp", 'seq': seq, 'source': source, 'load_id': load_id},
            position) AS last,
    list_sort(list(DISTINCT item_id)) AS items,
    list_sort(list_distinct(flatten(list(concept_ids)))) AS concepts"""


def index_files(layout: dict[str, Any] | None) -> list[str]:
    """The index files of a build (oldest first; empty when the build has no index)."""
    return list((layout or {}).get("learner_index", []))


def index_sql(folder: Path, files: Sequence[str], learners: str | None = None) -> str:
    """The current index rows of the build in ``folder``: per learner, the row of the newest file (only
    the learners of the relation ``learners``, with columns tenant and learner_id, when given)."""
    only = f" AS f SEMI JOIN {learners} USING (tenant, learner_id)" if learners else ""
    if len(files) == 1:
        return f"SELECT * FROM read_parquet('{quote_path(folder / INDEX_DIR / files[0])}'){only}"
    versions = " UNION ALL BY NAME ".join(
        f"SELECT *, {n} AS __v FROM read_parquet('{quote_path(folder / INDEX_DIR / name)}'){only}"
        for n, name in enumerate(files))
    return (f"SELECT * EXCLUDE (__v) FROM ({versions}) AS v "
            "QUALIFY __v = max(__v) OVER (PARTITION BY tenant, learner_id)")


def _copy(con: duckdb.DuckDBPyConnection, sql: str, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{quote_path(file)}' (FORMAT parquet, COMPRESSION zstd)")


def write_learner_index(con: duckdb.DuckDBPyConnection, out: Path) -> list[str]:
    """Index every learner of the view ``interactions`` into the build ``out``; returns its files."""
    _copy(con, f"SELECT tenant, learner_id, {_ENTRY} FROM interactions GROUP BY tenant, learner_id ORDER BY ALL",
          out / INDEX_DIR / BASE_FILE)
    return [BASE_FILE]


def update_learner_index(con: duckdb.DuckDBPyConnection, previous: Path, files: Sequence[str], out: Path,
                         earlier: str | None = None, added: str | None = None) -> list[str]:
    """Carry the index of ``previous`` into ``out`` with the learners of the rows ``added`` (later answers
    than the indexed ones; ``earlier``: those learners' current index rows) updated; returns its files."""
    for name in files:
        link_or_copy(previous / INDEX_DIR / name, out / INDEX_DIR / name)
    if added is None or earlier is None:
        return list(files)
    name = f"{out.name}.parquet"
    _copy(con, f"""
        WITH fresh AS (SELECT tenant, learner_id, {_ENTRY} FROM {added} GROUP BY tenant, learner_id)
        SELECT f.tenant, f.learner_id, f.position, f.last,
            list_sort(list_distinct(list_concat(coalesce(o.items, []), f.items))) AS items,
            list_sort(list_distinct(list_concat(coalesce(o.concepts, []), f.concepts))) AS concepts
        FROM fresh AS f LEFT JOIN {earlier} AS o ON o.tenant = f.tenant AND o.learner_id = f.learner_id
        ORDER BY f.tenant, f.learner_id""", out / INDEX_DIR / name)
    files = [*files, name]
    if len(files) > MAX_INDEX_FILES:
        merged = f"{out.name}-merged.parquet"
        _copy(con, f"SELECT * FROM ({index_sql(out, files)}) AS current ORDER BY tenant, learner_id",
              out / INDEX_DIR / merged)
        for old in files:
            (out / INDEX_DIR / old).unlink()
        files = [merged]
    return files
