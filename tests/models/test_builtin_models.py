"""Hand-checked behaviour of the built-in models, the registry and the artifacts."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation.split import learner_split
from knowtrace.exceptions import InputError, KnowtraceError
from knowtrace.models import (
    AFM,
    PFA,
    ArtifactError,
    ArtifactVersionError,
    Elo,
    GlobalRate,
    Interactions,
    ItemRate,
    KnowledgeModel,
    NotFittedError,
    OnlineModel,
    available_models,
    get_model,
)
from knowtrace.models.pfa import history_counts


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


ANSWERS = [
    ("ada", "q1", ("c1",), 0),
    ("ada", "q2", ("c2",), 1),
    ("ada", "q1", ("c1",), 0),
    ("bo", "q2", ("c2",), 1),
    ("bo", "q3", ("c1", "c2"), 1),
]


def test_global_rate(make_table) -> None:
    model = GlobalRate().fit(make_table(ANSWERS))
    assert model.predict_proba(make_table(ANSWERS[:2])).tolist() == [0.6, 0.6]
    p, se = model.mastery("anyone")["c1"]
    assert p == 0.6 and se == pytest.approx(math.sqrt(0.6 * 0.4 / 5))


def test_item_rate_smooths_toward_global_rate(make_table) -> None:
    model = ItemRate(smoothing=1.0).fit(make_table(ANSWERS))
    test = make_table([("cy", "q1", ("c1",), 1), ("cy", "q2", ("c2",), 1), ("cy", "new", (), 0)])
    np.testing.assert_allclose(model.predict_proba(test), [0.6 / 3, 2.6 / 3, 0.6])
    assert model.mastery("cy")["c1"][0] == pytest.approx((0.6 / 3 + 1.6 / 2) / 2)  # q1 and q3
    with pytest.raises(InputError):
        ItemRate(smoothing=-1).fit(make_table(ANSWERS))


def test_elo_updates_by_hand(make_table) -> None:
    model = Elo(k_a=1.0, k_b=0.5).fit(make_table([("ada", "q1", (), 1)]))
    assert model.learner_skill_ == {"ada": 0.5} and model.item_difficulty_ == {"q1": -0.5}
    p1 = sigmoid(0.5)
    theta = 0 + 1.0 * (0 - p1)  # K(0) = 1
    p = model.predict_proba(make_table([("bo", "q1", (), 0), ("bo", "q1", (), 1), ("bo", "q9", (), 1)]))
    theta2 = theta + 1.0 / (1 + 0.5) * (1 - sigmoid(theta + 0.5))  # K(1) = 1 / 1.5
    np.testing.assert_allclose(p, [p1, sigmoid(theta + 0.5), sigmoid(theta2)])
    assert model.learner_skill_ == {"ada": 0.5}  # predict_proba left the fitted state alone
    model.learn_one({"learner_id": "bo", "item_id": "q1", "correct": 0})
    assert model.item_difficulty_["q1"] == pytest.approx(-0.5 + 1 / 1.5 * p1)
    assert model.predict_one("new", "unseen") == 0.5


def test_elo_mastery_uses_concept_difficulty(make_table) -> None:
    model = Elo().fit(make_table(ANSWERS))
    difficulty = model.concept_difficulty()
    d = model.item_difficulty_
    assert difficulty["c1"] == pytest.approx((d["q1"] + d["q3"]) / 2)
    assert model.mastery("ada")["c2"] == (pytest.approx(sigmoid(model.learner_skill_["ada"] - difficulty["c2"])), None)


def test_history_counts() -> None:
    learner = np.array([0, 0, 0, 0, 1, 1])
    concept = np.array([0, 1, 0, 0, 0, 0])
    correct = np.array([1, 1, 0, 1, 0, 0])
    successes, failures, group, keys, total_s, total_f = history_counts(learner, concept, correct, 2)
    assert successes.tolist() == [0, 0, 1, 1, 0, 0]
    assert failures.tolist() == [0, 0, 0, 1, 0, 1]
    assert keys.tolist() == [0, 1, 2] and group.tolist() == [0, 1, 0, 0, 2, 2]
    assert total_s.tolist() == [2, 1, 0] and total_f.tolist() == [1, 0, 2]


@pytest.fixture(scope="module")
def split(small_table: pa.Table) -> tuple[pa.Table, pa.Table]:
    return learner_split(small_table, test_fraction=0.3, seed=0)


def test_pfa_learns_from_successes_and_uses_history(split: tuple[pa.Table, pa.Table]) -> None:
    train, test = split
    model = PFA().fit(train)
    assert model.converged_ and model.coef_.shape == (3, 4)
    gamma, rho = model.coef_[1], model.coef_[2]
    assert gamma.mean() > rho.mean()
    # the vectorised predictions equal the generic replay of predict_one / learn_one
    view = Interactions.from_table(test)
    np.testing.assert_allclose(model._predict(view), OnlineModel._predict(model, view), rtol=0, atol=1e-12)
    mastery = model.mastery("learner-nobody-knows")
    assert all(se is None for _, se in mastery.values())


def test_afm_has_abilities_and_nonnegative_learning_rates(split: tuple[pa.Table, pa.Table]) -> None:
    train, test = split
    model = AFM(count_scale="log").fit(train)
    assert np.all(model.coef_[1] >= 0)
    assert set(model.learner_ability_) == set(train.column("learner_id").to_pylist())
    view = Interactions.from_table(test)
    np.testing.assert_allclose(model._predict(view), OnlineModel._predict(model, view), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["elo", "pfa"])
def test_history_models_react_to_earlier_answers(name: str, split: tuple[pa.Table, pa.Table]) -> None:
    train, test = split
    model = get_model(name).fit(train)
    correct = test.column("correct").to_numpy().copy()
    correct[0] = 1 - correct[0]
    flipped = test.set_column(test.column_names.index("correct"), "correct", pa.array(correct, pa.int8()))
    assert not np.array_equal(model.predict_proba(flipped), model.predict_proba(test))


def test_registry() -> None:
    names = available_models()
    assert names == sorted(names)
    assert get_model("elo", k_a=0.5).get_params() == {"k_a": 0.5, "k_b": 0.05}
    with pytest.raises(InputError, match="unknown model 'nope'.*global_rate"):
        get_model("nope")
    with pytest.raises(InputError, match="no hyperparameter"):
        Elo().set_params(learning_rate=1)
    assert repr(Elo(k_a=2.0)) == "Elo(k_a=2.0)"


def test_not_fitted_errors(make_table) -> None:
    with pytest.raises(NotFittedError):
        Elo().learn_one({"learner_id": "a", "item_id": "q", "correct": 1})
    with pytest.raises(NotFittedError):
        PFA().save("unused")
    with pytest.raises(NotFittedError):
        ItemRate().mastery("a")


def test_learn_one_validates_answers(make_table) -> None:
    model = Elo().fit(make_table(ANSWERS))
    with pytest.raises(InputError, match="correct"):
        model.learn_one({"learner_id": "a", "item_id": "q", "correct": 2})
    with pytest.raises(InputError, match="item_id"):
        model.learn_one({"learner_id": "a", "correct": 1})
    model.learn_one({"learner_id": "a", "item_id": "q", "score": 1.0})
    assert model.learner_answers_["a"] == 1


def test_artifact_errors(make_table, tmp_path) -> None:
    path = PFA().fit(make_table(ANSWERS)).save(tmp_path / "pfa")
    with pytest.raises(ArtifactError, match="holds a 'pfa' model"):
        Elo.load(path)
    meta = json.loads((path / "model.json").read_text())
    meta["format_version"] = 999
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactVersionError, match="format_version 999") as caught:
        KnowledgeModel.load(path)
    assert isinstance(caught.value, KnowtraceError)
    with pytest.raises(ArtifactError, match="not a knowtrace model artifact"):
        KnowledgeModel.load(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError):
        GlobalRate().fit(make_table(ANSWERS)).save(tmp_path / "file")


def test_save_overwrites_an_artifact(make_table, tmp_path) -> None:
    table = make_table(ANSWERS)
    Elo().fit(table.slice(0, 2)).save(tmp_path / "m")
    model = Elo().fit(table)
    model.save(tmp_path / "m")
    assert KnowledgeModel.load(tmp_path / "m").n_train_ == 5
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "state.npz"]
