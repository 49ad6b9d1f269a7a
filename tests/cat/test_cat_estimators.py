"""Ability estimators against brute-force numerics: EAP integrals, MAP/MLE maxima, SE formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize

from knowtrace.cat import AbilityState, EstimatorConfig, ItemBank, make_estimator
from knowtrace.cat.logistic import log_likelihood_derivatives


def answered(bank: ItemBank, items: list[int], answers: list[int], config: EstimatorConfig, *,
             derivatives: bool = False) -> AbilityState:
    """The state after the answers; ``derivatives`` lets MAP/MLE read the mode off the grid."""
    state = AbilityState.empty(config.grid.nodes(), derivatives=derivatives)
    for item, answer in zip(items, answers):
        state.add(bank, item, answer)
    return state


def loglik(bank: ItemBank, items: list[int], answers: list[int], theta: float) -> float:
    p = bank.probability(theta, np.asarray(items))
    u = np.asarray(answers)
    return float(np.sum(u * np.log(p) + (1 - u) * np.log(1 - p)))


def second_derivative(f, x: float, h: float = 1e-4) -> float:  # type: ignore[no-untyped-def]
    return (f(x + h) - 2 * f(x) + f(x - h)) / (h * h)


@pytest.fixture(scope="module")
def pattern(bank3: ItemBank) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(4)
    items = rng.choice(len(bank3), 12, replace=False).tolist()
    p = bank3.probability(0.4, np.asarray(items))
    return items, (rng.random(12) < p).astype(int).tolist()


def test_eap_matches_brute_force_integration(bank3: ItemBank, pattern: tuple[list[int], list[int]]) -> None:
    items, answers = pattern
    config = EstimatorConfig(method="eap", prior_mean=0.3, prior_sd=1.3)
    est = make_estimator(config).estimate(answered(bank3, items, answers, config), bank3)

    def post(t: float) -> float:
        return math.exp(loglik(bank3, items, answers, t) - 0.5 * ((t - 0.3) / 1.3) ** 2)

    z = integrate.quad(post, -12, 12, limit=200)[0]
    mean = integrate.quad(lambda t: t * post(t), -12, 12, limit=200)[0] / z
    var = integrate.quad(lambda t: (t - mean) ** 2 * post(t), -12, 12, limit=200)[0] / z
    assert est.theta == pytest.approx(mean, abs=1e-6)
    assert est.se == pytest.approx(math.sqrt(var), abs=1e-6)


def test_eap_se_does_not_collapse(bank2: ItemBank) -> None:
    config = EstimatorConfig(method="eap")
    eap = make_estimator(config)
    start = eap.start()
    assert start.theta == pytest.approx(0.0, abs=1e-12) and start.se == pytest.approx(1.0, abs=1e-5)
    item = int(np.argmax(bank2.information(0.0)))
    for answer in (0, 1):
        one = eap.estimate(answered(bank2, [item], [answer], config), bank2)
        # one item of information ~a²/4 cannot shrink a N(0,1) prior's SD much below 0.8
        assert 0.75 < one.se < 1.0
        assert (one.theta > 0) == bool(answer)
    hardest = np.argsort(bank2.b)[::-1][:8].tolist()
    right = eap.estimate(answered(bank2, hardest, [1] * 8, config), bank2)
    wrong = eap.estimate(answered(bank2, hardest, [0] * 8, config), bank2)
    assert 1.0 < right.theta < 4.0 and 0.3 < right.se < 1.0
    assert wrong.theta < 0 and 0.3 < wrong.se < 1.0


def test_map_is_the_posterior_mode_and_se_the_curvature(bank2: ItemBank) -> None:
    rng = np.random.default_rng(1)
    items = rng.choice(len(bank2), 10, replace=False).tolist()
    answers = (rng.random(10) < bank2.probability(-0.5, np.asarray(items))).astype(int).tolist()
    config = EstimatorConfig(method="map", prior_mean=-0.2, prior_sd=0.8)
    est = make_estimator(config).estimate(answered(bank2, items, answers, config), bank2)

    def log_post(t: float) -> float:
        return loglik(bank2, items, answers, t) - 0.5 * ((t + 0.2) / 0.8) ** 2

    best = optimize.minimize_scalar(lambda t: -log_post(t), bounds=(-6, 6), method="bounded",
                                    options={"xatol": 1e-10})
    assert est.theta == pytest.approx(best.x, abs=1e-6)
    # 2PL: observed and Fisher information coincide, so 1/sqrt(info + 1/sd²) = 1/sqrt(-d² log posterior)
    assert est.se == pytest.approx(1 / math.sqrt(-second_derivative(log_post, est.theta)), rel=1e-4)


def test_mle_is_the_likelihood_maximum_and_se_uses_total_information(bank3: ItemBank,
                                                                     pattern: tuple[list[int], list[int]]) -> None:
    items, answers = pattern
    assert 0 < sum(answers) < len(answers)
    config = EstimatorConfig(method="mle", fence_items=False)
    est = make_estimator(config).estimate(answered(bank3, items, answers, config), bank3)
    best = optimize.minimize_scalar(lambda t: -loglik(bank3, items, answers, t), bounds=(-3.5, 3.5),
                                    method="bounded", options={"xatol": 1e-10})
    assert est.theta == pytest.approx(best.x, abs=1e-6)
    h = 1e-5
    idx = np.asarray(items)
    p = bank3.probability(est.theta, idx)
    slope = (bank3.probability(est.theta + h, idx) - bank3.probability(est.theta - h, idx)) / (2 * h)
    assert est.se == pytest.approx(1 / math.sqrt(np.sum(slope ** 2 / (p * (1 - p)))), rel=1e-6)


def test_mle_se_is_observed_curvature_for_2pl(bank2: ItemBank) -> None:
    items = list(range(0, 40, 2))
    answers = [k % 3 != 0 for k in range(20)]
    config = EstimatorConfig(method="mle", fence_items=False)
    est = make_estimator(config).estimate(answered(bank2, items, [int(a) for a in answers], config), bank2)
    curvature = second_derivative(lambda t: loglik(bank2, items, [int(a) for a in answers], t), est.theta)
    assert est.se == pytest.approx(1 / math.sqrt(-curvature), rel=1e-4)


@pytest.mark.parametrize("fences", [(-3.5, 3.5), (-2.0, 2.5)])
def test_mle_fences_on_all_right_and_all_wrong(bank2: ItemBank, fences: tuple[float, float]) -> None:
    items = np.argsort(np.abs(bank2.b))[:6].tolist()
    lo, hi = fences
    truncated = make_estimator(EstimatorConfig(method="mle", fences=fences, fence_items=False))
    mlef = make_estimator(EstimatorConfig(method="mle", fences=fences))
    cfg = truncated.config
    right, wrong = answered(bank2, items, [1] * 6, cfg), answered(bank2, items, [0] * 6, cfg)
    assert truncated.estimate(right, bank2).theta == hi
    assert truncated.estimate(wrong, bank2).theta == lo
    up, down = mlef.estimate(right, bank2), mlef.estimate(wrong, bank2)
    assert 0.5 < up.theta < hi and lo < down.theta < -0.5
    for est in (up, down):
        assert math.isfinite(est.se) and est.se > 0.5
    # the same read off the grid
    right_g = answered(bank2, items, [1] * 6, cfg, derivatives=True)
    wrong_g = answered(bank2, items, [0] * 6, cfg, derivatives=True)
    assert truncated.estimate(right_g, bank2).theta == hi and truncated.estimate(wrong_g, bank2).theta == lo
    assert mlef.estimate(right_g, bank2).theta == pytest.approx(up.theta, abs=1e-5)
    assert mlef.estimate(wrong_g, bank2).theta == pytest.approx(down.theta, abs=1e-5)
    # one item answered: still finite and inside the fences
    one = mlef.estimate(answered(bank2, items[:1], [1], cfg), bank2)
    assert lo < one.theta < hi and math.isfinite(one.se)


def test_mle_before_any_answer_has_infinite_se() -> None:
    est = make_estimator(EstimatorConfig(method="mle")).start()
    assert est.theta == 0.0 and est.se == math.inf


def test_derivatives_match_finite_differences() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.5, 2, 9), rng.normal(0, 1, 9)
    c, d = rng.uniform(0, 0.3, 9), rng.uniform(0.85, 1, 9)
    u = (rng.random(9) < 0.5).astype(float)
    for theta in (-1.3, 0.2, 2.1):
        ll, d1, d2, _ = log_likelihood_derivatives(theta, a, b, c, d, u)
        h = 1e-5

        def f(t: float) -> float:
            return log_likelihood_derivatives(t, a, b, c, d, u)[0]

        assert d1 == pytest.approx((f(theta + h) - f(theta - h)) / (2 * h), rel=1e-6, abs=1e-8)
        assert d2 == pytest.approx(second_derivative(f, theta, 1e-4), rel=1e-4, abs=1e-6)


def test_incremental_grid_equals_recomputation(bank3: ItemBank, pattern: tuple[list[int], list[int]]) -> None:
    items, answers = pattern
    config = EstimatorConfig()
    state = answered(bank3, items, answers, config)
    direct = np.array([loglik(bank3, items, answers, t) for t in config.grid.nodes()])
    np.testing.assert_allclose(state.loglik, direct, rtol=1e-10, atol=1e-10)


def test_bad_estimator_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="fences"):
        EstimatorConfig(fences=(1.0, -1.0))
    with pytest.raises(ValueError):
        EstimatorConfig(prior_sd=0)


@pytest.mark.parametrize("method", ["map", "mle"])
@pytest.mark.parametrize(("derivatives", "tol", "se_tol"), [(False, 1e-6, 1e-6), (True, 2e-5, 1e-4)])
def test_mode_on_many_patterns(bank3: ItemBank, method: str, derivatives: bool, tol: float, se_tol: float) -> None:
    """Exact path: Newton on the likelihood; grid path: Hermite interpolation of the grid's score."""
    rng = np.random.default_rng(8)
    config = EstimatorConfig(method=method, fence_items=False, fences=(-5.0, 5.0))
    estimator = make_estimator(config)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(2, 40))
        items = rng.choice(len(bank3), n, replace=False).tolist()
        answers = (rng.random(n) < bank3.probability(float(rng.normal()), np.asarray(items))).astype(int).tolist()
        if method == "mle" and sum(answers) in (0, n):
            continue
        prior = 0.0 if method == "mle" else 1.0

        def objective(t: float) -> float:
            return -(loglik(bank3, items, answers, t) - prior * 0.5 * t * t)

        best = optimize.minimize_scalar(objective, bounds=(-5, 5), method="bounded", options={"xatol": 1e-11})
        est = estimator.estimate(answered(bank3, items, answers, config, derivatives=derivatives), bank3)
        if objective(est.theta) > objective(best.x) + 1e-8:  # a 3PL likelihood can have two modes
            pytest.fail(f"{method} missed the maximum: {est.theta} vs {best.x}")
        if abs(est.theta - best.x) < 0.05:
            checked += 1
            assert est.theta == pytest.approx(best.x, abs=tol)
            idx = np.asarray(items)
            info = float(np.sum(bank3.information(float(best.x))[idx])) + prior
            assert est.se == pytest.approx(1 / math.sqrt(info), rel=se_tol)
    assert checked >= 40


