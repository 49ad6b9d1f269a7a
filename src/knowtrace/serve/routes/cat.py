"""Adaptive tests (CAT): start a session, answer its items one by one, read the diagnosis."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from knowtrace.cat.estimators import EstimatorConfig
from knowtrace.cat.report import CatResult
from knowtrace.cat.selectors import SelectorConfig
from knowtrace.cat.session import CatConfig
from knowtrace.cat.stopping import SEBelow, StoppingRule
from knowtrace.serve.auth import Tenant
from knowtrace.serve.cat_sessions import SessionView
from knowtrace.serve.errors import errors
from knowtrace.serve.services import Services

__all__ = ["router"]

router = APIRouter(prefix="/v1/cat", tags=["cat"])

SessionId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
_ERRORS = errors(
    e401="Missing, unknown or revoked API key.",
    e404="No such session of the tenant, or no item bank can be made for the tenant.",
    e409="The answer is not for the item asked, the session is finished, or no item bank can be calibrated.",
    e422="The request does not fit the schema.",
)


class StartSession(BaseModel):
    """How the test runs: it stops at ``max_items``, or once the standard error is at most ``se_target``
    (after ``min_items``)."""

    model_config = ConfigDict(extra="forbid")

    learner_id: str = Field(min_length=1, max_length=512)
    max_items: int = Field(default=20, ge=1, le=500)
    min_items: int = Field(default=1, ge=0, le=500)
    se_target: float | None = Field(default=0.3, gt=0.0, le=10.0, description="null: run to max_items.")
    selector: Literal["maxinfo", "kl", "mpwi", "astrat"] = "maxinfo"
    estimator: Literal["eap", "map", "mle"] = "eap"
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Fixes the session's random choices.")

    @model_validator(mode="after")
    def _lengths(self) -> StartSession:
        if self.min_items > self.max_items:
            raise ValueError(f"min_items ({self.min_items}) is above max_items ({self.max_items})")
        return self

    def config(self) -> CatConfig:
        criterion = SEBelow(threshold=self.se_target) if self.se_target is not None else None
        return CatConfig(estimator=EstimatorConfig(method=self.estimator), selector=SelectorConfig(name=self.selector),
                         stopping=StoppingRule(min_items=self.min_items, max_items=self.max_items, criterion=criterion))


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=512)
    correct: StrictBool | Annotated[StrictInt, Field(ge=0, le=1)]


class CatItem(BaseModel):
    item_id: str
    concepts: list[str]


class SessionResponse(BaseModel):
    session_id: str
    learner_id: str
    created_at: str
    bank: dict[str, Any] = Field(description="Where the item bank came from: kind (registry: the promoted irt "
                                             "model; lake: calibrated from the tenant's answers), version, items, "
                                             "fingerprint.")
    finished: bool
    stop_reason: str | None
    n_items: int
    theta: float
    se: float | None = Field(description="null where infinite (MLE before any information).")
    next_item: CatItem | None = Field(description="The item to present next; null once finished.")
    report: CatResult = Field(description="The diagnosis so far: ability, level, per-concept levels, trace.")


def _response(view: SessionView) -> SessionResponse:
    return SessionResponse(**{**view.__dict__, "next_item": CatItem(**view.next_item) if view.next_item else None})


@router.post("/sessions", status_code=201, response_model=SessionResponse, responses=_ERRORS)
async def start_session(request: Request, tenant: Tenant, body: StartSession) -> SessionResponse:
    """Start an adaptive test for a learner on the tenant's item bank; returns the first item."""
    svc: Services = request.app.state.services
    view = await run_in_threadpool(svc.cat.start, tenant, body.learner_id, body.config(), seed=body.seed)
    return _response(view)


@router.post("/sessions/{session_id}/responses", response_model=SessionResponse, responses=_ERRORS)
async def answer(request: Request, tenant: Tenant, session_id: SessionId, body: Answer) -> SessionResponse:
    """Record the answer to the item asked; returns the new estimate and the next item, or the final report."""
    svc: Services = request.app.state.services
    view = await run_in_threadpool(svc.cat.answer, tenant, session_id, body.item_id, bool(body.correct))
    return _response(view)


@router.get("/sessions/{session_id}", response_model=SessionResponse, responses=_ERRORS)
async def get_session(request: Request, tenant: Tenant, session_id: SessionId) -> SessionResponse:
    """The session as it stands, with the diagnosis so far."""
    svc: Services = request.app.state.services
    return _response(await run_in_threadpool(svc.cat.get, tenant, session_id))
