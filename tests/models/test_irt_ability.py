"""Ability estimates: EAP, MAP, MLE on ordinary, extreme and empty answer patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models.irt import ItemParameters, MMLEstimator, ResponseMatrix, eap, estimate_abilities, map_, mle

ITEMS = ItemParameters.of([f"i{k}" for k in range(10)], a=np.linspace(0.7, 1.6, 10), b=np.linspace(-1.5, 1.5, 10))


def patterns(rows: list[list[float]]) -> ResponseMatrix:
    return ResponseMatrix.from_array(rows, item_ids=ITEMS.item_ids)


EXTREMES = patterns([[1.0] * 10, [0.0] * 10, [1, 0] * 5])


def test_eap_and_map_are_finite_for_all_correct_and_all_wrong() -> None:
    for estimates in (eap(EXTREMES, ITEMS), map_(EXTREMES, ITEMS)):
        assert np.isfinite(estimates.theta).all() and np.isfinite(estimates.se).all()
        assert estimates.theta[0] > 1.0 and estimates.theta[1] < -1.0
        assert np.all((estimates.se > 0.2) & (estimates.se < 1.0))  # the prior keeps them below 1
        assert not estimates.at_bound.any()


def test_mle_fences_extreme_patterns_and_flags_them() -> None:
    estimates = mle(EXTREMES, ITEMS, bounds=(-4.0, 4.0))
    assert estimates.theta[0] == 4.0 and estimates.theta[1] == -4.0
    assert estimates.at_bound.tolist() == [True, True, False]
    assert np.isfinite(estimates.se).all() and np.all(estimates.se > 0)
    info = ITEMS.information(estimates.theta).sum(axis=0)
    np.testing.assert_allclose(estimates.se, 1 / np.sqrt(info), rtol=1e-9)
    assert mle(EXTREMES, ITEMS, bounds=(-3.0, 3.0)).theta[0] == 3.0


def test_eap_posterior_sd_does_not_collapse_after_one_answer() -> None:
    item = ItemParameters.of(["q"], a=1.0, b=0.0)
    for answer in (0, 1):
        estimate = eap(ResponseMatrix.from_array([[answer]], item_ids=["q"]), item)
        assert estimate.se[0] > 0.7
        assert (estimate.theta[0] > 0) == (answer == 1)


def test_learners_without_answers_get_the_prior_or_nan() -> None:
    data = patterns([[np.nan] * 10, [1] + [np.nan] * 9])
    prior = eap(data, ITEMS, prior_mean=0.5, prior_sd=2.0)
    assert prior.theta[0] == pytest.approx(0.5, abs=1e-6) and prior.se[0] == pytest.approx(2.0, rel=1e-3)
    assert map_(data, ITEMS).theta[0] == pytest.approx(0.0, abs=1e-9)
    by_mle = mle(data, ITEMS)
    assert np.isnan(by_mle.theta[0]) and not by_mle.at_bound[0] and by_mle.n_answers.tolist() == [0, 1]
    assert by_mle.at_bound[1]  # one right answer: the likelihood rises to the bound


def test_mle_recovers_abilities_on_a_long_test() -> None:
    rng = np.random.default_rng(21)  # theta ~ N(0, 1), a ~ lognormal(0, 0.25), b ~ N(0, 1)
    theta = rng.normal(size=200)
    items = ItemParameters.of([f"q{k}" for k in range(150)], a=rng.lognormal(0, 0.25, 150), b=rng.normal(size=150))
    x = (rng.random((200, 150)) < items.prob(theta).T).astype(float)
    estimates = estimate_abilities(ResponseMatrix.from_array(x, item_ids=items.item_ids), items, "mle")
    errors = estimates.theta - theta
    assert np.corrcoef(estimates.theta, theta)[0, 1] > 0.95
    assert 0.7 < np.sqrt(np.mean(errors ** 2)) / np.sqrt(np.mean(estimates.se ** 2)) < 1.4


def test_each_learner_is_estimated_from_their_own_answers_only() -> None:
    rng = np.random.default_rng(22)
    x = (rng.random((30, 10)) < 0.6).astype(float)
    x[rng.random((30, 10)) < 0.3] = np.nan
    full = patterns(x.tolist())
    for method in ("eap", "map", "mle"):
        whole = estimate_abilities(full, ITEMS, method)
        part = estimate_abilities(full.subset(learners=np.arange(5, 12)), ITEMS, method)
        np.testing.assert_allclose(part.theta, whole.theta[5:12], rtol=0, atol=1e-8)


@pytest.mark.realdata
def test_map_matches_ltm_empirical_bayes_scores_on_lsat(shared_data: Path) -> None:
    # ltm factor.scores(ltm(LSAT ~ z1)), method "EB": 00000 -> -1.895 (0.795), 11111 -> 0.606 (0.855)
    lsat = ResponseMatrix.from_csv(shared_data / "lsat" / "LSAT.csv")
    items = MMLEstimator("2pl", tol=1e-6).fit(lsat).params
    scores = map_(ResponseMatrix.from_array([[0] * 5, [1] * 5], item_ids=lsat.item_ids), items)
    np.testing.assert_allclose(scores.theta, [-1.895, 0.606], atol=0.005)
    np.testing.assert_allclose(scores.se, [0.795, 0.855], atol=0.005)


def test_unknown_method_and_unknown_items_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown ability method"):
        estimate_abilities(EXTREMES, ITEMS, "wle")
    with pytest.raises(InputError, match="calibrated"):
        eap(ResponseMatrix.from_array([[1]], item_ids=["other"]), ITEMS)
    with pytest.raises(InputError, match="bounds"):
        mle(EXTREMES, ITEMS, bounds=(1.0, -1.0))
