"""The KTM model: factorization machine arithmetic, logistic-regression limit, determinism, online
use, mastery, persistence and hyperparameter checks."""

from __future__ import annotations

import copy
import math
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse
import torch

from knowtrace.evaluation.split import learner_split
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError
from knowtrace.models import KnowledgeModel, OnlineModel, get_model
from knowtrace.models.ktm import KTM
from knowtrace.models.ktm import fm

FAST = {"dim": 2, "epochs": 4, "batch_size": 256}


@pytest.fixture(scope="module")
def split(small_table: pa.Table) -> tuple[pa.Table, pa.Table]:
    return learner_split(small_table, test_fraction=0.25, seed=2)


def random_weights(n: int, dim: int, seed: int) -> fm.FMWeights:
    rng = np.random.default_rng(seed)
    return fm.FMWeights(0.3, rng.normal(size=n), rng.normal(size=(n, dim)))


def test_fm_logits_match_the_pairwise_formula() -> None:
    x = scipy.sparse.random(30, 12, density=0.3, random_state=1, format="csr", dtype=np.float32)
    w = random_weights(12, 3, 0)
    dense = x.toarray().astype(np.float64)
    expected = [w.bias + row @ w.weight + sum(w.factors[j] @ w.factors[k] * row[j] * row[k]
                                              for j in range(12) for k in range(j + 1, 12)) for row in dense]
    np.testing.assert_allclose(fm.logits(w, x), expected, rtol=1e-10, atol=1e-10)
    linear = fm.FMWeights(w.bias, w.weight, np.zeros((12, 0)))
    np.testing.assert_allclose(fm.logits(linear, x), w.bias + dense @ w.weight, rtol=1e-12)


def test_torch_forward_matches_numpy_scoring() -> None:
    x = scipy.sparse.random(50, 9, density=0.4, random_state=3, format="csr", dtype=np.float32)
    model = fm._FM(9, 4, 0.1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-1, 1, 9)[:, None])
        model.factors.mul_(50.0)
        z = model(fm._batch(x, np.zeros(50), None, "cpu")).double().numpy()
    np.testing.assert_allclose(z, fm.logits(model.weights(), x), rtol=1e-5, atol=1e-5)


def test_dim_zero_is_a_logistic_regression(make_table) -> None:
    # one-hot items only, no penalty: the maximum-likelihood fit predicts every item's correct rate
    answers = [(f"l{k}", item, (), int(k < right)) for item, right, total in (("a", 3, 4), ("b", 1, 5), ("c", 5, 8))
               for k in range(total)]
    model = KTM(features="i", dim=0, l2=0.0, optimizer="lbfgs", lr=1.0, epochs=20, valid_share=0.0)
    p = model.fit(make_table(answers)).predict_proba(make_table([("new", "a", (), 1), ("new", "b", (), 1),
                                                                 ("new", "c", (), 1)]))
    np.testing.assert_allclose(p, [3 / 4, 1 / 5, 5 / 8], atol=1e-4)
    assert model.factors_.shape == (3, 0)


def test_separable_toy_problem_is_learned(make_table) -> None:
    answers = [(f"l{k}", item, (item,), int(item == "easy")) for k in range(30) for item in ("easy", "hard")]
    model = KTM(features="is", dim=0, l2=0.0, epochs=60, lr=0.1, valid_share=0.0).fit(make_table(answers))
    p = model.predict_proba(make_table([("x", "easy", ("easy",), 1), ("x", "hard", ("hard",), 1)]))
    assert p[0] > 0.95 and p[1] < 0.05


def test_same_seed_same_model_other_seed_other_model(split) -> None:
    train, test = split
    a = KTM(**FAST, seed=7).fit(train).predict_proba(test)
    np.testing.assert_array_equal(KTM(**FAST, seed=7).fit(train).predict_proba(test), a)
    assert not np.array_equal(KTM(**FAST, seed=8).fit(train).predict_proba(test), a)
    assert torch.are_deterministic_algorithms_enabled() is False  # the fit restores torch's global setting


def test_early_stopping_on_valid_and_held_out_learners(split) -> None:
    train, test = split
    model = KTM(features="uiswf", dim=2, epochs=40, batch_size=128, lr=0.1, patience=2).fit(train, valid=test)
    history = model.train_history_
    assert np.all(np.isfinite(history[:, 1])) and 1 <= model.best_epoch_ <= len(history)
    assert len(history) == 40 or len(history) - model.best_epoch_ == 2
    assert history[model.best_epoch_ - 1, 1] == history[:, 1].max()
    held = KTM(features="uiswf", dim=2, epochs=3, valid_share=0.25, batch_size=256).fit(train)
    u = held.space_.offsets["u"] + np.arange(len(held.space_.learner_ids))
    n_learners = len(held.space_.learner_ids)
    assert np.count_nonzero(held.weight_[u] == 0.0) == round(0.25 * n_learners)
    assert np.all(held.factors_[u][held.weight_[u] == 0.0] == 0.0)
    everything = KTM(**FAST, valid_share=0.0).fit(train)
    assert np.isnan(everything.train_history_[:, 1]).all() and everything.best_epoch_ == 4


