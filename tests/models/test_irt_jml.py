"""The joint (variational) estimator in PyTorch: recovery, determinism, agreement with MML."""

from __future__ import annotations

import numpy as np
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models.irt import JMLEstimator, MMLEstimator, ResponseMatrix


def simulate(n: int, m: int, seed: int, missing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta ~ N(0, 1), a ~ lognormal(0, 0.25), b ~ N(0, 1), 2PL answers; a ``missing`` share of cells NaN."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a, b = rng.lognormal(0.0, 0.25, m), rng.normal(size=m)
    x = (rng.random((n, m)) < 1 / (1 + np.exp(-a * (theta[:, None] - b)))).astype(np.float64)
    x[rng.random((n, m)) < missing] = np.nan
    return x, a, b


@pytest.mark.slow
def test_jml_recovers_simulated_2pl_parameters() -> None:
    x, a, b = simulate(3000, 40, seed=41, missing=0.5)
    fit = JMLEstimator("2pl").fit(ResponseMatrix.from_array(x))
    assert fit.converged and fit.estimator == "jml"
    assert np.corrcoef(fit.params.a, a)[0, 1] > 0.9
    assert np.corrcoef(fit.params.b, b)[0, 1] > 0.9
    assert np.sqrt(np.mean((fit.params.b - b) ** 2)) < 0.15
    assert np.isfinite(fit.se_a).all() and np.isfinite(fit.loglik) and "elbo" in fit.extra


def test_jml_on_sparse_logs_is_deterministic_and_close_to_mml() -> None:
    x, _, _ = simulate(2500, 40, seed=43, missing=0.8)  # about 8 answers per learner, stored sparsely
    data = ResponseMatrix.from_array(x)
    assert not data.is_dense
    one = JMLEstimator("2pl", standard_errors=False).fit(data)
    two = JMLEstimator("2pl", standard_errors=False).fit(data)
    np.testing.assert_array_equal(one.params.a, two.params.a)
    np.testing.assert_array_equal(one.params.b, two.params.b)
    mml = MMLEstimator("2pl", standard_errors=False).fit(data)
    assert one.loglik <= mml.loglik + 1e-6  # MML maximises the marginal likelihood
    assert one.loglik > mml.loglik - 0.001 * abs(mml.loglik)
    assert np.corrcoef(one.params.a, mml.params.a)[0, 1] > 0.95
    np.testing.assert_allclose(one.params.b, mml.params.b, atol=0.15)


def test_jml_other_models_and_bad_options() -> None:
    x, _, b = simulate(800, 15, seed=42, missing=0.3)
    data = ResponseMatrix.from_array(x)
    rasch = JMLEstimator("rasch", standard_errors=False).fit(data)
    assert np.all(rasch.params.a == 1.0) and np.corrcoef(rasch.params.b, b)[0, 1] > 0.9
    one = JMLEstimator("1pl", standard_errors=False).fit(data)
    assert np.ptp(one.params.a) == 0 and one.params.a[0] > 0
    with pytest.raises(InputError):
        JMLEstimator("2pl", n_nodes=1)
    with pytest.raises(InputError, match="nothing to calibrate"):
        JMLEstimator("2pl").fit(ResponseMatrix.from_array([[1, 1], [1, 1]]))
