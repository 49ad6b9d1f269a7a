"""The evaluation protocols: fit on train learners, score every answer of the test learners once.

- holdout (``evaluate``, the quickstart's): a hash split of learners, 20% held out;
- k-fold (``evaluate_kfold``, pyKT's): 20% of learners held out as test, k-fold cross-validation
  on the others; fold k trains on the other folds, validates on fold k and scores the test
  learners; the headline is the mean ± standard deviation over folds of the test metrics;
- fixed files (``evaluate_dkvmn``): the DKVMN benchmark splits' train/valid/test files.

Models are registry names or unfitted instances; the protocol never looks at which model it runs.
An answer is one row of the test table and gets one prediction, whatever its number of concepts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.evaluation.dkvmn_split import DkvmnSplit
from knowtrace.evaluation.metrics import METRICS, score_all
from knowtrace.evaluation.per_concept import mean_per_concept, per_concept_metrics
from knowtrace.evaluation.split import kfold_splits, learner_split
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError
from knowtrace.models.base import KnowledgeModel, ModelError
from knowtrace.models.data import as_table
from knowtrace.models.registry import get_model

__all__ = ["Evaluation", "ModelSpec", "Scored", "Step", "evaluate", "evaluate_dkvmn", "evaluate_holdout",
           "evaluate_kfold", "score_models"]

ModelSpec = str | KnowledgeModel

#: ``progress(model, stage)`` with stage "fit", "predict" or "done" (the legacy ``evaluate`` callback)
Progress = Callable[[str, str], None]


class Step(NamedTuple):
    """Where an evaluation is: ``stage`` ("fit", "predict" or "done") of ``model`` in fold ``fold`` of ``folds``."""

    model: str
    stage: str
    fold: int
    folds: int


OnStep = Callable[[Step], None]


@dataclass
class Scored:
    """One fitted model's predictions ``p`` of the test answers (rows of ``test``, outcomes ``y``)."""

    model: KnowledgeModel
    test: pa.Table
    y: np.ndarray
    p: np.ndarray
    train_learners: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The model's registry name."""
        return self.model.name


@dataclass
class Evaluation:
    """One result dict per model, and the predictions behind them (of fold 1 for k-fold)."""

    results: list[dict[str, Any]]
    predictions: list[Scored]


def _new_model(spec: ModelSpec) -> KnowledgeModel:
    if isinstance(spec, str):
        return get_model(spec)
    if isinstance(spec, KnowledgeModel):
        return type(spec)(**spec.get_params())
    raise InputError(f"a model is a registry name or a KnowledgeModel, got {type(spec).__name__}", field="models")


def _outcomes(test: pa.Table) -> np.ndarray:
    """The 0/1 outcomes of the test answers, after checking each answer is one row."""
    if "correct" not in test.column_names:
        raise InputError("interactions lack column correct", field="correct")
    if "event_id" in test.column_names:
        distinct = pc.count_distinct(test.column("event_id")).as_py()
        if distinct != test.num_rows:
            raise InputError(f"the test answers have {test.num_rows} rows but {distinct} distinct event ids: an "
                             "answer must be one row (was it expanded to one row per concept?)", field="event_id")
    correct = test.column("correct")
    if correct.null_count:
        raise InputError("test answers without a 0/1 outcome", field="correct")
    return np.asarray(correct.to_numpy(), dtype=np.float64)


def score_models(
    models: Sequence[ModelSpec],
    train: Any,
    test: Any,
    *,
    valid: Any = None,
    graph: ConceptGraph | None = None,
    split: str = "holdout",
    fold: int = 1,
    folds: int = 1,
    on_step: OnStep | None = None,
) -> Evaluation:
    """Fit each model on ``train`` (``valid`` to select and stop early) and score its prediction of
    every answer of ``test``: overall metrics, per-concept metrics, fit and predict seconds."""
    train, test = as_table(train), as_table(test)
    valid = as_table(valid) if valid is not None else None
    if train.num_rows == 0 or test.num_rows == 0:
        raise InputError("evaluation needs answers from at least two learners (train and test)")
    y = _outcomes(test)
    train_learners = sorted(pc.unique(train.column("learner_id").cast(pa.string())).to_pylist())
    results, predictions = [], []
    for spec in models:
        model = _new_model(spec)
        name = model.name
        if on_step:
            on_step(Step(name, "fit", fold, folds))
        started = time.perf_counter()
        model.fit(train, valid=valid, graph=graph)
        fitted = time.perf_counter()
        if on_step:
            on_step(Step(name, "predict", fold, folds))
        p = np.asarray(model.predict_proba(test), dtype=np.float64)
        predicted = time.perf_counter()
        if p.shape != y.shape:
            raise ModelError(f"{name} gave {p.shape[0]} predictions for {len(y)} test answers")
        results.append({
            "model": name,
            "split": split,
            "fold": fold,
            **score_all(y, p),
            "n_train": train.num_rows,
            "n_valid": valid.num_rows if valid is not None else 0,
            "n_test": test.num_rows,
            "fit_seconds": fitted - started,
            "predict_seconds": predicted - fitted,
            "per_concept": per_concept_metrics(test, y, p),
        })
        predictions.append(Scored(model, test, y, p, train_learners))
        if on_step:
            on_step(Step(name, "done", fold, folds))
    return Evaluation(results, predictions)