def test_predict_proba_matches_predict_one_then_learn_one(split) -> None:
    train, test = split
    model = KTM(features="uiswfaWFAprxet", **FAST).fit(train)
    learner = test.column("learner_id")[0].as_py()
    mine = np.asarray(test.column("learner_id").to_pylist()) == learner
    rows = sorted((r for r, m in zip(test.to_pylist(), mine) if m), key=lambda r: r["position"])
    expected = model.predict_proba(test)[mine][np.argsort(test.column("position").to_numpy()[mine])]
    assert len(rows) > 5 and rows[1]["timestamp"] is not None and rows[0]["elapsed_ms"] is not None
    online = copy.deepcopy(model)
    got = []
    for row in rows:
        got.append(online.predict_one(row["learner_id"], row["item_id"], tuple(row["concept_ids"]),
                                      timestamp=row["timestamp"]))
        online.learn_one({k: row[k] for k in ("learner_id", "item_id", "concept_ids", "correct", "timestamp",
                                              "elapsed_ms")})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_learners_seen_in_fit_continue_their_history(make_table) -> None:
    answers = [("ada", "q1", ("c1",), 1), ("ada", "q1", ("c1",), 1), ("bo", "q1", ("c1",), 0),
               ("bo", "q1", ("c1",), 0)]
    model = KTM(features="iswf", dim=0, valid_share=0.0, epochs=30, lr=0.1).fit(make_table(answers))
    # without history both would get the population's q1 prediction; with it ada is ahead of bo
    p = model.predict_proba(make_table([("ada", "q1", ("c1",), 1), ("bo", "q1", ("c1",), 1),
                                        ("cy", "q1", ("c1",), 1)]))
    assert p[0] != p[2] and p[1] != p[2]
    assert p[0] == pytest.approx(model.predict_one("ada", "q1"), abs=1e-12)
    new = make_table([("cy", "q1", ("c1",), 1), ("cy", "q1", ("c1",), 1), ("cy", "q1", ("c1",), 1)])
    again = KTM(features="iswf", dim=0, valid_share=0.0, epochs=30, lr=0.1).fit(make_table(answers))
    again.learn_one({"learner_id": "cy", "item_id": "q1", "correct": 1})
    assert again.predict_one("cy", "q1") == pytest.approx(model.predict_proba(new)[1], abs=1e-12)


def test_time_features_in_predict_one(make_table) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    model = KTM(features="it", dim=0, valid_share=0.0, epochs=2).fit(make_table([("a", "q", (), 1)]))
    model.learn_one({"learner_id": "a", "item_id": "q", "correct": 1, "timestamp": t0})
    w = model.column_weights()
    model.weight_[model.space_.offsets["t"] + 5] = 2.0  # gap of 40 s -> bucket floor(log2(41)) = 5
    z = model.bias_ + w["i:q"]
    assert model.predict_one("a", "q") == pytest.approx(1 / (1 + math.exp(-z)))
    assert model.predict_one("a", "q", timestamp=t0.timestamp() + 40) == pytest.approx(1 / (1 + math.exp(-z - 2)))
    with pytest.raises(InputError):
        model.predict_one("a", "q", timestamp=datetime(2024, 5, 1))


def test_mastery_is_the_mean_over_the_concepts_items(split) -> None:
    train, _ = split
    model = KTM(**FAST).fit(train)
    learner = train.column("learner_id")[0].as_py()
    items_of: dict[str, list[str]] = {}
    for item, concepts in model.item_concepts_.items():
        for c in concepts:
            items_of.setdefault(c, []).append(item)
    mastery = model.mastery(learner)
    for concept, items in items_of.items():
        p, se = mastery[concept]
        assert se is None
        assert p == pytest.approx(np.mean([model.predict_one(learner, i) for i in items]), abs=1e-12)


def test_prerequisite_features_with_a_graph_and_round_trip(make_table, tmp_path) -> None:
    graph = ConceptGraph.from_edges([("c2", "c1"), ("c3", "c2")])
    answers = [(f"l{k}", item, (concept,), int((k + n) % 3 != 0)) for k in range(12)
               for n, (item, concept) in enumerate([("a", "c1"), ("b", "c2"), ("c", "c3"), ("a", "c1")])]
    table = make_table(answers)
    model = KTM(features="iswfprx", **FAST).fit(table, graph=graph)
    assert model.space_.block_size("p") == 12
    assert "p2w:c1" in model.column_weights()
    loaded = KnowledgeModel.load(model.save(tmp_path / "ktm"))
    assert isinstance(loaded, KTM) and loaded.space_.has_graph
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table))
    assert loaded.mastery("l1") == model.mastery("l1")
    assert KTM(features="iswfp", **FAST).fit(table).space_.block_size("p") == 0


def test_verbose_shows_loss_and_validation_auc(split, capsys) -> None:
    train, test = split
    KTM(**FAST, verbose=True).fit(train, valid=test)
    out = capsys.readouterr().out
    assert "valid AUC" in out and "loss" in out


def test_registered_and_online() -> None:
    assert isinstance(get_model("ktm"), OnlineModel)


@pytest.mark.parametrize(("param", "value"), [
    ("features", "iq"), ("dim", -1), ("epochs", 0), ("lr", 0.0), ("l2", -1.0), ("optimizer", "sgd"),
    ("count_scale", "sqrt"), ("valid_share", 1.0), ("device", "tpu"), ("batch_size", 2.5),
])
def test_bad_hyperparameters_name_the_field(param: str, value: object, make_table) -> None:
    with pytest.raises(InputError) as err:
        KTM(**{param: value}).fit(make_table([("a", "q", (), 1), ("b", "q", (), 0)]))
    assert err.value.field == param
