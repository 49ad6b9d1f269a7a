"""Knowledge Tracing Machines (Vie & Kashima, AAAI 2019): a factorization machine on sparse features.

Every answer becomes a sparse row of the feature groups named by ``features`` (see
``knowtrace.models.ktm.features``: ``u`` learner, ``i`` item, ``s`` concepts, ``w``/``f``/``a``
earlier right/wrong/all answers per concept, ``W``/``F``/``A`` the same per item, ``p``
prerequisites, ``e`` previous answer's duration, ``t`` time since the previous answer), always
computed from the learner's earlier answers only, and a factorization machine of dimension
``dim`` (``knowtrace.models.ktm.fm``) maps the row to P(correct). ``iswf`` with ``dim = 0`` is
PFA with item easiness; ``uiswf`` adds the learner ability of AFM/IRT.

Learners and items not seen in ``fit`` have no ``u``/``i`` column: their answers are predicted
from the population (the other groups). A learner seen in ``fit`` (or ``learn_one``) continues
from its counts: in ``predict_proba`` its earlier rows in the data are added to them.

``mastery(learner)``: for every concept, the mean predicted P(correct) over the concept's items
(those tagged with it in ``fit``) for the learner's next answer, given everything the model knows
of the learner; the time since the previous answer is unknown there (no ``t`` column). Its
standard error is not computed (None).

The model is online: ``learn_one`` adds an answer to the learner's counts (the FM's weights
change only with ``fit``), and ``predict_one`` scores the next answer; pass it ``timestamp`` to
use the ``t`` group (without it the ``t`` group is empty, as in ``mastery``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Self

import numpy as np
from scipy.special import expit

from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError
from knowtrace.models.base import Mastery, OnlineModel, _event_fields
from knowtrace.models.data import Interactions, pack_lists, unpack_lists
from knowtrace.models.ktm.features import FeatureSpace, design_matrix, parse_features
from knowtrace.models.ktm.history import LearnerHistory

__all__ = ["KTM"]


def _seconds(value: Any, field: str) -> float:
    """A timestamp (aware datetime or seconds since the epoch) or a duration in ms as float; NaN for None."""
    if value is None:
        return math.nan
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError(f"{field} must carry a time zone, got {value!r}", field=field)
        return value.timestamp()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    raise InputError(f"{field} must be a number or an aware datetime, got {value!r}", field=field)


def _query_view(learner_id: str, items: Sequence[str], concepts: Sequence[Sequence[str]],
                timestamp: float = math.nan) -> Interactions:
    """One learner's next answer to each of ``items``, as a view whose rows do not see each other."""
    m = len(items)
    item_ids, item = np.unique(np.array(list(items), dtype=str), return_inverse=True)
    flat = np.array([c for cs in concepts for c in cs], dtype=str)
    concept_ids, index = np.unique(flat, return_inverse=True)
    ptr = np.concatenate(([0], np.cumsum([len(cs) for cs in concepts]))).astype(np.int64)
    zeros = np.zeros(m, dtype=np.int64)
    return Interactions(zeros, np.array([learner_id], dtype=str), item.astype(np.int64), item_ids, ptr,
                        index.astype(np.int64), concept_ids, np.zeros(m, dtype=np.int8), np.arange(m, dtype=np.int64),
                        np.array([0, m], dtype=np.int64), zeros.copy(), None,
                        timestamp_s=np.full(m, timestamp), elapsed_ms=None)


