"""``POST /xapi/statements`` (and ``PUT``): xAPI 1.0.3 statements into the event log, as a learning record store takes them.

A statement keeps its ``id`` (one is generated when absent, as an LRS does); the log stores every
statement id of the tenant with the SHA-256 of the statement's canonical JSON, so sending the same
statement again stores nothing new and sending other content under a stored id answers 409. An
invalid statement fails the whole request (400), as xAPI requires; the invalid statements are
still kept, as rejection records the worker puts in the lake's quarantine.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knowtrace.events.xapi import EXT_TENANT, statement_to_event
from knowtrace.exceptions import InputError
from knowtrace.serve.auth import Tenant
from knowtrace.serve.body import json_kind, read_json_body, split_batch
from knowtrace.serve.errors import ApiError, errors
from knowtrace.serve.services import Services
from knowtrace.stream.log import LogRecord, StatementConflict

__all__ = ["XAPI_VERSION", "XapiVersionHeader", "content_hash", "make_router", "prepare_statements"]

#: the version this API speaks, sent on every /xapi response
XAPI_VERSION = "1.0.3"
_VERSION_HEADER = "X-Experience-API-Version"
_ACCEPTED_VERSION = re.compile(r"^1\.0(\.\d+)?$")
#: properties an LRS sets or that the xAPI comparison rules ignore: not part of a statement's content
_NOT_CONTENT = ("id", "stored", "authority", "version")


class XapiVersionHeader:
    """ASGI middleware: ``X-Experience-API-Version`` on every response under ``/xapi`` (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/xapi"):
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[_VERSION_HEADER] = XAPI_VERSION
            await send(message)

        await self.app(scope, receive, send_with_version)


def content_hash(statement: dict[str, Any]) -> str:
    """SHA-256 of the statement's canonical JSON (sorted keys, no spaces) without id, stored, authority, version."""
    content = {k: v for k, v in statement.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_version(request: Request) -> None:
    version = request.headers.get(_VERSION_HEADER)
    if version is None:
        raise ApiError(400, f"missing header {_VERSION_HEADER}: send '{_VERSION_HEADER}: {XAPI_VERSION}'")
    if not _ACCEPTED_VERSION.match(version.strip()):
        raise ApiError(400, f"{_VERSION_HEADER} {version!r} is not supported: this LRS speaks 1.0.x "
                            f"(send {XAPI_VERSION})")


def _statement_id(value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"a statement id must be a UUID string, got {json.dumps(value)}", field="id")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError(f"not a UUID: {value!r}", field="id") from None


def prepare_statements(statements: list[Any], tenant: str) -> tuple[list[str], list[LogRecord], list[dict[str, Any]]]:
    """(statement ids, event records, problems) for a request's statements; every problem is
    ``{index, field, reason, raw}``."""
    ids: list[str] = []
    records: list[LogRecord] = []
    problems: list[dict[str, Any]] = []
    for index, given in enumerate(statements):
        raw = json.dumps(given, ensure_ascii=False, separators=(",", ":"))
        try:
            if not isinstance(given, dict):
                raise InputError(f"a statement must be a JSON object, got a JSON {json_kind(given)}")
            statement = dict(given)
            statement_id = _statement_id(statement["id"]) if "id" in statement else str(uuid.uuid4())
            statement["id"] = statement_id
            extensions = (statement.get("context") or {}).get("extensions") if isinstance(statement.get("context"),
                                                                                          dict) else None
            named = extensions.get(EXT_TENANT) if isinstance(extensions, dict) else None
            if named is not None and named != tenant:
                raise InputError(f"tenant {named!r} does not match the API key's tenant {tenant!r}",
                                 field=f'context.extensions["{EXT_TENANT}"]')
            event = statement_to_event(statement, tenant=tenant, source="stream")
        except InputError as exc:
            problems.append({"index": index, "field": exc.field, "reason": exc.reason, "raw": raw})
            continue
        ids.append(statement_id)
        records.append(LogRecord(kind="event", tenant=tenant, payload=event.model_dump(mode="json"),
                                 statement_id=statement_id, content_hash=content_hash(statement)))
    return ids, records, problems


def _store(services: Services, tenant: str, statements: list[Any]) -> list[str]:
    ids, records, problems = prepare_statements(statements, tenant)
    if problems:
        services.log.append([LogRecord(kind="rejection", tenant=tenant, payload=p) for p in problems])
        first = problems[0]
        where = f" (field {first['field']})" if first["field"] else ""
        more = f"; {len(problems) - 1} more invalid" if len(problems) > 1 else ""
        raise ApiError(400, f"statement {first['index']} is invalid{where}: {first['reason']}{more}. Nothing of the "
                            "request was stored (the invalid statements are kept in quarantine)",
                       rejected=[{k: p[k] for k in ("index", "field", "reason")} for p in problems])
    try:
        services.log.append(records)
    except StatementConflict as exc:
        raise ApiError(409, f"statement id(s) already stored with different content: "
                            f"{', '.join(exc.statement_ids)}; nothing of the request was stored",
                       statement_ids=exc.statement_ids) from None
    return ids


_STATEMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An xAPI 1.0.3 statement recording an answer (see knowtrace.events.xapi for what is read).",
    "required": ["actor", "verb", "object"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "actor": {"type": "object"},
        "verb": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        "object": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        "result": {"type": "object"},
        "context": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}
_VERSION_PARAMETER = {"name": _VERSION_HEADER, "in": "header", "required": True,
                      "description": "The xAPI version of the request: 1.0.x.",
                      "schema": {"type": "string", "example": XAPI_VERSION}}
_COMMON_ERRORS = errors(
    e400="Missing or unsupported X-Experience-API-Version, malformed JSON, or an invalid statement (nothing stored; "
         "invalid statements kept in quarantine).",
    e401="Missing, unknown or revoked API key.",
    e409="A statement id is already stored with different content (nothing stored).",
    e413="The body is too large or holds too many statements.",
    e422="The body is not a statement object or a non-empty array of them, or a query parameter is missing.",
    e503="The event log is unavailable; nothing was stored.",
)


def make_router(max_statements: int) -> APIRouter:
    """The xAPI routes."""
    router = APIRouter(prefix="/xapi", tags=["xapi"])
    post_body = {"oneOf": [_STATEMENT_SCHEMA, {"type": "array", "items": _STATEMENT_SCHEMA, "minItems": 1,
                                               "maxItems": max_statements}]}

    @router.post(
        "/statements", response_model=list[str],
        openapi_extra={"parameters": [_VERSION_PARAMETER],
                       "requestBody": {"required": True, "content": {"application/json": {"schema": post_body}}}},
        responses={200: {"description": "The statement ids, in request order (stored durably)."}, **_COMMON_ERRORS},
    )
    async def post_statements(request: Request, tenant: Tenant) -> list[str]:
        """Store one statement or an array of statements; returns their ids."""
        _check_version(request)
        svc: Services = request.app.state.services
        body = await read_json_body(request)
        statements = split_batch(body, what="statement", limit=svc.settings.max_events_per_request)
        return await run_in_threadpool(_store, svc, tenant, statements)

    @router.put(
        "/statements", status_code=204, response_class=Response,
        openapi_extra={"parameters": [_VERSION_PARAMETER],
                       "requestBody": {"required": True, "content": {"application/json": {"schema": _STATEMENT_SCHEMA}}}},
        responses={204: {"description": "Stored (or already stored with the same content)."}, **_COMMON_ERRORS},
    )
    async def put_statement(request: Request, tenant: Tenant,
                            statement_id: str = Query(alias="statementId", description="The statement's id (UUID).")
                            ) -> Response:
        """Store one statement under the id ``statementId`` (the statement's own id, if any, must be the same)."""
        _check_version(request)
        try:
            wanted = _statement_id(statement_id)
        except InputError as exc:
            raise ApiError(400, f"statementId: {exc.reason}") from None
        svc: Services = request.app.state.services
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "PUT /xapi/statements takes one statement object")
        if "id" in body:
            try:
                same = _statement_id(body["id"]) == wanted
            except InputError:
                same = False
            if not same:
                raise ApiError(400, f"the statement's id {body['id']!r} differs from statementId {statement_id!r}")
        await run_in_threadpool(_store, svc, tenant, [{**body, "id": wanted}])
        return Response(status_code=204)

    return router
