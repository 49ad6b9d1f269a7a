"""Request bodies: a size limit for every route, and JSON read by hand (exact position of a syntax error,
one object or an array of them)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "json_kind", "read_json_body", "split_batch"]


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value: object, array, string, number, boolean or null."""
    kinds = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
             type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_body(request: Request) -> Any:
    """The parsed JSON body; 400 naming the line, column and character where it stops being JSON (or UTF-8).
    (``BodySizeLimit`` has already refused a body over the limit.)"""
    raw = await request.body()
    if not raw.strip():
        raise HTTPException(400, "the request body is empty: send JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the request body is not UTF-8: byte {exc.start} (0x{raw[exc.start]:02x})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): "
                                 f"{exc.msg}") from None
    except ValueError as exc:  # NaN / Infinity
        raise HTTPException(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, declared by Content-Length (refused before
    it is read) or streamed without one (refused when the limit is crossed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await JSONResponse({"detail": f"Content-Length is not a number: {declared!r}"}, 400)(scope, receive,
                                                                                                   send)
                return
            if int(declared) > limit:
                await JSONResponse({"detail": f"request body of {int(declared):,} bytes is over the limit of "
                                              f"{limit:,} bytes"}, 413)(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # an HTTPException passes FastAPI's body parsing unchanged and is answered as a 413
                    raise HTTPException(413, f"request body is over the limit of {limit:,} bytes")
            return message

        await self.app(scope, limited, send)


def split_batch(body: Any, *, what: str, limit: int) -> list[Any]:
    """The items of a body that is one object or an array of objects: 422 for anything else or an empty
    array, 413 when the array holds more than ``limit``."""
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        if not body:
            raise HTTPException(422, f"the array is empty: send one {what} object or an array of them")
        if len(body) > limit:
            raise HTTPException(413, f"{len(body):,} {what}s in one request; the limit is {limit:,} per request")
        return body
    raise HTTPException(422, f"the body must be one {what} object or an array of them, got a JSON {json_kind(body)}")
