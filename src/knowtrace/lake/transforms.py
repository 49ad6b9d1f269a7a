"""The bronze -> silver -> gold transforms: named SQL steps that any engine runs in order."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["SILVER_AND_GOLD", "TransformStep"]


@dataclass(frozen=True)
class TransformStep:
    """One output table: its layer, its name and the SQL that computes it from earlier tables."""

    layer: str
    table: str

    @property
    def sql(self) -> str:
        return _read_sql(f"{self.layer}_{self.table}.sql")


@cache
def _read_sql(name: str) -> str:
    return resources.files("knowtrace.lake").joinpath("sql", name).read_text(encoding="utf-8")


#: Inputs are the bronze tables ``bronze_interactions``, ``bronze_items``, ``bronze_concepts``;
#: each step may read the outputs of the steps before it by table name.
SILVER_AND_GOLD: tuple[TransformStep, ...] = (
    TransformStep("silver", "interactions"),
    TransformStep("silver", "items"),
    TransformStep("silver", "concepts"),
    TransformStep("gold", "learner_sequences"),
    TransformStep("gold", "item_stats"),
    TransformStep("gold", "concept_stats"),
)
