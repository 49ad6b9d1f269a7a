"""The engine seam: what runs the lake's SQL. DuckDB is the embedded default."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import duckdb
import pyarrow as pa

from knowtrace.exceptions import MissingExtraError
from knowtrace.lake.transforms import TransformStep

__all__ = ["ENGINES", "DuckDBEngine", "Engine", "get_engine"]

ENGINES: dict[str, type[Engine]] = {}
#: engines whose libraries are optional: name -> (module that registers it, its libraries, the extra with them)
_OPTIONAL_ENGINES = {"spark": ("knowtrace.lake.spark_engine", ("pyspark", "sqlglot"), "spark")}

#: a source table is a list of Parquet files, or an in-memory Arrow table (e.g. an empty schema)
Source = Sequence[Path] | pa.Table


class Engine(ABC):
    """Runs transform steps over Parquet sources and writes each output as Parquet."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ENGINES[cls.name] = cls

    @abstractmethod
    def build(
        self,
        sources: Mapping[str, Source],
        steps: Sequence[TransformStep],
        out_dir: Path,
        on_step: Callable[[TransformStep, int], None] | None = None,
    ) -> dict[str, int]:
        """Write ``out_dir/<layer>/<table>/part-*.parquet`` for every step; return rows per table."""


class DuckDBEngine(Engine):
    """Runs the transforms in an in-process DuckDB, spilling to ``temp_dir`` beyond ``memory_limit``."""

    name = "duckdb"

    def __init__(self, *, memory_limit: str = "2GB", threads: int | None = None, temp_dir: Path | None = None) -> None:
        self.memory_limit = memory_limit
        self.threads = threads
        self.temp_dir = temp_dir

    def connect(self) -> duckdb.DuckDBPyConnection:
        config: dict[str, str | int] = {"memory_limit": self.memory_limit, "preserve_insertion_order": "true"}
        if self.threads:
            config["threads"] = self.threads
        con = duckdb.connect(":memory:", config=config)
        if self.temp_dir is not None:
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            con.execute("SET temp_directory = ?", [str(self.temp_dir)])
        return con

    def build(
        self,
        sources: Mapping[str, Source],
        steps: Sequence[TransformStep],
        out_dir: Path,
        on_step: Callable[[TransformStep, int], None] | None = None,
    ) -> dict[str, int]:
        con = self.connect()
        try:
            for name, source in sources.items():
                register_source(con, name, source)
            counts: dict[str, int] = {}
            for step in steps:
                target = out_dir / step.layer / step.table
                target.mkdir(parents=True, exist_ok=True)
                file = target / "part-00000.parquet"
                con.execute(
                    f"COPY ({step.sql}) TO '{_quote(file)}' "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
                )
                register_source(con, step.table, [file])
                counts[step.table] = con.execute(f"SELECT count(*) FROM {step.table}").fetchone()[0]  # type: ignore[index]
                if on_step is not None:
                    on_step(step, counts[step.table])
            return counts
        finally:
            con.close()


def register_source(con: duckdb.DuckDBPyConnection, name: str, source: Source | str) -> None:
    """Expose ``source`` (Parquet files, an Arrow table, or a DuckDB query) as the view ``name`` in ``con``."""
    if isinstance(source, str):
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {source}")
        return
    if isinstance(source, pa.Table):
        con.register(f"__arrow_{name}", source)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM __arrow_{name}")
        return
    files = ", ".join(f"'{_quote(p)}'" for p in source)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{files}], union_by_name = true)")


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def get_engine(name: str = "duckdb", **options: object) -> Engine:
    """The engine registered under ``name``, constructed with ``options`` (optional engines imported on demand)."""
    if name not in ENGINES and name in _OPTIONAL_ENGINES:
        module, libraries, extra = _OPTIONAL_ENGINES[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing in libraries:
                raise MissingExtraError(missing, extra) from None
            raise
    try:
        cls = ENGINES[name]
    except KeyError:
        known = ", ".join(sorted({*ENGINES, *_OPTIONAL_ENGINES}))
        raise ValueError(f"unknown engine {name!r}; known: {known}") from None
    return cls(**options)  # type: ignore[arg-type]
