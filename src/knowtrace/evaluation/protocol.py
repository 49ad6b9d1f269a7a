"""The evaluation protocol: fit on train learners, score every answer of the test learners once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from knowtrace.evaluation.metrics import score_all
from knowtrace.evaluation.split import learner_split
from knowtrace.exceptions import InputError
from knowtrace.models.base import KnowledgeModel, ModelError
from knowtrace.models.data import as_table
from knowtrace.models.registry import get_model

__all__ = ["evaluate"]

#: ``progress(model, stage)`` with stage "fit", "predict" or "done"
Progress = Callable[[str, str], None]


def evaluate(
    models: Sequence[str | KnowledgeModel],
    table: Any,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Fit each model on the train learners and score its predictions for every test answer.

    ``models`` are registry names (or unfitted model instances, which are copied). Returns one
    dict per model: model, auc, acc, rmse, logloss, ece, n_train, n_test, fit_seconds,
    predict_seconds.
    """
    train, test = learner_split(as_table(table), test_fraction=test_fraction, seed=seed)
    if train.num_rows == 0 or test.num_rows == 0:
        raise InputError("evaluation needs answers from at least two learners (train and test)")
    y = np.asarray(test.column("correct").to_numpy(), dtype=np.float64)
    results = []
    for spec in models:
        model = get_model(spec) if isinstance(spec, str) else type(spec)(**spec.get_params())
        name = model.name
        if progress:
            progress(name, "fit")
        started = time.perf_counter()
        model.fit(train)
        fitted = time.perf_counter()
        if progress:
            progress(name, "predict")
        p = model.predict_proba(test)
        predicted = time.perf_counter()
        if p.shape != y.shape:
            raise ModelError(f"{name} gave {p.shape[0]} predictions for {len(y)} test answers")
        results.append({
            "model": name,
            **score_all(y, p),
            "n_train": train.num_rows,
            "n_test": test.num_rows,
            "fit_seconds": fitted - started,
            "predict_seconds": predicted - fitted,
        })
        if progress:
            progress(name, "done")
    return results
