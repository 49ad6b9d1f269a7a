"""The raw ASSISTments problem-log CSV (skill-builder 2009-2010, 2012-2013 and alike).

One row is one learner's first answer to one problem (``order_id``, called ``problem_log_id`` in
the 2012-2013 release). A problem tagged with several skills is logged as several rows with the
same ``order_id``, one per skill; in the 2009-2010 file these rows are far apart (the file is
sorted by skill). They are merged into ONE event whose ``concept_ids`` are all the skills, so an
answer is never counted twice. To merge rows wherever they are without holding the file in
memory, the parsed rows are spilled to a temporary SQLite file and read back grouped by order id:
memory stays bounded, the events come out after the whole file has been read (ordered by order
id), and the temporary file takes roughly the size of the input.

Fields: ``learner_id`` = ``user_id``, ``item_id`` = ``problem_id``, ``concept_ids`` = the skill
ids (empty when ``skill_id`` is empty; a collapsed id such as ``9_15`` is the skills 9 and 15),
``seq`` = the order id when it is a number (order ids are chronological), ``session_id`` =
``assignment_id``, ``response`` = ``answer_text``, ``timestamp`` = ``start_time`` when the file has
it (read in ``timezone``, UTC unless told otherwise: the release does not say), ``event_id`` =
``assistments:<order column>:<order id>``. ``correct`` must be 0 or 1; a value strictly
between 0 and 1 (partial credit in some releases) becomes ``score``. ``elapsed_ms`` =
``ms_first_response``; the releases hold negative values there (clock errors), which are kept as
"unknown" (``elapsed_ms`` empty) rather than rejecting the answer. ``attempt`` = ``attempt_count``
when it is at least 1.

The 2009-2010 file is Latin-1 text: the default ``encoding="auto"`` reads UTF-8 and Latin-1 alike.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from knowtrace.events.catalog import Concept, Item
from knowtrace.importers._tabular import (
    CsvFile,
    Row,
    clean_id,
    parse_int,
    parse_timestamp,
    printable,
    resolve_timezone,
)
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection

__all__ = ["AssistmentsImporter"]

#: canonical column -> the names it has in the different releases.
COLUMNS: dict[str, tuple[str, ...]] = {
    "order_id": ("order_id", "problem_log_id"),
    "user_id": ("user_id",),
    "problem_id": ("problem_id",),
    "correct": ("correct",),
    "skill_id": ("skill_id",),
    "skill_name": ("skill_name", "skill"),
    "assignment_id": ("assignment_id",),
    "attempt_count": ("attempt_count",),
    "ms_first_response": ("ms_first_response",),
    "answer_text": ("answer_text",),
    "start_time": ("start_time",),
}
REQUIRED = ("order_id", "user_id", "problem_id", "correct")

#: the spilled, parsed rows; one row per CSV row.
_SCHEMA = """
CREATE TABLE answers (
    order_id TEXT NOT NULL, line INTEGER NOT NULL, learner TEXT NOT NULL, item TEXT NOT NULL,
    correct INTEGER, score REAL, elapsed INTEGER, attempt INTEGER, seq INTEGER,
    session TEXT, response TEXT, ts TEXT, skills TEXT
);
CREATE TABLE item_skills (item TEXT NOT NULL, skill TEXT NOT NULL, PRIMARY KEY (item, skill));
"""
_INSERT = "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_BATCH = 10_000
_SEP = "\x1f"  # joins several skills in the ``skills`` column
_INT64_MAX = 2**63 - 1


class AssistmentsImporter(Importer):
    """Import raw ASSISTments problem logs; one event per order id, all its skills merged."""

    format = "assistments"
    description = "ASSISTments problem-log CSV (skill-builder 2009-2010, 2012-2013); multi-skill rows merged"

    def __init__(self, *, tenant: str = "default", encoding: str = "auto", timezone: str = "UTC") -> None:
        super().__init__(tenant=tenant)
        self.encoding = encoding
        self.timezone = timezone
        self._zone = resolve_timezone(timezone)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "encoding": self.encoding, "timezone": self.timezone}

    def read(self, path: Path) -> Iterator[Record]:
        with CsvFile(Path(path), encoding=self.encoding) as table:
            cols = table.resolve(COLUMNS, REQUIRED)
            order_column = table.header[cols["order_id"]]
            with tempfile.TemporaryDirectory(prefix="knowtrace-assistments-") as tmp:
                db = sqlite3.connect(Path(tmp) / "answers.sqlite")
                try:
                    db.executescript(_SCHEMA)
                    yield from self._spill(table, cols, db)
                    yield from self._merge(table.file, table.header, cols, order_column, db)
                finally:
                    db.close()

    def _spill(self, table: CsvFile, cols: dict[str, int], db: sqlite3.Connection) -> Iterator[Record]:
        """Parse every row; store the good ones, yield the rejections, then each skill's Concept."""
        concepts: dict[str, str | None] = {}
        batch: list[tuple[Any, ...]] = []
        for row in table.rows():
            self.rows_read += 1
            if isinstance(row, Rejection):
                yield row
                continue
            parsed = self._parse(row, cols, table)
            if isinstance(parsed, Rejection):
                yield parsed
                continue
            skills, name = self._skills(row, cols)
            for skill in skills:
                if concepts.get(skill) is None:
                    concepts[skill] = name if len(skills) == 1 else None
            batch.append((*parsed, _SEP.join(skills) or None))
            if len(batch) >= _BATCH:
                db.executemany(_INSERT, batch)
                batch.clear()
        db.executemany(_INSERT, batch)
        db.execute("CREATE INDEX answers_by_order ON answers (order_id, line)")
        db.commit()
        for skill, name in concepts.items():
            yield Concept(concept_id=skill, tenant=self.tenant, name=name)

    def _parse(self, row: Row, cols: dict[str, int], table: CsvFile) -> tuple[Any, ...] | Rejection:
        """The stored tuple of one row (without its skills), or why the row is rejected."""

        def cell(name: str) -> str:
            return row.cells[cols[name]].strip() if name in cols else ""

        def reject(name: str, reason: str) -> Rejection:
            return Rejection(table.file, row.line, reason, field=table.header[cols[name]], raw=row.raw())

        ids = {name: clean_id(cell(name)) for name in ("order_id", "user_id", "problem_id")}
        for name, value in ids.items():
            if not value:
                return reject(name, "empty")
        correct, score = _outcome(cell("correct"))
        if correct is None and score is None:
            return reject("correct", f"expected 0 or 1 (or partial credit between 0 and 1), got {cell('correct')!r}")
        numbers: dict[str, int | None] = {}
        for name in ("ms_first_response", "attempt_count"):
            try:
                numbers[name] = parse_int(cell(name)) if cell(name) else None
            except ValueError as exc:
                return reject(name, str(exc))
            if abs(numbers[name] or 0) > _INT64_MAX:
                return reject(name, f"{cell(name)} is out of range")
        elapsed, attempt = numbers["ms_first_response"], numbers["attempt_count"]
        timestamp = None
        if cell("start_time"):
            try:
                timestamp = parse_timestamp(cell("start_time"), zone=self._zone).isoformat()
            except ValueError as exc:
                return reject("start_time", str(exc))
        order = ids["order_id"]
        return (
            order,
            row.line,
            ids["user_id"],
            ids["problem_id"],
            correct,
            score,
            elapsed if elapsed is not None and elapsed >= 0 else None,
            attempt if attempt is not None and attempt >= 1 else None,
            int(order) if order.isascii() and order.isdigit() and len(order) <= 18 else None,
            clean_id(cell("assignment_id")) or None,
            row.cells[cols["answer_text"]] if "answer_text" in cols and row.cells[cols["answer_text"]] else None,
            timestamp,
        )

    @staticmethod
    def _skills(row: Row, cols: dict[str, int]) -> tuple[list[str], str | None]:
        """The skill ids of a row (``9_15`` is split) and the row's skill name."""
        name = row.cells[cols["skill_name"]].strip() if "skill_name" in cols else ""
        if "skill_id" in cols:
            raw = clean_id(row.cells[cols["skill_id"]])
            parts = raw.split("_")
            skills = parts if len(parts) > 1 and all(p.isdigit() for p in parts) else [raw] if raw else []
        else:  # no skill ids: the name is the id
            skills = [name] if name else []
        return skills, name or None

    def _merge(
        self, file: str, header: tuple[str, ...], cols: dict[str, int], order_column: str, db: sqlite3.Connection
    ) -> Iterator[Record]:
        """Read the stored rows back grouped by order id; yield one event per order, then the Items."""
        group: list[tuple[Any, ...]] = []
        query = db.execute("SELECT * FROM answers ORDER BY order_id, line")
        for stored in query:
            if group and stored[0] != group[0][0]:
                yield from self._event(file, header, cols, order_column, group, db)
                group = []
            group.append(stored)
        if group:
            yield from self._event(file, header, cols, order_column, group, db)
        db.commit()
        item, skills = None, []
        for item_id, skill in db.execute("SELECT item, skill FROM item_skills ORDER BY item, skill"):
            if item_id != item and item is not None:
                yield Item(item_id=item, tenant=self.tenant, concept_ids=skills)
                skills = []
            item = item_id
            if skill:
                skills.append(skill)
        if item is not None:
            yield Item(item_id=item, tenant=self.tenant, concept_ids=skills)

    def _event(
        self,
        file: str,
        header: tuple[str, ...],
        cols: dict[str, int],
        order_column: str,
        group: list[tuple[Any, ...]],
        db: sqlite3.Connection,
    ) -> Iterator[Record]:
        """One event from the rows of one order id; a row that contradicts the first is rejected."""
        first = group[0]
        order, line, learner, item, correct, score, elapsed, attempt, seq, session, response, ts, _ = first
        skills: list[str] = []
        for stored in group:
            clash = _clash(first, stored)
            if clash is not None:
                index, name = clash
                yield Rejection(
                    file,
                    stored[1],
                    f"{order_column} {order} was first logged at line {line} with {name}="
                    f"{printable(str(first[index]), 60)!r}; this row says {printable(str(stored[index]), 60)!r}",
                    field=header[cols[name]],
                )
                continue
            for skill in (stored[12] or "").split(_SEP):
                if skill and skill not in skills:
                    skills.append(skill)
        db.executemany("INSERT OR IGNORE INTO item_skills VALUES (?, ?)", [(item, s) for s in skills or [""]])
        fields: dict[str, Any] = {
            "event_id": f"assistments:{order_column}:{order}",
            "tenant": self.tenant,
            "learner_id": learner,
            "item_id": item,
            "concept_ids": tuple(skills),
            "seq": seq,
            "elapsed_ms": elapsed,
            "attempt": attempt,
            "session_id": session,
            "response": response,
            "timestamp": datetime.fromisoformat(ts) if ts else None,
            "source": "import",
        }
        if correct is not None:
            fields["correct"] = correct
        else:
            fields["score"] = score
        yield RawEvent(fields, file, line)


#: stored-tuple index -> canonical column, for the fields the rows of one order id must agree on.
_AGREE = ((2, "user_id"), (3, "problem_id"), (4, "correct"), (5, "correct"))


def _clash(first: tuple[Any, ...], other: tuple[Any, ...]) -> tuple[int, str] | None:
    for index, name in _AGREE:
        if first[index] != other[index]:
            return index, name
    return None


def _outcome(text: str) -> tuple[int | None, float | None]:
    """(correct, score) from the ``correct`` cell: 0/1 -> correct; strictly between -> score."""
    try:
        value = float(text)
    except ValueError:
        return None, None
    if value in (0.0, 1.0):
        return int(value), None
    if 0.0 < value < 1.0:
        return None, value
    return None, None
