"""The lake: Parquet tables in bronze, silver and gold layers, queried with DuckDB."""

from knowtrace.lake.engine import ENGINES, DuckDBEngine, Engine, get_engine
from knowtrace.lake.lake import Lake, LoadReport
from knowtrace.lake.layout import DEFAULT_LAKE, LAKE_ENV, resolve_lake_path
from knowtrace.lake.transforms import SILVER_AND_GOLD, TransformStep

__all__ = [
    "DEFAULT_LAKE",
    "ENGINES",
    "LAKE_ENV",
    "SILVER_AND_GOLD",
    "DuckDBEngine",
    "Engine",
    "Lake",
    "LoadReport",
    "TransformStep",
    "get_engine",
    "resolve_lake_path",
]
