"""Median windows: medians kept exact by merging each day's values into small sorted windows, and
computed again from all values when a day moves a median out of its window."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from knowtrace.lake import medians
from knowtrace.lake.medians import MedianRule, medians_view, update_windows, windows_from_values

RULE = MedianRule("item_stats", ("tenant", "item_id"), "elapsed_ms")


def day_values(rng: np.random.Generator, n: int, items: int) -> pa.Table:
    values = rng.integers(0, 50, n).astype(object)
    values[rng.random(n) < 0.1] = None  # unknown durations are left out
    return pa.table({"tenant": pa.array(["t"] * n, pa.string()),
                     "item_id": pa.array([f"q{i}" for i in rng.integers(0, items, n)], pa.string()),
                     "value": pa.array(list(values), pa.int64())})


def expected_medians(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    return dict(con.execute("SELECT item_id, median(value) FROM seen WHERE value IS NOT NULL GROUP BY ALL").fetchall())


def got_medians(con: duckdb.DuckDBPyConnection, file: Path) -> dict[str, float]:
    medians_view(con, RULE, file)
    return dict(con.execute("SELECT item_id, median FROM __medians").fetchall())


def test_daily_updates_keep_every_median_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(medians, "WINDOW", 3)  # windows of at most 7-8 values: updates must slide them
    rng = np.random.default_rng(11)
    con = duckdb.connect()
    seen = day_values(rng, 400, 5)
    con.register("seen", seen)
    file = tmp_path / "day0.parquet"
    windows_from_values(con, RULE, "SELECT * FROM seen", file)
    assert got_medians(con, file) == expected_medians(con)
    assert max(len(w) for w in pq_windows(file)) <= 2 * 3 + 2
    exact = 0
    for d in range(1, 30):
        day = day_values(rng, int(rng.integers(0, 12)), 7)  # new items appear; some days add nothing to an item
        con.register("day", day)
        seen = pa.concat_tables([seen, day])
        con.register("seen", seen)
        nxt = tmp_path / f"day{d}.parquet"
        if update_windows(con, RULE, file, "SELECT * FROM day", nxt):
            exact += 1
        else:
            assert not nxt.exists()
            windows_from_values(con, RULE, "SELECT * FROM seen", nxt)
        file = nxt
        assert got_medians(con, file) == expected_medians(con), f"day {d}"
    assert exact >= 20


def test_a_day_beyond_the_window_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(medians, "WINDOW", 2)
    con = duckdb.connect()
    con.register("seen", pa.table({"tenant": ["t"] * 9, "item_id": ["q"] * 9, "value": list(range(9))}))
    windows_from_values(con, RULE, "SELECT * FROM seen", tmp_path / "a.parquet")
    # ten values above all others move the median 5 places up: past the 2 kept above it
    con.register("day", pa.table({"tenant": ["t"] * 10, "item_id": ["q"] * 10, "value": [100] * 10}))
    assert not update_windows(con, RULE, tmp_path / "a.parquet", "SELECT * FROM day", tmp_path / "b.parquet")
    assert not update_windows(con, RULE, tmp_path / "missing.parquet", "SELECT * FROM day", tmp_path / "b.parquet")
    assert not (tmp_path / "b.parquet").exists()


def pq_windows(file: Path) -> list[list[int]]:
    return [row[0] for row in duckdb.connect().execute(f"SELECT kept FROM read_parquet('{file}')").fetchall()]
