"""The batch path: an operational database (PostgreSQL, or SQLite as the embedded stand-in) into the lake.

``init_source`` creates the reference schema of a tablet learning service and fills it (from a lake
or the simulator); ``extract`` reads what changed since the lake's watermark into bronze, exactly
once. See docs/batch.md.
"""

from knowtrace.batch.dialect import Dialect, PostgresDialect, SourceClock, SourceError, SqliteDialect, dialect_for
from knowtrace.batch.extract import ExtractPlan, ExtractReport, SourceExtractor, SourceSchema, extract
from knowtrace.batch.source import SourceInitReport, init_source
from knowtrace.batch.watermarks import EXTRACT_FORMAT, Watermark, last_extract, read_watermark

__all__ = [
    "EXTRACT_FORMAT",
    "Dialect",
    "ExtractPlan",
    "ExtractReport",
    "PostgresDialect",
    "SourceClock",
    "SourceError",
    "SourceExtractor",
    "SourceInitReport",
    "SourceSchema",
    "SqliteDialect",
    "Watermark",
    "dialect_for",
    "extract",
    "init_source",
    "last_extract",
    "read_watermark",
]
