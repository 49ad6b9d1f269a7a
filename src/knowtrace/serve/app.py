"""The HTTP API: ingest (``/v1/events``, ``/xapi/statements``), serving (mastery, predict, next items) and CAT.

``create_app()`` reads ``ServeSettings`` from the environment (``knowtrace serve`` sets it); the
OpenAPI description is at ``/openapi.json``, the interactive docs at ``/docs``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from knowtrace import __version__
from knowtrace.events.event import InteractionEvent
from knowtrace.serve.body import BodySizeLimit
from knowtrace.registry.deployment import PromotedSource, settle_heap
from knowtrace.serve.errors import install_error_handlers
from knowtrace.serve.routes import cat, events, health, learners, xapi
from knowtrace.serve.serving import LakeCatalog
from knowtrace.serve.services import Services
from knowtrace.serve.settings import ServeSettings

__all__ = ["create_app"]

_DESCRIPTION = """\
What each learner knows, in real time.

* **Ingest**: `POST /v1/events` (canonical interaction events) and `POST /xapi/statements` (xAPI 1.0.3)
  write to the durable event log; a stream worker moves them into the lake and the learner state.
* **Serving**: a learner's mastery, P(correct) on items, the next items to practise.
* **CAT**: adaptive test sessions on the tenant's item bank.

Every `/v1` and `/xapi` route needs `Authorization: Bearer KEY`, a key made with
`knowtrace keys create --tenant NAME`; it reads and writes that tenant's data only.
"""


def create_app(settings: ServeSettings | None = None, *, registry: PromotedSource | None = None) -> FastAPI:
    """The API on the lake, log and state store of ``settings`` (default: from ``KNOWTRACE_*``).

    ``registry``: where promoted models are looked up (default: the lake's ``ModelRegistry``).
    """
    settings = settings or ServeSettings()
    services = Services(settings, registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settle_heap()
        try:
            yield
        finally:
            services.close()
            gc.unfreeze()  # hand the objects back to the collector for an orderly interpreter exit

    app = FastAPI(title="knowtrace", version=__version__, description=_DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.state.catalog = LakeCatalog(services.lake)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(xapi.XapiVersionHeader)  # added last: outermost, so it marks every /xapi answer
    app.include_router(health.router)
    app.include_router(events.make_router(settings.max_events_per_request))
    app.include_router(xapi.make_router(settings.max_events_per_request))
    app.include_router(learners.router)
    app.include_router(cat.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the event model that ``POST /v1/events`` (which reads its body by hand) refers to."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        event = InteractionEvent.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(event.pop("$defs", {}))
        components["InteractionEvent"] = event
        app.openapi_schema = schema
    return app.openapi_schema
