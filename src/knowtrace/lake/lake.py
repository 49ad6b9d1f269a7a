"""The lake: open it, load inputs into it atomically and idempotently, query it with SQL."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from knowtrace import __version__
from knowtrace.events.catalog import Concept, Item
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import LakeError, QueryError, UnreadableFileError
from knowtrace.importers.base import Importer, RawEvent, Rejection
from knowtrace.lake import schema
from knowtrace.lake.engine import DuckDBEngine, Engine, register_source
from knowtrace.lake.files import quote_path
from knowtrace.lake.incremental import PartitionedBuilder, PreviousBuild
from knowtrace.lake.layout import BRONZE_TABLES, LakeLayout, resolve_lake_path
from knowtrace.lake.settings import LakeSettings
from knowtrace.lake.overlay import Deltas, keyed_source
from knowtrace.lake.manifest import LoadManifest, fingerprint_input, new_load_id, read_manifests, write_json_atomic
from knowtrace.lake.transforms import SILVER_AND_GOLD, TransformStep
from knowtrace.lake.writer import StagedTableWriter

__all__ = ["LAKE_FORMAT", "Lake", "LoadReport"]

LAKE_FORMAT = 1
_BRONZE_SCHEMAS = {
    "interactions": schema.BRONZE_INTERACTIONS,
    "items": schema.BRONZE_ITEMS,
    "concepts": schema.BRONZE_CONCEPTS,
}
#: SQL views over the current build, name -> (layer, table)
_VIEWS = {step.table: step for step in SILVER_AND_GOLD}


@dataclass
class LoadReport:
    """What a load did. ``added`` counts events new to ``interactions``; ``duplicates`` the rest."""

    load_id: str | None
    source: str | None
    format: str
    rows_read: int = 0
    events: int = 0
    rejected: int = 0
    items: int = 0
    concepts: int = 0
    added: int = 0
    duplicates: int = 0
    skipped: bool = False
    skipped_reason: str | None = None
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _reason_kind(rejection: Rejection) -> str:
    """The reason of a rejection without its particular values, to count rejections by kind."""
    reason = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", rejection.reason))
    return f"{rejection.field or 'record'}: {reason[:100]}"


class Lake:
    """A directory of Parquet tables (bronze, quarantine, silver, gold) with load manifests.

    >>> import tempfile
    >>> lake = Lake(tempfile.mkdtemp())
    >>> lake.query("SELECT count(*) AS n FROM interactions").to_pylist()
    [{'n': 0}]
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, engine: Engine | None = None,
                 settings: LakeSettings | None = None) -> None:
        self.layout = LakeLayout(resolve_lake_path(root).absolute())
        self.root = self.layout.root
        settings = settings or LakeSettings()
        self.engine = engine or DuckDBEngine(memory_limit=settings.duckdb_memory_limit,
                                             threads=settings.duckdb_threads, temp_dir=self.layout.tmp)
        self._init_dirs()

    # -- opening and recovery ---------------------------------------------------------------

    def _init_dirs(self) -> None:
        layout = self.layout
        if layout.root.exists() and not layout.root.is_dir():
            raise LakeError(f"{layout.root} is not a directory")
        if layout.version_file.exists():
            info = json.loads(layout.version_file.read_text(encoding="utf-8"))
            if info.get("lake_format") != LAKE_FORMAT:
                raise LakeError(
                    f"{layout.root} is a lake of format {info.get('lake_format')}, "
                    f"this knowtrace ({__version__}) reads format {LAKE_FORMAT}"
                )
            return
        if layout.root.exists() and any(layout.root.iterdir()):
            raise LakeError(f"{layout.root} exists and is not a knowtrace lake (no _meta/lake.json)")
        for folder in (layout.loads, layout.staging, layout.builds, layout.quarantine,
                       *(layout.bronze(t) for t in BRONZE_TABLES)):
            folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(layout.version_file, {"lake_format": LAKE_FORMAT, "created_by": __version__,
                                                "created_at": datetime.now(timezone.utc).isoformat()})

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        with self.layout.lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._recover()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _recover(self) -> None:
        """Remove what an interrupted writer left behind; rebuild silver/gold if they lag."""
        manifests = self.manifests()
        committed = {m.load_id for m in manifests}
        shutil.rmtree(self.layout.staging, ignore_errors=True)
        self.layout.staging.mkdir(parents=True, exist_ok=True)
        for folder in [*(self.layout.bronze(t) for t in BRONZE_TABLES), self.layout.quarantine]:
            for load_dir in folder.iterdir() if folder.exists() else []:
                if load_dir.name not in committed:
                    shutil.rmtree(load_dir, ignore_errors=True)
        current = self.current_build()
        for build in self.layout.builds.iterdir():
            if current is None or build.name != current.get("build_id"):
                shutil.rmtree(build, ignore_errors=True)
        if self._lagging(manifests, current, include_deferred=False):
            self._rebuild(committed)

    @staticmethod
    def _lagging(manifests: list[LoadManifest], current: dict[str, Any] | None, *, include_deferred: bool) -> bool:
        """Whether committed loads are missing from the current build (deferred ones only if asked)."""
        committed = {m.load_id for m in manifests}
        if not committed:
            return False
        built = set(current.get("loads", [])) if current is not None else set()
        if built == committed:
            return False
        if include_deferred:
            return True
        deferred = {m.load_id for m in manifests if m.deferred_build}
        return bool((committed - built) - deferred) or bool(built - committed)

    # -- reading -----------------------------------------------------------------------------

    def manifests(self) -> list[LoadManifest]:
        """Every committed load, oldest first."""
        return read_manifests(self.layout.loads)

    def current_build(self) -> dict[str, Any] | None:
        """The description of the build ``silver``/``gold`` point to, or None before the first load."""
        link = self.layout.silver
        if not link.is_symlink():
            return None
        info = link.resolve().parent / "build.json"
        return json.loads(info.read_text(encoding="utf-8")) if info.exists() else None

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view for every lake table.

        Views: ``interactions``, ``items``, ``concepts`` (silver); ``learner_sequences``,
        ``item_stats``, ``concept_stats`` (gold); ``bronze_interactions``, ``bronze_items``,
        ``bronze_concepts``, ``quarantine`` (committed loads only); ``loads`` (manifests).
        """
        return self._connect(ordered=True)

    def _connect(self, *, ordered: bool) -> duckdb.DuckDBPyConnection:
        con = self.engine.connect() if isinstance(self.engine, DuckDBEngine) else duckdb.connect()
        committed = [m.load_id for m in self.manifests()]
        for name, source in self._bronze_sources(committed).items():
            register_source(con, name, source)
        register_source(con, "quarantine", self._load_files(self.layout.quarantine, committed, schema.QUARANTINE))
        build = self.current_build()
        deltas = Deltas.from_layout((build or {}).get("layout"))
        keyed = (build or {}).get("layout", {}).get("keyed", [])
        for table, step in _VIEWS.items():
            if build is None:
                register_source(con, table, self._empty_build_table(step))
                continue
            register_source(con, table, keyed_source(self.layout.silver.resolve().parent, step, deltas,
                                                     primary=bool(keyed) and table == keyed[0], ordered=ordered))
        loads = pa.Table.from_pylist([m.model_dump(mode="json") | {"options": json.dumps(m.options)}
                                      for m in self.manifests()]) if committed else pa.table({"load_id": pa.array([], pa.string())})
        register_source(con, "loads", loads)
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run ``sql`` over the lake's views and return the result as an Arrow table."""
        con = self.connect()
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"SQL failed: {exc}") from exc
        finally:
            con.close()

    def table(self, name: str) -> pa.Table:
        """A whole lake table (e.g. ``interactions``) as an Arrow table."""
        _check_table(name, loads=True)
        table = self.query(f"SELECT * FROM {name}")
        return table.cast(schema.SILVER_INTERACTIONS) if name == "interactions" else table

    def scan(self, name: str, *, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
        """Stream a lake table (e.g. ``learner_sequences``) in record batches of at most ``batch_rows`` rows,
        in bounded memory and in no particular order."""
        _check_table(name)
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        con = self._connect(ordered=False)
        try:
            con.execute("SET preserve_insertion_order = false")  # lets DuckDB stream instead of buffering
            reader = con.sql(f"SELECT {selected} FROM {name}").to_arrow_reader(batch_rows)
            yield from reader
        except duckdb.Error as exc:
            raise QueryError(f"reading {name} failed: {exc}") from exc
        finally:
            con.close()

    def export(self, name: str, path: Path, *, columns: list[str] | None = None) -> Path:
        """Write a lake table to one Parquet file at ``path``, in the table's order (the rows and order
        of a full build, appended rows merged in), without holding it in memory."""
        _check_table(name)
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        con = self._connect(ordered=True)
        try:
            con.execute(f"COPY (SELECT {selected} FROM {name}) TO '{quote_path(path)}' "
                        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 16384)")
        except duckdb.Error as exc:
            raise QueryError(f"exporting {name} to {path} failed: {exc}") from exc
        finally:
            con.close()
        return path

    def concept_graph(self, tenant: str | None = None) -> ConceptGraph | None:
        """The prerequisite graph of ``tenant``'s concepts (of the only tenant when None; None if several)."""
        rows = self.query("SELECT tenant, concept_id, name, prerequisites FROM concepts").to_pylist()
        tenants = {r["tenant"] for r in rows}
        if tenant is None:
            if len(tenants) != 1:
                return None
            tenant = tenants.pop()
        return ConceptGraph([Concept(concept_id=r["concept_id"], tenant=r["tenant"], name=r["name"],
                                     prerequisites=r["prerequisites"] or ()) for r in rows if r["tenant"] == tenant],
                            tenant=tenant)

    def _load_files(self, folder: Path, loads: list[str], empty: pa.Schema) -> list[Path] | pa.Table:
        files = [f for load in loads for f in sorted((folder / load).glob("*.parquet"))]
        return files if files else empty.empty_table()

    def _bronze_files(self, loads: list[str]) -> dict[str, dict[str, list[Path]]]:
        """Bronze Parquet files per table and load."""
        return {t: {load: sorted((self.layout.bronze(t) / load).glob("*.parquet")) for load in loads}
                for t in BRONZE_TABLES}

    def _bronze_sources(self, loads: list[str]) -> dict[str, list[Path] | pa.Table]:
        return {f"bronze_{t}": self._load_files(self.layout.bronze(t), loads, _BRONZE_SCHEMAS[t])
                for t in BRONZE_TABLES}

    def _empty_build_table(self, step: TransformStep) -> pa.Table:
        """The (empty) output of ``step`` on an empty lake, so that every view exists with its columns."""
        con = duckdb.connect()
        try:
            for name, source in self._bronze_sources([]).items():
                register_source(con, name, source)
            for earlier in SILVER_AND_GOLD:
                result = con.sql(f"SELECT * FROM ({earlier.sql}) LIMIT 0").to_arrow_table()
                register_source(con, earlier.table, result)
                if earlier == step:
                    return result
        finally:
            con.close()
        raise LakeError(f"unknown transform {step}")

    # -- writing -----------------------------------------------------------------------------

    def load(
        self,
        importer: Importer,
        path: str | os.PathLike[str] | None,
        *,
        force: bool = False,
        on_progress: Callable[[int], None] | None = None,
        build: bool = True,
    ) -> LoadReport:
        """Load ``path`` with ``importer``: all of it or nothing, and nothing twice.

        An input already loaded with the same format and options is skipped unless ``force``;
        even then, events already in ``interactions`` (same event id) are not added again.
        Records that fail go to ``quarantine`` with file, line, field and reason. The manifest
        records ``importer.options()`` as read after ``read`` has finished, so an importer can
        commit state atomically with its load (the batch extractor's watermark).

        ``build=False`` commits the load to bronze without rebuilding silver and gold (the stream
        worker's micro-batches); ``refresh`` or the next load with ``build=True`` includes it.
        ``added``/``duplicates`` are then left at 0: they are known only after a build.
        """
        source = Path(path) if path is not None else None
        if source is not None and not source.exists():
            raise UnreadableFileError("no such file or folder", file=source)
        report = LoadReport(load_id=None, source=str(source) if source else None, format=importer.format)
        fingerprint = fingerprint_input(importer.format, importer.options(), source)
        with self._writer_lock():
            if not force and fingerprint:
                for manifest in self.manifests():
                    if manifest.fingerprint == fingerprint:
                        report.skipped = True
                        report.skipped_reason = f"already loaded as {manifest.load_id}"
                        return report
            started = datetime.now(timezone.utc)
            load_id = new_load_id(started)
            report.load_id = load_id
            stage = self.layout.staging / load_id
            try:
                self._stage(importer, source, load_id, stage, report, on_progress)
                if report.concepts:
                    self._check_concept_graph(stage)
                before = self._silver_count()
                self._publish_stage(stage, load_id)
                manifest = LoadManifest(
                    load_id=load_id, format=importer.format, source=report.source, fingerprint=fingerprint,
                    options=importer.options(), started_at=started, committed_at=datetime.now(timezone.utc),
                    rows_read=report.rows_read, events=report.events, rejected=report.rejected,
                    items=report.items, concepts=report.concepts, knowtrace_version=__version__,
                    deferred_build=not build,
                )
                write_json_atomic(self.layout.loads / f"{load_id}.json", manifest.model_dump(mode="json"))
            except BaseException:
                self._discard(load_id)
                raise
            if not build:
                return report
            self._rebuild({m.load_id for m in self.manifests()})
            report.added = self._silver_count() - before
            report.duplicates = report.events - report.added
            return report

    def _stage(self, importer: Importer, source: Path | None, load_id: str, stage: Path,
               report: LoadReport, on_progress: Callable[[int], None] | None) -> None:
        writers = {t: StagedTableWriter(stage / "bronze" / t, _BRONZE_SCHEMAS[t]) for t in BRONZE_TABLES}
        quarantine = StagedTableWriter(stage / "quarantine", schema.QUARANTINE)
        now = datetime.now(timezone.utc)
        seen = 0
        try:
            for record in importer.read(source):  # type: ignore[arg-type]
                if isinstance(record, RawEvent):
                    try:
                        event = InteractionEvent.model_validate(record.fields)
                    except ValidationError as exc:
                        error = exc.errors()[0]
                        record = Rejection(record.file, record.line, error["msg"],
                                           field=".".join(str(p) for p in error["loc"]) or None,
                                           raw=json.dumps(record.fields, default=str)[:2000])
                    else:
                        row = event.to_row()
                        row.update(load_id=load_id, source_file=record.file, source_line=record.line)
                        writers["interactions"].append(row)
                        report.events += 1
                if isinstance(record, Rejection):
                    quarantine.append({"load_id": load_id, "source_file": record.file, "line": record.line,
                                       "field": record.field, "reason": record.reason, "raw": record.raw,
                                       "quarantined_at": now})
                    report.rejected += 1
                    key = _reason_kind(record)
                    report.rejection_reasons[key] = report.rejection_reasons.get(key, 0) + 1
                elif isinstance(record, Item):
                    row = record.model_dump()
                    row.update(concept_ids=list(record.concept_ids), metadata=json.dumps(record.metadata), load_id=load_id)
                    writers["items"].append(row)
                    report.items += 1
                elif isinstance(record, Concept):
                    writers["concepts"].append({**record.model_dump(), "prerequisites": list(record.prerequisites),
                                                "load_id": load_id})
                    report.concepts += 1
                seen += 1
                if on_progress is not None and seen % 10000 == 0:
                    on_progress(importer.rows_read)
        finally:
            for writer in [*writers.values(), quarantine]:
                writer.close()
        report.rows_read = importer.rows_read
        if on_progress is not None:
            on_progress(importer.rows_read)

    def _check_concept_graph(self, stage: Path) -> None:
        """Raise ``ConceptCycleError`` if the staged concepts and the lake's form a prerequisite cycle."""
        folder = self.layout.bronze("concepts")
        files = [f for m in self.manifests() for f in sorted((folder / m.load_id).glob("*.parquet"))]
        files += sorted((stage / "bronze" / "concepts").glob("*.parquet"))
        con = duckdb.connect()
        try:
            register_source(con, "concepts", files)
            rows = con.sql("SELECT tenant, concept_id, prerequisites FROM concepts").fetchall()
        finally:
            con.close()
        by_tenant: dict[str, list[tuple[str, str]]] = {}
        for tenant, concept, prerequisites in rows:
            by_tenant.setdefault(tenant, []).extend((concept, p) for p in prerequisites or [])
        for tenant, edges in by_tenant.items():
            ConceptGraph(edges=edges, tenant=tenant)

    def _publish_stage(self, stage: Path, load_id: str) -> None:
        """Move staged folders into place. They stay invisible until the manifest is written."""
        moves = [(stage / "bronze" / t, self.layout.bronze(t) / load_id) for t in BRONZE_TABLES]
        moves.append((stage / "quarantine", self.layout.quarantine / load_id))
        for src, dst in moves:
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        shutil.rmtree(stage, ignore_errors=True)

    def _discard(self, load_id: str) -> None:
        shutil.rmtree(self.layout.staging / load_id, ignore_errors=True)
        for folder in [*(self.layout.bronze(t) for t in BRONZE_TABLES), self.layout.quarantine]:
            shutil.rmtree(folder / load_id, ignore_errors=True)

    def _silver_count(self) -> int:
        build = self.current_build()
        return int(build["rows"]["interactions"]) if build else 0

    def refresh(self, *, on_step: Callable[[TransformStep, int], None] | None = None) -> dict[str, int] | None:
        """Rebuild silver and gold if committed loads (deferred ones included) are missing from them;
        returns the row counts of the new build, or None when it was current."""
        with self._writer_lock():
            manifests = self.manifests()
            if not self._lagging(manifests, self.current_build(), include_deferred=True):
                return None
            return self._rebuild({m.load_id for m in manifests}, on_step=on_step)

    def pending_loads(self) -> list[str]:
        """Committed loads that silver and gold do not include yet (deferred builds)."""
        current = self.current_build()
        built = set(current.get("loads", [])) if current is not None else set()
        return [m.load_id for m in self.manifests() if m.load_id not in built]

    def rebuild(self, *, on_step: Callable[[TransformStep, int], None] | None = None,
                full: bool = True) -> dict[str, int]:
        """Recompute silver and gold from every committed bronze load (``full=False``: only the parts
        the loads new since the current build touch, when that build allows it)."""
        with self._writer_lock():
            return self._rebuild({m.load_id for m in self.manifests()}, on_step=on_step, full=full)

    def _rebuild(self, loads: set[str], on_step: Callable[[TransformStep, int], None] | None = None, *,
                 full: bool = False) -> dict[str, int]:
        """Build silver and gold of ``loads`` into a new build folder, then swap the links to it.

        The DuckDB engine builds incrementally from the current build when it can (see
        ``knowtrace.lake.incremental``); other engines, and ``full``, recompute everything.
        """
        build_id = new_load_id()
        out = self.layout.builds / build_id
        ordered = sorted(loads)
        previous = self.current_build()
        info: dict[str, Any]
        if isinstance(self.engine, DuckDBEngine):
            start_from = None
            if previous is not None:
                start_from = PreviousBuild(self.layout.silver.resolve().parent, previous)
            result = PartitionedBuilder(self.engine, SILVER_AND_GOLD, empty_bronze=_BRONZE_SCHEMAS).build(
                self._bronze_files(ordered), ordered, out, previous=start_from, full=full, on_step=on_step)
            counts, info = result.counts, result.info
        else:
            started = time.perf_counter()
            counts = self.engine.build(self._bronze_sources(ordered), SILVER_AND_GOLD, out, on_step=on_step)
            info = {"kind": "full", "full_reason": f"the {self.engine.name} engine builds in full",
                    "seconds": round(time.perf_counter() - started, 3)}
        write_json_atomic(out / "build.json", {"build_id": build_id, "engine": self.engine.name,
                                               "loads": ordered, "rows": counts, **info})
        for layer in ("silver", "gold"):
            link = self.root / layer
            tmp_link = self.root / f".{layer}.{build_id}.tmp"
            tmp_link.symlink_to(Path("_builds") / build_id / layer)
            os.replace(tmp_link, link)
        if previous is not None and previous.get("build_id") != build_id:
            shutil.rmtree(self.layout.builds / previous["build_id"], ignore_errors=True)
        return counts


def _check_table(name: str, *, loads: bool = False) -> None:
    """Raise ``LakeError`` unless ``name`` is a lake table (or, with ``loads``, the load manifests)."""
    if name not in _VIEWS and name not in {"quarantine", *(f"bronze_{t}" for t in BRONZE_TABLES),
                                          *(["loads"] if loads else [])}:
        raise LakeError(f"no lake table {name!r}")
