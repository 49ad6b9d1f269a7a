"""Settings of the lake's engines, read from ``KNOWTRACE_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LakeSettings"]


class LakeSettings(BaseSettings):
    """``KNOWTRACE_DUCKDB_MEMORY_LIMIT`` caps DuckDB's memory (it spills to ``<lake>/_tmp`` beyond it);
    ``KNOWTRACE_DUCKDB_THREADS`` caps its threads (default: all cores); ``KNOWTRACE_SPARK_MASTER`` is the
    master URL the Spark engine connects to (default ``local[*]``: in this process, on every core);
    ``KNOWTRACE_SPARK_DRIVER_MEMORY`` is the Spark driver's heap (default 4g; in local mode the tasks
    run in the driver, and Spark's own default of 1g fails on 10 million answers)."""

    model_config = SettingsConfigDict(env_prefix="KNOWTRACE_", extra="ignore")

    duckdb_memory_limit: str = "1GB"
    duckdb_threads: int | None = None
    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
