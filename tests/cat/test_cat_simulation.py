"""Simulation: determinism, precision rising with length, the reported metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from knowtrace.cat import (
    CatConfig,
    EstimatorConfig,
    ItemBank,
    SelectorConfig,
    overlap_rate,
    parse_exposure,
    parse_stop,
    simulate,
    simulees,
)
from knowtrace.exceptions import InputError


def test_same_seed_same_result(bank2: ItemBank) -> None:
    config = CatConfig(selector=SelectorConfig(name="kl"), exposure=parse_exposure("randomesque:5"),
                       stopping=parse_stop("se:0.35,max:20"))
    thetas = simulees(40, seed=1)
    one, two = simulate(bank2, config, thetas, seed=9), simulate(bank2, config, thetas, seed=9)
    assert np.array_equal(one.estimates, two.estimates) and np.array_equal(one.lengths, two.lengths)
    assert all(np.array_equal(x, y) for x, y in zip(one.administered, two.administered))
    other = simulate(bank2, config, thetas, seed=10)
    assert not np.array_equal(one.estimates, other.estimates)


@pytest.mark.parametrize("method", ["eap", "mle"])
def test_rmse_falls_with_test_length(bank2: ItemBank, method: str) -> None:
    thetas = simulees(300, seed=3)
    rmse = []
    for length in (3, 10, 30):
        config = CatConfig(estimator=EstimatorConfig(method=method), stopping=parse_stop(f"max:{length}"))
        rmse.append(simulate(bank2, config, thetas, seed=4).metrics()["rmse"])
    assert rmse[0] > rmse[1] > rmse[2]
    assert 0.2 < rmse[2] < 0.45


def test_metrics_report(bank2: ItemBank) -> None:
    config = CatConfig(exposure=parse_exposure("randomesque:5"), stopping=parse_stop("max:10"))
    thetas = simulees(50, seed=5)
    result = simulate(bank2, config, thetas, seed=6)
    m = result.metrics()
    for key in ("rmse", "bias", "mean_length", "conditional", "max_exposure", "mean_exposure", "overlap",
                "select_ms", "estimate_ms"):
        assert key in m
    err = result.estimates - thetas
    assert m["rmse"] == pytest.approx(float(np.sqrt(np.mean(err ** 2))))
    assert m["bias"] == pytest.approx(float(err.mean()))
    assert m["mean_length"] == 10
    assert sum(band["n"] for band in m["conditional"]) == 50
    assert m["mean_exposure"] == pytest.approx(10 / len(bank2))
    assert m["max_exposure"] == result.administered_counts.max() / 50
    # overlap: the mean share of common items over all pairs of simulees
    pairs = [len(set(x) & set(y)) / 10 for x, y in itertools.combinations(map(list, result.administered), 2)]
    assert m["overlap"] == pytest.approx(np.mean(pairs))
    assert overlap_rate(result.administered_counts, 1, 10) == 0.0
    assert m["select_ms"] > 0 and m["estimate_ms"] > 0


def test_bad_simulees() -> None:
    with pytest.raises(InputError):
        simulees(0)
    with pytest.raises(InputError):
        simulate(ItemBank.generate(10), CatConfig(), [0.0, float("nan")])
