"""Errors the API answers with: a status code and ``{"detail": message, ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from knowtrace.exceptions import InputError, LakeError
from knowtrace.registry.deployment import DeploymentError
from knowtrace.state.store import StateError
from knowtrace.stream.log import LogError

__all__ = ["ApiError", "ErrorBody", "errors", "install_error_handlers"]


class ErrorBody(BaseModel):
    """An error: ``detail`` says what is wrong (a list of problems for a request that does not fit the
    schema); some errors add fields (``field``, ``statement_ids``, ``rejected``)."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[Any]


def errors(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error codes given as ``e401="..."``, each with the ``ErrorBody`` schema."""
    return {int(code.removeprefix("e")): {"description": text, "model": ErrorBody}
            for code, text in descriptions.items()}


class ApiError(Exception):
    """An answer other than success: ``status`` and a message, with more JSON fields in ``extra``."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def install_error_handlers(app: FastAPI) -> None:
    """``ApiError`` as its status; an unavailable log, state store, lake or model as 503; a stray
    ``InputError`` as 422."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(LogError)
    async def _log_error(request: Request, exc: LogError) -> JSONResponse:
        return JSONResponse({"detail": f"the event log is unavailable: {exc}"}, status_code=503)

    @app.exception_handler(StateError)
    async def _state_error(request: Request, exc: StateError) -> JSONResponse:
        return JSONResponse({"detail": f"the learner state store is unavailable: {exc}"}, status_code=503)

    @app.exception_handler(DeploymentError)
    async def _deployment_error(request: Request, exc: DeploymentError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(LakeError)
    async def _lake_error(request: Request, exc: LakeError) -> JSONResponse:
        return JSONResponse({"detail": f"the lake cannot be read: {exc}"}, status_code=503)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason, "field": exc.field}, status_code=422)
