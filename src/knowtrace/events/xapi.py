"""Two-way mapping between ``InteractionEvent`` and xAPI 1.0.3 statements.

A statement is a plain JSON-ready dict. ``event_to_statement`` writes the knowtrace shape:

- ``id``: the event id if it is a UUID (or ``"xapi-<uuid>"``), otherwise a UUID 5 of the event id;
- ``actor``: an Agent with ``account {homePage, name: learner_id}`` (``mbox`` when the learner id
  is a ``mailto:`` IRI);
- ``verb``: ``answered``; ``object``: an Activity under ``activity_base`` (an item id that is
  already an absolute IRI is used as it is);
- ``result``: ``success``, ``score.scaled``, ``response``, ``duration`` (``PT12.345S``);
- ``context.registration`` when the session id is a UUID, and ``context.extensions`` under
  ``https://knowtrace.dev/xapi/`` carrying what xAPI has no place for (concepts, session, attempt,
  tenant, event id, seq), so that event -> statement -> event gives back the same event.

``statement_to_event`` reads that shape and the shapes other learning record stores produce:

- actor: ``account.name``, or ``mbox`` (the learner id is the ``mailto:`` IRI), ``mbox_sha1sum``
  or ``openid`` (the learner id is the value); exactly one of them, as xAPI requires;
- verb: ``answered``, or ``passed`` / ``failed`` / ``completed``; a ``passed`` / ``failed``
  statement without ``result.success`` takes its success from the verb;
- result: required, with ``success`` or a score; ``score.scaled`` in [0, 1] (negative is an
  error), else ``raw`` normalised by ``min`` (default 0) and ``max``, clipped to [0, 1];
- timestamp: ``timestamp``, else ``stored``; a statement with neither is accepted only when it
  carries the knowtrace ``seq`` extension (an event ordered by position, not by clock);
- event id: the knowtrace ``event-id`` extension, else ``"xapi-" + id``, else derived from content;
- concepts: only from the knowtrace ``concepts`` extension; ``contextActivities`` are not read,
  because their meaning differs from one learning record store to the next.

Every error is an ``InputError`` whose ``field`` is the JSON path at fault (``"actor"``,
``"result.duration"``, ``'context.extensions["https://knowtrace.dev/xapi/attempt"]'``).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from knowtrace.events.event import EventSource, InteractionEvent
from knowtrace.exceptions import InputError

__all__ = [
    "ACCEPTED_VERBS",
    "CMI_INTERACTION",
    "EXT_ATTEMPT",
    "EXT_CONCEPTS",
    "EXT_EVENT_ID",
    "EXT_SEQ",
    "EXT_SESSION",
    "EXT_TENANT",
    "KNOWTRACE_NAMESPACE",
    "VERB_ANSWERED",
    "event_to_statement",
    "format_iso_duration",
    "parse_iso_duration",
    "statement_to_event",
]

VERB_ANSWERED = "http://adlnet.gov/expapi/verbs/answered"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
#: verb IRI -> the success it implies (None: none implied, ``result.success`` or a score decides).
ACCEPTED_VERBS: dict[str, bool | None] = {
    VERB_ANSWERED: None,
    VERB_PASSED: True,
    VERB_FAILED: False,
    VERB_COMPLETED: None,
}
CMI_INTERACTION = "http://adlnet.gov/expapi/activities/cmi.interaction"

_EXT = "https://knowtrace.dev/xapi/"
EXT_CONCEPTS = _EXT + "concepts"
EXT_SESSION = _EXT + "session"
EXT_ATTEMPT = _EXT + "attempt"
EXT_TENANT = _EXT + "tenant"
EXT_EVENT_ID = _EXT + "event-id"
EXT_SEQ = _EXT + "seq"

#: The namespace of the UUID 5 statement ids derived from event ids. Never change it: statement
#: ids already sent to learning record stores depend on it.
KNOWTRACE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://knowtrace.dev/xapi")

_XAPI_EVENT_PREFIX = "xapi-"
_MBOX_PATTERN = r"^mailto:[^@\s]+@\S+$"
_MBOX = re.compile(_MBOX_PATTERN)
_ABSOLUTE_IRI = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://\S+|urn:\S+)$")
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION = re.compile(
    rf"P(?!$)(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?!$)(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)


# --------------------------------------------------------------------------- event -> statement


def event_to_statement(
    event: InteractionEvent,
    *,
    homepage: str = "https://knowtrace.dev",
    activity_base: str = "https://knowtrace.dev/items/",
) -> dict[str, Any]:
    """The xAPI statement that records ``event`` (see the module docstring for the shape).

    >>> event = InteractionEvent(learner_id="ada", item_id="q1", correct=1, seq=0)
    >>> statement = event_to_statement(event)
    >>> statement["verb"]["id"], statement["result"]
    ('http://adlnet.gov/expapi/verbs/answered', {'success': True, 'score': {'scaled': 1.0}})
    >>> statement_to_event(statement, source=event.source) == event
    True
    """
    assert event.event_id is not None and event.score is not None  # set by InteractionEvent
    if _MBOX.match(event.learner_id):
        actor: dict[str, Any] = {"objectType": "Agent", "mbox": event.learner_id}
    else:
        actor = {"objectType": "Agent", "account": {"homePage": homepage, "name": event.learner_id}}
    result: dict[str, Any] = {"success": bool(event.correct), "score": {"scaled": event.score}}
    if event.response is not None:
        result["response"] = event.response
    if event.elapsed_ms is not None:
        result["duration"] = format_iso_duration(event.elapsed_ms)
    extensions: dict[str, Any] = {EXT_TENANT: event.tenant, EXT_EVENT_ID: event.event_id}
    if event.concept_ids:
        extensions[EXT_CONCEPTS] = list(event.concept_ids)
    if event.session_id is not None:
        extensions[EXT_SESSION] = event.session_id
    if event.attempt is not None:
        extensions[EXT_ATTEMPT] = event.attempt
    if event.seq is not None:
        extensions[EXT_SEQ] = event.seq
    context: dict[str, Any] = {}
    registration = _as_uuid(event.session_id)
    if registration is not None:
        context["registration"] = registration
    context["extensions"] = extensions
    statement: dict[str, Any] = {
        "id": _statement_id(event.event_id),
        "actor": actor,
        "verb": {"id": VERB_ANSWERED, "display": {"en-US": "answered"}},
        "object": {
            "objectType": "Activity",
            "id": _activity_id(event.item_id, activity_base),
            "definition": {"type": CMI_INTERACTION},
        },
        "result": result,
    }
    if event.timestamp is not None:
        statement["timestamp"] = _format_timestamp(event.timestamp)
    statement["context"] = context
    return statement


def _statement_id(event_id: str) -> str:
    own = _as_uuid(event_id)
    if own is not None:
        return own
    if event_id.startswith(_XAPI_EVENT_PREFIX):
        own = _as_uuid(event_id[len(_XAPI_EVENT_PREFIX) :])
        if own is not None:
            return own
    return str(uuid.uuid5(KNOWTRACE_NAMESPACE, event_id))


def _activity_id(item_id: str, activity_base: str) -> str:
    if _ABSOLUTE_IRI.match(item_id) and not item_id.startswith(activity_base):
        return item_id
    return activity_base + quote(item_id, safe="")


def _format_timestamp(value: datetime) -> str:
    value = value.astimezone(timezone.utc).replace(tzinfo=None)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec) + "Z"


def _as_uuid(value: str | None) -> str | None:
    """The canonical form of ``value`` if it is a UUID, else None."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def format_iso_duration(elapsed_ms: int) -> str:
    """An ISO 8601 duration in seconds for ``elapsed_ms``, e.g. ``12345`` -> ``"PT12.345S"``."""
    if elapsed_ms < 0:
        raise InputError(f"a duration cannot be negative, got {elapsed_ms} ms", field="elapsed_ms")
    seconds, millis = divmod(elapsed_ms, 1000)
    fraction = f".{millis:03d}".rstrip("0") if millis else ""
    return f"PT{seconds}{fraction}S"