class KTM(OnlineModel):
    """A factorization machine on learner/item/concept one-hots and earlier-answer counts.

    Hyperparameters: ``features`` (letters, see ``knowtrace.models.ktm.features``), ``dim``
    (factor dimension; 0 = logistic regression), ``epochs``, ``lr``, ``batch_size``,
    ``optimizer`` ("adam": mini-batches; "lbfgs": full batch, ``LBFGS_ITERATIONS`` steps per
    epoch), ``l2``/``l2_factors`` (penalties of the weights/factors on the summed log-loss),
    ``count_scale`` ("log": log(1 + count), "raw"), ``patience`` (epochs without validation
    improvement before stopping), ``valid_share`` (share of training learners held out to stop
    early when ``fit`` gets no ``valid``; 0 trains all ``epochs`` on everything; the held-out
    learners' ``u`` weights stay 0), ``seed``, ``device`` ("auto": CUDA when present, else CPU)
    and ``verbose`` (a progress bar with the loss and validation AUC per epoch).
    """

    name = "ktm"
    description = "Knowledge Tracing Machine: factorization machine on learner/item/concept and count features"

    def __init__(self, *, features: str = "iswfrx", dim: int = 5, epochs: int = 30, lr: float = 0.03,
                 batch_size: int = 4096, optimizer: str = "adam", l2: float = 1.0, l2_factors: float = 1.0,
                 count_scale: str = "log", patience: int = 3, valid_share: float = 0.1, seed: int = 0,
                 device: str = "auto", verbose: bool = False) -> None:
        self.features = features
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.l2 = l2
        self.l2_factors = l2_factors
        self.count_scale = count_scale
        self.patience = patience
        self.valid_share = valid_share
        self.seed = seed
        self.device = device
        self.verbose = verbose

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        return {"features": "uiswfWFet", "dim": 2, "epochs": 3, "batch_size": 256}

    def _check_params(self) -> None:
        parse_features(self.features)
        for name, low in (("dim", 0), ("epochs", 1), ("batch_size", 1), ("patience", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
        for name, low in (("lr", None), ("l2", 0.0), ("l2_factors", 0.0)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if low is None else value < low):
                raise InputError(f"{name} must be a finite number {'> 0' if low is None else '>= 0'}, got {value!r}",
                                 field=name)
        if self.optimizer not in ("adam", "lbfgs"):
            raise InputError(f"optimizer must be 'adam' or 'lbfgs', got {self.optimizer!r}", field="optimizer")
        if self.count_scale not in ("log", "raw"):
            raise InputError(f"count_scale must be 'log' or 'raw', got {self.count_scale!r}", field="count_scale")
        if not (isinstance(self.valid_share, (int, float)) and 0 <= self.valid_share < 1):
            raise InputError(f"valid_share must be in [0, 1), got {self.valid_share!r}", field="valid_share")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise InputError(f"seed must be an integer, got {self.seed!r}", field="seed")

    # fitting ---------------------------------------------------------------------------------

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        from knowtrace.models.ktm import fm

        self._check_params()
        if data.n == 0:
            raise InputError("ktm needs at least one answer to fit")
        device = fm.resolve_device(self.device)
        space = FeatureSpace.from_view(self.features, data, count_scale=self.count_scale)
        history = LearnerHistory.from_view(space, data)
        x, y = design_matrix(space, data), data.correct.astype(np.float64)
        held = np.zeros(0, dtype=np.int64)
        if valid is not None:
            x_train, y_train = x, y
            validation = (design_matrix(space, valid, history.prior(valid.learner_ids)),
                          valid.correct.astype(np.float64)) if valid.n else None
        elif self.valid_share > 0 and len(data.learner_ids) >= 2:
            rng = np.random.default_rng(self.seed)
            n_held = min(max(1, round(self.valid_share * len(data.learner_ids))), len(data.learner_ids) - 1)
            held = np.sort(rng.permutation(len(data.learner_ids))[:n_held])
            in_held = np.isin(data.learner, held)
            x_train, y_train = x[~in_held], y[~in_held]
            validation = (x[in_held], y[in_held])
        else:
            x_train, y_train, validation = x, y, None
        result = fm.train(x_train, y_train, valid=validation, dim=int(self.dim), epochs=int(self.epochs),
                          lr=float(self.lr), batch_size=int(self.batch_size), l2=float(self.l2),
                          l2_factors=float(self.l2_factors), seed=int(self.seed), optimizer=self.optimizer,
                          patience=int(self.patience), device=device, verbose=bool(self.verbose))
        weight, factors = result.weights.weight.copy(), result.weights.factors.copy()
        if "u" in space.letters and len(held):
            columns = space.offsets["u"] + held  # held-out learners had no training rows
            weight[columns], factors[columns] = 0.0, 0.0
        self.bias_, self.weight_, self.factors_ = result.weights.bias, weight, factors
        self.space_, self.history_ = space, history
        self.train_history_, self.best_epoch_, self.device_ = result.history, result.best_epoch, result.device
        self.item_concepts_ = data.item_concepts()
        rows = data.row_concepts()
        pairs = np.unique(np.stack([data.concept_index, data.item[rows]]), axis=1)  # codes of data = of space
        self.mastery_pairs_ = pairs.astype(np.int64)

    # predicting ------------------------------------------------------------------------------

    def _logits(self, data: Interactions) -> np.ndarray:
        from knowtrace.models.ktm.fm import FMWeights, logits

        x = design_matrix(self.space_, data, self.history_.prior(data.learner_ids))
        return logits(FMWeights(self.bias_, self.weight_, self.factors_), x)

    def _predict(self, data: Interactions) -> np.ndarray:
        return expit(self._logits(data))

    def _score(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], timestamp: float) -> float:
        return float(expit(self._logits(_query_view(learner_id, [item_id], [concept_ids], timestamp))[0]))

    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        return self._score(learner_id, item_id, concept_ids, math.nan)

    def predict_one(self, learner_id: str, item_id: str, concept_ids: Sequence[str] = (), *,
                    timestamp: datetime | float | None = None) -> float:
        """P(correct) of the learner's next answer to the item (its known concepts if none given),
        given at ``timestamp`` (an aware datetime or seconds since the epoch; used by ``t``)."""
        self._check_fitted()
        concepts = tuple(concept_ids) or self._item_concepts(item_id)
        return self._score(learner_id, item_id, concepts, _seconds(timestamp, "timestamp"))

    def learn_one(self, event: InteractionEvent | Mapping[str, Any]) -> Self:
        """Add one answer to the learner's counts (and its timestamp and duration when given)."""
        self._check_fitted()
        learner_id, item_id, concept_ids, correct = _event_fields(event)
        get = (lambda key: getattr(event, key)) if isinstance(event, InteractionEvent) else event.get
        concept_ids = concept_ids or self._item_concepts(item_id)
        self._remember(learner_id, item_id, concept_ids, correct, _seconds(get("timestamp"), "timestamp"),
                       _seconds(get("elapsed_ms"), "elapsed_ms"), update_shared=True)
        return self

    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        self._remember(learner_id, item_id, concept_ids, correct, math.nan, math.nan, update_shared=update_shared)

    def _remember(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, timestamp: float,
                  elapsed_ms: float, *, update_shared: bool) -> None:
        self.history_.learn(learner_id, item_id, concept_ids, correct, timestamp, elapsed_ms)
        if update_shared and concept_ids and item_id not in self.item_concepts_:
            self.item_concepts_[item_id] = tuple(concept_ids)

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        return self.item_concepts_.get(item_id, ())

    def mastery(self, learner_id: str) -> Mastery:
        self._check_fitted()
        space = self.space_
        concept_code, item_code = self.mastery_pairs_
        items = space.item_ids[item_code].tolist()
        concepts = space.concept_ids[concept_code].tolist()
        row_concepts = [known if c in known else (c,)
                        for c, known in zip(concepts, (self.item_concepts_.get(i, ()) for i in items))]
        p = expit(self._logits(_query_view(learner_id, items, row_concepts)))
        n_concepts = len(space.concept_ids)
        mean = np.bincount(concept_code, weights=p, minlength=n_concepts) / np.maximum(
            np.bincount(concept_code, minlength=n_concepts), 1)
        return {c: (float(m), None) for c, m in zip(space.concept_ids.tolist(), mean.tolist())}

    def column_weights(self) -> dict[str, float]:
        """Feature column name -> its linear weight (for inspection)."""
        self._check_fitted()
        return dict(zip(self.space_.column_names(), self.weight_.tolist()))

    # state -----------------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        items, ptr, flat = pack_lists(self.item_concepts_)
        return {
            "letters": np.array([self.space_.letters], dtype=str),
            "count_scale": np.array([self.space_.count_scale], dtype=str),
            **{f"space_{k}": v for k, v in self.space_.to_state().items()},
            **self.history_.to_state(),
            "bias": np.array([self.bias_], dtype=np.float64),
            "weight": self.weight_,
            "factors": self.factors_,
            "train_history": self.train_history_,
            "best_epoch": np.array([self.best_epoch_], dtype=np.int64),
            "device": np.array([self.device_], dtype=str),
            "item_concept_items": items,
            "item_concept_ptr": ptr,
            "item_concept_ids": flat,
            "mastery_pairs": self.mastery_pairs_,
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        space_state = {k[len("space_"):]: v for k, v in state.items() if k.startswith("space_")}
        self.space_ = FeatureSpace.from_state(str(state["letters"][0]), str(state["count_scale"][0]), space_state)
        self.history_ = LearnerHistory.from_state(self.space_, state)
        self.bias_ = float(state["bias"][0])
        self.weight_ = np.asarray(state["weight"], dtype=np.float64)
        self.factors_ = np.asarray(state["factors"], dtype=np.float64).reshape(len(self.weight_), -1)
        self.train_history_ = state["train_history"]
        self.best_epoch_ = int(state["best_epoch"][0])
        self.device_ = str(state["device"][0])
        self.item_concepts_ = unpack_lists(state["item_concept_items"], state["item_concept_ptr"],
                                           state["item_concept_ids"])
        self.mastery_pairs_ = np.asarray(state["mastery_pairs"], dtype=np.int64).reshape(2, -1)
        if self.weight_.shape != (self.space_.n_features,):
            raise ValueError(f"{len(self.weight_)} weights for {self.space_.n_features} feature columns")
