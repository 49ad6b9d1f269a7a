"""The contract every learner model implements, and its versioned on-disk artifact.

The contract follows scikit-learn: ``__init__`` only stores keyword-only hyperparameters, learned
state lives in attributes ending with ``_``, ``fit`` returns ``self``. ``predict_proba(data)``
gives, for every row of ``data``, P(correct) from what the model learned in ``fit`` plus the
learner's earlier rows in ``data`` only (never the row itself, later rows or other learners' rows
of ``data``), so that scoring held-out learners cannot leak answers.

An artifact is a directory with ``model.json`` (versions, model name, hyperparameters, training
data fingerprint, metrics, creation time) and ``state.npz`` (the learned arrays; no pickle).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from knowtrace import __version__
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError, KnowtraceError
from knowtrace.models.data import Interactions, as_table, fingerprint
from knowtrace.models.registry import get_model_class, register

__all__ = [
    "FORMAT_VERSION",
    "ArtifactError",
    "ArtifactVersionError",
    "KnowledgeModel",
    "ModelError",
    "NotFittedError",
    "OnlineModel",
]

#: Version of the artifact layout; artifacts with another version are refused on load.
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
STATE_FILE = "state.npz"

Mastery = dict[str, tuple[float, float | None]]


class ModelError(KnowtraceError):
    """A learner model was used wrongly or cannot be loaded."""


class NotFittedError(ModelError):
    """The model is used before ``fit``."""


class ArtifactError(ModelError):
    """A model artifact is missing, corrupt or holds another model."""


class ArtifactVersionError(ArtifactError):
    """A model artifact was written in a format_version this knowtrace does not read."""


class KnowledgeModel(ABC):
    """A model of what learners know, fit on silver interactions.

    Subclasses set ``name`` (their registry key) and implement ``_fit``, ``_predict``,
    ``mastery``, ``_get_state`` and ``_set_state``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            register(cls)

    # hyperparameters -------------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change hyperparameters (takes effect at the next ``fit``)."""
        known = set(self._param_names())
        for key, value in params.items():
            if key not in known:
                raise InputError(f"{self.name} has no hyperparameter {key!r}; known: {', '.join(sorted(known))}")
            setattr(self, key, value)
        return self

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        """Small, fast hyperparameters for the conformance tests."""
        return {}

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k, inspect.Parameter.empty) != v]
        return f"{type(self).__name__}({', '.join(shown)})"

    # fitting and predicting ------------------------------------------------------------------

    def fit(self, data: Any, *, valid: Any = None, graph: ConceptGraph | None = None) -> Self:
        """Learn from silver interactions (a ``Lake``, a pyarrow Table, RecordBatchReader or ``.to_arrow()``).

        ``valid``: held-out interactions that models with hyperparameters to select or training to
        stop early use for that, and nothing else. ``graph``: the concept prerequisite graph (read
        from the lake's ``concepts`` table when ``data`` is a lake).
        """
        source, lake_graph = _training_table(data)
        table = as_table(source)
        view = Interactions.from_table(table, graph=graph or lake_graph)
        valid_view = Interactions.from_table(_training_table(valid)[0], graph=view.graph) if valid is not None else None
        self._fit(view, valid=valid_view)
        self.n_train_ = view.n
        self.training_fingerprint_ = fingerprint(table)
        self.metrics_: dict[str, Any] = {}
        return self

    def predict_proba(self, data: Any) -> np.ndarray:
        """P(correct) of every row of ``data``, from the fit and the learner's earlier rows only."""
        self._check_fitted()
        view = Interactions.from_table(data)
        p = np.asarray(self._predict(view), dtype=np.float64)
        if p.shape != (view.n,):
            raise ModelError(f"{self.name} returned {p.shape} predictions for {view.n} rows")
        return view.to_input_order(p)

    def known_items(self) -> frozenset[str] | None:
        """The item ids the fitted model has learned something about (None when it keeps no item ids);
        for any other item it predicts as for an unseen one."""
        self._check_fitted()
        concepts = getattr(self, "item_concepts_", None)
        if isinstance(concepts, Mapping):
            return frozenset(concepts)
        ids = getattr(self, "item_ids_", None)
        return frozenset(str(i) for i in ids.tolist()) if ids is not None else None

    @abstractmethod
    def mastery(self, learner_id: str) -> Mastery:
        """concept_id -> (P(correct) on a typical item of the concept, standard error or None)."""

    @abstractmethod
    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        """Set every learned attribute from ``data`` (``valid`` only to select or stop early)."""

    @abstractmethod
    def _predict(self, data: Interactions) -> np.ndarray:
        """Predictions in the view's row order (see ``predict_proba``)."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """The learned state as named numeric or string arrays."""

    @abstractmethod
    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the learned state written by ``_get_state``."""

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``load``) has run."""
        return hasattr(self, "n_train_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} model is not fitted; call fit(interactions) or load(path) first")

    # artifacts -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to the directory ``path``; returns it."""
        self._check_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ArtifactError(f"{path} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        state = self._get_state()
        for key, value in state.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufU":
                raise ModelError(f"{self.name} state {key!r} must be a numeric or string array")
        metadata = {
            "knowtrace_version": __version__,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "params": self.get_params(),
            "training_fingerprint": self.training_fingerprint_,
            "n_train": self.n_train_,
            "metrics": getattr(self, "metrics_", {}),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with _atomic(path / STATE_FILE, "wb") as handle:
            np.savez(handle, **state)
        with _atomic(path / METADATA_FILE, "w") as handle:
            json.dump(metadata, handle, indent=2, sort_keys=True, default=_json_default)
            handle.write("\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KnowledgeModel:
        """Read a model artifact written by ``save`` (any registered model via ``KnowledgeModel.load``)."""
        path = Path(path)
        meta_file = path / METADATA_FILE
        if not meta_file.is_file():
            raise ArtifactError(f"{path} is not a knowtrace model artifact (no {METADATA_FILE})")
        try:
            metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{meta_file} cannot be read: {exc}") from exc
        if not isinstance(metadata, dict):
            raise ArtifactError(f"{meta_file} is not a JSON object")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactVersionError(
                f"{path} has artifact format_version {version!r} (written by knowtrace "
                f"{metadata.get('knowtrace_version', '?')}); this knowtrace {__version__} reads format_version "
                f"{FORMAT_VERSION}: re-train the model or load it with the knowtrace version that wrote it"
            )
        try:
            model_cls = get_model_class(str(metadata["model"]))
        except (KeyError, InputError) as exc:
            raise ArtifactError(f"{path}: {exc}") from None
        if not issubclass(model_cls, cls):
            raise ArtifactError(f"{path} holds a {model_cls.name!r} model, which {cls.__name__}.load cannot read")
        try:
            model = model_cls(**metadata.get("params", {}))
            with np.load(path / STATE_FILE, allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
            model._set_state(state)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ArtifactError(f"{path}: cannot restore the {model_cls.name} model: {exc}") from exc
        model.n_train_ = int(metadata.get("n_train", 0))
        model.training_fingerprint_ = metadata.get("training_fingerprint")
        model.metrics_ = dict(metadata.get("metrics") or {})
        return model


class OnlineModel(KnowledgeModel):
    """A model that updates after every answer: ``predict_one`` then ``learn_one``.

    ``predict_proba`` replays the rows on a copy of the fitted model, predicting each row and then
    learning from it with the model's shared (item/concept) parameters frozen, so rows only inform
    later rows of the same learner and the fitted model is left unchanged.
    """

    def learn_one(self, event: InteractionEvent | Mapping[str, Any], *, update_shared: bool = True) -> Self:
        """Update the learner (and, with ``update_shared``, the item and concept parameters) from one answer."""
        self._check_fitted()
        learner_id, item_id, concept_ids, correct = _event_fields(event)
        concept_ids = concept_ids or self._item_concepts(item_id)
        self._learn(learner_id, item_id, concept_ids, correct, update_shared=update_shared)
        return self

    def predict_one(self, learner_id: str, item_id: str, concept_ids: Sequence[str] = ()) -> float:
        """P(correct) of the learner's next answer to the item (its known concepts if none given)."""
        self._check_fitted()
        concepts = tuple(concept_ids) or self._item_concepts(item_id)
        return float(self._predict_one(learner_id, item_id, concepts))

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        """The concepts the model knows for an item (used when an answer names none)."""
        return ()

    # per-learner state -----------------------------------------------------------------------

    def get_learner_state(self, learner_id: str) -> dict[str, np.ndarray]:
        """What the model keeps of one learner, as named arrays (the start state for a learner never seen)."""
        raise ModelError(f"{self.name} keeps no exportable learner state")

    def set_learner_state(self, learner_id: str, state: Mapping[str, np.ndarray]) -> None:
        """Replace the learner's state by one ``get_learner_state`` exported (InputError names a bad field)."""
        raise ModelError(f"{self.name} keeps no exportable learner state")

    def drop_learner(self, learner_id: str) -> None:
        """Forget the learner (it then has the start state again); nothing happens for one never seen."""
        raise ModelError(f"{self.name} keeps no exportable learner state")

    @abstractmethod
    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        """P(correct) from the current state."""

    @abstractmethod
    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        """Update the learner's state, and the shared parameters when ``update_shared``."""

    def _predict(self, data: Interactions) -> np.ndarray:
        replay = copy.deepcopy(self)
        learners = data.learner_ids[data.learner].tolist()
        items = data.item_ids[data.item].tolist()
        flat = data.concept_ids[data.concept_index].tolist()
        ptr = data.concept_ptr.tolist()
        correct = data.correct.tolist()
        out = np.empty(data.n, dtype=np.float64)
        for r in range(data.n):
            concepts = tuple(flat[ptr[r]:ptr[r + 1]])
            out[r] = replay._predict_one(learners[r], items[r], concepts)
            replay._learn(learners[r], items[r], concepts, correct[r], update_shared=False)
        return out


def _training_table(data: Any) -> tuple[Any, ConceptGraph | None]:
    """Interactions (and the concept graph) of a ``Lake``; anything else is returned as is."""
    from knowtrace.lake import Lake

    if not isinstance(data, Lake):
        return data, None
    return data.table("interactions"), data.concept_graph()


def _event_fields(event: InteractionEvent | Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], int]:
    """(learner_id, item_id, concept_ids, correct) of an event or of a dict with its fields."""
    if isinstance(event, InteractionEvent):
        return event.learner_id, event.item_id, event.concept_ids, int(event.correct)  # type: ignore[arg-type]
    try:
        learner_id, item_id = str(event["learner_id"]), str(event["item_id"])
    except KeyError as exc:
        raise InputError(f"an answer needs {exc.args[0]}", field=str(exc.args[0])) from None
    correct = event.get("correct")
    if correct is None and event.get("score") is not None:
        correct = int(float(event["score"]) >= 1.0)
    if correct not in (0, 1) or isinstance(correct, float) and not float(correct).is_integer():
        raise InputError(f"correct must be 0 or 1, got {correct!r}", field="correct")
    concepts = event.get("concept_ids") or ()
    concepts = (concepts,) if isinstance(concepts, str) else tuple(str(c) for c in concepts)
    return learner_id, item_id, concepts, int(correct)


def learner_field(state: Mapping[str, Any], name: str, kinds: str, ndim: int, *,
                  size: int | None = None) -> np.ndarray:
    """``state[name]`` checked to be an array of dtype kind in ``kinds`` ("f" floats: finite; "i"
    integers: also unsigned) with ``ndim`` dimensions (and ``size`` rows); InputError names the field."""
    if name not in state:
        raise InputError(f"the learner state has no {name!r}", field=name)
    value = np.asarray(state[name])
    allowed = kinds + ("u" if "i" in kinds else "")
    if value.dtype.kind not in allowed or value.ndim != ndim or (size is not None and len(value) != size):
        kind = {"f": "float", "i": "integer", "U": "string"}
        want = " or ".join(kind.get(k, k) for k in kinds)
        rows = f" of length {size}" if size is not None else ""
        raise InputError(f"{name} must be a {ndim}-d {want} array{rows}, got dtype {value.dtype} shape {value.shape}",
                         field=name)
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise InputError(f"{name} must be finite", field=name)
    return value


def check_learner_fields(state: Mapping[str, Any], expected: Sequence[str], model: str) -> None:
    """Refuse a learner state with other fields than ``expected`` (e.g. one from another model)."""
    extra = sorted(set(state) - set(expected))
    if extra:
        raise InputError(f"a {model} learner state has no field {extra[0]!r}; expected {', '.join(expected)}",
                         field=extra[0])
    missing = [k for k in expected if k not in state]
    if missing:
        raise InputError(f"a {model} learner state needs {', '.join(missing)}", field=missing[0])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _atomic:
    """Write a file through a temporary sibling and rename it into place on success."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode

    def __enter__(self) -> Any:
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.handle = os.fdopen(fd, self.mode, **({"encoding": "utf-8"} if "b" not in self.mode else {}))
        return self.handle

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