def parse_iso_duration(text: str, *, field: str = "result.duration") -> int:
    """Milliseconds in an ISO 8601 duration such as ``"PT1M30S"``, ``"P1DT2H"`` or ``"PT12.345S"``.

    Weeks, days, hours, minutes and seconds are read (a day is 24 hours); years and months have no
    fixed length and are accepted only when zero.
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InputError(f"not an ISO 8601 duration (like PT1M30S): {text!r}", field=field)
    years, months, weeks, days, hours, minutes, seconds = (
        Decimal(group.replace(",", ".")) if group else Decimal(0) for group in match.groups()
    )
    if years or months:
        raise InputError(f"years and months have no fixed length in {text!r}", field=field)
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return int((total * 1000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# --------------------------------------------------------------------------- statement -> event


class _Part(BaseModel):
    """A part of a statement: reads the properties knowtrace uses, ignores the others."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Account(_Part):
    homePage: StrictStr = Field(min_length=1)
    name: StrictStr = Field(min_length=1)


class _Agent(_Part):
    objectType: Literal["Agent"] | None = None
    mbox: StrictStr | None = Field(default=None, pattern=_MBOX_PATTERN)
    mbox_sha1sum: StrictStr | None = Field(default=None, pattern=r"^[0-9a-fA-F]{40}$")
    openid: StrictStr | None = Field(default=None, min_length=1)
    account: _Account | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> _Agent:
        given = [f for f in ("mbox", "mbox_sha1sum", "openid", "account") if getattr(self, f) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"an agent needs exactly one of mbox, mbox_sha1sum, openid, account (found {found})")
        return self

    def learner(self) -> tuple[str, str]:
        """The learner id and the JSON path it was read from."""
        if self.account is not None:
            return self.account.name, "actor.account.name"
        for name in ("mbox", "mbox_sha1sum", "openid"):
            value = getattr(self, name)
            if value is not None:
                return value, f"actor.{name}"
        raise AssertionError("checked by _one_identifier")


