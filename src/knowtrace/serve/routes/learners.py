"""Serving: a learner's mastery, P(correct) on items, and the items to practise next."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from knowtrace.serve.auth import Tenant
from knowtrace.serve.errors import ApiError, errors
from knowtrace.serve.serving import (
    DEFAULT_MODELS,
    LakeCatalog,
    check_model_name,
    choose_deployment,
    model_mastery,
    predict_for_learner,
)
from knowtrace.serve.services import Services

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["serving"])

LearnerId = Annotated[str, Path(min_length=1, max_length=512, description="The learner's id.")]
ModelName = Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="Model name (bkt, elo, dkt, ...); default: the first of "
                                                    "bkt, elo, dkt that holds a state for the learner.")]
_NOT_FOUND = errors(
    e401="Missing, unknown or revoked API key.",
    e404="No state for the learner, or no such model deployed (the message says how to deploy one).",
    e409="The learner's stored state does not fit the deployed model.",
    e422="Invalid parameters, an unknown model name, or a model that cannot predict one answer.",
    e503="The learner state store is unavailable.",
)


class ConceptMastery(BaseModel):
    """P(correct) on a typical item of the concept, and its standard error (null when the model gives none)."""

    p: float
    se: float | None


class MasteryResponse(BaseModel):
    learner_id: str
    model: str
    version: str = Field(description="The model artifact version that produced the state.")
    n_answers: int = Field(description="Answers applied to the state since it started (with this version).")
    updated_at: float = Field(description="When the state was written (Unix time).")
    concepts: dict[str, ConceptMastery]


@router.get("/learners/{learner_id}/mastery", response_model=MasteryResponse, responses=_NOT_FOUND)
def get_mastery(request: Request, tenant: Tenant, learner_id: LearnerId, model: ModelName = None) -> MasteryResponse:
    """The learner's mastery of each concept, as the stream worker last stored it."""
    svc: Services = request.app.state.services
    names = [check_model_name(model)] if model is not None else list(DEFAULT_MODELS)
    for name in names:
        state = svc.state.get(tenant, name, learner_id)
        if state is not None:
            return MasteryResponse(
                learner_id=learner_id, model=name, version=state.version, n_answers=state.n_answers,
                updated_at=state.updated_at,
                concepts={c: ConceptMastery(p=p, se=se) for c, (p, se) in sorted(state.mastery.items())})
    which = f"model {model!r}" if model is not None else f"any of {', '.join(DEFAULT_MODELS)}"
    raise ApiError(404, f"learner {learner_id!r} of tenant {tenant!r} has no state under {which}: the stream worker "
                        "writes it once an answer of the learner reached it")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: str = Field(min_length=1, max_length=512)
    item_ids: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(min_length=1, max_length=1000)
    model: str | None = Field(default=None, min_length=1, max_length=64,
                              description="Model name; default: the first of bkt, elo, dkt that is deployed and "
                                          "holds a state for the learner, else the first deployed.")


class ItemPrediction(BaseModel):
    item_id: str
    p: float = Field(description="P(correct) of the learner's next answer to the item.")
    known_item: bool | None = Field(description="Whether the model was fitted on the item. For an unknown item "
                                                "p is the model's estimate for an item it has never seen (Elo: "
                                                "average difficulty; BKT: population parameters; DKT: no item "
                                                "embedding). null when the model does not list its items.")


class PredictResponse(BaseModel):
    learner_id: str
    model: str
    version: str
    learner_state: Literal["stored", "model"] = Field(
        description="stored: the learner's state from the state store; model: what the deployed model holds for "
                    "the learner (their training state, or a new learner's start state).")
    n_answers: int | None = Field(description="Answers in the stored state (null without one).")
    predictions: list[ItemPrediction]
    unknown_items: list[str]
    warnings: list[str]


@router.post("/predict", response_model=PredictResponse, responses=_NOT_FOUND)
def predict(request: Request, tenant: Tenant, body: PredictRequest) -> PredictResponse:
    """P(correct) of the learner's next answer to each item, from the deployed model with the learner's
    stored state (a learner without one is new to the model, unless it was in its training data)."""
    svc: Services = request.app.state.services
    deployment = choose_deployment(svc, tenant, body.model, body.learner_id)
    stored = svc.state.get(tenant, deployment.name, body.learner_id)
    result = predict_for_learner(deployment, stored, body.learner_id, body.item_ids)
    known = deployment.item_ids()
    predictions = [ItemPrediction(item_id=item, p=p, known_item=None if known is None else item in known)
                   for item, p in zip(body.item_ids, result.probabilities)]
    return PredictResponse(
        learner_id=body.learner_id, model=deployment.name, version=deployment.version, learner_state=result.source,
        n_answers=None if result.source != "stored" or stored is None else stored.n_answers,
        predictions=predictions, unknown_items=[p.item_id for p in predictions if p.known_item is False],
        warnings=result.warnings)


