"""The Spark engine: the lake's transforms run by PySpark, locally (``local[*]``) or on a cluster.

The SQL files stay the one definition of the transforms: each step's DuckDB SQL is translated to
Spark SQL (``knowtrace.lake.dialect``), and each output is cast to the column types DuckDB writes for
the same step, so that both engines produce the same tables.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_type

from knowtrace.exceptions import LakeError
from knowtrace.lake.dialect import duckdb_to_spark
from knowtrace.lake.engine import DuckDBEngine, Engine, Source
from knowtrace.lake.settings import LakeSettings
from knowtrace.lake.transforms import TransformStep

__all__ = ["SparkEngine"]

_SESSION_LOCK = threading.Lock()


class SparkEngine(Engine):
    """Runs the transforms with Spark at ``master`` (default ``$KNOWTRACE_SPARK_MASTER`` or ``local[*]``).

    Spark allows one session per process: engines share it, and an engine asked for another master
    than the running session's refuses. ``out_dir`` must be a folder every executor can write (any
    folder in local mode; a shared mount on a cluster). ``config`` adds Spark settings.
    """

    name = "spark"

    def __init__(
        self,
        *,
        master: str | None = None,
        app_name: str = "knowtrace-lake",
        shuffle_partitions: int | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self._explicit_master = master is not None
        settings = LakeSettings()
        self.master = master or settings.spark_master
        self.driver_memory = settings.spark_driver_memory
        self.app_name = app_name
        local = self.master.startswith("local")
        # local data are small: a few partitions beat Spark's 200
        self.shuffle_partitions = shuffle_partitions or (max(2, min(8, os.cpu_count() or 2)) if local else None)
        self.config = dict(config or {})
        self._session: SparkSession | None = None

    # -- the session ---------------------------------------------------------------------------------

    def session(self) -> SparkSession:
        """The process's Spark session, started on first use."""
        with _SESSION_LOCK, _quiet():
            active = SparkSession.getActiveSession()
            if active is not None:  # joined as it is: each build sets what it needs on a session of its own
                self._check_master(active)
                self._session = active
                return active
            builder = SparkSession.builder.master(self.master).appName(self.app_name)
            for key, value in self._settings().items():
                builder = builder.config(key, value)
            try:
                session = builder.getOrCreate()  # the running session, if there is one
            except (PySparkException, Py4JError, OSError) as exc:
                raise LakeError(f"could not start Spark at {self.master} (it needs Java 17 or later: "
                                f"JAVA_HOME or java on PATH): {_first_line(exc)}") from exc
            self._check_master(session)
            self._session = session
            return session

    def _check_master(self, session: SparkSession | None) -> None:
        running = session.sparkContext.master if session is not None else None
        if running is not None and self._explicit_master and running != self.master:
            raise LakeError(f"a Spark session at {running} runs in this process; "
                            f"stop it before using the Spark engine at {self.master}")

    def _settings(self) -> dict[str, str]:
        settings = {
            "spark.ui.enabled": "false",
            "spark.log.level": "ERROR",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.session.timeZone": "UTC",
            # timestamps as Parquet TIMESTAMP_MICROS (UTC-adjusted), like DuckDB's, not the legacy INT96
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.sql.parquet.compression.codec": "zstd",
            # the translation relies on size(NULL) being NULL, as DuckDB's array_length
            "spark.sql.legacy.sizeOfNull": "false",
            # read when the driver's JVM starts (a joined running session keeps its own)
            "spark.driver.memory": self.driver_memory,
        }
        if self.shuffle_partitions:
            settings["spark.sql.shuffle.partitions"] = str(self.shuffle_partitions)
        if self.master.startswith("local"):
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
        return settings | self.config

    def stop(self) -> None:
        """Stop the process's Spark session (the next build starts a new one)."""
        with _SESSION_LOCK:
            session = self._session or SparkSession.getActiveSession()
            if session is not None:
                session.stop()
            self._session = None

    # -- building ------------------------------------------------------------------------------------

    def build(
        self,
        sources: Mapping[str, Source],
        steps: Sequence[TransformStep],
        out_dir: Path,
        on_step: Callable[[TransformStep, int], None] | None = None,
    ) -> dict[str, int]:
        expected = duckdb_output_schemas(sources, steps)
        with _quiet():
            # a session of its own per build: its temporary views are not seen by other builds
            spark = self.session().newSession()
            for key, value in self._settings().items():
                if key.startswith("spark.sql."):
                    spark.conf.set(key, value)
            for name, source in sources.items():
                self._read_source(spark, name, source).createOrReplaceTempView(name)
            counts: dict[str, int] = {}
            for step in steps:
                target = out_dir / step.layer / step.table
                written = self._run_step(spark, step, expected[step.table], target)
                written.createOrReplaceTempView(step.table)
                counts[step.table] = written.count()
                if on_step is not None:
                    on_step(step, counts[step.table])
            return counts

    def _read_source(self, spark: SparkSession, name: str, source: Source) -> DataFrame:
        if isinstance(source, pa.Table):
            return spark.createDataFrame(source)
        files = [str(Path(p).absolute()) for p in source]
        if not files:
            raise LakeError(f"source {name!r} has no files (pass an empty Arrow table for an empty source)")
        try:
            return spark.read.option("mergeSchema", "true").parquet(*files)
        except (PySparkException, Py4JError) as exc:
            raise LakeError(f"Spark cannot read source {name!r}: {_first_line(exc)}") from exc

    def _run_step(self, spark: SparkSession, step: TransformStep, schema: pa.Schema, target: Path) -> DataFrame:
        where = f"{step.layer}.{step.table}"
        try:
            result = spark.sql(duckdb_to_spark(step.sql))
            if result.columns != schema.names:
                raise LakeError(f"Spark's {where} has columns {result.columns}, DuckDB's {schema.names}")
            # DuckDB's column types are the contract (e.g. int64 where Spark's row_number() is int32, double
            # where DuckDB writes its HUGEINT sums)
            typed = result.select([F.col(_quoted(f.name)).cast(from_arrow_type(f.type)).alias(f.name)
                                   for f in schema])
            typed.write.mode("overwrite").parquet(str(target))
        except (PySparkException, Py4JError) as exc:
            raise LakeError(f"Spark failed on {where}: {_first_line(exc)}") from exc
        for marker in [*target.glob(".*.crc"), target / "_SUCCESS"]:
            marker.unlink(missing_ok=True)  # Hadoop's checksums and success marker are not part of the table
        return spark.read.parquet(str(target))


