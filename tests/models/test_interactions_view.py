"""The integer-coded interactions view shared by the models."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models.data import Interactions, as_table, fingerprint, lookup, pack_lists, unpack_lists

ANSWERS = [
    ("bo", "q2", ("c1", "c2"), 1),
    ("ada", "q1", ("c1",), 0),
    ("bo", "q1", ("c1",), 0),
    ("ada", "q3", (), 1),
    ("ada", "q2", ("c2", "c1"), 1),
]


def test_codes_order_and_concepts(make_table) -> None:
    table = make_table(ANSWERS)
    shuffled = table.take([4, 0, 2, 3, 1])
    view = Interactions.from_table(shuffled)
    assert view.learner_ids.tolist() == ["ada", "bo"]
    assert view.item_ids.tolist() == ["q1", "q2", "q3"]
    assert view.concept_ids.tolist() == ["c1", "c2"]
    assert view.learner.tolist() == [0, 0, 0, 1, 1]
    assert view.item_ids[view.item].tolist() == ["q1", "q3", "q2", "q2", "q1"]
    assert view.correct.dtype == np.int8 and view.correct.tolist() == [0, 1, 1, 1, 0]
    assert view.concept_ptr.tolist() == [0, 1, 1, 3, 5, 6]
    assert view.concept_ids[view.concept_index].tolist() == ["c1", "c2", "c1", "c1", "c2", "c1"]
    assert view.starts.tolist() == [0, 3, 5] and view.step.tolist() == [0, 1, 2, 0, 1]
    assert view.row_concepts().tolist() == [0, 2, 2, 3, 3, 4]
    # back to the rows of the shuffled input
    rows = view.to_input_order(np.arange(view.n))
    assert shuffled.column("item_id").to_pylist() == view.item_ids[view.item[rows]].tolist()
    assert view.item_concepts() == {"q1": ("c1",), "q2": ("c2", "c1")}


def test_without_position_uses_seq_then_input_order(make_table) -> None:
    table = make_table(ANSWERS).drop_columns(["position"]).take([4, 0, 2, 3, 1])
    assert Interactions.from_table(table).correct.tolist() == [0, 1, 1, 1, 0]
    table = table.drop_columns(["seq"])
    view = Interactions.from_table(table)  # ada's rows in input order: q1, q2, q3
    assert view.item_ids[view.item].tolist() == ["q1", "q2", "q3", "q1", "q2"]


def test_empty_and_minimal_tables(make_table) -> None:
    empty = make_table([]).slice(0, 0)
    view = Interactions.from_table(empty)
    assert view.n == 0 and view.concept_ptr.tolist() == [0]
    minimal = pa.table({"learner_id": ["a", "a"], "item_id": ["x", "y"], "correct": pa.array([1, 0], pa.int8())})
    view = Interactions.from_table(minimal)
    assert view.concept_ptr.tolist() == [0, 0, 0] and view.correct.tolist() == [1, 0]


def test_bad_tables_are_refused(make_table) -> None:
    with pytest.raises(InputError, match="learner_id"):
        Interactions.from_table(pa.table({"item_id": ["x"], "correct": [1]}))
    two_tenants = make_table(ANSWERS[:2])
    two_tenants = two_tenants.set_column(1, "tenant", pa.array(["a", "b"]))
    with pytest.raises(InputError, match="tenant"):
        Interactions.from_table(two_tenants)
    with pytest.raises(InputError):
        as_table([1, 2, 3])


def test_as_table_reads_arrow_streams(make_table) -> None:
    import duckdb

    table = make_table(ANSWERS)
    relation = duckdb.connect().from_arrow(table)
    columns = ["event_id", "learner_id", "concept_ids", "correct", "position"]
    assert as_table(relation).select(columns).to_pylist() == table.select(columns).to_pylist()
    assert as_table(pa.RecordBatchReader.from_batches(table.schema, table.to_batches())).equals(table)


def test_lookup_and_packing() -> None:
    vocabulary = np.array(["a", "c", "e"])
    assert lookup(vocabulary, np.array(["e", "b", "a", "z"])).tolist() == [2, -1, 0, -1]
    assert lookup(np.array([], dtype=str), np.array(["a"])).tolist() == [-1]
    mapping = {"q1": ("c1",), "q2": (), "q3": ("c2", "c1")}
    assert unpack_lists(*pack_lists(mapping)) == mapping


def test_fingerprint_follows_event_ids(make_table) -> None:
    table = make_table(ANSWERS)
    assert fingerprint(table) == fingerprint(pa.Table.from_batches(table.to_batches(max_chunksize=2)))
    assert fingerprint(table) != fingerprint(table.slice(1))
    assert fingerprint(table) != fingerprint(table.take([1, 0, 2, 3, 4]))
    assert fingerprint(table.drop_columns(["event_id"])) is None