class NextItem(BaseModel):
    item_id: str
    p: float
    distance: float = Field(description="|p - target|, the ranking key.")
    concept_ids: list[str]


class ExcludedItem(BaseModel):
    item_id: str
    concept_ids: list[str]
    unmastered_prerequisites: dict[str, float | None] = Field(
        description="Prerequisite concept -> the learner's mastery p (null: no estimate), below `mastered`.")


class NextItemsResponse(BaseModel):
    learner_id: str
    model: str
    version: str
    target: float
    mastered: float
    learner_state: Literal["stored", "model"]
    candidates: int = Field(description="Items considered.")
    candidate_source: Literal["model", "lake"] = Field(
        description="model: the items the deployed model was fitted on; lake: the tenant's items in the lake.")
    items: list[NextItem]
    excluded_for_prerequisites: list[ExcludedItem] = Field(
        description="Items left out because a prerequisite of one of their concepts is not mastered (first 200).")
    excluded_count: int
    warnings: list[str]


_EXCLUDED_SHOWN = 200


@router.get("/learners/{learner_id}/next-items", response_model=NextItemsResponse, responses=_NOT_FOUND)
def next_items(
    request: Request,
    tenant: Tenant,
    learner_id: LearnerId,
    target: Annotated[float, Query(gt=0.0, lt=1.0, description="The success probability to aim at.")] = 0.7,
    n: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 5,
    model: ModelName = None,
    mastered: Annotated[float, Query(ge=0.0, le=1.0, description="Mastery p at which a prerequisite counts as "
                                                                 "mastered.")] = 0.6,
) -> NextItemsResponse:
    """The items whose predicted success is closest to ``target``, leaving out items of concepts whose
    prerequisites (the tenant's concept graph in the lake) the learner has not mastered."""
    svc: Services = request.app.state.services
    deployment = choose_deployment(svc, tenant, model, learner_id)
    stored = svc.state.get(tenant, deployment.name, learner_id)
    catalog: LakeCatalog = request.app.state.catalog
    lake_items = catalog.items(tenant)
    known = deployment.item_ids()
    source: Literal["model", "lake"] = "model"
    candidates = sorted(known) if known else []
    if not candidates:
        source, candidates = "lake", sorted(lake_items)
    if not candidates:
        raise ApiError(404, f"no items to recommend: the deployed {deployment.name} model lists none and the lake "
                            f"holds no items of tenant {tenant!r}")
    concepts_of = {item: _concepts(deployment.model, item, lake_items) for item in candidates}
    graph = catalog.graph(tenant)
    warnings: list[str] = []
    if stored is not None and stored.version == deployment.version:
        mastery = stored.mastery
    else:
        mastery = model_mastery(deployment, learner_id)
    eligible: list[str] = []
    excluded: list[ExcludedItem] = []
    for item in candidates:
        missing: dict[str, float | None] = {}
        if graph is not None:
            for concept in concepts_of[item]:
                for needed in graph.prerequisites(concept):
                    p = mastery.get(needed, (None, None))[0]
                    if p is None or p < mastered:
                        missing[needed] = p
        if missing:
            excluded.append(ExcludedItem(item_id=item, concept_ids=list(concepts_of[item]),
                                         unmastered_prerequisites=dict(sorted(missing.items()))))
        else:
            eligible.append(item)
    if graph is None:
        warnings.append(f"the lake holds no concept graph for tenant {tenant!r}: no item was left out for "
                        "prerequisites")
    result = predict_for_learner(deployment, stored, learner_id, eligible)
    warnings = result.warnings + warnings
    ranked = sorted(zip(eligible, result.probabilities), key=lambda ip: (abs(ip[1] - target), ip[0]))[:n]
    return NextItemsResponse(
        learner_id=learner_id, model=deployment.name, version=deployment.version, target=target, mastered=mastered,
        learner_state=result.source, candidates=len(candidates), candidate_source=source,
        items=[NextItem(item_id=i, p=p, distance=abs(p - target), concept_ids=list(concepts_of[i])) for i, p in ranked],
        excluded_for_prerequisites=excluded[:_EXCLUDED_SHOWN], excluded_count=len(excluded), warnings=warnings)


def _concepts(model: Any, item: str, lake_items: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The item's concepts: the lake's catalog, else what the model learned (``OnlineModel._item_concepts``)."""
    concepts = lake_items.get(item)
    if concepts:
        return concepts
    known = getattr(model, "_item_concepts", None)
    return tuple(known(item)) if known is not None else ()
