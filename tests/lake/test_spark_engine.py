"""The Spark engine computes the same silver and gold tables as DuckDB, from the same SQL files."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("sqlglot")

from typer.testing import CliRunner  # noqa: E402

from knowtrace.cli.app import app  # noqa: E402
from knowtrace.events.catalog import Concept, Item  # noqa: E402
from knowtrace.exceptions import InputError, LakeError  # noqa: E402
from knowtrace.importers import DkvmnImporter, EdnetKt1Importer, Importer, RawEvent, Record  # noqa: E402
from knowtrace.lake import SILVER_AND_GOLD, DuckDBEngine, Lake, get_engine, schema  # noqa: E402
from knowtrace.lake.dialect import DialectError, duckdb_to_spark  # noqa: E402
from knowtrace.lake.spark_engine import SparkEngine  # noqa: E402
from knowtrace.lake.settings import LakeSettings  # noqa: E402

MASTER = "local[2]"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkEngine]:
    """One Spark session for the module (starting one takes seconds)."""
    engine = SparkEngine(master=MASTER, shuffle_partitions=2)
    engine.session()
    yield engine
    engine.stop()


# -- comparing tables ---------------------------------------------------------------------------------


def read_build(out: Path) -> dict[str, pa.Table]:
    """Every table a build wrote, its files read in name order (the order a lake reads them)."""
    tables = {}
    for step in SILVER_AND_GOLD:
        files = sorted((out / step.layer / step.table).glob("*.parquet"))
        assert files, f"{step.layer}.{step.table} wrote no Parquet file"
        tables[step.table] = pa.concat_tables([pq.read_table(f) for f in files])
    return tables


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_table(name: str, expected: pa.Table, actual: pa.Table) -> None:
    """Same column names and types (nullability flags aside), same rows in the same order (floats to 1e-12)."""
    assert [(f.name, f.type) for f in actual.schema] == [(f.name, f.type) for f in expected.schema], name
    expected_rows, actual_rows = expected.to_pylist(), actual.to_pylist()
    assert len(actual_rows) == len(expected_rows), name
    for n, (want, got) in enumerate(zip(expected_rows, actual_rows)):
        differing = {c: (want[c], got[c]) for c in want if not same_value(want[c], got[c])}
        assert not differing, f"{name} row {n}: (duckdb, spark) = {differing}"


def assert_same_builds(duck: dict[str, pa.Table], spark: dict[str, pa.Table]) -> None:
    assert list(spark) == list(duck)
    for table in duck:
        assert_same_table(table, duck[table], spark[table])


# -- a hand-made bronze layer with the cases the transforms treat specially ---------------------------


def day(d: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, d, hour, tzinfo=timezone.utc)


def answer(event_id: str, learner: str, item: str, concepts: list[str] | None, correct: int | None, load: str,
           line: int, **more: Any) -> dict[str, Any]:
    row = {"event_id": event_id, "tenant": "default", "learner_id": learner, "item_id": item,
           "concept_ids": concepts, "correct": correct,
           "score": None if correct is None else float(correct), "response": None, "timestamp": None,
           "seq": None, "elapsed_ms": None, "attempt": None, "session_id": None, "source": "import",
           "load_id": load, "source_file": f"{load}.csv", "source_line": line}
    return row | more


#: two loads, L1 then L2
BRONZE_INTERACTIONS = [
    # ada: a multi-concept item; timestamps and seq mixed, a missing timestamp orders first
    answer("a1", "ada", "q1", ["add", "mul"], 1, "L1", 1, timestamp=day(2), elapsed_ms=100, attempt=1),
    answer("a2", "ada", "q2", ["mul"], 0, "L1", 2, seq=1, elapsed_ms=300, attempt=2),
    answer("a3", "ada", "q1", ["add", "mul"], None, "L1", 3, seq=0, score=0.5, elapsed_ms=200),
    answer("a4", "ada", "q3", ["frac"], 1, "L1", 4, timestamp=day(1, 12), seq=7, elapsed_ms=400),
    # a1 again from the second load (another answer recorded under the same id): the first arrival wins
    answer("a1", "ada", "q1", ["add", "mul"], 0, "L2", 1, timestamp=day(2)),
    # the same id twice in one load: the earlier line wins
    answer("a5", "ada", "q2", ["mul"], 1, "L2", 2, timestamp=day(3), elapsed_ms=50),
    answer("a5", "ada", "q2", ["mul"], 0, "L2", 3, timestamp=day(3), elapsed_ms=60),
    # a batch extract re-read a changed source row: the newest load holds its latest state
    answer("b1", "bob", "q2", [], 1, "L1", 5, source="batch", timestamp=day(1), score=1.0),
    answer("b1", "bob", "q2", [], 0, "L2", 4, source="batch", timestamp=day(1), score=0.25),
    answer("b2", "bob", "q4", None, 1, "L2", 5, source="stream", timestamp=None, seq=None),
    answer("b3", "bob", "q4", None, 0, "L1", 6, source="stream", timestamp=day(1, 1), seq=3, elapsed_ms=10),
    # another tenant with the same learner and item names
    answer("c1", "ada", "q1", ["geo"], 1, "L2", 6, tenant="other", timestamp=day(5), attempt=1),
    answer("c2", "cy", "q1", ["geo"], 0, "L2", 7, tenant="other", timestamp=day(5), attempt=3, elapsed_ms=7),
]

BRONZE_ITEMS = [
    {"tenant": "default", "item_id": "q1", "concept_ids": [], "name": "one (old)", "a": 1.0, "b": 0.0, "c": None,
     "metadata": "{}", "load_id": "L1"},
    {"tenant": "default", "item_id": "q1", "concept_ids": [], "name": "one", "a": 1.5, "b": 0.1, "c": 0.2,
     "metadata": '{"grade": 3}', "load_id": "L2"},
    {"tenant": "default", "item_id": "q9", "concept_ids": ["trig", "geo"], "name": "nine", "a": None, "b": None,
     "c": None, "metadata": "{}", "load_id": "L1"},
]

BRONZE_CONCEPTS = [
    {"tenant": "default", "concept_id": "mul", "name": "Mult (old)", "prerequisites": [], "load_id": "L1"},
    {"tenant": "default", "concept_id": "mul", "name": "Multiplication", "prerequisites": ["add"], "load_id": "L2"},
    {"tenant": "default", "concept_id": "calc", "name": "Calculus", "prerequisites": ["mul", "frac"], "load_id": "L1"},
]

BRONZE = {
    "bronze_interactions": (BRONZE_INTERACTIONS, schema.BRONZE_INTERACTIONS),
    "bronze_items": (BRONZE_ITEMS, schema.BRONZE_ITEMS),
    "bronze_concepts": (BRONZE_CONCEPTS, schema.BRONZE_CONCEPTS),
}


def parquet_bronze(folder: Path) -> dict[str, list[Path]]:
    """The hand-made bronze as the lake keeps it: a Parquet file per table and load."""
    sources: dict[str, list[Path]] = {}
    for name, (rows, table_schema) in BRONZE.items():
        for load in ("L1", "L2"):
            part = [r for r in rows if r["load_id"] == load]
            if part:
                file = folder / name / load / "part-00000.parquet"
                file.parent.mkdir(parents=True)
                pq.write_table(pa.Table.from_pylist(part, schema=table_schema), file)
                sources.setdefault(name, []).append(file)
    return sources


def build_both(sources: dict[str, Any], tmp_path: Path, spark: SparkEngine) -> tuple[dict, dict]:
    duck_counts = DuckDBEngine().build(sources, SILVER_AND_GOLD, tmp_path / "duckdb")
    seen: list[tuple[str, int]] = []
    spark_counts = spark.build(sources, SILVER_AND_GOLD, tmp_path / "spark",
                               on_step=lambda step, n: seen.append((step.table, n)))
    assert spark_counts == duck_counts and seen == list(duck_counts.items())
    duck, out = read_build(tmp_path / "duckdb"), read_build(tmp_path / "spark")
    assert_same_builds(duck, out)
    return duck, out


# -- the tests ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_step_matches_duckdb_on_parquet_bronze(spark: SparkEngine, tmp_path: Path) -> None:
    _, out = build_both(parquet_bronze(tmp_path / "bronze"), tmp_path, spark)
    # the tables are equal; check they are also right, so that both engines cannot be wrong alike
    ada = [r for r in out["interactions"].to_pylist() if (r["tenant"], r["learner_id"]) == ("default", "ada")]
    assert [(r["event_id"], r["position"]) for r in ada] == [("a3", 0), ("a2", 1), ("a4", 2), ("a1", 3), ("a5", 4)]
    assert [(r["correct"], r["load_id"]) for r in ada if r["event_id"] in ("a1", "a5")] == [(1, "L1"), (1, "L2")]
    bob = {r["event_id"]: r for r in out["interactions"].to_pylist() if r["learner_id"] == "bob"}
    assert (bob["b1"]["score"], bob["b1"]["load_id"]) == (0.25, "L2")
    sequences = {(r["tenant"], r["learner_id"]): r for r in out["learner_sequences"].to_pylist()}
    assert sequences[("default", "ada")]["corrects"] == [None, 0, 1, 1, 1]
    assert sequences[("default", "bob")]["concept_ids"] == [None, [], None]
    items = {r["item_id"]: r for r in out["items"].to_pylist() if r["tenant"] == "default"}
    assert items["q1"]["name"] == "one" and items["q1"]["concept_ids"] == ["add", "mul"]
    assert items["q4"]["concept_ids"] == [] and items["q9"]["concept_ids"] == ["trig", "geo"]
    concepts = {r["concept_id"]: r for r in out["concepts"].to_pylist()}
    assert concepts["mul"]["prerequisites"] == ["add"] and concepts["trig"]["prerequisites"] == []
    q2 = next(r for r in out["item_stats"].to_pylist() if r["item_id"] == "q2")
    assert (q2["n_answers"], q2["first_attempt_correct_rate"], q2["median_elapsed_ms"]) == (3, 1 / 2, 175.0)
    assert out["learner_sequences"].schema.field("n_correct").type == pa.float64()  # DuckDB writes sums as double
    assert out["interactions"].schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


@pytest.mark.slow
def test_in_memory_and_empty_sources(spark: SparkEngine, tmp_path: Path) -> None:
    sources = {name: pa.Table.from_pylist(rows, schema=table_schema) for name, (rows, table_schema) in BRONZE.items()}
    build_both(sources, tmp_path / "arrow", spark)
    empty = {name: table_schema.empty_table() for name, (_, table_schema) in BRONZE.items()}
    _, out = build_both(empty, tmp_path / "empty", spark)
    assert all(t.num_rows == 0 for t in out.values())


DIALECT_CASES = {
    "list keeps NULLs and follows ORDER BY (NULL keys last)":
        "SELECT g, list(x ORDER BY k) AS xs FROM (VALUES (1, 'a', 3), (1, NULL, 1), (1, 'c', NULL), (2, 'd', 2)) "
        "AS t(g, x, k) GROUP BY g ORDER BY g",
    "list ORDER BY NULLS FIRST and a second key":
        "SELECT list(x ORDER BY k NULLS FIRST, j) AS xs FROM (VALUES ('a', 2, 1), ('b', NULL, 1), ('c', 2, 0)) "
        "AS t(x, k, j)",
    "list with FILTER":
        "SELECT list(x ORDER BY k) FILTER (WHERE k > 1) AS xs FROM (VALUES ('a', 1), ('b', 3), ('c', 2)) AS t(x, k)",
    "flatten skips NULL lists, list_distinct drops NULLs":
        "SELECT list_sort(list_distinct(flatten(list(l)))) AS xs, flatten(list(l)) AS ys FROM (VALUES "
        "(['b', NULL, 'a']), (NULL), (['a'])) AS t(l)",
    "NULLS FIRST in a window's ORDER BY":
        "SELECT x, row_number() OVER (ORDER BY k NULLS FIRST, x) AS n FROM (VALUES ('a', 2), ('b', NULL), "
        "('c', 1)) AS t(x, k) ORDER BY n",
    "median and FILTER":
        "SELECT median(v) AS m, avg(v) FILTER (WHERE coalesce(w, 1) = 1) AS a FROM (VALUES (1, NULL), (2, 2), "
        "(4, 1), (10, 3)) AS t(v, w)",
    "unnest and EXCLUDE":
        "SELECT * EXCLUDE (n) FROM (SELECT g, unnest(l) AS c, 1 AS n FROM (VALUES (1, ['x', 'y']), (2, []), "
        "(3, NULL)) AS t(g, l)) AS u ORDER BY g, c",
}


@pytest.mark.parametrize("sql", DIALECT_CASES.values(), ids=DIALECT_CASES.keys())
def test_translated_sql_gives_duckdbs_answer(spark: SparkEngine, sql: str) -> None:
    expected = duckdb.sql(sql).fetchall()
    rows = [tuple(row) for row in spark.session().sql(duckdb_to_spark(sql)).collect()]
    assert rows == expected


def test_untranslatable_constructs_are_refused_by_name() -> None:
    with pytest.raises(DialectError, match="ORDER BY ... DESC"):
        duckdb_to_spark("SELECT list(x ORDER BY k DESC) FROM t")
    with pytest.raises(DialectError, match="DISTINCT"):
        duckdb_to_spark("SELECT list(DISTINCT x) FROM t")


class ListImporter(Importer):
    """Yields the records it was given."""

    format = "test-list"

    def __init__(self, records: list[Record]) -> None:
        super().__init__()
        self.records = records

    def read(self, path: Path | None) -> Iterator[Record]:
        for record in self.records:
            self.rows_read += 1
            yield record

    def options(self) -> dict:
        return {"records": repr(self.records)}


def small_inputs(tmp_path: Path) -> list[tuple[Importer, Path | None]]:
    dkvmn = tmp_path / "tiny_train.csv"
    dkvmn.write_text("3\n1,2,1\n0,1,1\n1\n2\n0\n")
    catalog: list[Record] = [
        Concept(concept_id="add", name="Addition"), Concept(concept_id="mul", prerequisites=("add",)),
        Item(item_id="q1", concept_ids=("mul", "add")),
        RawEvent({"learner_id": "ada", "item_id": "q1", "correct": 1, "timestamp": "2026-01-02T00:00:00+01:00"}, "m", 1),
        RawEvent({"learner_id": "ada", "item_id": "q9", "score": 0.5, "seq": 4, "concept_ids": ["add"]}, "m", 2),
    ]
    return [(DkvmnImporter(), dkvmn), (ListImporter(catalog), None)]


@pytest.mark.slow
def test_a_lake_loads_and_rebuilds_with_the_spark_engine(spark: SparkEngine, tmp_path: Path) -> None:
    on_spark, on_duckdb = Lake(tmp_path / "spark", engine=spark), Lake(tmp_path / "duckdb")
    for importer, path in small_inputs(tmp_path):
        on_duckdb.load(importer, path)
        report = on_spark.load(importer, path)
        assert report.added == report.events > 0
    assert (on_spark.current_build() or {})["engine"] == "spark"
    assert (on_duckdb.current_build() or {})["engine"] == "duckdb"
    for step in SILVER_AND_GOLD:  # the two lakes' loads have different ids
        expected, actual = on_duckdb.table(step.table), on_spark.table(step.table)
        if "load_id" in expected.schema.names:
            expected, actual = expected.drop_columns(["load_id"]), actual.drop_columns(["load_id"])
        assert_same_table(step.table, expected, actual)
    assert on_spark.query("SELECT item_ids FROM learner_sequences WHERE learner_id = 'ada'").to_pylist() == [
        {"item_ids": ["q9", "q1"]}]


@pytest.mark.slow
def test_cli_rebuilds_with_spark(spark: SparkEngine, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "L")
    importer, path = small_inputs(tmp_path)[0]
    lake.load(importer, path)
    before = {s.table: lake.table(s.table) for s in SILVER_AND_GOLD}
    result = CliRunner().invoke(app, ["lake", "rebuild", "--lake", str(lake.root), "--engine", "spark"])
    assert result.exit_code == 0, result.output
    assert "silver.interactions: 4 rows" in result.output
    assert (lake.current_build() or {})["engine"] == "spark"
    for table, expected in before.items():
        assert_same_table(table, expected, lake.table(table))
    unknown = CliRunner().invoke(app, ["lake", "rebuild", "--lake", str(lake.root), "--engine", "hive"])
    assert isinstance(unknown.exception, InputError) and "unknown engine 'hive'" in str(unknown.exception)


def test_engines_are_found_by_name_and_a_second_master_is_refused(spark: SparkEngine) -> None:
    engine = get_engine("spark", master=MASTER)
    assert isinstance(engine, SparkEngine) and engine.session() is spark.session()
    with pytest.raises(LakeError, match=r"runs in this process"):
        SparkEngine(master="local[3]").session()
    assert get_engine("spark").session().sparkContext.master == MASTER  # the settings' default joins it


@pytest.mark.realdata
@pytest.mark.slow
def test_real_data_builds_identically_on_both_engines(spark: SparkEngine, shared_data: Path, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    # ASSISTments 2009 (DKVMN split): 224k answers ordered by seq; EdNet KT1: timestamps, multi-tag items;
    # EdNet loaded twice: every event a duplicate of the first load
    lake.load(DkvmnImporter(), shared_data / "assist2009_updated" / "assist2009_updated_train.csv")
    lake.load(EdnetKt1Importer(), shared_data / "ednet_sample" / "KT1" / "u1.csv")
    again = lake.load(EdnetKt1Importer(), shared_data / "ednet_sample" / "KT1" / "u1.csv", force=True)
    assert again.duplicates == again.events == 1082
    duck = {s.table: lake.table(s.table) for s in SILVER_AND_GOLD}
    assert duck["interactions"].num_rows == 224_218 + 1082
    assert max(len(c) for c in duck["items"].column("concept_ids").to_pylist()) > 1
    started = time.perf_counter()
    Lake(lake.root, engine=spark).rebuild()
    seconds = time.perf_counter() - started
    assert json.loads((lake.root / "silver" / ".." / "build.json").read_text())["engine"] == "spark"
    assert_same_builds(duck, {s.table: lake.table(s.table) for s in SILVER_AND_GOLD})
    print(f"spark rebuild of {duck['interactions'].num_rows:,} answers: {seconds:.1f}s")


def test_a_step_that_fails_names_itself() -> None:
    sources = {name: table_schema.empty_table() for name, (_, table_schema) in BRONZE.items()
               if name != "bronze_concepts"}
    with pytest.raises(LakeError, match=r"silver\.concepts fails on DuckDB.*bronze_concepts"):
        SparkEngine(master=MASTER).build(sources, SILVER_AND_GOLD, Path("/nonexistent"))


def test_the_driver_gets_the_configured_heap(spark: SparkEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    # local mode runs the tasks in the driver: its heap is what a build of many answers needs
    assert spark.session().sparkContext.getConf().get("spark.driver.memory") == LakeSettings().spark_driver_memory
    monkeypatch.setenv("KNOWTRACE_SPARK_DRIVER_MEMORY", "6g")
    assert SparkEngine(master=MASTER)._settings()["spark.driver.memory"] == "6g"
