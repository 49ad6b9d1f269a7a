"""Items and concepts: what an item assesses, how hard it is, and which concepts come first."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from knowtrace.exceptions import InputError, UnreadableFileError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ITEM_CSV_COLUMNS", "Concept", "Item", "ItemCatalog", "item_schema"]

Id = Annotated[str, Field(min_length=1, max_length=512)]


def _unique_strings(value: object) -> object:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    out: list[str] = []
    for v in value:  # type: ignore[union-attr]
        v = str(v).strip()
        if v and v not in out:
            out.append(v)
    return tuple(out)


class Item(BaseModel):
    """One item of the catalog: the concepts it assesses, optional IRT parameters and metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    item_id: Id
    tenant: Id = "default"
    concept_ids: tuple[Id, ...] = ()
    name: str | None = None
    a: float | None = Field(default=None, description="IRT discrimination", allow_inf_nan=False)
    b: float | None = Field(default=None, description="IRT difficulty", allow_inf_nan=False)
    c: float | None = Field(default=None, ge=0.0, lt=1.0, description="IRT guessing")
    metadata: dict[str, str] = Field(default_factory=dict)

    _unique_concepts = field_validator("concept_ids", mode="before")(classmethod(lambda cls, v: _unique_strings(v)))


class Concept(BaseModel):
    """A concept (skill, knowledge component) and the concepts that are its prerequisites."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    concept_id: Id
    tenant: Id = "default"
    name: str | None = None
    prerequisites: tuple[Id, ...] = ()

    _unique_prereqs = field_validator("prerequisites", mode="before")(classmethod(lambda cls, v: _unique_strings(v)))


# --------------------------------------------------------------------------- item catalog

#: The CSV columns of an item catalog; any other column is metadata.
ITEM_CSV_COLUMNS = ("item_id", "concept_ids", "name", "a", "b", "c")
_IRT_PARAMETERS = ("a", "b", "c")


class ItemCatalog(Mapping[str, Item]):
    """The items of one tenant by id: the concepts each assesses, IRT parameters and metadata.

    Adding an item already in the catalog merges the two: concepts are united (first seen first)
    and a missing name, IRT parameter or metadata key is filled in; the first value wins for name
    and metadata, and an IRT parameter given twice with different values is an ``InputError``.
    The tenant is ``tenant``, else that of the first item, else ``"default"``; an item of another
    tenant is an ``InputError``.

    >>> catalog = ItemCatalog([Item(item_id="q1", concept_ids=["add"]), Item(item_id="q1", b=0.5)])
    >>> catalog.concepts_of("q1"), catalog["q1"].b, catalog.items_of("add")
    (('add',), 0.5, ['q1'])
    """

    def __init__(self, items: Iterable[Item] = (), *, tenant: str | None = None) -> None:
        self._tenant = tenant
        self._items: dict[str, Item] = {}
        self._by_concept: dict[str, list[str]] = {}
        for item in items:
            self.add(item)

    @property
    def tenant(self) -> str:
        """The tenant every item of the catalog belongs to."""
        return self._tenant if self._tenant is not None else "default"

    def add(self, item: Item) -> None:
        """Add ``item``, merging it into the item of the same id if there is one."""
        if self._tenant is None:
            self._tenant = item.tenant
        elif item.tenant != self._tenant:
            raise InputError(
                f"item {item.item_id!r} belongs to tenant {item.tenant!r}, the catalog to {self._tenant!r}",
                field="tenant",
            )
        old = self._items.get(item.item_id)
        merged = item if old is None else _merge_items(old, item)
        self._items[item.item_id] = merged
        for concept in merged.concept_ids:
            items = self._by_concept.setdefault(concept, [])
            if item.item_id not in items:
                items.append(item.item_id)

    def __getitem__(self, item_id: str) -> Item:
        return self._items[item_id]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"ItemCatalog(tenant={self.tenant!r}, items={len(self)})"

    def concepts_of(self, item_id: str) -> tuple[str, ...]:
        """The concepts ``item_id`` assesses; none for an item not in the catalog."""
        item = self._items.get(item_id)
        return () if item is None else item.concept_ids

    def items_of(self, concept_id: str) -> list[str]:
        """The ids of the items assessing ``concept_id``, in the order they were added."""
        return list(self._by_concept.get(concept_id, ()))

    # ----------------------------------------------------------------------- CSV

    @classmethod
    def from_csv(cls, path: str | Path, *, tenant: str = "default") -> ItemCatalog:
        """Read a catalog from a CSV file with a header row.

        Columns: ``item_id`` (required), ``concept_ids`` (``;``-separated), ``name``, ``a``, ``b``,
        ``c``; every other column is metadata, an empty cell meaning no value. Errors name the
        file, line and column.
        """
        path = Path(path)
        records = _csv_records(path)
        header_line, header = next(records)
        columns = _csv_header(header, path, header_line, required=("item_id",))
        catalog = cls(tenant=tenant)
        for line, cells in records:
            if len(cells) != len(columns):
                raise InputError(f"row has {len(cells)} cells, the header {len(columns)}", file=path, line=line)
            row = {name: cell.strip() for name, cell in zip(columns, cells)}
            fields: dict[str, Any] = {
                "item_id": row["item_id"],
                "tenant": tenant,
                "concept_ids": row.get("concept_ids", "").split(";"),
                "name": row.get("name") or None,
                "metadata": {k: v for k, v in row.items() if k not in ITEM_CSV_COLUMNS and v},
            }
            for parameter in _IRT_PARAMETERS:
                fields[parameter] = _float_cell(row.get(parameter, ""), path, line, parameter)
            try:
                catalog.add(Item(**fields))
            except ValidationError as exc:
                raise _row_error(exc, path, line) from None
            except InputError as exc:
                raise InputError(exc.reason, file=path, line=line, field=exc.field) from exc
        return catalog

    def to_csv(self, path: str | Path) -> None:
        """Write the catalog as CSV in the layout ``from_csv`` reads; metadata columns sorted by name."""
        path = Path(path)
        keys = sorted({key for item in self._items.values() for key in item.metadata})
        for key in keys:
            if key in ITEM_CSV_COLUMNS:
                raise InputError(f"metadata key {key!r} is also a catalog column", field="metadata")
        for item in self._items.values():
            if any(";" in concept for concept in item.concept_ids):
                raise InputError(f"item {item.item_id!r} has a concept id with ';'", field="concept_ids")
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*ITEM_CSV_COLUMNS, *keys])
            for item in self._items.values():
                writer.writerow(
                    [
                        item.item_id,
                        ";".join(item.concept_ids),
                        item.name or "",
                        *("" if getattr(item, p) is None else repr(getattr(item, p)) for p in _IRT_PARAMETERS),
                        *(item.metadata.get(key, "") for key in keys),
                    ]
                )

    # ----------------------------------------------------------------------- Arrow

    def to_arrow(self) -> pa.Table:
        """The catalog as a table with the columns of ``item_schema()``, one row per item."""
        import pyarrow as pa

        items = list(self._items.values())
        columns: dict[str, list[Any]] = {
            "tenant": [item.tenant for item in items],
            "item_id": [item.item_id for item in items],
            "concept_ids": [list(item.concept_ids) for item in items],
            "name": [item.name for item in items],
            "a": [item.a for item in items],
            "b": [item.b for item in items],
            "c": [item.c for item in items],
            "metadata": [json.dumps(item.metadata, sort_keys=True, ensure_ascii=False) for item in items],
        }
        return pa.table(columns, schema=item_schema())

    @classmethod
    def from_arrow(cls, table: pa.Table, *, tenant: str | None = None) -> ItemCatalog:
        """Read a catalog from a table shaped like ``to_arrow``'s; only ``item_id`` is required.

        Rows without a tenant get ``tenant`` (or ``"default"``). Errors name the row (from 1).
        """
        if "item_id" not in table.column_names:
            raise InputError("the table has no item_id column", field="item_id")
        catalog = cls(tenant=tenant)
        for number, row in enumerate(table.to_pylist(), start=1):
            fields = {key: row[key] for key in ("item_id", "concept_ids", "name", "a", "b", "c") if key in row}
            fields["tenant"] = row.get("tenant") or tenant or "default"
            metadata = row.get("metadata")
            if metadata:
                try:
                    loaded = json.loads(metadata)
                except (TypeError, json.JSONDecodeError) as exc:
                    raise InputError(f"row {number}: metadata is not JSON ({exc})", field="metadata") from None
                if loaded is not None:
                    fields["metadata"] = loaded
            try:
                catalog.add(Item(**fields))
            except ValidationError as exc:
                error = _row_error(exc, None, None)
                raise InputError(f"row {number}: {error.reason}", field=error.field) from None
            except InputError as exc:
                raise InputError(f"row {number}: {exc.reason}", field=exc.field) from exc
        return catalog


def item_schema() -> pa.Schema:
    """The Arrow schema of an item catalog table."""
    import pyarrow as pa

    return pa.schema(
        [
            ("tenant", pa.string()),
            ("item_id", pa.string()),
            ("concept_ids", pa.list_(pa.string())),
            ("name", pa.string()),
            ("a", pa.float64()),
            ("b", pa.float64()),
            ("c", pa.float64()),
            ("metadata", pa.string()),
        ]
    )


def _merge_items(old: Item, new: Item) -> Item:
    update: dict[str, Any] = {}
    for parameter in _IRT_PARAMETERS:
        mine, theirs = getattr(old, parameter), getattr(new, parameter)
        if mine is not None and theirs is not None and mine != theirs:
            raise InputError(
                f"item {old.item_id!r} has two values of {parameter}: {mine} and {theirs}", field=parameter
            )
        if mine is None and theirs is not None:
            update[parameter] = theirs
    extra_concepts = tuple(c for c in new.concept_ids if c not in old.concept_ids)
    if extra_concepts:
        update["concept_ids"] = old.concept_ids + extra_concepts
    if old.name is None and new.name is not None:
        update["name"] = new.name
    extra_metadata = {k: v for k, v in new.metadata.items() if k not in old.metadata}
    if extra_metadata:
        update["metadata"] = old.metadata | extra_metadata
    return old.model_copy(update=update) if update else old


def _row_error(exc: ValidationError, path: Path | None, line: int | None) -> InputError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return InputError(first["msg"].removeprefix("Value error, "), file=path, line=line, field=field)


def _float_cell(text: str, path: Path, line: int, field: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"expected a number, got {text!r}", file=path, line=line, field=field) from None


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, cells)`` for each non-blank record of a UTF-8 CSV file, header first.

    ``line`` is where the record starts (a quoted cell may span lines). A missing, folder, non-UTF-8
    or empty file raises ``UnreadableFileError``.
    """
    if not path.exists():
        raise UnreadableFileError("no such file", file=path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, expected a CSV file", file=path)
    empty = True
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            start = 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    empty = False
                    yield start, cells
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"not UTF-8 text ({exc.reason})", file=path) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", file=path, line=reader.line_num) from None
    if empty:
        raise UnreadableFileError("file is empty", file=path)


def _csv_header(cells: list[str], path: Path, line: int, *, required: tuple[str, ...]) -> list[str]:
    """The column names of a header row, checked: none empty, none twice, ``required`` present."""
    columns = [cell.strip() for cell in cells]
    seen: set[str] = set()
    for number, name in enumerate(columns, start=1):
        if not name:
            raise InputError(f"column {number} of the header has no name", file=path, line=line)
        if name in seen:
            raise InputError(f"column {name!r} appears twice in the header", file=path, line=line, field=name)
        seen.add(name)
    for name in required:
        if name not in seen:
            raise InputError(
                f"the header has no {name!r} column (found: {', '.join(columns)})", file=path, line=line, field=name
            )
    return columns