class _Verb(_Part):
    id: StrictStr


class _Activity(_Part):
    objectType: Literal["Activity"] | None = None
    id: StrictStr = Field(min_length=1)


class _Score(_Part):
    scaled: StrictFloat | None = Field(default=None, ge=-1.0, le=1.0, allow_inf_nan=False)
    raw: StrictFloat | None = Field(default=None, allow_inf_nan=False)
    min: StrictFloat | None = Field(default=None, allow_inf_nan=False)
    max: StrictFloat | None = Field(default=None, allow_inf_nan=False)


class _Result(_Part):
    success: StrictBool | None = None
    score: _Score | None = None
    response: StrictStr | None = None
    duration: StrictStr | None = None


def _uuid_text(value: str | None) -> str | None:
    if value is not None and _as_uuid(value) is None:
        raise ValueError(f"not a UUID: {value!r}")
    return value


class _Context(_Part):
    registration: StrictStr | None = None
    extensions: dict[str, Any] | None = None

    _registration_is_uuid = field_validator("registration")(classmethod(lambda cls, v: _uuid_text(v)))


class _Statement(_Part):
    id: StrictStr | None = None
    actor: _Agent
    verb: _Verb
    object_: _Activity = Field(alias="object")
    result: _Result | None = None
    context: _Context | None = None
    timestamp: StrictStr | None = None
    stored: StrictStr | None = None

    _id_is_uuid = field_validator("id")(classmethod(lambda cls, v: _uuid_text(v)))


class _KnowtraceExtensions(_Part):
    concepts: list[StrictStr] | None = Field(default=None, alias=EXT_CONCEPTS)
    session: StrictStr | None = Field(default=None, alias=EXT_SESSION)
    attempt: StrictInt | None = Field(default=None, alias=EXT_ATTEMPT)
    tenant: StrictStr | None = Field(default=None, alias=EXT_TENANT)
    event_id: StrictStr | None = Field(default=None, alias=EXT_EVENT_ID)
    seq: StrictInt | None = Field(default=None, alias=EXT_SEQ)


def _json_path(loc: tuple[str | int, ...]) -> str | None:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "/" in part or ":" in part:
            path += f'["{part}"]'
        else:
            path += f".{part}" if path else part
    return path or None


def _ext_path(iri: str) -> str:
    return f'context.extensions["{iri}"]'


def _validation_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> InputError:
    errors = exc.errors()
    first = errors[0]
    reason = first["msg"].removeprefix("Value error, ")
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InputError(reason, field=_json_path(prefix + tuple(first["loc"])))


def _parse_timestamp(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"not an ISO 8601 timestamp: {value!r}", field=field) from None
    if parsed.tzinfo is None:
        raise InputError(f"timestamp {value!r} has no time zone", field=field)
    return parsed


def _score(score: _Score | None) -> float | None:
    if score is None:
        return None
    if score.scaled is not None:
        if score.scaled < 0:
            raise InputError(
                f"scaled score {score.scaled} is negative; knowtrace scores are credits in [0, 1]",
                field="result.score.scaled",
            )
        return float(score.scaled)
    if score.raw is None:
        return None
    if score.max is None:
        raise InputError("a raw score needs max (and min, default 0) to be normalised", field="result.score.max")
    low = 0.0 if score.min is None else float(score.min)
    if score.max <= low:
        raise InputError(f"max {score.max} must exceed min {low}", field="result.score.max")
    return min(1.0, max(0.0, (float(score.raw) - low) / (float(score.max) - low)))


