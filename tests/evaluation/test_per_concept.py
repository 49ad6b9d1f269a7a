"""Per-concept metrics: exact on a hand-made example; a multi-concept answer counts in each concept."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation.per_concept import concept_rows, mean_per_concept, per_concept_metrics
from knowtrace.exceptions import InputError

CONCEPTS = [["a"], ["a", "b"], ["b"], ["b"], []]
Y = [1, 0, 1, 0, 1]
P = [0.9, 0.3, 0.6, 0.7, 0.2]


def test_hand_computed_breakdown() -> None:
    table = pa.table({"concept_ids": pa.array(CONCEPTS, pa.list_(pa.string()))})
    a, b = per_concept_metrics(table, Y, P)
    # a: rows 0 and 1 -> y [1, 0], p [.9, .3]
    assert (a["concept_id"], a["n"], a["correct_rate"]) == ("a", 2, 0.5)
    assert a["auc"] == 1.0 and a["acc"] == 1.0
    assert a["rmse"] == pytest.approx(math.sqrt((0.01 + 0.09) / 2))
    assert a["logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.7)) / 2)
    assert a["ece"] == pytest.approx((0.1 + 0.3) / 2)
    # b: rows 1, 2, 3 -> y [0, 1, 0], p [.3, .6, .7]; the two-concept row 1 counts in a and in b
    assert (b["concept_id"], b["n"]) == ("b", 3) and b["correct_rate"] == pytest.approx(1 / 3)
    assert b["auc"] == pytest.approx(0.5)  # .6 beats .3, loses to .7
    assert b["acc"] == pytest.approx(2 / 3)
    assert b["rmse"] == pytest.approx(math.sqrt((0.09 + 0.16 + 0.49) / 3))
    assert b["logloss"] == pytest.approx(-(math.log(0.7) + math.log(0.6) + math.log(0.3)) / 3)
    assert b["ece"] == pytest.approx((0.3 + 0.4 + 0.7) / 3)


def test_pairs_are_distinct_and_untagged_rows_left_out() -> None:
    table = pa.table({"concept_ids": pa.array([["x", "x", "y"], None, [], ["y"]], pa.list_(pa.string()))})
    rows, concepts = concept_rows(table)
    assert rows.tolist() == [0, 0, 3] and concepts.tolist() == ["x", "y", "y"]
    assert concept_rows(pa.table({"item_id": ["q"]}))[0].size == 0
    assert per_concept_metrics(pa.table({"item_id": ["q", "r"]}), [1, 0], [0.5, 0.5]) == []


def test_single_class_concept_and_natural_order() -> None:
    table = pa.table({"concept_ids": pa.array([["10"], ["2"], ["2"]], pa.list_(pa.string()))})
    rows = per_concept_metrics(table, [1, 1, 0], [0.8, 0.4, 0.3])
    assert [r["concept_id"] for r in rows] == ["2", "10"]
    assert math.isnan(rows[1]["auc"]) and rows[1]["acc"] == 1.0
    with pytest.raises(InputError, match="3 answers but 2 outcomes"):
        per_concept_metrics(table, [1, 0], [0.5, 0.5])


def test_mean_over_folds_skips_undefined_values() -> None:
    fold1 = [{"concept_id": "a", "n": 4, "correct_rate": 0.5, "auc": 0.6, "acc": 0.5, "rmse": 0.4,
              "logloss": 0.7, "ece": 0.1}]
    fold2 = [{**fold1[0], "auc": float("nan"), "acc": 0.7}]
    [row] = mean_per_concept([fold1, fold2])
    assert row["auc"] == pytest.approx(0.6) and row["acc"] == pytest.approx(0.6) and row["n"] == 4
    [nan_row] = mean_per_concept([fold2])
    assert np.isnan(nan_row["auc"])
