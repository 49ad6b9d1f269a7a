"""MML calibration (Bock–Aitkin EM): the LSAT reference values, parameter recovery, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models.irt import LogNormalPrior, MMLEstimator, NormalPrior, ResponseMatrix

# R ltm 1.2-0, ltm(LSAT ~ z1, IRT.param = TRUE): 21 Gauss-Hermite points, BFGS (published summary output)
LTM_B = [-3.3597, -1.3696, -0.2799, -1.8659, -3.1236]
LTM_A = [0.8254, 0.7229, 0.8905, 0.6886, 0.6575]
LTM_SE_B = [0.8669, 0.3073, 0.0997, 0.4341, 0.8700]
LTM_SE_A = [0.2581, 0.1867, 0.2326, 0.1852, 0.2100]
LTM_LOGLIK = -2466.653


def simulate(n: int, m: int, seed: int, *, guessing: bool = False,
             missing: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """theta ~ N(0, 1), a ~ lognormal(0, 0.25), b ~ N(0, 1), c ~ U(0.1, 0.3) when guessing (else 0);
    a ``missing`` share of cells set to NaN. Returns (responses, a, b, c)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a, b = rng.lognormal(0.0, 0.25, m), rng.normal(size=m)
    c = rng.uniform(0.1, 0.3, m) if guessing else np.zeros(m)
    p = c + (1 - c) / (1 + np.exp(-a * (theta[:, None] - b)))
    x = (rng.random((n, m)) < p).astype(np.float64)
    x[rng.random((n, m)) < missing] = np.nan
    return x, a, b, c


@pytest.fixture(scope="module")
def lsat(shared_data: Path) -> ResponseMatrix:
    return ResponseMatrix.from_csv(shared_data / "lsat" / "LSAT.csv")


@pytest.mark.realdata
@pytest.mark.parametrize(("kind", "points"), [("gauss-hermite", 21), ("uniform", 61)])
def test_lsat_2pl_matches_ltm(lsat: ResponseMatrix, kind: str, points: int) -> None:
    fit = MMLEstimator("2pl", n_quadrature=points, quadrature_kind=kind, tol=1e-6).fit(lsat)
    assert fit.converged and fit.n_learners == 1000 and fit.excluded_items == []
    np.testing.assert_allclose(fit.params.b, LTM_B, atol=0.02)
    np.testing.assert_allclose(fit.params.a, LTM_A, atol=0.02)
    assert fit.loglik == pytest.approx(LTM_LOGLIK, abs=0.02)
    np.testing.assert_allclose(fit.se_b, LTM_SE_B, atol=0.005)
    np.testing.assert_allclose(fit.se_a, LTM_SE_A, atol=0.005)


@pytest.mark.realdata
def test_lsat_nested_models_order_their_likelihoods(lsat: ResponseMatrix) -> None:
    fits = {m: MMLEstimator(m, tol=1e-6).fit(lsat) for m in ("rasch", "1pl", "2pl")}
    assert fits["rasch"].loglik < fits["1pl"].loglik < fits["2pl"].loglik
    assert np.all(fits["rasch"].params.a == 1.0) and np.all(np.isnan(fits["rasch"].se_a))
    common = fits["1pl"].params.a
    assert np.ptp(common) == 0 and common[0] != 1.0 and np.isfinite(fits["1pl"].se_a).all()
    assert np.all(fits["2pl"].params.c == 0) and np.all(np.isnan(fits["2pl"].se_c))


def test_2pl_recovers_simulated_parameters_with_sensible_standard_errors() -> None:
    x, a, b, _ = simulate(3000, 30, seed=11)
    fit = MMLEstimator("2pl").fit(ResponseMatrix.from_array(x))
    assert fit.converged
    for estimate, truth, se in ((fit.params.a, a, fit.se_a), (fit.params.b, b, fit.se_b)):
        rmse = np.sqrt(np.mean((estimate - truth) ** 2))
        assert rmse < 0.1
        assert 0.6 < rmse / np.sqrt(np.mean(se ** 2)) < 1.6  # errors as large as the SEs say


def test_3pl_recovers_simulated_parameters() -> None:
    x, a, b, c = simulate(6000, 30, seed=12, guessing=True)
    fit = MMLEstimator("3pl").fit(ResponseMatrix.from_array(x))
    assert np.corrcoef(fit.params.a, a)[0, 1] > 0.85
    assert np.sqrt(np.mean((fit.params.b - b) ** 2)) < 0.3
    assert np.mean(np.abs(fit.params.c - c)) < 0.08
    assert np.isfinite(fit.se_c).all() and np.all(fit.se_c > 0)


@pytest.mark.parametrize("model", ["1pl", "2pl", "3pl"])
def test_louis_block_standard_errors_agree_with_the_full_information(model: str) -> None:
    x, *_ = simulate(1500, 20, seed=13, missing=0.2, guessing=model == "3pl")
    data = ResponseMatrix.from_array(x)
    full = MMLEstimator(model, full_se_max_params=1000).fit(data)
    block = MMLEstimator(model, full_se_max_params=0).fit(data)
    assert "central differences" in full.se_method and "Louis" in block.se_method
    # the per-item blocks leave out cross-item covariances: close, not equal
    for name in ("se_a", "se_b", "se_c"):
        np.testing.assert_allclose(getattr(block, name), getattr(full, name), rtol=0.15, err_msg=name)


