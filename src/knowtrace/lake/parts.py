"""Key-range parts of the learner-keyed tables: which part holds a learner, and the SQL filter of a key range.

A part holds every learner whose key ``(tenant, learner_id)`` lies in ``[lo, next part's lo)``; the
first part has no lower bound and the last no upper one, so every key, new ones included, falls in
exactly one part. Keys compare as DuckDB compares them (byte order of UTF-8, which is code point
order, as Python compares strings).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Key", "Part", "interval_filters", "part_of", "runs_of", "target_part_rows"]

Key = tuple[str, str]

#: the part files hold about this many rows of the first keyed table (interactions) ...
MIN_PART_ROWS = 16_384
MAX_PART_ROWS = 1_048_576
#: ... so that a lake has about this many parts: few enough files to read, small enough to rebuild one
PARTS_TARGET = 128


@dataclass
class Part:
    """One part: its lower key bound (None for the first), its first learner, a unique id (kept while the
    part is), and rows per keyed table."""

    lo: Key | None
    first: Key
    learners: int
    uid: str
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "lo": None if self.lo is None else list(self.lo), "first": list(self.first),
                "learners": self.learners, "rows": dict(self.rows)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        lo = data.get("lo")
        return cls(lo=None if lo is None else (str(lo[0]), str(lo[1])), first=(str(data["first"][0]),
                   str(data["first"][1])), learners=int(data["learners"]), uid=str(data["uid"]),
                   rows={str(k): int(v) for k, v in data["rows"].items()})


def target_part_rows(total_rows: int) -> int:
    """Rows per part for a table of ``total_rows``: about ``PARTS_TARGET`` parts, within bounds."""
    return max(MIN_PART_ROWS, min(MAX_PART_ROWS, -(-total_rows // PARTS_TARGET)))


def part_of(parts: Sequence[Part], key: Key) -> int:
    """The index of the part whose key range holds ``key`` (``parts`` non-empty, ordered)."""
    bounds = [p.lo for p in parts[1:]]
    return bisect_right(bounds, key)  # type: ignore[arg-type]


def runs_of(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` of consecutive part indexes."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def interval_filters(lo: Key | None, hi: Key | None) -> list[str]:
    """SQL conditions on ``tenant``/``learner_id`` whose union is the key interval ``[lo, hi)``.

    Each condition is a plain conjunction of comparisons, which DuckDB pushes into Parquet scans
    (row groups outside it are skipped by their statistics).
    """
    if lo is None and hi is None:
        return ["TRUE"]
    if lo is not None and hi is not None and lo[0] == hi[0]:
        return [f"tenant = {_literal(lo[0])} AND learner_id >= {_literal(lo[1])} AND learner_id < {_literal(hi[1])}"]
    boxes = []
    if lo is not None:
        boxes.append(f"tenant = {_literal(lo[0])} AND learner_id >= {_literal(lo[1])}")
    between = []
    if lo is not None:
        between.append(f"tenant > {_literal(lo[0])}")
    if hi is not None:
        between.append(f"tenant < {_literal(hi[0])}")
    boxes.append(" AND ".join(between))
    if hi is not None:
        boxes.append(f"tenant = {_literal(hi[0])} AND learner_id < {_literal(hi[1])}")
    return boxes
