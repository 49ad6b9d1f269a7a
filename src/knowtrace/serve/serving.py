"""Answers about one learner from the stored online state and the deployed models: mastery, P(correct), next items.

A learner's state comes from the ``StateStore`` (the stream worker writes it after every answer)
when it was written by the deployed version of the model; otherwise, as the worker itself does,
from what the deployed model holds for the learner (its training state, or a new learner's start
state). A stored state is put into the model under the deployment's lock, under a scratch learner
id that is dropped afterwards, so the deployed model is left as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.models.base import ModelError, OnlineModel
from knowtrace.models.registry import available_models
from knowtrace.registry.deployment import Deployment
from knowtrace.serve.errors import ApiError
from knowtrace.state.store import LearnerState
from knowtrace.state.updater import model_arrays

if TYPE_CHECKING:
    from knowtrace.serve.services import Services

__all__ = ["DEFAULT_MODELS", "LakeCatalog", "LearnerPredictions", "check_model_name", "choose_deployment",
           "not_deployed", "predict_for_learner"]

#: the online models whose learner state the worker keeps, in the order a default is chosen
DEFAULT_MODELS = ("bkt", "elo", "dkt")
#: the id under which a stored state is put into a deployed model for one request
_SCRATCH = "\x00knowtrace-serve-learner"
HOW_TO_DEPLOY = ("train, register and promote one with `knowtrace pipeline run`, or promote a registered "
                 "version with `knowtrace registry promote MODEL VERSION --tenant TENANT`")


def check_model_name(name: str) -> str:
    """``name`` if it is a known model kind; 422 otherwise."""
    known = available_models()
    if name not in known:
        raise ApiError(422, f"unknown model {name!r}; known models: {', '.join(sorted(known))}")
    return name


def not_deployed(tenant: str, name: str) -> ApiError:
    """The 404 for a model that is not deployed for the tenant."""
    return ApiError(404, f"no {name} model is deployed for tenant {tenant!r}: {HOW_TO_DEPLOY}")


def choose_deployment(services: Services, tenant: str, name: str | None, learner_id: str) -> Deployment:
    """The deployed model ``name``; without a name the first of bkt, elo, dkt that is deployed and holds
    a state for the learner, else the first deployed. 404 when none is deployed."""
    if name is not None:
        deployment = services.models.get(tenant, check_model_name(name))
        if deployment is None:
            raise not_deployed(tenant, name)
        return deployment
    deployed = [d for d in (services.models.get(tenant, n) for n in DEFAULT_MODELS) if d is not None]
    if not deployed:
        raise ApiError(404, f"no online model ({', '.join(DEFAULT_MODELS)}) is deployed for tenant {tenant!r}: "
                            f"{HOW_TO_DEPLOY}")
    for deployment in deployed:
        if services.state.get(tenant, deployment.name, learner_id) is not None:
            return deployment
    return deployed[0]


@dataclass
class LearnerPredictions:
    """P(correct) per item and where the learner's state came from."""

    probabilities: list[float]
    #: "stored": the state store's (written by this model version); "model": the deployed model's own
    source: Literal["stored", "model"]
    stored: LearnerState | None
    warnings: list[str]


def _online(deployment: Deployment) -> OnlineModel:
    model = deployment.model
    if not isinstance(model, OnlineModel):
        raise ApiError(422, f"the {deployment.name} model predicts whole sequences, not one learner's next answer; "
                            "use an online model (bkt, elo, dkt, ...)")
    return model


def predict_for_learner(deployment: Deployment, stored: LearnerState | None, learner_id: str,
                        item_ids: Sequence[str]) -> LearnerPredictions:
    """P(correct) of the learner's next answer to each item, from the learner's current state."""
    model = _online(deployment)
    warnings: list[str] = []
    if stored is not None and stored.version != deployment.version:
        warnings.append(f"the stored {deployment.name} state of this learner was written by version {stored.version}, "
                        f"not the deployed {deployment.version}; predictions use what the deployed model holds for "
                        "the learner until the stream worker applies their next answer")
    use_stored = stored is not None and stored.version == deployment.version
    with deployment.lock:
        if not use_stored:
            ps = [model.predict_one(learner_id, item) for item in item_ids]
            return LearnerPredictions(ps, "model", stored, warnings)
        assert stored is not None
        try:
            model.set_learner_state(_SCRATCH, model_arrays(stored))
        except (InputError, ModelError) as exc:
            raise ApiError(409, f"the stored {deployment.name} state of learner {learner_id!r} does not fit the "
                                f"deployed version {deployment.version}: {exc}") from None
        try:
            ps = [model.predict_one(_SCRATCH, item) for item in item_ids]
        finally:
            model.drop_learner(_SCRATCH)
    return LearnerPredictions(ps, "stored", stored, warnings)


def model_mastery(deployment: Deployment, learner_id: str) -> dict[str, tuple[float, float | None]]:
    """The deployed model's own mastery estimate of the learner (no stored state)."""
    with deployment.lock:
        return deployment.model.mastery(learner_id)


class LakeCatalog:
    """Items (with their concepts) and the concept graph of each tenant, read from the lake's silver
    tables and kept until the lake's next build."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._cache: dict[str, tuple[str | None, dict[str, tuple[str, ...]], ConceptGraph | None]] = {}
        self._lock = threading.Lock()

    def _load(self, tenant: str) -> tuple[dict[str, tuple[str, ...]], ConceptGraph | None]:
        build = self.lake.current_build()
        build_id = None if build is None else str(build.get("build_id"))
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and hit[0] == build_id:
            return hit[1], hit[2]
        rows = self.lake.query("SELECT item_id, concept_ids FROM items WHERE tenant = ?", [tenant]).to_pylist()
        items = {r["item_id"]: tuple(r["concept_ids"] or ()) for r in rows}
        graph = self.lake.concept_graph(tenant)
        with self._lock:
            self._cache[tenant] = (build_id, items, graph)
        return items, graph

    def items(self, tenant: str) -> dict[str, tuple[str, ...]]:
        """item id -> concept ids, of the tenant's items in the lake."""
        return self._load(tenant)[0]

    def graph(self, tenant: str) -> ConceptGraph | None:
        """The tenant's concept prerequisite graph (None when the lake has no concepts for it)."""
        graph = self._load(tenant)[1]
        return graph if graph is not None and len(graph) else None
