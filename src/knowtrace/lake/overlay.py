"""Appended rows of the learner-keyed tables, kept beside their key-range parts until the next full build.

An append build (``knowtrace.lake.appender``) adds a day's answers without rewriting the parts: the
first keyed table (silver ``interactions``) gets a delta file holding only the new rows, the other
keyed tables (gold ``learner_sequences``) a delta file holding their SQL's rows over the new answers
alone, which the table's merge rule (``knowtrace.lake.aggregates.MERGE_RULES``) combines with the
learner's earlier rows. Delta files live in ``<build>/_deltas/<table>/`` and are listed in
``build.json`` (``layout.deltas``); a table is read through ``keyed_source``, which merges parts and
deltas back into exactly the rows, in exactly the order, that one file of a full build holds. A full
build folds the deltas back into the parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowtrace.exceptions import LakeError
from knowtrace.lake.aggregates import MergeRule, merge_rule_for
from knowtrace.lake.files import quote_path
from knowtrace.lake.transforms import TransformStep

__all__ = ["DELTA_DIR", "Deltas", "chunks_sql", "delta_file", "key_order", "keyed_source", "merge_rule"]

DELTA_DIR = "_deltas"


@dataclass
class Deltas:
    """The delta files of a build per keyed table (oldest first), the partial-row units of the appended
    rows (see ``knowtrace.lake.aggregates``), and the number of appended rows of the first keyed table."""

    files: dict[str, list[str]] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)
    rows: int = 0

    def __bool__(self) -> bool:
        return any(self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {"files": {t: list(f) for t, f in self.files.items()}, "units": list(self.units), "rows": self.rows}

    @classmethod
    def from_layout(cls, layout: Mapping[str, Any] | None) -> Deltas:
        data = (layout or {}).get("deltas") or {}
        return cls({str(t): [str(f) for f in files] for t, files in data.get("files", {}).items()},
                   [str(u) for u in data.get("units", [])], int(data.get("rows", 0)))


def delta_file(folder: Path, table: str, name: str) -> Path:
    """Where a delta file of ``table`` lies in the build ``folder``."""
    return folder / DELTA_DIR / table / name


def key_order(step: TransformStep) -> str:
    """The columns of the final ``ORDER BY`` of a keyed step's SQL (its rows' order)."""
    found = re.search(r"ORDER BY\s+([\w\s,\"]+?)\s*;?\s*$", step.sql)
    if found is None:
        raise ValueError(f"{step.layer}.{step.table}: a keyed table's SQL must end with ORDER BY")
    return found.group(1).strip()


def _files(files: Sequence[Path]) -> str:
    return "[" + ", ".join(f"'{quote_path(f)}'" for f in files) + "]"


def keyed_source(folder: Path, step: TransformStep, deltas: Deltas, *, primary: bool,
                 ordered: bool = True) -> list[Path] | str:
    """The rows of a keyed table of the build in ``folder``: its part files when it has no deltas, else a
    query merging them (``primary``: the deltas add rows; otherwise the merge rule combines a learner's rows).
    ``ordered=False`` leaves out the final sort (for readers that stream)."""
    parts = sorted((folder / step.layer / step.table).glob("*.parquet"))
    names = deltas.files.get(step.table, [])
    if not names:
        return parts
    added = [delta_file(folder, step.table, name) for name in names]
    order = f" ORDER BY {key_order(step)}" if ordered else ""
    if primary:
        return f"SELECT * FROM read_parquet({_files([*parts, *added])}){order}"
    return f"""
        WITH __base AS (SELECT * FROM read_parquet({_files(parts)})),
        __added AS ({chunks_sql(step, added, first=1)}),
        __keys AS (SELECT DISTINCT tenant, learner_id FROM __added),
        __chunks AS (
            SELECT base.*, 0 AS __chunk FROM __base AS base SEMI JOIN __keys USING (tenant, learner_id)
            UNION ALL BY NAME SELECT * FROM __added
        )
        SELECT * FROM (
            SELECT base.* FROM __base AS base ANTI JOIN __keys USING (tenant, learner_id)
            UNION ALL BY NAME
            ({merge_rule(step).merge})
        ) AS merged{order}"""


def merge_rule(step: TransformStep) -> MergeRule:
    """The merge rule of a keyed table with deltas (an error when its SQL has none)."""
    rule = merge_rule_for(step)
    if rule is None:
        raise LakeError(f"{step.layer}.{step.table} has appended rows but no merge rule for its current SQL: "
                        "rebuild the lake in full (knowtrace lake rebuild)")
    return rule


def chunks_sql(step: TransformStep, files: Sequence[Path], *, first: int) -> str:
    """The rows of delta ``files`` of a keyed table, each with ``__chunk`` (``first`` for the first file)."""
    return " UNION ALL BY NAME ".join(f"SELECT *, {first + n} AS __chunk FROM read_parquet('{quote_path(f)}')"
                                      for n, f in enumerate(files))