def test_grid_path_needs_no_exact_likelihood(bank2: ItemBank, monkeypatch: pytest.MonkeyPatch) -> None:
    import knowtrace.cat.estimators as module

    items, answers = list(range(0, 30, 3)), [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    for method in ("map", "mle"):
        config = EstimatorConfig(method=method)
        expected = make_estimator(config.model_copy(update={"exact": True})).estimate(
            answered(bank2, items, answers, config), bank2)
        with monkeypatch.context() as patch:
            patch.setattr(module, "score_and_information", lambda *a, **k: pytest.fail("exact path used"))
            patch.setattr(module, "total_information", lambda *a, **k: pytest.fail("exact path used"))
            got = make_estimator(config).estimate(answered(bank2, items, answers, config, derivatives=True), bank2)
        assert got.theta == pytest.approx(expected.theta, abs=1e-5)
        assert got.se == pytest.approx(expected.se, rel=1e-4)


def test_grid_derivatives_match_the_log_likelihood(bank3: ItemBank) -> None:
    nodes = EstimatorConfig().grid.nodes()
    tables = bank3.grid_tables(nodes, derivatives=True)
    h = 1e-5
    for item in (0, 40, 149):
        for correct, log_row, score, curvature in ((1, tables.log_p, tables.score_p, tables.curvature_p),
                                                   (0, tables.log_q, tables.score_q, tables.curvature_q)):
            def f(t: float) -> float:
                return float(bank3.item_log_likelihood(item, correct, np.array([t]))[0])

            for k in (10, 60, 100):
                t = float(nodes[k])
                assert log_row[item, k] == pytest.approx(f(t), rel=1e-12)
                assert score[item, k] == pytest.approx((f(t + h) - f(t - h)) / (2 * h), rel=1e-5, abs=1e-9)
                assert curvature[item, k] == pytest.approx(second_derivative(f, t), rel=1e-3, abs=1e-6)
            assert np.allclose(bank3.item_grid_derivatives(item, correct, nodes),
                               (score[item], curvature[item], tables.information[item]))
        np.testing.assert_allclose(tables.information[item], [bank3.information(float(t))[item] for t in nodes])
