"""The fixed DKVMN benchmark splits: ``<name>_train{k}.csv``, ``<name>_valid{k}.csv`` and ``<name>_test.csv``.

The three files of a fold are read with ``DkvmnImporter`` into in-memory silver tables (no lake).
Option defaults are detected from the folder: a ``Qmatrix.csv`` in it is used as the concept map
(STATICS), and a folder whose name starts with ``assist2009`` has skill ids, so its ids are read
as concepts (ASSIST2009); any other folder has item ids without concepts unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import ValidationError

from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError
from knowtrace.importers.base import RawEvent, Rejection
from knowtrace.importers.dkvmn import DkvmnImporter
from knowtrace.lake.frames import events_to_table

__all__ = ["DkvmnSplit", "dkvmn_files", "dkvmn_options", "read_dkvmn_split", "read_dkvmn_table"]

IdsAre = Literal["items", "concepts"]
QMATRIX = "Qmatrix.csv"


@dataclass(frozen=True)
class DkvmnSplit:
    """Fold ``fold`` of a DKVMN split folder, read into silver-shaped tables."""

    directory: Path
    name: str
    fold: int
    ids_are: IdsAre
    concept_map: Path | None
    train: pa.Table
    valid: pa.Table
    test: pa.Table

    def describe(self) -> str:
        """One line: the dataset, the fold and how ids were read."""
        how = f"concept map {self.concept_map.name}" if self.concept_map else f"ids are {self.ids_are}"
        return f"DKVMN split {self.name} fold {self.fold} ({how})"


def dkvmn_files(directory: Path, fold: int = 1) -> tuple[str, Path, Path, Path]:
    """(dataset name, train file, valid file, test file) of fold ``fold`` in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a folder of DKVMN split files", file=directory)
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise InputError(f"fold must be a positive integer, got {fold!r}", field="fold")
    found = sorted(directory.glob(f"*_train{fold}.csv"))
    if len(found) != 1:
        present = ", ".join(sorted(p.name for p in directory.glob("*.csv"))) or "no .csv files"
        what = "no" if not found else "several"
        raise InputError(f"{what} *_train{fold}.csv file(s) for fold {fold} (found: {present})", file=directory)
    name = found[0].name[: -len(f"_train{fold}.csv")]
    paths = (found[0], directory / f"{name}_valid{fold}.csv", directory / f"{name}_test.csv")
    for path in paths[1:]:
        if not path.is_file():
            raise InputError(f"the DKVMN split of {name!r} fold {fold} needs {path.name}", file=directory)
    return name, *paths


def dkvmn_options(directory: Path, ids_are: IdsAre | None = None,
                  concept_map: Path | None = None) -> tuple[IdsAre, Path | None]:
    """(ids_are, concept_map) for ``directory``: the given values, else the detected defaults."""
    directory = Path(directory)
    if ids_are not in (None, "items", "concepts"):
        raise InputError(f"ids_are must be 'items' or 'concepts', got {ids_are!r}", field="ids_are")
    if concept_map is not None and ids_are == "concepts":
        raise InputError("a concept map maps item ids to concepts; it cannot be used when the ids are concepts",
                         field="concept_map")
    if concept_map is None and ids_are != "concepts" and (directory / QMATRIX).is_file():
        concept_map = directory / QMATRIX
    if ids_are is None:
        ids_are = "concepts" if concept_map is None and directory.name.lower().startswith("assist2009") else "items"
    return ids_are, concept_map


def read_dkvmn_table(path: Path, importer: DkvmnImporter) -> pa.Table:
    """The answers of one DKVMN file as a silver ``interactions`` table; any bad record is an ``InputError``."""
    events = []
    for record in importer.read(Path(path)):
        if isinstance(record, Rejection):
            raise InputError(record.reason, file=record.file, line=record.line, field=record.field)
        if isinstance(record, RawEvent):
            try:
                events.append(InteractionEvent.model_validate(record.fields))
            except ValidationError as exc:
                error = exc.errors()[0]
                raise InputError(error["msg"], file=record.file, line=record.line,
                                 field=".".join(str(p) for p in error["loc"]) or None) from None
    if not events:
        raise InputError("no answers in the file", file=path)
    return events_to_table(events, load_id=Path(path).name)


def read_dkvmn_split(directory: Path, *, fold: int = 1, ids_are: IdsAre | None = None,
                     concept_map: Path | None = None, tenant: str = "default") -> DkvmnSplit:
    """Fold ``fold`` of the DKVMN split in ``directory`` (see the module docstring for the defaults)."""
    directory = Path(directory)
    name, train, valid, test = dkvmn_files(directory, fold)
    ids_are, concept_map = dkvmn_options(directory, ids_are, concept_map)
    importer = DkvmnImporter(tenant=tenant, concept_map=concept_map, ids_are=ids_are)
    return DkvmnSplit(directory, name, fold, ids_are, concept_map, read_dkvmn_table(train, importer),
                      read_dkvmn_table(valid, importer), read_dkvmn_table(test, importer))