def evaluate_holdout(models: Sequence[ModelSpec], table: Any, *, test_fraction: float = 0.2, seed: int = 0,
                     graph: ConceptGraph | None = None, on_step: OnStep | None = None) -> Evaluation:
    """Fit on the train learners of ``learner_split(table, test_fraction, seed)``, score the test learners."""
    train, test = learner_split(as_table(table), test_fraction=test_fraction, seed=seed)
    return score_models(models, train, test, graph=graph, split="holdout", on_step=on_step)


def evaluate(
    models: Sequence[ModelSpec],
    table: Any,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Fit each model on the train learners and score its predictions for every test answer.

    ``models`` are registry names (or unfitted model instances, which are copied). Returns one
    dict per model: model, auc, acc, rmse, logloss, ece, n_train, n_test, fit_seconds,
    predict_seconds, per_concept (see ``score_models``).
    """
    on_step = (lambda step: progress(step.model, step.stage)) if progress else None
    return evaluate_holdout(models, table, test_fraction=test_fraction, seed=seed, on_step=on_step).results


def evaluate_dkvmn(models: Sequence[ModelSpec], split: DkvmnSplit, *, on_step: OnStep | None = None) -> Evaluation:
    """Fit on the split's train file (its valid file passed as ``valid``) and score its test file."""
    evaluation = score_models(models, split.train, split.test, valid=split.valid, split="dkvmn", fold=split.fold,
                              on_step=on_step)
    for row in evaluation.results:
        row["dataset"] = split.name
    return evaluation


def _summarise(name: str, rows: list[dict[str, Any]], folds: int, test_fraction: float, seed: int) -> dict[str, Any]:
    """The k-fold result of one model: means over folds, sample standard deviations, the folds."""
    out: dict[str, Any] = {"model": name, "split": "kfold", "folds": folds, "test_fraction": test_fraction,
                           "seed": seed}
    for key in (*METRICS, "fit_seconds", "predict_seconds"):
        values = np.array([row[key] for row in rows], dtype=np.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    out["n_train"] = int(round(np.mean([row["n_train"] for row in rows])))
    out["n_valid"] = int(round(np.mean([row["n_valid"] for row in rows])))
    out["n_test"] = rows[0]["n_test"]
    out["per_concept"] = mean_per_concept([row["per_concept"] for row in rows])
    out["fold_results"] = [{k: v for k, v in row.items() if k not in ("per_concept", "model", "split")}
                           for row in rows]
    return out


def evaluate_kfold(
    models: Sequence[ModelSpec],
    table: Any,
    *,
    folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    graph: ConceptGraph | None = None,
    on_step: OnStep | None = None,
) -> Evaluation:
    """pyKT's protocol: for each fold, fit on the other folds with this fold as ``valid`` and score
    the held-out test learners; one result per model with each metric's mean and ``<metric>_std``
    over the folds (sample standard deviation) and ``fold_results``. The predictions kept are fold 1's.
    """
    splits = kfold_splits(table, folds=folds, test_fraction=test_fraction, seed=seed)
    per_model: dict[int, list[dict[str, Any]]] = {}
    kept: list[Scored] = []
    for split in splits:
        evaluation = score_models(models, split.train, split.test, valid=split.valid, graph=graph, split="kfold",
                                  fold=split.fold, folds=folds, on_step=on_step)
        for j, row in enumerate(evaluation.results):
            per_model.setdefault(j, []).append(row)
        if split.fold == 1:
            kept = evaluation.predictions
    results = [_summarise(rows[0]["model"], rows, folds, test_fraction, seed) for _, rows in sorted(per_model.items())]
    return Evaluation(results, kept)
