"""The evaluation protocol on simulated data."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowtrace.evaluation import evaluate, learner_split
from knowtrace.exceptions import InputError
from knowtrace.models import Elo

KEYS = {"model", "auc", "acc", "rmse", "logloss", "ece", "n_test", "fit_seconds", "predict_seconds"}


@pytest.fixture(scope="module")
def results(simulated_table: pa.Table) -> dict[str, dict]:
    calls: list[tuple[str, str]] = []
    out = evaluate(["global_rate", "item_rate", "elo", "pfa"], simulated_table,
                   progress=lambda model, stage: calls.append((model, stage)))
    assert calls[:3] == [("global_rate", "fit"), ("global_rate", "predict"), ("global_rate", "done")]
    assert len(calls) == 12
    return {r["model"]: r for r in out}


def test_result_rows(results: dict[str, dict], simulated_table: pa.Table) -> None:
    n_test = learner_split(simulated_table).test.num_rows
    for row in results.values():
        assert KEYS <= set(row)
        assert row["n_test"] == n_test and row["n_train"] + n_test == simulated_table.num_rows
        assert 0 <= row["acc"] <= 1 and 0 <= row["ece"] <= 1 and row["fit_seconds"] >= 0
    assert results["global_rate"]["auc"] == 0.5


def test_models_beat_the_global_rate(results: dict[str, dict]) -> None:
    base = results["global_rate"]
    for name in ("item_rate", "elo", "pfa"):
        assert results[name]["auc"] > base["auc"] + 0.05, name
        assert results[name]["logloss"] < base["logloss"], name
    assert results["elo"]["auc"] > results["item_rate"]["auc"]


def test_instances_and_errors(simulated_table: pa.Table) -> None:
    [row] = evaluate([Elo(k_a=0.8)], simulated_table, seed=2)
    assert row["model"] == "elo"
    with pytest.raises(InputError, match="unknown model"):
        evaluate(["no-such-model"], simulated_table)
    one_learner = simulated_table.filter(pa.compute.equal(simulated_table.column("learner_id"), "sim-learner-0001"))
    with pytest.raises(InputError, match="two learners"):
        evaluate(["elo"], one_learner)