def test_dense_and_sparse_storage_give_the_same_fit() -> None:
    x, *_ = simulate(1500, 40, seed=14, missing=0.85)
    sparse = ResponseMatrix.from_array(x)
    assert not sparse.is_dense
    dense = ResponseMatrix(sparse.learner_ids, sparse.item_ids, values=sparse.to_dense())
    one, two = MMLEstimator("2pl").fit(sparse), MMLEstimator("2pl").fit(dense)
    np.testing.assert_allclose(one.params.b, two.params.b, atol=1e-8)
    np.testing.assert_allclose(one.se_a, two.se_a, rtol=1e-6)
    assert one.loglik == pytest.approx(two.loglik, abs=1e-6)
    by_block = [MMLEstimator("2pl", full_se_max_params=0).fit(data) for data in (sparse, dense)]
    np.testing.assert_allclose(by_block[0].se_b, by_block[1].se_b, rtol=1e-6)
    np.testing.assert_allclose(by_block[0].se_a, by_block[1].se_a, rtol=1e-6)


def test_items_without_variance_are_excluded_and_reported() -> None:
    x, *_ = simulate(400, 6, seed=15)
    x = np.column_stack([x, np.ones(400), np.zeros(400), np.full(400, np.nan)])
    data = ResponseMatrix.from_array(x, item_ids=[f"q{k}" for k in range(9)])
    fit = MMLEstimator("2pl").fit(data)
    reasons = {e.item_id: e.reason for e in fit.excluded_items}
    assert reasons == {"q6": "every answer is correct", "q7": "every answer is wrong", "q8": "no answers"}
    assert list(fit.item_ids) == [f"q{k}" for k in range(6)]
    for values in (fit.params.a, fit.params.b, fit.se_a, fit.se_b):
        assert np.isfinite(values).all()
    assert {e["item_id"] for e in fit.to_dict()["excluded_items"]} == {"q6", "q7", "q8"}


def test_learners_with_one_answer_or_none_are_handled() -> None:
    x, *_ = simulate(500, 8, seed=16)
    x[0, 1:] = np.nan  # one answer
    x[1, :] = np.nan  # none
    fit = MMLEstimator("2pl").fit(ResponseMatrix.from_array(x))
    assert fit.n_learners == 499 and fit.excluded_learners == 1
    assert np.isfinite(fit.params.b).all()


def test_non_binary_value_names_the_item() -> None:
    with pytest.raises(InputError) as caught:
        ResponseMatrix.from_array([[0, 1, 2], [1, 0, 1]], item_ids=["x", "y", "z"])
    assert caught.value.field == "z"


def test_non_binary_csv_cell_names_item_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("i1,i2\n0,1\n1,yes\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        ResponseMatrix.from_csv(path)
    assert caught.value.field == "i2" and caught.value.line == 3


def test_csv_missing_cells_and_learner_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("who,i1,i2\nann,1,\nbob,NA,0\n", encoding="utf-8")
    data = ResponseMatrix.from_csv(path, learner_column="who")
    assert list(data.learner_ids) == ["ann", "bob"] and list(data.item_ids) == ["i1", "i2"]
    np.testing.assert_array_equal(np.isnan(data.to_dense()), [[False, True], [True, False]])


def test_nan_only_matrix_and_nothing_to_calibrate_are_input_errors() -> None:
    with pytest.raises(InputError, match="no answers"):
        ResponseMatrix.from_array(np.full((3, 2), np.nan))
    with pytest.raises(InputError, match="nothing to calibrate"):
        MMLEstimator("2pl").fit(ResponseMatrix.from_array([[1, 0], [1, 0], [1, np.nan]]))


def test_priors_keep_an_item_with_two_answers_determined() -> None:
    x, *_ = simulate(300, 10, seed=17)
    item = np.full(300, np.nan)
    item[:2] = [0, 1]  # two answers: its parameters are barely determined
    data = ResponseMatrix.from_array(np.column_stack([x, item]))
    bare = MMLEstimator("2pl").fit(data)
    shrunk = MMLEstimator("2pl", prior_b=NormalPrior(0.0, 2.0), prior_a=LogNormalPrior(0.0, 0.5)).fit(data)
    assert np.isfinite(bare.params.a).all() and np.isfinite(bare.params.b).all()
    assert bare.flags()[-1] is not None and bare.to_dict()["items"][-1]["flag"] == bare.flags()[-1]
    assert shrunk.flags()[-1] is None and 0 < shrunk.params.a[-1] < 5 and abs(shrunk.params.b[-1]) < 6


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown IRT model"):
        MMLEstimator("5pl")
    with pytest.raises(InputError):
        MMLEstimator("2pl", n_quadrature=2)
    with pytest.raises(InputError):
        MMLEstimator("2pl", quadrature_kind="simpson")
