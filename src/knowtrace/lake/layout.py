"""Where a lake keeps its tables, and how the lake directory is chosen."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from knowtrace.constants import LAKE_ENV

__all__ = ["DEFAULT_LAKE", "LAKE_ENV", "LakeLayout", "resolve_lake_path"]

DEFAULT_LAKE = "knowtrace-lake"

#: bronze tables: one folder per table, one sub-folder per committed load
BRONZE_TABLES = ("interactions", "items", "concepts")


def resolve_lake_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The lake directory: ``path`` if given, else ``$KNOWTRACE_LAKE``, else ``./knowtrace-lake``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(LAKE_ENV) or DEFAULT_LAKE)


@dataclass(frozen=True)
class LakeLayout:
    """Paths inside a lake directory.

    ``bronze/<table>/<load_id>/`` append-only raw loads; ``quarantine/<load_id>/`` rejected
    records; ``silver`` and ``gold`` are symbolic links to the current build under ``_builds``,
    swapped atomically when a new build is complete (a table is every ``*.parquet`` of its folder,
    read in name order; see ``knowtrace.lake.incremental`` for the parts); ``_meta`` holds the
    lake's version, the load manifests (a load exists once its manifest does) and the writer lock.
    """

    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "_meta"

    @property
    def version_file(self) -> Path:
        return self.meta / "lake.json"

    @property
    def loads(self) -> Path:
        return self.meta / "loads"

    @property
    def lock_file(self) -> Path:
        return self.meta / "writer.lock"

    @property
    def staging(self) -> Path:
        return self.root / "_staging"

    @property
    def builds(self) -> Path:
        return self.root / "_builds"

    @property
    def tmp(self) -> Path:
        return self.root / "_tmp"

    def bronze(self, table: str) -> Path:
        return self.root / "bronze" / table

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def silver(self) -> Path:
        return self.root / "silver"

    @property
    def gold(self) -> Path:
        return self.root / "gold"