def duckdb_output_schemas(sources: Mapping[str, Source], steps: Sequence[TransformStep]) -> dict[str, pa.Schema]:
    """The Parquet schema DuckDB writes for each step, found by running the steps over empty sources."""
    empty = {name: (source.schema if isinstance(source, pa.Table) else _files_schema(name, source)).empty_table()
             for name, source in sources.items()}
    done: list[TransformStep] = []
    with tempfile.TemporaryDirectory(prefix="knowtrace-schemas-") as tmp:
        try:
            DuckDBEngine(threads=1, memory_limit="256MB").build(empty, steps, Path(tmp),
                                                                on_step=lambda step, _: done.append(step))
        except duckdb.Error as exc:
            step = steps[len(done)]
            raise LakeError(f"{step.layer}.{step.table} fails on DuckDB, whose output types the Spark engine "
                            f"follows: {_first_line(exc)}") from exc
        return {step.table: pq.read_schema(Path(tmp) / step.layer / step.table / "part-00000.parquet")
                for step in steps}


def _files_schema(name: str, files: Sequence[Path]) -> pa.Schema:
    if not files:
        raise LakeError(f"source {name!r} has no files (pass an empty Arrow table for an empty source)")
    return pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")


def _quoted(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _quiet() -> Iterator[None]:
    # PySpark checks the pandas version whenever it converts Python values for the JVM and warns
    # about pandas 3; the engine passes no pandas data
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield
