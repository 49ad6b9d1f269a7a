"""The canonical interaction event: one learner answered one item once."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["EventSource", "InteractionEvent", "derive_event_id", "EVENT_ID_FIELDS"]


class EventSource(StrEnum):
    """How an event reached knowtrace."""

    STREAM = "stream"
    BATCH = "batch"
    IMPORT = "import"


#: The fields an event id is derived from when the producer gives none. Two records that agree on
#: all of them describe the same answer; loading them twice must not count it twice.
EVENT_ID_FIELDS = (
    "tenant",
    "learner_id",
    "item_id",
    "timestamp",
    "seq",
    "attempt",
    "session_id",
    "correct",
    "score",
    "response",
)

NonEmptyStr = Annotated[str, Field(min_length=1, max_length=512)]


def derive_event_id(fields: dict[str, Any]) -> str:
    """Return the deterministic id of an event from its content (see ``EVENT_ID_FIELDS``).

    The fields are those of a validated event, so each has one type; every part is written with
    its length in front, so no choice of ids can make two different events share a text.
    """
    parts = []
    for name in EVENT_ID_FIELDS:
        value = fields.get(name)
        if value is None:
            parts.append("-")
            continue
        if isinstance(value, datetime):
            text = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        parts.append(f"{len(text)}:{text}")
    text = "".join(parts)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"ev-{digest}"


class InteractionEvent(BaseModel):
    """A learner answered an item.

    ``correct`` is the 0/1 outcome and ``score`` the credit in [0, 1]; at least one is required.
    Given only one, the other is derived: ``score = correct``, ``correct = 1`` only for full credit.
    ``timestamp`` must carry a time zone. Sources without clock times (benchmark splits, response
    matrices) leave it empty and order the learner's answers by ``seq`` instead.

    >>> e = InteractionEvent(learner_id="ada", item_id="q1", correct=1)
    >>> e.score, e.event_id == InteractionEvent(learner_id="ada", item_id="q1", correct=1).event_id
    (1.0, True)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_id: NonEmptyStr | None = None
    tenant: NonEmptyStr = "default"
    learner_id: NonEmptyStr
    item_id: NonEmptyStr
    concept_ids: tuple[NonEmptyStr, ...] = ()
    correct: int | None = None
    score: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    response: str | None = Field(default=None, max_length=65536)
    timestamp: AwareDatetime | None = None
    seq: int | None = Field(default=None, ge=0)
    elapsed_ms: int | None = Field(default=None, ge=0)
    attempt: int | None = Field(default=None, ge=1)
    session_id: str | None = Field(default=None, max_length=512)
    source: EventSource = EventSource.IMPORT

    @field_validator("correct", mode="before")
    @classmethod
    def _correct_is_binary(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return None if value is None else int(value)
        if isinstance(value, str):
            value = value.strip()
        if value in (0, 1, "0", "1") and not (isinstance(value, float) and not value.is_integer()):
            return int(value)
        raise ValueError(f"correct must be 0 or 1, got {value!r}")

    @field_validator("concept_ids", mode="before")
    @classmethod
    def _concepts_unique(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        out: list[str] = []
        for concept in value:
            concept = str(concept).strip()
            if concept not in out:
                out.append(concept)
        return tuple(out)

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _outcome_and_id(self) -> InteractionEvent:
        if self.correct is None and self.score is None:
            raise ValueError("an event needs correct (0/1) or score in [0, 1]")
        if self.score is None:
            object.__setattr__(self, "score", float(self.correct))  # type: ignore[arg-type]
        elif self.correct is None:
            object.__setattr__(self, "correct", int(self.score >= 1.0))
        if self.event_id is None:
            object.__setattr__(self, "event_id", derive_event_id(self.__dict__))
        return self

    def to_row(self) -> dict[str, Any]:
        """The event as a flat dict in lake column order."""
        row = self.__dict__.copy()
        row["concept_ids"] = list(self.concept_ids)
        row["source"] = self.source.value
        return row
