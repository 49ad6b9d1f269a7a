"""``GET /healthz``: is the API up, and how far behind is the stream worker."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from knowtrace.serve.services import Services
from knowtrace.stream.log import LogError

__all__ = ["router"]

router = APIRouter(tags=["health"])

#: the consumer groups of the stream worker
GROUPS = ("lake", "state")


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when the event log cannot be read (then 503).")
    log: str = Field(description="The event log's name.")
    log_length: int | None = Field(description="Records the log holds.")
    lag: dict[str, int] = Field(description="Per worker group (lake, state): records appended and not yet "
                                            "processed.")
    detail: str | None = None


@router.get("/healthz", response_model=Health, responses={503: {"description": "The event log is unavailable.",
                                                                "model": Health}})
def healthz(request: Request) -> Health | JSONResponse:
    """Liveness and the stream worker's lag (no API key needed)."""
    svc: Services = request.app.state.services
    try:
        log = svc.log
        return Health(status="ok", log=log.name, log_length=log.length(), lag={g: log.lag(g) for g in GROUPS})
    except LogError as exc:
        url = svc.settings.stream_url
        body = Health(status="unavailable", log=_redact(url), log_length=None, lag={},
                      detail=str(exc).replace(url, _redact(url)))
        return JSONResponse(body.model_dump(), status_code=503)


def _redact(url: str) -> str:
    """``url`` without a password or query."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
