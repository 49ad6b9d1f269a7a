"""KTM feature construction on hand-written histories: exact values, no leakage, prerequisites, time."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.events.event import InteractionEvent
from knowtrace.exceptions import InputError
from knowtrace.lake.frames import events_to_table
from knowtrace.models.data import Interactions
from knowtrace.models.ktm.features import FeatureSpace, Prior, design_matrix, earlier_counts, parse_features
from knowtrace.models.ktm.history import LearnerHistory

ANSWERS = [
    ("ada", "q1", ("c1",), 0),
    ("ada", "q2", ("c2",), 1),
    ("ada", "q1", ("c1",), 0),
    ("ada", "q3", ("c1", "c2"), 1),
    ("ada", "q3", ("c1", "c2"), 0),
    ("bo", "q2", ("c2",), 1),
    ("bo", "q3", ("c1", "c2"), 1),
]


def rows_as_dicts(space: FeatureSpace, x) -> list[dict[str, float]]:
    names = space.column_names()
    dense = x.toarray()
    return [{names[j]: float(dense[r, j]) for j in np.flatnonzero(dense[r])} for r in range(dense.shape[0])]


def test_exact_counts_per_row(make_table) -> None:
    view = Interactions.from_table(make_table(ANSWERS))
    space = FeatureSpace.from_view("uiswfaWFArx", view, count_scale="raw")
    got = rows_as_dicts(space, design_matrix(space, view))
    assert got == [
        {"u:ada": 1, "i:q1": 1, "s:c1": 1},
        {"u:ada": 1, "i:q2": 1, "s:c2": 1, "x": 1},
        {"u:ada": 1, "i:q1": 1, "s:c1": 1, "f:c1": 1, "a:c1": 1, "F:q1": 1, "A:q1": 1, "r": 1, "x": 1},
        {"u:ada": 1, "i:q3": 1, "s:c1": 1, "s:c2": 1, "f:c1": 2, "a:c1": 2, "w:c2": 1, "a:c2": 1, "r": 1, "x": 2},
        {"u:ada": 1, "i:q3": 1, "s:c1": 1, "s:c2": 1, "w:c1": 1, "f:c1": 2, "a:c1": 3, "w:c2": 2, "a:c2": 2,
         "W:q3": 1, "A:q3": 1, "r": 2, "x": 2},
        {"u:bo": 1, "i:q2": 1, "s:c2": 1},
        {"u:bo": 1, "i:q3": 1, "s:c1": 1, "s:c2": 1, "w:c2": 1, "a:c2": 1, "r": 1},
    ]


def test_log_scale_and_column_order(make_table) -> None:
    view = Interactions.from_table(make_table(ANSWERS))
    space = FeatureSpace.from_view("wis", view)
    assert space.column_names()[:2] == ["w:c1", "w:c2"] and space.offsets == {"w": 0, "i": 2, "s": 5}
    row = rows_as_dicts(space, design_matrix(space, view))[4]
    assert row == {"w:c1": pytest.approx(math.log(2)), "w:c2": pytest.approx(math.log(3)), "i:q3": 1, "s:c1": 1,
                   "s:c2": 1}


def test_row_features_use_earlier_rows_only(make_table) -> None:
    table = make_table(ANSWERS)
    view = Interactions.from_table(table)
    space = FeatureSpace.from_view("iswfWFrx", view)
    base = design_matrix(space, view).toarray()
    for flipped_row in range(len(ANSWERS)):
        answers = list(ANSWERS)
        learner, item, concepts, correct = answers[flipped_row]
        answers[flipped_row] = (learner, item, concepts, 1 - correct)
        other = design_matrix(space, Interactions.from_table(make_table(answers))).toarray()
        same_learner_later = [r for r in range(len(ANSWERS)) if r > flipped_row and ANSWERS[r][0] == learner]
        unchanged = [r for r in range(len(ANSWERS)) if r not in same_learner_later]
        np.testing.assert_array_equal(other[unchanged], base[unchanged])
        if same_learner_later:  # and the outcome does count for the learner's later rows
            assert not np.array_equal(other[same_learner_later], base[same_learner_later])


def test_unknown_learners_items_and_concepts_have_no_columns(make_table) -> None:
    space = FeatureSpace.from_view("uiswf", Interactions.from_table(make_table(ANSWERS)))
    view = Interactions.from_table(make_table([("cy", "q9", ("c9",), 1), ("cy", "q1", ("c1", "c9"), 1),
                                               ("cy", "q1", ("c1",), 1)]))
    assert rows_as_dicts(space, design_matrix(space, view)) == [
        {}, {"i:q1": 1, "s:c1": 1}, {"i:q1": 1, "s:c1": 1, "w:c1": pytest.approx(math.log(2))}]


def test_prior_continues_the_learners_history(make_table) -> None:
    full = Interactions.from_table(make_table(ANSWERS))
    space = FeatureSpace.from_view("uiswfaWFAprx", full)
    first, rest = [a for a in ANSWERS[:3]], [a for a in ANSWERS[3:]]
    history = LearnerHistory.from_view(space, Interactions.from_table(make_table(first)))
    rest_view = Interactions.from_table(make_table(rest))
    continued = design_matrix(space, rest_view, history.prior(rest_view.learner_ids)).toarray()
    np.testing.assert_array_equal(continued, design_matrix(space, full).toarray()[3:])
    history.learn("ada", "q3", ("c1", "c2"), 1)
    history.learn("ada", "q3", ("c2", "c1", "c2"), 0)  # a concept listed twice counts once
    one = Interactions.from_table(make_table([("ada", "q3", ("c1", "c2"), 1)]))
    assert rows_as_dicts(space, design_matrix(space, one, history.prior(one.learner_ids)))[0] == rows_as_dicts(
        space, design_matrix(space, Interactions.from_table(make_table([*ANSWERS[:5], ANSWERS[3]]))))[5]


def test_prerequisites_one_and_two_levels_back(make_table) -> None:
    graph = ConceptGraph.from_edges([("c3", "c2"), ("c2", "c1"), ("c3", "c0")])
    answers = [("ada", "a", ("c1",), 1), ("ada", "a", ("c1",), 0), ("ada", "b", ("c2",), 1),
               ("ada", "z", ("c0",), 0), ("ada", "c", ("c3",), 1), ("ada", "b", ("c2",), 1)]
    view = Interactions.from_table(make_table(answers), graph=graph)
    space = FeatureSpace.from_view("sp", view, count_scale="raw")
    rows = rows_as_dicts(space, design_matrix(space, view))
    assert rows[4] == {"s:c3": 1, "p1w:c2": 1, "p1f:c0": 1, "p2w:c1": 1, "p2f:c1": 1}
    assert rows[5] == {"s:c2": 1, "p1w:c1": 1, "p1f:c1": 1}  # c1 is c2's direct prerequisite
    assert rows[0] == {"s:c1": 1}
    assert rows[2] == {"s:c2": 1, "p1w:c1": 1, "p1f:c1": 1}
    assert space.block_size("p") == 4 * 4
    no_graph = FeatureSpace.from_view("sp", Interactions.from_table(make_table(answers)))
    assert no_graph.block_size("p") == 0 and no_graph.n_features == 4


def at(seconds: float) -> datetime:
    return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def test_elapsed_and_time_since_previous_answer() -> None:
    events = [
        InteractionEvent(learner_id="ada", item_id="q1", correct=1, timestamp=at(0), elapsed_ms=3000),
        InteractionEvent(learner_id="ada", item_id="q2", correct=0, timestamp=at(10), elapsed_ms=None),
        InteractionEvent(learner_id="ada", item_id="q1", correct=1, timestamp=at(10 + 2**30), elapsed_ms=500),
        InteractionEvent(learner_id="ada", item_id="q2", correct=1, seq=7),
    ]
    table = events_to_table(events)
    view = Interactions.from_table(table)
    assert view.timestamp_s is not None and np.isnan(view.timestamp_s[0])  # no clock: ordered first
    assert view.elapsed_ms.tolist()[1:3] == [3000.0, pytest.approx(np.nan, nan_ok=True)]
    space = FeatureSpace.from_view("et", view)
    assert rows_as_dicts(space, design_matrix(space, view)) == [
        {}, {}, {"e": pytest.approx(math.log1p(3.0)), "t:3": 1}, {"t:24": 1}]
    # a learner's first row uses the prior's last answer
    prior = dataclasses.replace(Prior.empty(1), last_time=np.array([at(0).timestamp() - 1.5]),
                                last_elapsed_ms=np.array([999.0]))
    first = Interactions.from_table(table.slice(1, 1))
    assert rows_as_dicts(space, design_matrix(space, first, prior)) == [{"e": pytest.approx(math.log1p(0.999)),
                                                                          "t:1": 1}]


def test_timestamp_and_elapsed_columns_are_optional() -> None:
    table = pa.table({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": [1, 0]})
    view = Interactions.from_table(table)
    assert view.timestamp_s is None and view.elapsed_ms is None
    space = FeatureSpace.from_view("iet", view)
    assert rows_as_dicts(space, design_matrix(space, view)) == [{"i:x": 1}, {"i:y": 1}]
    with pytest.raises(InputError) as err:
        Interactions.from_table(table.append_column("elapsed_ms", pa.array(["slow", "fast"])))
    assert err.value.field == "elapsed_ms"


def test_earlier_counts_weights_and_prior_step() -> None:
    right, wrong = earlier_counts(np.array([5, 5, 5, 9, 5]), np.array([0, 2, -1, 0, 3]),
                                  np.array([1.0, 0.0, 4.0, 1.0, 1.0]), np.array([0.0, 1.0, 2.0, 0.0, 0.0]),
                                  np.array([5, 5, 5, 9, 7]), np.array([0, 3, 9, 0, 1]))
    assert right.tolist() == [4.0, 5.0, 6.0, 0.0, 0.0] and wrong.tolist() == [2.0, 3.0, 3.0, 0.0, 0.0]


@pytest.mark.parametrize("letters", ["", "iz", "uiu", 3])
def test_bad_feature_sets_are_refused(letters) -> None:
    with pytest.raises(InputError) as err:
        parse_features(letters)
    assert err.value.field == "features"
