"""Apply log entries to the learner states of the deployed online models, exactly once.

For each tenant of a batch, in offset order, the updater loads the stored states of the batch's
learners (one ``get_many`` per model), restores them into the models, lets each model learn the
learners' answers with its item and concept parameters frozen, and writes every changed state,
with its mastery, in one atomic ``put_many``. A stored state remembers the last offset applied to
it, so entries at or below it are skipped: a worker that crashed after writing the states but
before acknowledging the entries applies nothing twice when they come again. It also remembers the
learner's last ``RECENT_EVENTS`` event ids, so an answer that reaches the log twice (a client resent
a request whose response it lost) is learned once, as silver holds it once.

Where a learner's state starts: the stored state when its ``version`` is the deployed version of
the model. Otherwise (no stored state, or one written by another model version, whose arrays need
not fit the deployed model) the learner starts afresh from what the deployed model itself holds
for them: the state ``fit`` left for a learner of its training data, the model's start state for
anyone else; such a state counts answers and offsets from scratch (``n_answers`` 0,
``last_offset`` -1 before the batch).

The updater changes the models' learner states (it sets, updates and then drops the learners of
each batch, so memory does not grow with the learners seen); give it model objects that nothing
else reads at the same time. Learners are keyed by id within a tenant: a model fitted on one
tenant's data should be deployed for that tenant only (pass ``models`` as a function of the tenant),
or another tenant's learner of the same id would start from that training learner's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knowtrace.exceptions import InputError
from knowtrace.models.base import ModelError, OnlineModel
from knowtrace.state.store import LearnerState, StateError, StateStore
from knowtrace.stream.log import LogEntry

__all__ = ["DeployedModels", "OnlineStateUpdater", "model_arrays"]

#: model name -> (the deployed model, its artifact version)
DeployedModels = Mapping[str, tuple[OnlineModel, str]]


#: how many of a learner's latest event ids a state remembers, to skip an answer that arrives again
#: (a client resending a request whose answer it lost: same content, so the same event id, new offset)
RECENT_EVENTS = 256
#: the key of those ids among a stored state's arrays (never a model's own key: models use plain names)
RECENT_EVENTS_KEY = "__recent_event_ids"


@dataclass
class _Touched:
    """One learner under one model during a batch."""

    state: LearnerState
    #: the model's own state of the learner before the batch, for a learner not restored from the store
    own: dict[str, np.ndarray] | None
    applied: int = 0
    recent: list[str] = field(default_factory=list)


class OnlineStateUpdater:
    """Keeps ``store`` current with the answers of the event log for the deployed online models.

    ``models``: model name -> (fitted ``OnlineModel`` with exportable learner state, version), the
    same for every tenant, or a function tenant -> such a mapping where models are deployed per
    tenant. ``clock``: the time written as ``updated_at``.
    """

    def __init__(self, store: StateStore, models: DeployedModels | Callable[[str], DeployedModels], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._models = models
        self._clock = clock
        self._checked: set[tuple[int, str]] = set()
        if isinstance(models, Mapping):
            self._check(models)

    def models_for(self, tenant: str) -> DeployedModels:
        """The deployed models of ``tenant``."""
        models = self._models if isinstance(self._models, Mapping) else self._models(tenant)
        self._check(models)
        return models

    def _check(self, models: DeployedModels) -> None:
        for name, deployed in models.items():
            try:
                model, version = deployed
            except (TypeError, ValueError):
                raise InputError(f"deployed model {name!r} must be (model, version), got {deployed!r}",
                                 field=name) from None
            if (id(model), version) in self._checked:
                continue
            if not isinstance(model, OnlineModel):
                raise InputError(f"deployed model {name!r} is a {type(model).__name__}, not an online model",
                                 field=name)
            if not isinstance(version, str) or not version:
                raise InputError(f"deployed model {name!r} needs a non-empty version string, got {version!r}",
                                 field=name)
            if not model.is_fitted:
                raise ModelError(f"deployed model {name!r} is not fitted")
            model.get_learner_state("")  # raises ModelError for models without exportable learner state
            self._checked.add((id(model), version))

    def apply(self, entries: Sequence[LogEntry]) -> int:
        """Apply the "event" entries (rejections are ignored); returns the (entry, model) updates applied.

        Each tenant's states are written in one atomic step; when a tenant's step fails (the error
        propagates) nothing of that tenant is written and the models are left as before.
        """
        by_tenant: dict[str, list[LogEntry]] = {}
        for entry in sorted(entries, key=lambda e: e.offset):
            if entry.record.kind == "event":
                by_tenant.setdefault(entry.record.tenant, []).append(entry)
        applied = 0
        for tenant, tenant_entries in by_tenant.items():
            applied += self._apply_tenant(tenant, tenant_entries)
        return applied

    def _apply_tenant(self, tenant: str, entries: list[LogEntry]) -> int:
        models = self.models_for(tenant)
        events = [(entry.offset, _learner_of(entry), entry.record.payload) for entry in entries]
        learners = list(dict.fromkeys(learner for _, learner, _ in events))
        touched: dict[tuple[str, str], _Touched] = {}
        try:
            for name, (model, version) in models.items():
                stored = self.store.get_many(tenant, name, learners)
                for learner in learners:
                    touched[name, learner] = self._restore(tenant, name, model, version, learner, stored.get(learner))
            applied = 0
            for offset, learner, payload in events:
                event_id = payload.get("event_id")
                for name, (model, _) in models.items():
                    record = touched[name, learner]
                    if offset <= record.state.last_offset or (event_id and event_id in record.recent):
                        continue
                    try:
                        model.learn_one(payload, update_shared=False)
                    except InputError as exc:
                        raise InputError(f"log entry at offset {offset} (tenant {tenant!r}): {exc.reason}",
                                         field=exc.field) from exc
                    record.state.last_offset = offset
                    record.state.n_answers += 1
                    if event_id:
                        record.recent.append(event_id)
                    record.applied += 1
                    applied += 1
            now = float(self._clock())
            changed: dict[tuple[str, str], LearnerState] = {}
            for (name, learner), record in touched.items():
                if record.applied:
                    model = models[name][0]
                    record.state.arrays = {**model.get_learner_state(learner),
                                           RECENT_EVENTS_KEY: np.array(record.recent[-RECENT_EVENTS:], dtype=str)}
                    record.state.mastery = model.mastery(learner)  # the store writes (and reads) plain floats
                    record.state.updated_at = now
                    changed[name, learner] = record.state
            if changed:
                self.store.put_many(tenant, changed)
        except BaseException:
            for (name, learner), record in touched.items():
                model = models[name][0]
                if record.own is not None:
                    model.set_learner_state(learner, record.own)
                else:
                    model.drop_learner(learner)
            raise
        for name, learner in touched:
            models[name][0].drop_learner(learner)
        return applied

    def _restore(self, tenant: str, name: str, model: OnlineModel, version: str, learner: str,
                 stored: LearnerState | None) -> _Touched:
        """Put the learner's starting state into the model (see the module docstring)."""
        if stored is not None and stored.version == version:
            recent = [str(e) for e in stored.arrays.get(RECENT_EVENTS_KEY, np.array([], dtype=str)).tolist()]
            try:
                model.set_learner_state(learner, model_arrays(stored))
            except (InputError, ModelError) as exc:
                raise StateError(f"the stored {name} state of learner {learner!r} (tenant {tenant!r}, version "
                                 f"{version}) does not fit the deployed model: {exc}") from exc
            return _Touched(LearnerState(model=name, version=version, n_answers=stored.n_answers,
                                         last_offset=stored.last_offset), own=None, recent=recent)
        return _Touched(LearnerState(model=name, version=version), own=model.get_learner_state(learner))


def _learner_of(entry: LogEntry) -> str:
    payload: Any = entry.record.payload
    learner = payload.get("learner_id") if isinstance(payload, Mapping) else None
    if not isinstance(learner, str) or not learner:
        raise InputError(f"log entry at offset {entry.offset} (tenant {entry.record.tenant!r}) is an event "
                         f"without a learner_id", field="learner_id")
    return learner


def model_arrays(state: LearnerState) -> dict[str, np.ndarray]:
    """The model's own arrays of a stored state (what ``set_learner_state`` takes), without the
    updater's bookkeeping."""
    return {k: v for k, v in state.arrays.items() if k != RECENT_EVENTS_KEY}
