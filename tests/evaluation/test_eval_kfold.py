"""The k-fold protocol: one result per model, means and standard deviations over the folds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation import Step, evaluate_kfold, kfold_splits


@pytest.fixture(scope="module")
def kfold(simulated_table: pa.Table):  # type: ignore[no-untyped-def]
    steps: list[Step] = []
    evaluation = evaluate_kfold(["global_rate", "item_rate", "elo"], simulated_table, folds=5, seed=3,
                                on_step=steps.append)
    return evaluation, steps


def test_one_result_per_model_with_fold_statistics(kfold, simulated_table: pa.Table) -> None:  # type: ignore[no-untyped-def]
    evaluation, _ = kfold
    folds = kfold_splits(simulated_table, folds=5, seed=3)
    assert [r["model"] for r in evaluation.results] == ["global_rate", "item_rate", "elo"]
    for row in evaluation.results:
        assert row["split"] == "kfold" and row["folds"] == 5 and len(row["fold_results"]) == 5
        assert row["n_test"] == folds[0].test.num_rows
        assert [f["n_valid"] for f in row["fold_results"]] == [f.valid.num_rows for f in folds]
        for metric in ("auc", "acc", "rmse", "logloss", "ece", "fit_seconds"):
            values = [f[metric] for f in row["fold_results"]]
            assert row[metric] == pytest.approx(np.mean(values))
            assert row[f"{metric}_std"] == pytest.approx(np.std(values, ddof=1))
        assert {c["concept_id"] for c in row["per_concept"]} == set(
            folds[0].test.column("concept_ids").combine_chunks().flatten().to_pylist())
    by_model = {r["model"]: r for r in evaluation.results}
    assert by_model["elo"]["auc"] > by_model["item_rate"]["auc"] > by_model["global_rate"]["auc"]
    assert by_model["elo"]["auc_std"] > 0


def test_every_test_answer_scored_once_per_fold(kfold, simulated_table: pa.Table) -> None:  # type: ignore[no-untyped-def]
    evaluation, steps = kfold
    test = kfold_splits(simulated_table, folds=5, seed=3)[0].test
    assert len(evaluation.predictions) == 3  # fold 1's models are kept for the report
    for scored in evaluation.predictions:
        assert scored.p.shape == (test.num_rows,) and scored.test.equals(test)
        assert np.array_equal(scored.y, test.column("correct").to_numpy())
    assert len(steps) == 3 * 3 * 5
    assert steps[0] == Step("global_rate", "fit", 1, 5) and steps[-1] == Step("elo", "done", 5, 5)