def _item_id(activity_id: str, activity_base: str) -> str:
    if activity_base and activity_id.startswith(activity_base) and len(activity_id) > len(activity_base):
        return unquote(activity_id[len(activity_base) :])
    return activity_id


def statement_to_event(
    statement: dict[str, Any],
    *,
    tenant: str | None = None,
    source: EventSource | str = EventSource.STREAM,
    activity_base: str = "https://knowtrace.dev/items/",
) -> InteractionEvent:
    """The event an xAPI statement records (see the module docstring for what is accepted).

    ``tenant`` is the tenant the caller speaks for: it is used when the statement names none, and a
    statement naming another tenant is rejected. Without it the statement's tenant extension, else
    ``"default"``, is used.
    """
    if not isinstance(statement, dict):
        raise InputError(f"a statement must be a JSON object, got {type(statement).__name__}")
    try:
        parsed = _Statement.model_validate(statement)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    raw_extensions = parsed.context.extensions if parsed.context and parsed.context.extensions else {}
    try:
        ext = _KnowtraceExtensions.model_validate(raw_extensions)
    except ValidationError as exc:
        raise _validation_error(exc, ("context", "extensions")) from None

    if parsed.verb.id not in ACCEPTED_VERBS:
        raise InputError(
            f"verb {parsed.verb.id!r} does not record an answer; accepted: {', '.join(ACCEPTED_VERBS)}", field="verb"
        )
    learner_id, learner_path = parsed.actor.learner()
    result = parsed.result
    if result is None:
        raise InputError("an answer needs a result with success or score", field="result")
    success = result.success
    implied = ACCEPTED_VERBS[parsed.verb.id]
    if implied is not None:
        if success is None:
            success = implied
        elif success != implied:
            raise InputError(f"success {success} contradicts verb {parsed.verb.id!r}", field="result.success")
    score = _score(result.score)
    if success is None and score is None:
        raise InputError("an answer needs result.success or result.score", field="result")
    elapsed_ms = None if result.duration is None else parse_iso_duration(result.duration)

    if parsed.timestamp is not None:
        timestamp: datetime | None = _parse_timestamp(parsed.timestamp, "timestamp")
    elif parsed.stored is not None:
        timestamp = _parse_timestamp(parsed.stored, "stored")
    elif ext.seq is not None:
        timestamp = None
    else:
        raise InputError("a statement needs a timestamp (or stored, or the knowtrace seq extension)", field="timestamp")

    if tenant is not None and ext.tenant is not None and ext.tenant != tenant:
        raise InputError(f"statement is for tenant {ext.tenant!r}, not {tenant!r}", field=_ext_path(EXT_TENANT))
    if ext.event_id is not None:
        event_id, event_id_path = ext.event_id, _ext_path(EXT_EVENT_ID)
    elif parsed.id is not None:
        event_id, event_id_path = _XAPI_EVENT_PREFIX + str(uuid.UUID(parsed.id)), "id"
    else:
        event_id, event_id_path = None, "id"
    registration = parsed.context.registration if parsed.context else None
    session_id = ext.session if ext.session is not None else registration

    fields: dict[str, tuple[Any, str]] = {
        "event_id": (event_id, event_id_path),
        "tenant": (ext.tenant if ext.tenant is not None else tenant or "default", _ext_path(EXT_TENANT)),
        "learner_id": (learner_id, learner_path),
        "item_id": (_item_id(parsed.object_.id, activity_base), "object.id"),
        "concept_ids": (tuple(ext.concepts or ()), _ext_path(EXT_CONCEPTS)),
        "correct": (None if success is None else int(success), "result.success"),
        "score": (score, "result.score"),
        "response": (result.response, "result.response"),
        "timestamp": (timestamp, "timestamp"),
        "seq": (ext.seq, _ext_path(EXT_SEQ)),
        "elapsed_ms": (elapsed_ms, "result.duration"),
        "attempt": (ext.attempt, _ext_path(EXT_ATTEMPT)),
        "session_id": (session_id, _ext_path(EXT_SESSION) if ext.session is not None else "context.registration"),
        "source": (source, "source"),
    }
    try:
        return InteractionEvent(**{name: value for name, (value, _) in fields.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = first["loc"][0] if first["loc"] else None
        path = fields[name][1] if isinstance(name, str) and name in fields else "result"
        raise InputError(first["msg"].removeprefix("Value error, "), field=path) from None
