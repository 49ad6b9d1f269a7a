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
