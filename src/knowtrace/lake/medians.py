"""Exact medians of an aggregate table kept up to date by append builds without reading every value.

A median of all answers' values (``item_stats.median_elapsed_ms``) changes with every answer, and the
partial rows (``knowtrace.lake.aggregates``) keep every value, so recomputing it reads all of them:
the largest cost of an append build. A build therefore also writes, per key (item), a *window*: the
sorted values around the median, at most ``WINDOW`` on each side (column ``kept``), with the counts of
the values below and above it. An append build merges the day's values into the previous build's
windows: a value below the window only adds to the count below, one above to the count above, one
inside enters the window. The median stays exact as long as its position still falls inside the
window, which holds while a day adds fewer than about ``WINDOW`` values to a key; when it does not, or
the previous build has no windows, the windows are computed again from all the values.

The medians follow DuckDB's ``median`` (``quantile_cont(0.5)``): the middle value, or the mean of the
two middle values, as DOUBLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from knowtrace.lake.files import quote_path

__all__ = ["MEDIAN_DIR", "WINDOW", "MedianRule", "median_file", "medians_view", "update_windows",
           "windows_from_values", "write_medians"]

MEDIAN_DIR = "_medians"
#: values kept on each side of the median
WINDOW = 1024


@dataclass(frozen=True)
class MedianRule:
    """A median column of an aggregate table, per ``key``, of the answers' column ``values`` (which the
    table's partial rows keep as a list column of the same name); the table's ``combine`` reads the
    medians from the view ``__medians`` (the key columns and ``median``)."""

    table: str
    key: tuple[str, ...]
    values: str


def median_file(folder: Path, rule: MedianRule) -> Path:
    """Where the windows of ``rule`` lie in the build ``folder``."""
    return folder / MEDIAN_DIR / f"{rule.table}.parquet"


def _keys(rule: MedianRule, alias: str = "") -> str:
    return ", ".join(f"{alias}{k}" for k in rule.key)


def _positions(state: str) -> str:
    """``state`` with n, and the median's positions in its window (0-based ``i_lo``, ``i_hi``)."""
    return f"""
        SELECT *, (n - 1) // 2 - below AS i_lo, n // 2 - below AS i_hi
        FROM (SELECT *, below + len(kept) + above AS n FROM ({state}) AS s) AS counted"""


def _write_trimmed(con: duckdb.DuckDBPyConnection, rule: MedianRule, state: str, file: Path) -> None:
    """Write ``state`` (key, below, kept, above; the median inside each window) with each window cut to
    ``WINDOW`` values on each side of the median."""
    file.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"""COPY (
        SELECT {_keys(rule)}, below + cut_lo AS below,
            list_slice(kept, cut_lo + 1, cut_hi + 1) AS kept,
            above + len(kept) - 1 - cut_hi AS above
        FROM (SELECT *, greatest(i_lo - {WINDOW}, 0) AS cut_lo, least(i_hi + {WINDOW}, len(kept) - 1) AS cut_hi
              FROM ({_positions(state)}) AS p) AS cut
        ORDER BY {_keys(rule)}
        ) TO '{quote_path(file)}' (FORMAT parquet, COMPRESSION zstd)""")


def windows_from_values(con: duckdb.DuckDBPyConnection, rule: MedianRule, values: str, file: Path) -> None:
    """Write the windows of all the values (``values``: SQL giving the key columns and ``value``, NULLs
    left out) to ``file``."""
    _write_trimmed(con, rule, f"""
        SELECT {_keys(rule)}, 0::BIGINT AS below, list_sort(list(value)) AS kept, 0::BIGINT AS above
        FROM ({values}) AS v WHERE value IS NOT NULL GROUP BY {_keys(rule)}""", file)


def update_windows(con: duckdb.DuckDBPyConnection, rule: MedianRule, previous: Path, added: str, file: Path) -> bool:
    """Write to ``file`` the windows of ``previous`` with the values of ``added`` (SQL as for
    ``windows_from_values``) merged in; False, writing nothing, when a median would fall outside its
    window (or ``previous`` does not exist)."""
    if not previous.exists():
        return False
    on = " AND ".join(f"o.{k} = a.{k}" for k in rule.key)
    merged = f"""
        WITH old AS (SELECT * FROM read_parquet('{quote_path(previous)}')),
        new AS (SELECT {_keys(rule)}, list_sort(list(value)) AS v
                FROM ({added}) AS a WHERE value IS NOT NULL GROUP BY {_keys(rule)})
        SELECT {", ".join(f"coalesce(o.{k}, a.{k}) AS {k}" for k in rule.key)},
            CASE WHEN o.kept IS NULL THEN 0
                 ELSE o.below + len(list_filter(coalesce(a.v, []), lambda x: x < o.kept[1])) END AS below,
            CASE WHEN o.kept IS NULL THEN a.v
                 WHEN a.v IS NULL THEN o.kept
                 ELSE list_sort(list_concat(o.kept, list_filter(a.v, lambda x: x >= o.kept[1]
                                                                   AND x <= o.kept[-1]))) END AS kept,
            CASE WHEN o.kept IS NULL THEN 0
                 ELSE o.above + len(list_filter(coalesce(a.v, []), lambda x: x > o.kept[-1])) END AS above
        FROM old AS o FULL OUTER JOIN new AS a ON {on}"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE __median_merged AS {merged}")
    outside = con.execute(f"SELECT count(*) FROM ({_positions('SELECT * FROM __median_merged')}) AS p "
                          "WHERE i_lo < 0 OR i_hi >= len(kept)").fetchall()[0][0]
    if outside:
        return False
    _write_trimmed(con, rule, "SELECT * FROM __median_merged", file)
    return True


def medians_view(con: duckdb.DuckDBPyConnection, rule: MedianRule, file: Path) -> None:
    """Define the view ``__medians`` (the key columns and ``median``) from the windows in ``file``."""
    con.execute(f"""CREATE OR REPLACE VIEW __medians AS
        SELECT {_keys(rule)}, (kept[i_lo + 1]::DOUBLE + kept[i_hi + 1]::DOUBLE) / 2 AS median
        FROM ({_positions(f"SELECT * FROM read_parquet('{quote_path(file)}')")}) AS p""")


def write_medians(con: duckdb.DuckDBPyConnection, out: Path, rule: MedianRule, partials: str,
                  appended: tuple[Path, str] | None = None) -> None:
    """Write the windows of ``rule`` into the build folder ``out`` and define ``__medians`` from them:
    updated from the windows of the previous build folder ``appended[0]`` with the rows of the
    relation ``appended[1]`` where that stays exact, else from all the values of the partial rows
    (the relation ``partials``, whose ``rule.values`` is a list column)."""
    file = median_file(out, rule)
    keys = ", ".join(rule.key)
    if appended is None or not update_windows(
            con, rule, median_file(appended[0], rule), f"SELECT {keys}, {rule.values} AS value FROM {appended[1]}",
            file):
        windows_from_values(con, rule, f"SELECT {keys}, unnest({rule.values}) AS value FROM {partials}", file)
    medians_view(con, rule, file)
