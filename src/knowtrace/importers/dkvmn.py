"""The three-lines-per-learner format of the DKVMN / DKT benchmark splits.

Each learner is three lines: the number of answers; the comma-separated item (or skill) ids; the
comma-separated 0/1 answers. Lines may end with a trailing comma (the DKT ASSISTments files).
The format has no learner ids and no clock times: a learner is named ``<file stem>:<record>``
(1-based record number) and answers are ordered by their position (``seq``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from knowtrace.events.catalog import Item
from knowtrace.importers.base import Importer, RawEvent, Record, Rejection, open_text_lines, undecodable
from knowtrace.importers.concept_map import read_concept_map

__all__ = ["DkvmnImporter"]


def _split(text: str) -> list[str]:
    parts = [p.strip() for p in text.strip().split(",")]
    if parts and parts[-1] == "":
        parts.pop()  # trailing comma
    return parts


class DkvmnImporter(Importer):
    """Import DKVMN/DKT three-line files; optionally map ids to concepts."""

    format = "dkvmn"
    description = "DKVMN/DKT benchmark splits: three lines per learner (length; ids; 0/1 answers)"

    def __init__(
        self,
        *,
        tenant: str = "default",
        concept_map: Path | None = None,
        ids_are: Literal["items", "concepts"] = "items",
    ) -> None:
        super().__init__(tenant=tenant)
        self.concept_map = Path(concept_map) if concept_map is not None else None
        self.ids_are = ids_are

    def options(self) -> dict[str, Any]:
        return {**super().options(), "concept_map": str(self.concept_map), "ids_are": self.ids_are}

    def read(self, path: Path) -> Iterator[Record]:
        path = Path(path)
        mapping = read_concept_map(self.concept_map) if self.concept_map is not None else {}
        file = str(path)
        stem = path.stem
        seen_items: set[str] = set()
        lines = open_text_lines(path)
        record = 0
        for number, text in lines:
            self.rows_read += 1
            if not text.strip():
                continue
            bad = undecodable(text)
            head = text.strip().rstrip(",").strip()
            if bad or not head.isdigit():
                yield Rejection(file, number, bad or "expected a length line (one non-negative integer)",
                                field="length", raw=text[:200])
                continue
            record += 1
            length = int(head)
            ids_line = next(lines, None)
            answers_line = next(lines, None) if ids_line is not None else None
            if ids_line is None or answers_line is None:
                yield Rejection(file, number, f"truncated record {record}: expected 3 lines, file ends",
                                field="record", raw=text[:200])
                self.rows_read += 1 if ids_line is not None else 0
                return
            self.rows_read += 2
            problem = self._check(length, ids_line, answers_line)
            if problem is not None:
                offset, field, reason = problem
                yield Rejection(file, number + offset, f"record {record} (learner {stem}:{record}): {reason}",
                                field=field, raw=(text, ids_line[1], answers_line[1])[offset][:200])
                continue
            learner = f"{stem}:{record}"
            for seq, (raw_id, answer) in enumerate(zip(_split(ids_line[1]), _split(answers_line[1]))):
                concepts = mapping.get(raw_id, ()) if self.ids_are == "items" else (raw_id,)
                if raw_id not in seen_items:
                    seen_items.add(raw_id)
                    yield Item(item_id=raw_id, tenant=self.tenant, concept_ids=concepts)
                yield RawEvent(
                    {
                        "tenant": self.tenant,
                        "learner_id": learner,
                        "item_id": raw_id,
                        "concept_ids": concepts,
                        "correct": answer,
                        "seq": seq,
                        "source": "import",
                    },
                    file,
                    number + 2,
                )

    @staticmethod
    def _check(length: int, ids_line: tuple[int, str], answers_line: tuple[int, str]) -> tuple[int, str, str] | None:
        """(line offset, field, reason) of the first problem of a record, or None."""
        for offset, field, (_, text) in ((1, "item_ids", ids_line), (2, "answers", answers_line)):
            bad = undecodable(text)
            if bad:
                return offset, field, bad
        ids, answers = _split(ids_line[1]), _split(answers_line[1])
        if not ids or any(not i for i in ids):
            return 1, "item_ids", "empty id in the id line"
        for position, answer in enumerate(answers):
            if answer not in ("0", "1"):
                return 2, "answers", f"answer {position + 1} is {answer!r}, expected 0 or 1"
        if len(ids) != len(answers):
            return 2, "answers", f"{len(ids)} ids but {len(answers)} answers"
        if len(ids) != length:
            return 0, "length", f"length line says {length} but the record has {len(ids)} answers"
        return None
