"""``knowtrace source init``: create the reference operational database and fill it.

The database gets the reference schema (``schema.sql``, or ``schema_sqlite.sql`` for SQLite) and
the learners, items, concepts and answers of one tenant of a lake, or of the classroom simulator.
Everything happens in one transaction: the database has all of it or none. Answers are written
``batch_rows`` at a time, so memory stays bounded however large the lake is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from knowtrace.batch.dialect import Dialect, SourceError, dialect_for
from knowtrace.events.catalog import Concept, Item
from knowtrace.exceptions import InputError
from knowtrace.importers.base import RawEvent
from knowtrace.lake import Lake
from knowtrace.lake.layout import LakeLayout
from knowtrace.simulate import ClassroomSimulator

__all__ = ["ATTEMPT_INSERT_COLUMNS", "SourceInitReport", "init_source"]

ATTEMPT_INSERT_COLUMNS = ("learner_id", "item_id", "correct", "score", "response", "started_at", "answered_at",
                          "elapsed_ms", "attempt_no", "session_id", "updated_at")
#: simulated learners are put in classes of this size, in order
CLASS_SIZE = 30


@dataclass
class SourceInitReport:
    """What ``init_source`` wrote."""

    dialect: str
    origin: str
    tenant: str | None = None
    classes: int = 0
    learners: int = 0
    concepts: int = 0
    prerequisites: int = 0
    items: int = 0
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Answer:
    learner_id: str
    item_id: str
    correct: int | None
    score: float | None
    response: str | None
    answered_at: datetime | None
    elapsed_ms: int | None
    attempt_no: int | None
    session_id: str | None
    class_id: str | None = None


class _SourceWriter:
    """Buffers the catalog, then writes answers in batches (their learners and items first)."""

    def __init__(self, dialect: Dialect, conn: Any, report: SourceInitReport, batch_rows: int) -> None:
        self.d = dialect
        self.conn = conn
        self.report = report
        self.batch_rows = batch_rows
        self.concepts: dict[str, str | None] = {}
        self.prerequisites: dict[str, tuple[str, ...]] = {}
        self.items: dict[str, str | None] = {}
        self.item_concepts: dict[str, tuple[str, ...]] = {}
        self.classes: dict[str, str] = {}
        self.learners: dict[str, str | None] = {}  # learners written so far (id -> class)
        self.batch: list[_Answer] = []
        self.catalog_written = False
        self.now = dialect.clock(conn, 0.0).now

    def concept(self, concept_id: str, name: str | None, prerequisites: Iterable[str]) -> None:
        self.concepts[concept_id] = name
        self.prerequisites[concept_id] = tuple(prerequisites)

    def item(self, item_id: str, name: str | None, concept_ids: Iterable[str]) -> None:
        self.items[item_id] = name
        self.item_concepts[item_id] = tuple(concept_ids)

    def answer(self, answer: _Answer) -> None:
        self.batch.append(answer)
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def _write_catalog(self) -> None:
        concepts = dict(self.concepts)
        for ids in (*self.prerequisites.values(), *self.item_concepts.values()):
            for concept_id in ids:
                concepts.setdefault(concept_id, None)
        self.d.bulk_insert(self.conn, "concepts", ("id", "name"), list(concepts.items()))
        edges = [(c, p) for c, ps in self.prerequisites.items() for p in ps]
        self.d.bulk_insert(self.conn, "prerequisites", ("concept_id", "prerequisite_id"), edges)
        self.d.bulk_insert(self.conn, "items", ("id", "name"), list(self.items.items()))
        links = [(i, c, n) for i, cs in self.item_concepts.items() for n, c in enumerate(cs)]
        self.d.bulk_insert(self.conn, "item_concepts", ("item_id", "concept_id", "position"), links)
        self.report.concepts, self.report.prerequisites = len(concepts), len(edges)
        self.report.items = len(self.items)
        self.catalog_written = True

    def flush(self) -> None:
        """Write the buffered answers, after the catalog, their classes, learners and unlisted items."""
        if not self.catalog_written:
            self._write_catalog()
        if not self.batch:
            return
        new_learners = {}
        for a in self.batch:
            if a.learner_id not in self.learners and a.learner_id not in new_learners:
                new_learners[a.learner_id] = a.class_id
        new_classes = sorted({c for c in new_learners.values() if c is not None and c not in self.classes})
        self.d.insert_missing(self.conn, "classes", ("id", "name"), [(c, f"Class {c}") for c in new_classes])
        self.classes.update({c: c for c in new_classes})
        self.d.insert_missing(self.conn, "learners", ("id", "class_id"), list(new_learners.items()))
        self.learners.update(new_learners)
        unlisted = sorted({a.item_id for a in self.batch if a.item_id not in self.items})
        self.d.insert_missing(self.conn, "items", ("id", "name"), [(i, None) for i in unlisted])
        self.items.update({i: None for i in unlisted})
        self.d.bulk_insert(self.conn, "attempts", ATTEMPT_INSERT_COLUMNS, [self._attempt_row(a) for a in self.batch])
        self.report.attempts += len(self.batch)
        self.report.items = len(self.items)
        self.report.learners = len(self.learners)
        self.report.classes = len(self.classes)
        self.batch = []

    def _attempt_row(self, a: _Answer) -> tuple[Any, ...]:
        started = None
        if a.answered_at is not None and a.elapsed_ms is not None:
            started = a.answered_at - timedelta(milliseconds=a.elapsed_ms)
        # history: a past answer was last touched when it was given
        updated = a.answered_at if a.answered_at is not None and a.answered_at < self.now else self.now
        correct = None if a.correct is None else bool(a.correct)
        if self.d.name == "sqlite" and correct is not None:
            correct = int(correct)
        return (a.learner_id, a.item_id, correct, a.score, a.response, self.d.time_param(started),
                self.d.time_param(a.answered_at), a.elapsed_ms, a.attempt_no or 1, a.session_id,
                self.d.updated_param(updated))


def init_source(
    dsn: str,
    *,
    from_lake: str | os.PathLike[str] | None = None,
    simulate: int | None = None,
    tenant: str | None = None,
    seed: int = 0,
    replace: bool = False,
    batch_rows: int = 10_000,
) -> SourceInitReport:
    """Create the reference schema at ``dsn`` and fill it from a lake tenant or from the simulator.

    ``from_lake``: a lake directory; its ``interactions``, ``items`` and ``concepts`` of ``tenant``
    (needed when the lake has several tenants). ``simulate``: that many simulated learners
    (``ClassroomSimulator`` with ``seed``; synthetic data). Exactly one of the two is required. An
    existing ``attempts`` table is an error unless ``replace``, which drops the reference tables first.
    """
    if (from_lake is None) == (simulate is None):
        raise InputError("give exactly one source of data: from_lake (--from-lake DIR) or simulate (--simulate N)",
                         field="from_lake")
    if simulate is not None and (isinstance(simulate, bool) or not isinstance(simulate, int) or simulate < 1):
        raise InputError(f"simulate must be a number of learners >= 1, got {simulate!r}", field="simulate")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise InputError(f"batch_rows must be an integer >= 1, got {batch_rows!r}", field="batch_rows")
    lake = _open_existing_lake(Path(from_lake)) if from_lake is not None else None
    if lake is not None:
        tenant = _lake_tenant(lake, tenant)
    dialect = dialect_for(dsn)
    report = SourceInitReport(dialect=dialect.name, origin="lake" if lake is not None else "simulator", tenant=tenant)
    conn = dialect.connect(create=True)
    try:
        writer = _SourceWriter(dialect, conn, report, batch_rows)
        with dialect.transaction(conn):
            dialect.create_schema(conn, replace=replace)
            if lake is not None:
                assert tenant is not None
                _fill_from_lake(writer, lake, tenant, batch_rows)
            else:
                assert simulate is not None
                _fill_from_simulator(writer, simulate, seed)
            writer.flush()
    except dialect.errors as exc:
        message = " ".join(str(exc).split())
        raise SourceError(f"creating the {dialect.name} source failed: {message}; nothing was written") from exc
    finally:
        conn.close()
    return report


def _open_existing_lake(path: Path) -> Lake:
    if not LakeLayout(path).version_file.is_file():
        raise InputError(f"{path} is not a knowtrace lake (no _meta/lake.json)", field="from_lake")
    return Lake(path)


def _lake_tenant(lake: Lake, tenant: str | None) -> str:
    rows = lake.query("SELECT tenant FROM interactions UNION SELECT tenant FROM items "
                      "UNION SELECT tenant FROM concepts ORDER BY 1").to_pylist()
    tenants = [r["tenant"] for r in rows]
    if tenant is None:
        if len(tenants) != 1:
            raise InputError(f"the lake has {len(tenants)} tenants ({', '.join(tenants) or 'none'}); choose one "
                             "with --tenant", field="tenant")
        return str(tenants[0])
    if tenant not in tenants:
        raise InputError(f"the lake has no tenant {tenant!r} (tenants: {', '.join(tenants) or 'none'})",
                         field="tenant")
    return tenant


def _fill_from_simulator(writer: _SourceWriter, learners: int, seed: int) -> None:
    class_of: dict[str, str] = {}
    for record in ClassroomSimulator(learners=learners, seed=seed).read(None):
        if isinstance(record, Concept):
            writer.concept(record.concept_id, record.name, record.prerequisites)
        elif isinstance(record, Item):
            writer.item(record.item_id, record.name, record.concept_ids)
        elif isinstance(record, RawEvent):
            f = record.fields
            learner = f["learner_id"]
            if learner not in class_of:
                class_of[learner] = f"class-{len(class_of) // CLASS_SIZE + 1:03d}"
            writer.answer(_Answer(learner, f["item_id"], f["correct"], f.get("score"), f.get("response"),
                                  f.get("timestamp"), f.get("elapsed_ms"), f.get("attempt"), f.get("session_id"),
                                  class_of[learner]))


def _fill_from_lake(writer: _SourceWriter, lake: Lake, tenant: str, batch_rows: int) -> None:
    con = lake.connect()
    try:
        for concept_id, name, prerequisites in con.execute(
                "SELECT concept_id, name, prerequisites FROM concepts WHERE tenant = ? ORDER BY concept_id",
                [tenant]).fetchall():
            writer.concept(concept_id, name, prerequisites or ())
        for item_id, name, concept_ids in con.execute(
                "SELECT item_id, name, concept_ids FROM items WHERE tenant = ? ORDER BY item_id", [tenant]).fetchall():
            writer.item(item_id, name, concept_ids or ())
        for row in _lake_answers(con, tenant, batch_rows):
            writer.answer(_Answer(row["learner_id"], row["item_id"], row["correct"], row["score"], row["response"],
                                  row["timestamp"], row["elapsed_ms"], row["attempt"], row["session_id"]))
    finally:
        con.close()


def _lake_answers(con: Any, tenant: str, batch_rows: int) -> Iterator[dict[str, Any]]:
    reader = con.sql(
        """SELECT learner_id, item_id, correct, score, response, "timestamp", elapsed_ms, attempt, session_id
           FROM interactions WHERE tenant = ? ORDER BY learner_id, position""", params=[tenant])
    reader = reader.to_arrow_reader(batch_rows)
    for batch in reader:
        yield from batch.to_pylist()
