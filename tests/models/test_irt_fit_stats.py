"""Item fit: S-X² and infit/outfit on fitting and misfitting items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowtrace.models.irt import MMLEstimator, ResponseMatrix, item_fit


@pytest.mark.realdata
def test_lsat_fit_statistics_are_defined(shared_data: Path) -> None:
    lsat = ResponseMatrix.from_csv(shared_data / "lsat" / "LSAT.csv")
    fit = item_fit(lsat, MMLEstimator("2pl").fit(lsat).params, model="2pl")
    assert fit.n_complete == 1000
    assert np.all(fit.sx2_df >= 1) and np.all((fit.sx2_p >= 0) & (fit.sx2_p <= 1))
    assert np.all(fit.infit > 0) and np.all(fit.outfit > 0)
    assert set(fit.by_item()) == set(lsat.item_ids)


def test_s_x2_singles_out_an_item_that_breaks_the_model() -> None:
    rng = np.random.default_rng(31)  # theta ~ N(0, 1), a ~ lognormal(0, 0.25), b ~ N(0, 1)
    n, m = 4000, 25
    theta = rng.normal(size=n)
    a, b = rng.lognormal(0, 0.25, m), rng.normal(size=m)
    x = (rng.random((n, m)) < 1 / (1 + np.exp(-a * (theta[:, None] - b)))).astype(float)
    # item 0: right mostly in a middle band of ability, a shape no logistic curve has
    x[:, 0] = rng.random(n) < np.where(np.abs(theta) < 0.7, 0.9, 0.2)
    data = ResponseMatrix.from_array(x)
    fit = item_fit(data, MMLEstimator("2pl").fit(data).params, model="2pl")
    assert fit.sx2_p[0] < 1e-6
    assert np.median(fit.sx2_p[1:]) > 0.1


def test_s_x2_is_undefined_without_complete_answer_patterns() -> None:
    rng = np.random.default_rng(32)
    x = (rng.random((300, 6)) < 0.6).astype(float)
    x[np.arange(300), rng.integers(0, 6, 300)] = np.nan  # every learner skips one item
    data = ResponseMatrix.from_array(x)
    fit = item_fit(data, MMLEstimator("1pl").fit(data).params, model="1pl")
    assert fit.n_complete == 0 and np.isnan(fit.sx2).all() and np.all(fit.sx2_df == 0)
    assert all(row["sx2"] is None for row in fit.by_item().values())
    assert np.isfinite(fit.infit).all() and np.isfinite(fit.outfit_p).all()
