"""``POST /v1/events``: canonical interaction events, one or a batch, into the durable event log."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from knowtrace.events.event import EventSource, InteractionEvent
from knowtrace.serve.auth import Tenant
from knowtrace.serve.body import json_kind, read_json_body, split_batch
from knowtrace.serve.errors import errors
from knowtrace.serve.services import Services
from knowtrace.stream.log import LogRecord

__all__ = ["EventsResult", "RejectedEvent", "build_records", "check_event", "make_router"]


class RejectedEvent(BaseModel):
    """One event of the request that was not accepted (it is kept in the lake's quarantine)."""

    index: int
    field: str | None
    reason: str


class EventsResult(BaseModel):
    """What became of a request's events: ``event_ids`` of the accepted ones in request order."""

    accepted: int
    rejected: list[RejectedEvent]
    event_ids: list[str]


def _raw(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _field(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in loc) or None


def check_event(item: Any, tenant: str) -> InteractionEvent | tuple[str | None, str]:
    """The event ``item`` describes (tenant of the key, source ``stream``), or (field, reason) why not."""
    if not isinstance(item, dict):
        return None, f"an event must be a JSON object, got a JSON {json_kind(item)}"
    given = item.get("tenant")
    if given is not None and (not isinstance(given, str) or given.strip() != tenant):
        return "tenant", f"tenant {given!r} does not match the API key's tenant {tenant!r}"
    try:
        return InteractionEvent.model_validate({**item, "tenant": tenant, "source": EventSource.STREAM})
    except ValidationError as exc:
        problems = exc.errors()
        first = problems[0]
        reason = first["msg"].removeprefix("Value error, ")
        if len(problems) > 1:
            reason += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return _field(first["loc"]), reason


def build_records(items: list[Any], tenant: str) -> tuple[list[LogRecord], EventsResult]:
    """Log records for a request's items, in request order: an event record per valid event, a
    rejection record (index, field, reason, raw JSON) per invalid one."""
    records: list[LogRecord] = []
    rejected: list[RejectedEvent] = []
    event_ids: list[str] = []
    for index, item in enumerate(items):
        checked = check_event(item, tenant)
        if isinstance(checked, InteractionEvent):
            records.append(LogRecord(kind="event", tenant=tenant, payload=checked.model_dump(mode="json")))
            event_ids.append(str(checked.event_id))
        else:
            field, reason = checked
            records.append(LogRecord(kind="rejection", tenant=tenant,
                                     payload={"index": index, "reason": reason, "field": field, "raw": _raw(item)}))
            rejected.append(RejectedEvent(index=index, field=field, reason=reason))
    return records, EventsResult(accepted=len(event_ids), rejected=rejected, event_ids=event_ids)


def _ingest(services: Services, tenant: str, items: list[Any]) -> EventsResult:
    records, result = build_records(items, tenant)
    services.log.append(records)
    return result


def _request_schema(limit: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/InteractionEvent"}
    return {"requestBody": {"required": True, "description": (
        "One event or an array of events (InteractionEvent fields). `tenant` may be omitted (the API key's tenant) "
        "and must otherwise be the key's tenant; `source` is set to `stream`; `event_id` is derived from the "
        "content when absent."), "content": {"application/json": {"schema": {
        "oneOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": limit}]}}}}}


def make_router(max_events: int) -> APIRouter:
    """The router, its OpenAPI request body stating the batch limit."""
    router = APIRouter(prefix="/v1", tags=["ingest"])

    @router.post(
        "/events", status_code=202, response_model=EventsResult,
        openapi_extra=_request_schema(max_events),
        responses={
            202: {"description": "Stored durably in the event log. Invalid events of the batch are listed in "
                                 "`rejected` (and kept in the lake's quarantine); the others were accepted."},
            **errors(e400="The body is not JSON (the message gives line, column and character).",
                     e401="Missing, unknown or revoked API key.",
                     e413="The body is larger than the byte limit, or holds more events than allowed.",
                     e503="The event log is unavailable; nothing was stored."),
            422: {"description": "The body is not an event object or a non-empty array of them (`detail`), or no "
                                 "event of it was valid (the result, listing why; each event is still kept in "
                                 "quarantine).",
                  "content": {"application/json": {"schema": {"anyOf": [
                      {"$ref": "#/components/schemas/EventsResult"}, {"$ref": "#/components/schemas/ErrorBody"}]}}}},
        },
    )
    async def post_events(request: Request, tenant: Tenant) -> Any:
        """Ingest one event object or an array of events (canonical `InteractionEvent` fields).

        The tenant is the API key's (an event naming another tenant is rejected); `source` is set to
        `stream`; `event_id` is derived from the content when absent. Answers **202** once the log holds
        the request (valid events and rejections alike), and **422** with the same body when none of its
        events was valid.
        """
        svc: Services = request.app.state.services
        body = await read_json_body(request)
        items = split_batch(body, what="event", limit=svc.settings.max_events_per_request)
        result = await run_in_threadpool(_ingest, svc, tenant, items)
        if result.accepted == 0:
            return JSONResponse(result.model_dump(mode="json"), status_code=422)
        return result

    return router
