"""Every registered model honours the KnowledgeModel contract (discovered from the registry)."""

from __future__ import annotations

import copy
import inspect
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from knowtrace.evaluation.split import learner_split
from knowtrace.events.event import InteractionEvent
from knowtrace.models import KnowledgeModel, NotFittedError, OnlineModel, available_models, get_model_class

MODEL_NAMES = available_models()
ONLINE_NAMES = [name for name in MODEL_NAMES if issubclass(get_model_class(name), OnlineModel)]


def make(name: str) -> KnowledgeModel:
    cls = get_model_class(name)
    return cls(**cls._test_params())


@pytest.fixture(scope="module")
def split(small_table: pa.Table) -> tuple[pa.Table, pa.Table]:
    train, test = learner_split(small_table, test_fraction=0.25, seed=1)
    assert train.num_rows and test.num_rows
    return train, test


@pytest.fixture(scope="module", params=MODEL_NAMES)
def fitted(request: pytest.FixtureRequest, split: tuple[pa.Table, pa.Table]) -> KnowledgeModel:
    return make(request.param).fit(split[0])


def test_builtins_are_registered() -> None:
    assert {"global_rate", "item_rate", "elo", "pfa", "afm"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_init_only_stores_keyword_hyperparameters(name: str) -> None:
    cls = get_model_class(name)
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty, f"{name}: {p.name}"
    model = cls(**cls._test_params())
    assert not model.is_fitted
    assert not [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    params = model.get_params()
    assert cls(**params).get_params() == params
    assert set(cls._test_params()) <= set(params)
    assert name in repr(model) or cls.__name__ in repr(model)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_returns_self_and_leaves_hyperparameters(name: str, split: tuple[pa.Table, pa.Table]) -> None:
    model = make(name)
    before = copy.deepcopy(model.get_params())
    assert model.fit(split[0]) is model
    assert model.is_fitted and model.n_train_ == split[0].num_rows
    assert model.get_params() == before
    assert model.training_fingerprint_ is not None


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unfitted_model_refuses_to_predict(name: str, split: tuple[pa.Table, pa.Table]) -> None:
    with pytest.raises(NotFittedError):
        make(name).predict_proba(split[1])


def test_predict_proba_shape_and_range(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    p = fitted.predict_proba(split[1])
    assert p.dtype == np.float64 and p.shape == (split[1].num_rows,)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_predict_proba_does_not_change_the_model(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    state = copy.deepcopy(fitted._get_state())
    first = fitted.predict_proba(split[1])
    np.testing.assert_array_equal(fitted.predict_proba(split[1]), first)
    after = fitted._get_state()
    assert state.keys() == after.keys()
    for key in state:
        np.testing.assert_array_equal(state[key], after[key], err_msg=key)


def _flip(table: pa.Table, row: int) -> pa.Table:
    correct = table.column("correct").to_numpy().copy()
    correct[row] = 1 - correct[row]
    return table.set_column(table.column_names.index("correct"), "correct", pa.array(correct, pa.int8()))


def test_no_leakage(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    test = split[1]
    base = fitted.predict_proba(test)
    learners = test.column("learner_id").to_numpy(zero_copy_only=False)
    positions = test.column("position").to_numpy()
    for learner in np.unique(learners)[:3]:
        rows = np.flatnonzero(learners == learner)
        t = int(positions[rows].max()) // 2
        flipped = fitted.predict_proba(_flip(test, int(rows[positions[rows] == t][0])))
        unchanged = (learners != learner) | (positions <= t)
        np.testing.assert_array_equal(flipped[unchanged], base[unchanged])


def test_predictions_follow_input_row_order(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    test = split[1]
    perm = np.random.default_rng(0).permutation(test.num_rows)
    np.testing.assert_allclose(fitted.predict_proba(test.take(perm)), fitted.predict_proba(test)[perm],
                               rtol=0, atol=1e-12)


def test_accepts_reader_and_to_arrow(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    train, test = split

    class Relation:  # like a DuckDB relation or a polars frame
        def __init__(self, table: pa.Table) -> None:
            self.table = table

        def to_arrow(self) -> pa.Table:
            return self.table

    expected = fitted.predict_proba(test)
    other = make(fitted.name).fit(pa.RecordBatchReader.from_batches(train.schema, train.to_batches(max_chunksize=97)))
    np.testing.assert_array_equal(other.predict_proba(Relation(test)), expected)
    np.testing.assert_array_equal(make(fitted.name).fit(Relation(train)).predict_proba(test), expected)


def test_mastery(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table]) -> None:
    concepts = set(pc.list_flatten(split[0].column("concept_ids")).unique().to_pylist())
    known = split[0].column("learner_id")[0].as_py()
    for learner in (known, "never-seen-learner"):
        mastery = fitted.mastery(learner)
        assert set(mastery) == concepts
        for p, se in mastery.values():
            assert 0.0 <= p <= 1.0
            assert se is None or se >= 0.0


def test_save_load_round_trip(fitted: KnowledgeModel, split: tuple[pa.Table, pa.Table], tmp_path) -> None:
    fitted.metrics_ = {"auc": 0.75, "n_test": 12}
    path = fitted.save(tmp_path / "model")
    meta = json.loads((path / "model.json").read_text())
    assert {"knowtrace_version", "format_version", "model", "params", "training_fingerprint", "metrics",
            "created_at"} <= set(meta)
    loaded = KnowledgeModel.load(path)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.metrics_ == fitted.metrics_
    assert loaded.training_fingerprint_ == fitted.training_fingerprint_
    np.testing.assert_array_equal(loaded.predict_proba(split[1]), fitted.predict_proba(split[1]))
    learner = split[0].column("learner_id")[0].as_py()
    assert loaded.mastery(learner) == fitted.mastery(learner)
    assert type(fitted).load(path).get_params() == fitted.get_params()


@pytest.mark.parametrize("name", ONLINE_NAMES)
def test_online_models_update_one_answer_at_a_time(name: str, split: tuple[pa.Table, pa.Table]) -> None:
    train, test = split
    fitted = make(name).fit(train)
    assert isinstance(fitted, OnlineModel)
    first = test.slice(0, 1).to_pylist()[0]
    concepts = tuple(first["concept_ids"])
    p0 = fitted.predict_one(first["learner_id"], first["item_id"], concepts)
    assert p0 == pytest.approx(fitted.predict_proba(test)[0], abs=1e-12)
    assert fitted.predict_one(first["learner_id"], first["item_id"]) == pytest.approx(p0, abs=1e-12)
    event = {k: first[k] for k in ("learner_id", "item_id", "concept_ids", "correct")}
    a, b = copy.deepcopy(fitted), copy.deepcopy(fitted)
    assert a.learn_one(event) is a
    b.learn_one(InteractionEvent(**event))
    assert a.predict_one(first["learner_id"], first["item_id"], concepts) == b.predict_one(
        first["learner_id"], first["item_id"], concepts)
    assert a.mastery(first["learner_id"]) == b.mastery(first["learner_id"])
