"""EdNet KT1: one CSV per learner (``u<ID>.csv``) of ``timestamp,solving_id,question_id,user_answer,elapsed_time``.

PATH is one ``u*.csv`` file or a folder of them (read one at a time, in natural order: u2 before
u10). The learner id is the file name without ``.csv``. Correctness needs the answer key,
``contents/questions.csv`` (``question_id,bundle_id,explanation_id,correct_answer,part,tags,...``):
pass it as ``questions``, else it is looked for at ``../contents/questions.csv`` next to the KT1
folder. Fields: ``item_id`` = ``question_id``; ``correct`` = ``user_answer == correct_answer`` (an
empty answer counts as wrong); ``response`` = ``user_answer``; ``concept_ids`` = the question's tags
(``;``-separated, ``-1`` means none); ``timestamp`` = ``timestamp`` in Unix milliseconds, UTC
(EdNet shifted its clock by a fixed amount); ``elapsed_ms`` = ``elapsed_time``; ``session_id`` =
``<learner>:<solving_id>`` (one bundle session); ``seq`` = the row's position in the learner's
file, from 0 (the questions of a bundle share one timestamp).

In a folder, a learner file that cannot be read at all (empty, missing columns) becomes one
rejection with no line, and the other files are still read. A question id that is not in
``questions.csv`` rejects the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowtrace.events.catalog import Item
from knowtrace.exceptions import InputError, UnreadableFileError
from knowtrace.importers._tabular import CsvFile, Row, epoch_to_datetime, parse_int
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection

__all__ = ["EdnetKt1Importer"]

KT1_COLUMNS = ("timestamp", "solving_id", "question_id", "user_answer", "elapsed_time")
QUESTION_COLUMNS = ("question_id", "bundle_id", "correct_answer", "part", "tags")
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class _Question:
    answer: str
    tags: tuple[str, ...]
    part: str
    bundle_id: str


class EdnetKt1Importer(Importer):
    """Import EdNet KT1 learner files, scoring each answer against ``questions.csv``."""

    format = "ednet-kt1"
    description = "EdNet KT1 per-learner CSVs (u<ID>.csv) scored with contents/questions.csv"

    def __init__(self, *, tenant: str = "default", questions: Path | None = None) -> None:
        super().__init__(tenant=tenant)
        self.questions = Path(questions) if questions is not None else None

    def options(self) -> dict[str, Any]:
        return {**super().options(), "questions": str(self.questions)}

    def read(self, path: Path) -> Iterator[Record]:
        path = Path(path)
        if not path.exists():
            raise UnreadableFileError("no such file or folder", file=path)
        files = _learner_files(path)
        questions_path = self._questions_path(path)
        questions: dict[str, _Question] = {}
        yield from _read_questions(questions_path, questions)
        used: set[str] = set()
        for file in files:
            try:
                yield from self._read_learner(file, questions, used)
            except UnreadableFileError as exc:
                if file == path:
                    raise
                yield Rejection(str(file), None, f"learner file not read: {exc.reason}")

    def _questions_path(self, path: Path) -> Path:
        if self.questions is not None:
            return self.questions
        folder = path if path.is_dir() else path.parent
        candidate = folder.parent / "contents" / "questions.csv"
        if not candidate.is_file():
            raise InputError(
                f"EdNet answers are scored with contents/questions.csv, not found at {candidate}; "
                "give its location with the questions option",
                file=path,
            )
        return candidate

    def _read_learner(self, file: Path, questions: dict[str, _Question], used: set[str]) -> Iterator[Record]:
        learner = file.stem
        with CsvFile(file) as table:
            cols = table.resolve({name: (name,) for name in KT1_COLUMNS}, KT1_COLUMNS)
            position = 0
            for row in table.rows():
                self.rows_read += 1
                if isinstance(row, Rejection):
                    yield row
                    continue
                record = self._event(row, cols, table, learner, position, questions)
                position += 1
                if isinstance(record, RawEvent):
                    item = record.fields["item_id"]
                    if item not in used:
                        used.add(item)
                        q = questions[item]
                        yield Item(item_id=item, tenant=self.tenant, concept_ids=q.tags,
                                   metadata={"part": q.part, "bundle_id": q.bundle_id})
                yield record

    def _event(
        self, row: Row, cols: dict[str, int], table: CsvFile, learner: str, position: int,
        questions: dict[str, _Question],
    ) -> RawEvent | Rejection:
        """The event of one KT1 row, or why it is rejected."""
        cell = {name: row.cells[index].strip() for name, index in cols.items()}

        def reject(name: str, reason: str) -> Rejection:
            return Rejection(table.file, row.line, reason, field=name, raw=row.raw())

        question = questions.get(cell["question_id"])
        if question is None:
            return reject("question_id", f"question {cell['question_id']!r} is not in questions.csv")
        if not cell["solving_id"]:
            return reject("solving_id", "empty")
        try:
            timestamp = epoch_to_datetime(cell["timestamp"], "ms")
        except ValueError as exc:
            return reject("timestamp", str(exc))
        try:
            elapsed = parse_int(cell["elapsed_time"]) if cell["elapsed_time"] else None
        except ValueError as exc:
            return reject("elapsed_time", str(exc))
        answer = cell["user_answer"]
        return RawEvent(
            {
                "tenant": self.tenant,
                "learner_id": learner,
                "item_id": cell["question_id"],
                "concept_ids": question.tags,
                "correct": int(answer.lower() == question.answer.lower() and answer != ""),
                "response": answer or None,
                "timestamp": timestamp,
                "seq": position,
                "elapsed_ms": elapsed,
                "session_id": f"{learner}:{cell['solving_id']}",
                "source": "import",
            },
            table.file,
            row.line,
        )


def _learner_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``u*.csv`` files of the folder ``path`` in natural order."""
    if not path.is_dir():
        return [path]
    files = [p for p in path.iterdir() if p.name.startswith("u") and p.suffix == ".csv" and p.is_file()]
    if not files:
        raise UnreadableFileError("folder holds no u*.csv learner files", file=path)
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in _NUMBER.split(p.name)])


def _read_questions(path: Path, into: dict[str, _Question]) -> Iterator[Rejection]:
    """Fill ``into`` with the answer key of ``questions.csv``; yield its unusable rows."""
    with CsvFile(path) as table:
        cols = table.resolve({name: (name,) for name in QUESTION_COLUMNS}, QUESTION_COLUMNS)
        for row in table.rows():
            if isinstance(row, Rejection):
                yield row
                continue
            cell = {name: row.cells[index].strip() for name, index in cols.items()}
            missing = next((name for name in ("question_id", "correct_answer") if not cell[name]), None)
            if missing is not None:
                yield Rejection(table.file, row.line, "empty", field=missing, raw=row.raw())
                continue
            tags = tuple(t for t in (t.strip() for t in cell["tags"].split(";")) if t and t != "-1")
            into[cell["question_id"]] = _Question(cell["correct_answer"], tags, cell["part"], cell["bundle_id"])
