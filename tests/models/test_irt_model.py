"""The ``irt`` learner model: calibration from logs, incremental EAP predictions, mastery, artifacts."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models import KnowledgeModel, OnlineModel, get_model_class
from knowtrace.models.data import Interactions
from knowtrace.models.irt import IRT, ResponseMatrix


def test_registered_under_irt() -> None:
    assert get_model_class("irt") is IRT
    assert issubclass(IRT, OnlineModel)


def test_calibration_uses_each_learners_first_answer(make_table) -> None:
    table = make_table([("l1", "q1", ("c",), 0), ("l1", "q1", ("c",), 1), ("l1", "q2", ("c",), 1),
                        ("l2", "q1", ("c",), 1), ("l2", "q2", ("c",), 0), ("l2", "q2", ("c",), 1)])
    matrix = ResponseMatrix.from_interactions(Interactions.from_table(table))
    np.testing.assert_array_equal(matrix.to_dense(), [[0, 1], [1, 0]])


@pytest.fixture(scope="module")
def fitted(small_table: pa.Table) -> IRT:
    return IRT(**IRT._test_params()).fit(small_table)


def test_vectorised_predictions_equal_answer_by_answer_replay(fitted: IRT, small_table: pa.Table) -> None:
    view = Interactions.from_table(small_table.slice(0, 400))
    fast = fitted._predict(view)
    replay = OnlineModel._predict(fitted, view)  # predict_one then learn_one, row by row
    np.testing.assert_allclose(fast, replay, rtol=0, atol=1e-12)


def test_first_prediction_of_a_new_learner_is_the_prior_predictive(fitted: IRT) -> None:
    item = str(fitted.items_.item_ids[0])
    nodes, weights = fitted.posterior("someone-new")
    expected = weights @ fitted.items_.take(np.array([0])).prob(nodes)[0]
    assert fitted.predict_one("someone-new", item) == pytest.approx(expected, abs=1e-12)


def test_unknown_items_use_the_fallback_parameters(fitted: IRT) -> None:
    nodes, weights = fitted.posterior("someone-new")
    mean_b = float(np.mean(fitted.items_.b))
    curve = 1 / (1 + np.exp(-(nodes - mean_b)))  # a = 1, b = mean difficulty
    assert fitted.predict_one("someone-new", "never-seen-item") == pytest.approx(weights @ curve, abs=1e-12)


def test_mastery_uncertainty_shrinks_with_answers(fitted: IRT) -> None:
    model = copy.deepcopy(fitted)
    concept = next(iter(model.concept_items_))
    items = model.concept_items_[concept]
    first = model.mastery("newcomer")[concept]
    assert first[1] is not None and first[1] > 0
    _, sd_before = model.ability("newcomer")
    for k in range(30):
        model.learn_one({"learner_id": "newcomer", "item_id": items[k % len(items)], "correct": 1})
    after = model.mastery("newcomer")[concept]
    ability, sd_after = model.ability("newcomer")
    assert after[0] > first[0] and after[1] < first[1]
    assert ability > 0.5 and sd_after < sd_before


def test_save_load_round_trip(fitted: IRT, small_table: pa.Table, tmp_path) -> None:
    loaded = KnowledgeModel.load(fitted.save(tmp_path / "irt"))
    assert isinstance(loaded, IRT) and loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(small_table), fitted.predict_proba(small_table))
    learner = small_table.column("learner_id")[0].as_py()
    assert loaded.mastery(learner) == fitted.mastery(learner)
    assert loaded.excluded_items_ == fitted.excluded_items_


@pytest.mark.parametrize("params", [{"model": "1pl"}, {"model": "3pl"}, {"estimator": "jml", "max_iter": 100}])
def test_other_models_and_the_joint_estimator_predict(params: dict, small_table: pa.Table) -> None:
    model = IRT(n_quadrature=31, **params).fit(small_table)
    p = model.predict_proba(small_table)
    assert np.isfinite(p).all() and np.all((p > 0) & (p < 1))
    y = small_table.column("correct").to_numpy()
    assert np.mean((p > 0.5) == y) > 0.6


def test_bad_hyperparameters_are_input_errors(small_table: pa.Table) -> None:
    with pytest.raises(InputError, match="unknown IRT model"):
        IRT(model="2PL-ish").fit(small_table)
    with pytest.raises(InputError, match="unknown estimator"):
        IRT(estimator="gibbs").fit(small_table)
