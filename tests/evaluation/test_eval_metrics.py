"""Metrics against hand-computed values and the Mann-Whitney definition of AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from knowtrace.evaluation import (
    accuracy,
    auc,
    expected_calibration_error,
    log_loss,
    reliability,
    rmse,
    roc_curve,
    score_all,
)
from knowtrace.exceptions import InputError

Y = [1, 0, 1, 1, 0]
P = [0.9, 0.3, 0.5, 0.4, 0.5]


def test_hand_computed_values() -> None:
    # pairs (pos, neg): (.9,.3) (.9,.5) (.5,.3) (.5,.5)=tie (.4,.3) (.4,.5) -> 4 wins + 1 tie of 6
    assert auc(Y, P) == pytest.approx(4.5 / 6)
    assert accuracy(Y, P) == pytest.approx(3 / 5)  # 0.5 counts as predicting correct
    assert rmse(Y, P) == pytest.approx(math.sqrt((0.01 + 0.09 + 0.25 + 0.36 + 0.25) / 5))
    expected = -(math.log(0.9) + math.log(0.7) + math.log(0.5) + math.log(0.4) + math.log(0.5)) / 5
    assert log_loss(Y, P) == pytest.approx(expected)
    # bins: [0.3,0.4) {.3}, [0.4,0.5) {.4}, [0.5,0.6) {.5,.5}, [0.9,1] {.9}
    ece = (abs(0 - 0.3) + abs(1 - 0.4) + abs(1 - 1.0) + abs(1 - 0.9)) / 5
    assert expected_calibration_error(Y, P) == pytest.approx(ece)
    assert set(score_all(Y, P)) == {"auc", "acc", "rmse", "logloss", "ece"}


def test_edges() -> None:
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-15), rel=1e-4)  # clipped, not inf
    assert math.isnan(auc([1, 1], [0.2, 0.7]))
    assert expected_calibration_error([1], [1.0]) == 0.0
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    for y, p in (([1, 0], [0.5]), ([], []), ([2], [0.5]), ([1], [1.5]), ([1], [float("nan")])):
        with pytest.raises(InputError):
            auc(y, p)


def test_auc_equals_mann_whitney_on_random_data() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):
        y = rng.integers(0, 2, 300)
        p = np.round(rng.random(300), 1)  # many ties
        pos, neg = p[y == 1], p[y == 0]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert auc(y, p) == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)


def test_reliability_bins_and_roc_points() -> None:
    count, observed, predicted = reliability(Y, P, bins=10)
    assert count.tolist() == [0, 0, 0, 1, 1, 2, 0, 0, 0, 1]
    assert observed[5] == 0.5 and predicted[3] == pytest.approx(0.3) and np.isnan(observed[0])
    fpr, tpr = roc_curve(Y, P)
    # thresholds .9, .5 (one right, one wrong), .4, .3
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(Y, P))
    with pytest.raises(InputError, match="both correct and wrong"):
        roc_curve([1, 1], [0.2, 0.4])
