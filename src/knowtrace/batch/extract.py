"""Incremental extraction of an operational database into the lake's bronze layer, by watermark.

Each extract reads the ``attempts`` rows whose ``(updated_at, id)`` is after the watermark of the
last committed extract and whose ``updated_at`` is before the source clock's bound (see
``SourceClock``), in that order, through a server-side cursor ``batch_rows`` rows at a time, and
loads them with ``Lake.load``: all or nothing. The new watermark travels in the load's manifest, so
it moves exactly when the rows are in the lake. Event ids come from the attempt id
(``<source>:attempt:<id>``): a re-extracted attempt (a late update, or a re-run) is the same event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from knowtrace.batch.dialect import Dialect, SourceClock, SourceError, dialect_for
from knowtrace.batch.watermarks import EXTRACT_FORMAT, Watermark, last_extract
from knowtrace.events.catalog import Concept, Item
from knowtrace.exceptions import InputError
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection
from knowtrace.lake import Lake, LoadReport

__all__ = ["ExtractPlan", "ExtractReport", "SourceExtractor", "SourceSchema", "extract"]

#: attempts columns the extractor cannot work without
REQUIRED = ("id", "learner_id", "item_id", "answered_at", "updated_at")
#: at least one of these carries the outcome
OUTCOME = ("correct", "score")
#: columns read when present (their event field stays empty otherwise)
OPTIONAL = ("response", "started_at", "elapsed_ms", "attempt_no", "session_id")
#: catalog tables: (required columns, optional columns, whether the table itself is required)
CATALOG_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "items": (("id",), ("name",), True),
    "item_concepts": (("item_id", "concept_id"), ("position",), False),
    "concepts": (("id",), ("name",), False),
    "prerequisites": (("concept_id", "prerequisite_id"), (), False),
}


@dataclass(frozen=True)
class SourceSchema:
    """What the extractor found in the source: the columns it reads, and the differences it reports."""

    attempt_columns: tuple[str, ...]
    catalog_columns: dict[str, tuple[str, ...]]
    ignored_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]
    missing_tables: tuple[str, ...]
    unique_ids: bool


@dataclass
class _Catalog:
    items: dict[str, str | None] = field(default_factory=dict)
    item_concepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    concepts: dict[str, str | None] = field(default_factory=dict)
    prerequisites: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.items or self.concepts or self.rejections)

    def fingerprint(self) -> str:
        data = [sorted(self.items.items(), key=str), sorted(self.item_concepts.items()),
                sorted(self.concepts.items(), key=str), sorted(self.prerequisites.items()),
                [(r.file, r.field, r.raw) for r in self.rejections]]
        return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ExtractPlan:
    """What an extract would read now (a survey taken before loading; the load re-reads the source)."""

    watermark: Watermark | None
    clock: SourceClock
    schema: SourceSchema
    to_read: int | None  # None where not counted (the survey a load takes)
    held_back: int
    future_updates: int
    never_extracted: int
    catalog_changed: bool

    @property
    def up_to_date(self) -> bool:
        """Nothing changed since the watermark: the extract would load nothing."""
        return self.to_read == 0 and not self.catalog_changed


@dataclass
class ExtractReport:
    """What an extract did. ``already_in_lake`` counts events whose id was in the lake (late updates, re-reads)."""

    source: str
    dialect: str
    tenant: str
    load_id: str | None = None
    skipped: bool = False
    skipped_reason: str | None = None
    rows_read: int = 0
    events: int = 0
    added: int = 0
    already_in_lake: int = 0
    rejected: int = 0
    pending: int = 0
    items: int = 0
    concepts: int = 0
    watermark_from: str | None = None
    watermark: str | None = None
    bound: str | None = None
    held_back: int = 0
    held_by: str | None = None
    future_updates: int = 0
    never_extracted: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    missing_tables: list[str] = field(default_factory=list)
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SourceExtractor(Importer):
    """Reads what changed in a source database since the lake's watermark, as events and rejections.

    Use ``plan()`` to survey the source, then ``run()`` to load (or ``extract()`` for both).
    ``read`` is what ``Lake.load`` drives: it runs inside the lake's writer lock, reads the
    watermark there, and yields the catalog (when it changed) and then the attempts in watermark
    order. ``options()`` carries the watermark reached, which the lake writes into the manifest.
    """

    format = EXTRACT_FORMAT
    description = "Incremental extract of an operational database (PostgreSQL or SQLite) by watermark"

    def __init__(
        self,
        dialect: Dialect,
        lake: Lake,
        *,
        tenant: str = "default",
        source_name: str | None = None,
        batch_rows: int = 10_000,
        lag_s: float = 0.0,
        future_tolerance_s: float = 300.0,
        full: bool = False,
    ) -> None:
        super().__init__(tenant=tenant)
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise InputError(f"batch_rows must be an integer >= 1, got {batch_rows!r}", field="batch_rows")
        for name, value in (("lag_s", lag_s), ("future_tolerance_s", future_tolerance_s)):
            if not value >= 0:
                raise InputError(f"{name} must be >= 0 seconds, got {value!r}", field=name)
        self.dialect = dialect
        self.lake = lake
        self.source = (source_name or dialect.default_source_name()).strip()
        if not self.source:
            raise InputError("the source name is empty", field="source_name")
        self.batch_rows = batch_rows
        self.lag_s = float(lag_s)
        self.future_tolerance_s = float(future_tolerance_s)
        self.full = full
        self._reset()

    def _reset(self) -> None:
        self.rows_read = 0
        self.pending = 0
        self.watermark_from: Watermark | None = None
        self._last: tuple[Any, int] | None = None
        self._survey: ExtractPlan | None = None
        self._catalog_fingerprint: str | None = None

    @property
    def watermark(self) -> Watermark | None:
        """The watermark reached so far: the last row read, else where the extract started."""
        if self._last is None:
            return self.watermark_from
        return Watermark(self.dialect.watermark_text(self._last[0]), self._last[1])

    @property
    def attempts_file(self) -> str:
        """How rejections name the attempts table (``<source>.attempts``)."""
        return f"{self.source}.attempts"

    def options(self) -> dict[str, Any]:
        survey = self._survey
        watermark = self.watermark
        return {
            "tenant": self.tenant,
            "source": self.source,
            "dialect": self.dialect.name,
            "watermark_from": None if self.watermark_from is None else self.watermark_from.to_json(),
            "watermark": None if watermark is None else watermark.to_json(),
            "bound": None if survey is None else survey.clock.bound_text,
            "catalog": self._catalog_fingerprint,
            "lag_s": self.lag_s,
            "future_tolerance_s": self.future_tolerance_s,
            "full": self.full,
            "ignored_columns": [] if survey is None else list(survey.schema.ignored_columns),
        }

    # -- planning ------------------------------------------------------------------------------------

    def _previous(self) -> tuple[Watermark | None, str | None]:
        manifest = last_extract(self.lake, dialect=self.dialect.name, source=self.source, tenant=self.tenant)
        if manifest is None:
            return None, None
        return Watermark.from_json(manifest.options.get("watermark")), manifest.options.get("catalog")

    def plan(self) -> ExtractPlan:
        """Survey the source: schema differences, rows to read, rows held back. Raises on a broken schema."""
        watermark, previous_catalog = self._previous()
        if self.full:
            watermark = None
        conn = self.dialect.connect()
        try:
            clock = self.dialect.clock(conn, self.lag_s)
            with self.dialect.transaction(conn, snapshot=True):
                schema = self.inspect(conn)
                catalog = self._read_catalog(conn, schema)
                return self._survey_counts(conn, clock, schema, watermark,
                                           self._catalog_changed(catalog, previous_catalog), count_window=True)
        except self.dialect.errors as exc:
            raise self._source_error(exc) from exc
        finally:
            conn.close()

    def run(self, plan: ExtractPlan | None = None, *,
            on_progress: Callable[[int], None] | None = None) -> ExtractReport:
        """Load what changed into the lake (nothing when the plan says it is up to date)."""
        plan = plan or self.plan()
        if plan.up_to_date:
            report = self._report_from_plan(plan)
            report.skipped = True
            report.skipped_reason = "up to date: no attempt changed since the watermark"
            return report
        load = self.lake.load(self, None, force=True, on_progress=on_progress)
        return self._report(load)

    def inspect(self, conn: Any) -> SourceSchema:
        """Check the source's tables and columns; raise ``InputError`` naming what is missing."""
        found = self.dialect.columns(conn, "attempts")
        if found is None:
            raise InputError("the source has no table attempts (create the reference schema with "
                             "`knowtrace source init`)", field="attempts")
        missing_required = [c for c in REQUIRED if c not in found]
        if missing_required:
            raise InputError(f"table attempts: required column {missing_required[0]!r} is missing "
                             f"(columns found: {', '.join(found)}); nothing was loaded",
                             field=f"attempts.{missing_required[0]}")
        if not any(c in found for c in OUTCOME):
            raise InputError(f"table attempts: needs a column 'correct' or 'score', found neither "
                             f"(columns found: {', '.join(found)}); nothing was loaded", field="attempts.correct")
        known = (*REQUIRED, *OUTCOME, *OPTIONAL)
        attempt_columns = tuple(c for c in known if c in found)
        ignored = [f"attempts.{c}" for c in found if c not in known]
        missing = [f"attempts.{c}" for c in (*OUTCOME, *OPTIONAL) if c not in found]
        catalog_columns: dict[str, tuple[str, ...]] = {}
        missing_tables = []
        for table, (required, optional, table_required) in CATALOG_TABLES.items():
            columns = self.dialect.columns(conn, table)
            if columns is None:
                if table_required:
                    raise InputError(f"the source has no table {table}; nothing was loaded", field=table)
                missing_tables.append(table)
                continue
            for column in required:
                if column not in columns:
                    raise InputError(f"table {table}: required column {column!r} is missing (columns found: "
                                     f"{', '.join(columns)}); nothing was loaded", field=f"{table}.{column}")
            catalog_columns[table] = tuple(c for c in (*required, *optional) if c in columns)
            ignored += [f"{table}.{c}" for c in columns if c not in required and c not in optional]
            missing += [f"{table}.{c}" for c in optional if c not in columns]
        return SourceSchema(attempt_columns, catalog_columns, tuple(ignored), tuple(missing), tuple(missing_tables),
                            self.dialect.is_unique(conn, "attempts", "id"))

    def _read_catalog(self, conn: Any, schema: SourceSchema) -> _Catalog:
        catalog = _Catalog()
        rows = self._catalog_rows(conn, schema)
        for row in rows.get("items", []):
            if self._catalog_row_ok(catalog, "items", row, "id"):
                catalog.items[str(row["id"])] = row.get("name")
        for row in rows.get("concepts", []):
            if self._catalog_row_ok(catalog, "concepts", row, "id"):
                catalog.concepts[str(row["id"])] = row.get("name")
        links: dict[str, list[str]] = {}
        for row in rows.get("item_concepts", []):
            if self._catalog_row_ok(catalog, "item_concepts", row, "item_id", "concept_id"):
                links.setdefault(str(row["item_id"]), []).append(str(row["concept_id"]))
        catalog.item_concepts = {k: tuple(v) for k, v in links.items()}
        links = {}
        for row in rows.get("prerequisites", []):
            if self._catalog_row_ok(catalog, "prerequisites", row, "concept_id", "prerequisite_id"):
                links.setdefault(str(row["concept_id"]), []).append(str(row["prerequisite_id"]))
        catalog.prerequisites = {k: tuple(v) for k, v in links.items()}
        return catalog

    def _catalog_rows(self, conn: Any, schema: SourceSchema) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for table, columns in schema.catalog_columns.items():
            names = ", ".join(columns)
            order = ", ".join(CATALOG_TABLES[table][0])
            if table == "item_concepts" and "position" in columns:  # an item's concepts in their order
                order = "item_id, position, concept_id"
            out[table] = [dict(zip(columns, r))
                          for r in self.dialect.rows(conn, f"SELECT {names} FROM {table} ORDER BY {order}")]
        return out

    def _catalog_row_ok(self, catalog: _Catalog, table: str, row: dict[str, Any], *keys: str) -> bool:
        for key in keys:
            value = row.get(key)
            if value is None or not str(value).strip():
                catalog.rejections.append(Rejection(f"{self.source}.{table}", None, f"{key} is empty (NULL)",
                                                    field=key, raw=_raw(row)))
                return False
        return True

    def _catalog_changed(self, catalog: _Catalog, previous: str | None) -> bool:
        self._catalog_fingerprint = catalog.fingerprint()
        if self.full:
            return not catalog.empty
        return self._catalog_fingerprint != previous and not (previous is None and catalog.empty)

    def _window(self, watermark: Watermark | None, clock: SourceClock) -> tuple[str, list[Any]]:
        bound = self.dialect.updated_param(clock.bound)
        if watermark is None:
            return "updated_at < ?", [bound]
        return "(updated_at, id) > (?, ?) AND updated_at < ?", [
            self.dialect.watermark_param(watermark.updated_at), watermark.id, bound]

    def _survey_counts(self, conn: Any, clock: SourceClock, schema: SourceSchema, watermark: Watermark | None,
                       catalog_changed: bool, *, count_window: bool) -> ExtractPlan:
        d = self.dialect
        where, params = self._window(watermark, clock)
        future = d.updated_param(clock.now + timedelta(seconds=self.future_tolerance_s))
        to_read = int(d.scalar(conn, f"SELECT count(*) FROM attempts WHERE {where}", params)) if count_window else None
        return ExtractPlan(
            watermark=watermark, clock=clock, schema=schema, to_read=to_read,
            held_back=int(d.scalar(conn, "SELECT count(*) FROM attempts WHERE updated_at >= ?",
                                   [d.updated_param(clock.bound)])),
            future_updates=int(d.scalar(conn, "SELECT count(*) FROM attempts WHERE updated_at > ?", [future])),
            never_extracted=int(d.scalar(conn, "SELECT count(*) FROM attempts WHERE updated_at IS NULL")),
            catalog_changed=catalog_changed,
        )

    # -- reading (driven by Lake.load, inside the lake's writer lock) ---------------------------------

    def read(self, path: Path | None = None) -> Iterator[Record]:
        """Yield the catalog (if it changed) and every attempt after the watermark; ``path`` is ignored."""
        self._reset()
        watermark, previous_catalog = self._previous()
        self.watermark_from = None if self.full else watermark
        conn = self.dialect.connect()
        try:
            clock = self.dialect.clock(conn, self.lag_s)
            with self.dialect.transaction(conn, snapshot=True):
                schema = self.inspect(conn)
                catalog = self._read_catalog(conn, schema)
                changed = self._catalog_changed(catalog, previous_catalog)
                self._survey = self._survey_counts(conn, clock, schema, self.watermark_from, changed,
                                                   count_window=False)
                if changed:
                    yield from self._catalog_records(catalog)
                yield from self._attempt_records(conn, schema, catalog, clock)
        except self.dialect.errors as exc:
            raise self._source_error(exc) from exc
        finally:
            conn.close()

    def _source_error(self, exc: BaseException) -> SourceError:
        message = " ".join(str(exc).split())
        return SourceError(f"the {self.dialect.name} source {self.source!r} failed: {message}; nothing was "
                           "loaded, the watermark did not move (run the extract again once the source is fixed)")

    def _catalog_records(self, catalog: _Catalog) -> Iterator[Record]:
        yield from catalog.rejections
        for concept_id, name in catalog.concepts.items():
            fields = {"concept_id": concept_id, "tenant": self.tenant, "name": name,
                      "prerequisites": catalog.prerequisites.get(concept_id, ())}
            yield _catalog_record(Concept, fields, f"{self.source}.concepts")
        for item_id, name in catalog.items.items():
            fields = {"item_id": item_id, "tenant": self.tenant, "name": name,
                      "concept_ids": catalog.item_concepts.get(item_id, ())}
            yield _catalog_record(Item, fields, f"{self.source}.items")

    def _attempt_records(self, conn: Any, schema: SourceSchema, catalog: _Catalog,
                         clock: SourceClock) -> Iterator[Record]:
        d = self.dialect
        where, params = self._window(self.watermark_from, clock)
        duplicates: dict[int, int] = {}
        if not schema.unique_ids:
            duplicates = {int(i): int(n) for i, n in d.rows(
                conn, f"SELECT id, count(*) FROM attempts WHERE id IN (SELECT id FROM attempts WHERE {where}) "
                      "GROUP BY id HAVING count(*) > 1", params)}
        columns = schema.attempt_columns
        sql = f"SELECT {', '.join(columns)} FROM attempts WHERE {where} ORDER BY updated_at, id"
        latest = clock.now + timedelta(seconds=self.future_tolerance_s)
        for values in d.stream(conn, sql, params, self.batch_rows):
            self.rows_read += 1
            row = dict(zip(columns, values))
            attempt_id = row["id"]
            if isinstance(attempt_id, bool) or not isinstance(attempt_id, int):
                raise InputError(f"table attempts: id {attempt_id!r} is not an integer; the extractor needs "
                                 "integer attempt ids", field="attempts.id")
            record = self._record(row, attempt_id, catalog, duplicates, latest, clock)
            self._last = (row["updated_at"], attempt_id)
            if record is None:
                self.pending += 1
            else:
                yield record

    def _record(self, row: dict[str, Any], attempt_id: int, catalog: _Catalog, duplicates: dict[int, int],
                latest: Any, clock: SourceClock) -> Record | None:
        """The event of one attempt row, a rejection, or None for an attempt not answered yet."""

        def reject(column: str, reason: str) -> Rejection:
            return Rejection(self.attempts_file, attempt_id, reason, field=column, raw=_raw(row))

        if attempt_id in duplicates:
            return reject("id", f"attempt id {attempt_id} appears {duplicates[attempt_id]} times in table attempts; "
                                "which copy is right is unknown, so none is loaded")
        if row.get("correct") is None and row.get("score") is None:
            return None
        learner = row["learner_id"]
        if learner is None or not str(learner).strip():
            return reject("learner_id", "learner_id is empty (NULL)")
        item = row["item_id"]
        if item is None or not str(item).strip():
            return reject("item_id", "item_id is empty (NULL)")
        item = str(item)
        if item not in catalog.items:
            return reject("item_id", f"unknown item {item!r}: not in table items")
        times = {}
        for column in ("answered_at", "started_at"):
            try:
                times[column] = self.dialect.read_time(row.get(column))
            except ValueError as exc:
                return reject(column, f"{column} is {exc}")
        answered, started = times["answered_at"], times["started_at"]
        for column, moment in (("answered_at", answered), ("started_at", started)):
            if moment is not None and moment > latest:
                return reject(column, f"{column} {moment.isoformat()} is in the future: the source clock said "
                                      f"{clock.now.isoformat()} (tolerance {self.future_tolerance_s:g} s)")
        elapsed = row.get("elapsed_ms")
        if elapsed is None and answered is not None and started is not None and answered >= started:
            elapsed = int((answered - started) / timedelta(milliseconds=1))
        session = row.get("session_id")
        return RawEvent(
            {
                "event_id": f"{self.source}:attempt:{attempt_id}",
                "tenant": self.tenant,
                "learner_id": str(learner),
                "item_id": item,
                "concept_ids": catalog.item_concepts.get(item, ()),
                "correct": row.get("correct"),
                "score": row.get("score"),
                "response": row.get("response"),
                "timestamp": answered,
                "seq": attempt_id,
                "elapsed_ms": elapsed,
                "attempt": row.get("attempt_no"),
                "session_id": None if session is None else str(session),
                "source": "batch",
            },
            self.attempts_file,
            attempt_id,
        )

    # -- reporting -----------------------------------------------------------------------------------

    def _report_from_plan(self, plan: ExtractPlan) -> ExtractReport:
        return ExtractReport(
            source=self.source, dialect=self.dialect.name, tenant=self.tenant,
            watermark_from=None if plan.watermark is None else str(plan.watermark),
            watermark=None if plan.watermark is None else str(plan.watermark),
            bound=plan.clock.bound_text, held_back=plan.held_back, held_by=plan.clock.held_by,
            future_updates=plan.future_updates, never_extracted=plan.never_extracted,
            ignored_columns=list(plan.schema.ignored_columns), missing_columns=list(plan.schema.missing_columns),
            missing_tables=list(plan.schema.missing_tables),
        )

    def _report(self, load: LoadReport) -> ExtractReport:
        assert self._survey is not None
        report = self._report_from_plan(self._survey)
        watermark = self.watermark
        report.watermark_from = None if self.watermark_from is None else str(self.watermark_from)
        report.watermark = None if watermark is None else str(watermark)
        report.load_id = load.load_id
        report.rows_read = load.rows_read
        report.events = load.events
        report.added = load.added
        report.already_in_lake = load.duplicates
        report.rejected = load.rejected
        report.pending = self.pending
        report.items = load.items
        report.concepts = load.concepts
        report.rejection_reasons = dict(load.rejection_reasons)
        return report


def _raw(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str)[:2000]


def _catalog_record(kind: type[Item] | type[Concept], fields: dict[str, Any], file: str) -> Record:
    try:
        return kind.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        return Rejection(file, None, f"{fields.get('item_id') or fields.get('concept_id')!r}: {error['msg']}",
                         field=".".join(str(p) for p in error["loc"]) or None, raw=json.dumps(fields, default=str))


def extract(
    dsn: str,
    lake: Lake,
    *,
    dialect: str | None = None,
    tenant: str = "default",
    source_name: str | None = None,
    batch_rows: int = 10_000,
    lag_s: float = 0.0,
    future_tolerance_s: float = 300.0,
    full: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ExtractReport:
    """Extract what changed in the database at ``dsn`` since the lake's watermark into ``lake``.

    ``dialect`` ("postgres" or "sqlite") must match the DSN when given. See ``SourceExtractor``.
    """
    extractor = SourceExtractor(dialect_for(dsn, dialect), lake, tenant=tenant, source_name=source_name,
                                batch_rows=batch_rows, lag_s=lag_s, future_tolerance_s=future_tolerance_s, full=full)
    return extractor.run(on_progress=on_progress)
