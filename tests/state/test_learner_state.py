"""Per-learner state export of the online models: get/set/drop_learner and learn_one(update_shared=)."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.exceptions import InputError
from knowtrace.models import KnowledgeModel, ModelError, OnlineModel, get_model_class
from knowtrace.simulate import simulated_interactions

EXPORTING = ["elo", "bkt", "pfa", "afm"]


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return simulated_interactions(learners=30, items=12, concepts=3, weeks=1, sessions_per_week=2,
                                  answers_per_session=8, seed=5)


@pytest.fixture(scope="module", params=EXPORTING)
def fitted(request: pytest.FixtureRequest, table: pa.Table) -> OnlineModel:
    cls = get_model_class(request.param)
    return cls(**cls._test_params()).fit(table)


def first_row(table: pa.Table) -> dict:
    return table.slice(0, 1).to_pylist()[0]


def answer(row: dict, learner: str, correct: int | None = None) -> dict:
    return {"learner_id": learner, "item_id": row["item_id"], "concept_ids": row["concept_ids"],
            "correct": row["correct"] if correct is None else correct}


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype.kind == b[key].dtype.kind, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_never_seen_learner_has_the_start_state(fitted: OnlineModel, table: pa.Table) -> None:
    row = first_row(table)
    state = fitted.get_learner_state("never-seen")
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "biufU" for v in state.values())
    trained = fitted.get_learner_state(row["learner_id"])
    assert state.keys() == trained.keys()
    # restoring the start state under a training learner's id makes it predict like a new learner
    other = copy.deepcopy(fitted)
    other.set_learner_state(row["learner_id"], state)
    concepts = tuple(row["concept_ids"])
    assert other.predict_one(row["learner_id"], row["item_id"], concepts) == \
        fitted.predict_one("never-seen", row["item_id"], concepts)
    assert other.mastery(row["learner_id"]) == fitted.mastery("never-seen")


def test_export_and_restore_reproduce_the_learner(fitted: OnlineModel, table: pa.Table) -> None:
    row = first_row(table)
    learner = row["learner_id"]
    source = copy.deepcopy(fitted)
    for correct in (1, 0, 1):  # a learner with some history beyond fit (shared parameters kept)
        source.learn_one(answer(row, learner, correct), update_shared=False)
    state = source.get_learner_state(learner)
    target = copy.deepcopy(fitted)
    target.set_learner_state("copy", state)
    items = table.column("item_id").unique().to_pylist()
    for item in items:
        assert target.predict_one("copy", item) == source.predict_one(learner, item)
    assert target.mastery("copy") == source.mastery(learner)
    assert_same_state(target.get_learner_state("copy"), state)
    # and learning goes on identically
    source.learn_one(answer(row, learner, 0), update_shared=False)
    target.learn_one(answer(row, "copy", 0), update_shared=False)
    assert target.predict_one("copy", items[0]) == source.predict_one(learner, items[0])


def test_the_state_changes_with_answers(fitted: OnlineModel, table: pa.Table) -> None:
    row = first_row(table)
    model = copy.deepcopy(fitted)
    before = model.get_learner_state("new")
    model.learn_one(answer(row, "new", 1))
    after = model.get_learner_state("new")
    assert any(before[k].shape != after[k].shape or not np.array_equal(before[k], after[k]) for k in before)


def test_drop_learner_forgets_only_that_learner(fitted: OnlineModel, table: pa.Table) -> None:
    learners = table.column("learner_id").unique().to_pylist()
    model = copy.deepcopy(fitted)
    kept = {x: model.get_learner_state(x) for x in learners[1:]}
    model.drop_learner(learners[0])
    assert_same_state(model.get_learner_state(learners[0]), fitted.get_learner_state("never-seen"))
    for x, state in kept.items():
        assert_same_state(model.get_learner_state(x), state)
    model.drop_learner("never-seen")  # nothing to forget: no error


def test_set_learner_state_names_the_bad_field(fitted: OnlineModel) -> None:
    good = fitted.get_learner_state("never-seen")
    model = copy.deepcopy(fitted)
    name = next(iter(good))
    with pytest.raises(InputError) as missing:
        model.set_learner_state("x", {k: v for k, v in good.items() if k != name})
    assert missing.value.field == name
    with pytest.raises(InputError) as extra:
        model.set_learner_state("x", {**good, "surprise": np.zeros(1)})
    assert extra.value.field == "surprise"
    for key, value in good.items():
        wrong = np.array([object()], dtype=object) if value.dtype.kind != "O" else np.zeros(1)
        with pytest.raises(InputError) as bad:
            model.set_learner_state("x", {**good, key: wrong})
        assert bad.value.field == key
    assert_same_state(model.get_learner_state("x"), good)  # nothing was set by the refused calls


@pytest.mark.parametrize(("name", "field", "broken"), [
    ("elo", "skill", {"skill": np.array([np.nan]), "answers": np.array([1])}),
    ("elo", "answers", {"skill": np.array([0.5]), "answers": np.array([-1])}),
    ("elo", "skill", {"skill": np.array([0.5, 0.1]), "answers": np.array([1])}),
    ("bkt", "learned", {"unit_kinds": np.array([0], np.int8), "unit_ids": np.array(["c"]),
                        "learned": np.array([1.5])}),
    ("bkt", "unit_kinds", {"unit_kinds": np.array([7], np.int8), "unit_ids": np.array(["c"]),
                           "learned": np.array([0.5])}),
    ("bkt", "unit_ids", {"unit_kinds": np.array([0, 0], np.int8), "unit_ids": np.array(["c"]),
                         "learned": np.array([0.5, 0.5])}),
    ("bkt", "unit_ids", {"unit_kinds": np.array([0, 0], np.int8), "unit_ids": np.array(["c", "c"]),
                         "learned": np.array([0.5, 0.5])}),
    ("pfa", "counts", {"concept_ids": np.array(["c"]), "counts": np.array([[1, -2]])}),
    ("pfa", "counts", {"concept_ids": np.array(["c"]), "counts": np.array([[1, 2, 3]])}),
    ("pfa", "concept_ids", {"concept_ids": np.array(["c", "c"]), "counts": np.array([[1, 2], [0, 1]])}),
    ("afm", "ability", {"concept_ids": np.array(["c"]), "counts": np.array([[1, 2]]), "ability": np.array([np.inf])}),
])
def test_invalid_values_are_refused(name: str, field: str, broken: dict, table: pa.Table) -> None:
    cls = get_model_class(name)
    model = cls(**cls._test_params()).fit(table)
    with pytest.raises(InputError) as exc:
        model.set_learner_state("x", broken)
    assert exc.value.field == field


def test_state_of_another_model_is_refused(table: pa.Table) -> None:
    elo, bkt = (get_model_class(n)(**get_model_class(n)._test_params()).fit(table) for n in ("elo", "bkt"))
    with pytest.raises(InputError):
        bkt.set_learner_state("x", elo.get_learner_state(first_row(table)["learner_id"]))


def test_update_shared_false_freezes_item_and_concept_parameters(fitted: OnlineModel, table: pa.Table) -> None:
    row = first_row(table)
    frozen, shared = copy.deepcopy(fitted), copy.deepcopy(fitted)
    event = {**answer(row, "new", 1), "item_id": "an-item-never-seen", "concept_ids": ["a-new-concept"]}
    frozen.learn_one(event, update_shared=False)
    shared.learn_one(event)
    if fitted.name == "elo":  # an item's concepts are catalog facts: Elo records them even when frozen
        assert frozen.item_concepts_["an-item-never-seen"] == ("a-new-concept",)
        assert "an-item-never-seen" not in frozen.item_difficulty_
    else:
        assert "an-item-never-seen" not in frozen.item_concepts_
    assert shared.item_concepts_["an-item-never-seen"] == ("a-new-concept",)
    # only the shared parameters differ: the learner states are the same
    assert_same_state(frozen.get_learner_state("new"), shared.get_learner_state("new"))


def test_elo_shared_update_moves_items_only_when_asked(table: pa.Table) -> None:
    elo = get_model_class("elo")().fit(table)
    row = first_row(table)
    before = dict(elo.item_difficulty_)
    elo.learn_one(answer(row, "new", 1), update_shared=False)
    assert elo.item_difficulty_ == before
    difficulty = elo.concept_difficulty()  # computed, and kept for the next mastery calls
    elo.mastery("new")
    elo.learn_one(answer(row, "new", 1))
    assert elo.item_difficulty_[row["item_id"]] < before[row["item_id"]]
    # the concept difficulties follow the items after a shared update (no stale cache)
    after = elo.concept_difficulty()
    for concept in row["concept_ids"]:
        items = [i for i, cs in elo.item_concepts_.items() if concept in cs]
        assert after[concept] == pytest.approx(np.mean([elo.item_difficulty_[i] for i in items]), abs=1e-12)
        assert after[concept] < difficulty[concept]


def test_concept_difficulties_survive_save_and_load(table: pa.Table, tmp_path) -> None:
    elo = get_model_class("elo")().fit(table)
    expected = elo.concept_difficulty()
    elo.learn_one(answer(first_row(table), "new", 0))
    loaded = KnowledgeModel.load(elo.save(tmp_path / "elo"))
    assert loaded.concept_difficulty() == elo.concept_difficulty() != expected


@pytest.mark.parametrize("name", ["irt", "ktm"])
def test_models_without_learner_state_say_so(name: str) -> None:
    model = get_model_class(name)()
    for call in (lambda: model.get_learner_state("x"), lambda: model.set_learner_state("x", {}),
                 lambda: model.drop_learner("x")):
        with pytest.raises(ModelError, match=f"{name} keeps no exportable learner state"):
            call()


@pytest.fixture(scope="module")
def dkt(table: pa.Table) -> OnlineModel:
    return get_model_class("dkt")(hidden=8, epochs=1, window=8, batch_size=16).fit(table)


@pytest.mark.parametrize("deep", ["dkt", "sakt"])
def test_deep_models_drop_learners(deep: str, dkt: OnlineModel, table: pa.Table, tmp_path) -> None:
    model = dkt if deep == "dkt" else get_model_class("sakt")(dim=8, heads=2, window=8, epochs=1,
                                                              batch_size=16).fit(table)
    learners = table.column("learner_id").unique().to_pylist()
    item = first_row(table)["item_id"]
    model = copy.deepcopy(model)
    kept = {x: (model.get_learner_state(x), model.predict_one(x, item)) for x in learners}
    for gone in (learners[3], learners[-1], learners[0]):  # a middle row, the last row, the first row
        model.drop_learner(gone)
        kept.pop(gone)
    model.drop_learner("never-seen")
    assert model.get_learner_state(learners[3])["count"].tolist() == [0]
    assert model.predict_one(learners[3], item) == model.predict_one("never-seen", item)
    for x, (state, p) in kept.items():
        assert_same_state(model.get_learner_state(x), state)
        assert model.predict_one(x, item) == p
    # a learner added after drops, and the whole store through save/load, stay consistent
    model.learn_one(answer(first_row(table), "late", 1))
    loaded = KnowledgeModel.load(model.save(tmp_path / deep))
    for x in [*kept, "late"]:
        assert_same_state(loaded.get_learner_state(x), model.get_learner_state(x))
