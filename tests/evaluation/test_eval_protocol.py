"""The evaluation protocol on simulated data."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowtrace.evaluation import evaluate, learner_split, score_models
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


class _ValidSpy(Elo):
    """Elo that records what ``fit`` got as ``valid`` (no ``name``: not registered)."""

    seen: list[int | None] = []

    def _fit(self, data, *, valid=None):  # type: ignore[no-untyped-def]
        type(self).seen.append(None if valid is None else valid.n)
        super()._fit(data, valid=valid)


def test_a_multi_concept_answer_is_scored_once(make_answers) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for j in range(8):
        learner = f"l{j}"
        for step in range(6):
            concepts = ("add", "sub") if step % 2 else ("add",)
            rows.append((learner, f"q{step % 3}", concepts, int((j + step) % 3 != 0)))
    table = make_answers(rows)
    train = table.filter(pa.compute.is_in(table.column("learner_id"), pa.array(["l0", "l1", "l2", "l3", "l4"])))
    test = table.filter(pa.compute.invert(pa.compute.is_in(table.column("learner_id"),
                                                           pa.array(["l0", "l1", "l2", "l3", "l4"]))))
    evaluation = score_models(["item_rate", "elo"], train, test)
    for row, scored in zip(evaluation.results, evaluation.predictions):
        assert row["n_test"] == test.num_rows == 18 and scored.p.shape == (18,)
        per = {c["concept_id"]: c["n"] for c in row["per_concept"]}
        assert per == {"add": 18, "sub": 9}  # a breakdown: the two-concept answers count in both
    doubled = pa.concat_tables([test, test.slice(0, 1)])  # an answer that got a second row
    with pytest.raises(InputError, match="expanded to one row per concept"):
        score_models(["elo"], train, doubled)


def test_valid_reaches_fit_and_is_counted(simulated_table: pa.Table) -> None:
    train, test = learner_split(simulated_table, seed=4)
    valid, train = learner_split(train, test_fraction=0.25, seed=5)
    _ValidSpy.seen.clear()
    [row] = score_models([_ValidSpy()], train, test, valid=valid, split="custom").results
    assert _ValidSpy.seen == [valid.num_rows]
    assert (row["n_valid"], row["split"], row["model"]) == (valid.num_rows, "custom", "elo")
