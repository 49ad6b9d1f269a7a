"""DKT, SAKT, AKT and simpleKT: batch predictions equal online replay, learner state, windows, unknown ids,
determinism, early stopping, persistence and hyperparameter checks."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation.split import learner_split
from knowtrace.exceptions import InputError
from knowtrace.models import ArtifactVersionError, KnowledgeModel, OnlineModel
from knowtrace.models.deep import AKT, DKT, SAKT, SequenceModel, SimpleKT
from knowtrace.models.deep.sequences import FIRST, UNK

CLASSES = {"dkt": DKT, "sakt": SAKT, "akt": AKT, "simplekt": SimpleKT}
SMALL = {
    "dkt": {"hidden": 12, "window": 8, "epochs": 3, "batch_size": 8},
    "sakt": {"dim": 12, "heads": 2, "window": 8, "epochs": 3, "batch_size": 8},
    "akt": {"dim": 12, "heads": 2, "d_ff": 16, "window": 8, "epochs": 3, "batch_size": 8},
    "simplekt": {"dim": 12, "heads": 2, "d_ff": 16, "window": 8, "epochs": 3, "batch_size": 8},
}


def make(name: str, **params) -> SequenceModel:
    return CLASSES[name](**{**SMALL[name], **params})


@pytest.fixture(scope="module")
def split(small_table: pa.Table) -> tuple[pa.Table, pa.Table]:
    return learner_split(small_table, test_fraction=0.25, seed=4)


@pytest.fixture(scope="module", params=list(CLASSES))
def fitted(request: pytest.FixtureRequest, split) -> SequenceModel:
    return make(request.param).fit(split[0])


def rows_of(table: pa.Table, learner: str) -> list[dict]:
    rows = [r for r in table.to_pylist() if r["learner_id"] == learner]
    return sorted(rows, key=lambda r: r["position"])


def replay(model: OnlineModel, rows: list[dict]) -> list[float]:
    """predict_one then learn_one over the rows, on a copy of the model."""
    online = copy.deepcopy(model)
    out = []
    for r in rows:
        out.append(online.predict_one(r["learner_id"], r["item_id"], tuple(r["concept_ids"])))
        online.learn_one({k: r[k] for k in ("learner_id", "item_id", "concept_ids", "correct")})
    return out


def batch_of(model: KnowledgeModel, table: pa.Table, rows: list[dict]) -> np.ndarray:
    p = model.predict_proba(table)
    index = {r["event_id"]: j for j, r in enumerate(table.select(["event_id"]).to_pylist())}
    return p[[index[r["event_id"]] for r in rows]]


def test_the_package_imports_torch_lazily() -> None:
    code = "import sys, knowtrace.models.deep; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batch_predictions_equal_online_replay(fitted: SequenceModel, split) -> None:
    test = split[1]
    learners = test.column("learner_id").unique().to_pylist()
    # a short history (within one window) and the longest (many windows of 8 answers)
    longest = max(learners, key=lambda x: len(rows_of(test, x)))
    short = pa.Table.from_pylist(rows_of(test, learners[0])[:fitted.window - 2], schema=test.schema)
    for table, learner in ((short, learners[0]), (test, longest)):
        rows = rows_of(table, learner)
        np.testing.assert_allclose(replay(fitted, rows), batch_of(fitted, table, rows), rtol=0, atol=1e-5)
    assert len(rows_of(test, longest)) > 3 * fitted.window


def test_learners_seen_in_fit_continue_from_their_state(fitted: SequenceModel, split) -> None:
    train, test = split
    learner = train.column("learner_id")[0].as_py()
    more = rows_of(test, test.column("learner_id")[0].as_py())[:20]
    more = [{**r, "learner_id": learner, "event_id": f"more-{j}", "position": 10_000 + j} for j, r in enumerate(more)]
    table = pa.Table.from_pylist(more, schema=test.schema)
    expected = replay(fitted, more)
    np.testing.assert_allclose(batch_of(fitted, table, more), expected, rtol=0, atol=1e-5)
    # the state stored by fit is the one reached by learning the training answers one by one
    fresh = copy.deepcopy(fitted)
    fresh.set_learner_state("again", fresh.get_learner_state("never-seen"))
    for r in rows_of(train, learner):
        fresh.learn_one({**{k: r[k] for k in ("item_id", "concept_ids", "correct")}, "learner_id": "again"})
    stored, replayed = fitted.get_learner_state(learner), fresh.get_learner_state("again")
    assert stored.keys() == replayed.keys() and stored["count"][0] == len(rows_of(train, learner))
    for key in stored:
        np.testing.assert_allclose(replayed[key], stored[key], rtol=0, atol=1e-5, err_msg=key)
    # a new learner starts from nothing
    assert fitted.get_learner_state("never-seen")["count"].tolist() == [0]


def test_learner_state_export_and_restore(fitted: SequenceModel, split) -> None:
    train = split[0]
    learner = train.column("learner_id")[-1].as_py()
    item, concepts = train.column("item_id")[0].as_py(), tuple(train.column("concept_ids")[0].as_py())
    state = fitted.get_learner_state(learner)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = copy.deepcopy(fitted)
    other.set_learner_state("copy", state)
    assert other.predict_one("copy", item, concepts) == pytest.approx(fitted.predict_one(learner, item, concepts),
                                                                      abs=1e-12)
    assert other.mastery("copy") == fitted.mastery(learner)
    with pytest.raises(InputError):
        other.set_learner_state("bad", {"count": np.array([1])})
    broken = dict(state)
    key = "states" if "states" in state else "tokens"
    broken[key] = state[key][..., :1] if key == "states" else np.full_like(state[key], 10_000)
    if key == "tokens" and broken[key].size == 0:
        pytest.skip("no cached answers to corrupt")
    with pytest.raises(InputError):
        other.set_learner_state("bad", broken)


def test_windows_limit_what_a_prediction_sees(fitted: SequenceModel, split) -> None:
    test = split[1]
    learner = max(test.column("learner_id").unique().to_pylist(), key=lambda x: len(rows_of(test, x)))
    rows = rows_of(test, learner)
    base = batch_of(fitted, test, rows)
    flipped_row = rows[0]["event_id"]
    correct = np.array([1 - r["correct"] if r["event_id"] == flipped_row else r["correct"]
                        for r in test.to_pylist()], dtype=np.int8)
    other = test.set_column(test.column_names.index("correct"), "correct", pa.array(correct, pa.int8()))
    after = batch_of(fitted, other, rows)
    w = fitted.window
    assert not np.allclose(after[1:w], base[1:w])  # answers in the first window see the flipped answer
    np.testing.assert_array_equal(after[w:], base[w:])  # later windows do not


def test_unknown_items_and_concepts_use_the_unknown_token(fitted: SequenceModel, split) -> None:
    learner = split[0].column("learner_id")[0].as_py()
    p1 = fitted.predict_one(learner, "never-seen-item", ("never-seen-concept",))
    p2 = fitted.predict_one(learner, "other-unknown-item", ("other-unknown-concept",))
    assert 0 < p1 < 1 and p1 == pytest.approx(p2, abs=1e-12)
    table = pa.Table.from_pylist([{"learner_id": "z", "item_id": "never-seen-item",
                                   "concept_ids": ["never-seen-concept"], "correct": 1}])
    assert fitted.predict_proba(table)[0] == pytest.approx(fitted.predict_one("z", "never-seen-item",
                                                                              ("never-seen-concept",)), abs=1e-12)
    # the unknown token's embedding is the frequency-weighted mean of the known ones
    name, kind = next(iter(fitted._unk_tables().items()))
    table_w = fitted.weights_[name]
    assert kind in ("token", "pair")
    known = table_w[FIRST:] if kind == "token" else table_w[2 * FIRST::2]
    row = table_w[UNK] if kind == "token" else table_w[2 * UNK]
    assert np.all(row >= known.min(axis=0) - 1e-6) and np.all(row <= known.max(axis=0) + 1e-6)


@pytest.mark.parametrize("name", list(CLASSES))
def test_multi_concept_answers_get_one_prediction(name: str, make_table) -> None:
    answers = [(f"l{k}", f"q{j % 3}", (("a", "b") if j % 3 == 0 else ("b",)), (k + j) % 2)
               for k in range(6) for j in range(7)]
    model = make(name, unit="concept", epochs=1).fit(make_table(answers))
    assert model.vocab_.unit == "concept"
    test = make_table([("new", "q0", ("a", "b"), 1), ("new", "q1", ("b",), 0), ("new", "q9", ("a", "zz"), 1)])
    p = model.predict_proba(test)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
    assert set(model.mastery("new")) == {"a", "b"}


@pytest.mark.parametrize("name", list(CLASSES))
def test_learning_right_answers_raises_mastery(name: str, make_table) -> None:
    # learners are either always right or always wrong: the model must learn that history matters
    answers = [(f"l{k}", f"q{j % 4}", (f"c{j % 2}",), k % 2) for k in range(40) for j in range(12)]
    model = make(name, epochs=25, lr=0.01, valid_share=0.0).fit(make_table(answers))
    for j in range(6):
        model.learn_one({"learner_id": "good", "item_id": f"q{j % 4}", "concept_ids": (f"c{j % 2}",), "correct": 1})
        model.learn_one({"learner_id": "bad", "item_id": f"q{j % 4}", "concept_ids": (f"c{j % 2}",), "correct": 0})
    good, bad = model.mastery("good"), model.mastery("bad")
    assert set(good) == {"c0", "c1"}
    assert all(good[c][0] > 0.8 and bad[c][0] < 0.2 and good[c][1] is None for c in good), (good, bad)
    assert model.predict_one("good", "q1") > 0.8 > 0.2 > model.predict_one("bad", "q1")


@pytest.mark.parametrize("name", list(CLASSES))
def test_same_seed_same_model_other_seed_other_model(name: str, split) -> None:
    train, test = split
    a = make(name, seed=3, epochs=1).fit(train).predict_proba(test)
    np.testing.assert_array_equal(make(name, seed=3, epochs=1).fit(train).predict_proba(test), a)
    assert not np.array_equal(make(name, seed=4, epochs=1).fit(train).predict_proba(test), a)
    import torch

    assert torch.are_deterministic_algorithms_enabled() is False


def test_early_stopping_and_held_out_learners(split, capsys) -> None:
    train, test = split
    model = make("dkt", epochs=30, lr=0.05, patience=2).fit(train, valid=test)
    history = model.train_history_
    assert history.shape[1] == 4 and np.all(np.isfinite(history[:, 1])) and np.all(history[:, 3] > 0)
    assert len(history) == 30 or len(history) - model.best_epoch_ == 2
    assert history[model.best_epoch_ - 1, 1] == history[:, 1].max()
    held = make("dkt", epochs=2).fit(train)
    assert np.all(np.isfinite(held.train_history_[:, 1]))
    everything = make("dkt", epochs=2, valid_share=0.0, verbose=True).fit(train)
    assert np.isnan(everything.train_history_[:, 1]).all() and everything.best_epoch_ == 2
    assert "dkt" in capsys.readouterr().out


def test_learning_rate_drops_after_an_epoch_without_gain(split) -> None:
    train, test = split
    constant = make("dkt", epochs=12, lr=0.05, lr_decay=1.0, patience=12).fit(train, valid=test)
    decayed = make("dkt", epochs=12, lr=0.05, lr_decay=0.5, patience=12).fit(train, valid=test)
    auc = constant.train_history_[:, 1]
    no_gain = [e for e in range(1, len(auc)) if auc[e] <= auc[:e].max()]
    assert no_gain, "the data must give an epoch without validation gain"
    first = no_gain[0]  # 0-based: epoch first + 1 did not improve, the rate drops after it
    np.testing.assert_array_equal(decayed.train_history_[: first + 1, :3], constant.train_history_[: first + 1, :3])
    assert decayed.train_history_[first + 1, 0] != constant.train_history_[first + 1, 0]


def test_gru_cell_and_item_unit(split) -> None:
    train, test = split
    model = make("dkt", cell="gru", unit="item").fit(train)
    assert model.weights_["start"].shape == (1, 12) and model.vocab_.unit == "item"
    assert model.get_learner_state("x")["states"].shape == (2, 1, 12)
    rows = rows_of(test, test.column("learner_id")[0].as_py())
    np.testing.assert_allclose(replay(model, rows), batch_of(model, test, rows), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["akt", "simplekt"])
def test_rasch_difficulties_only_with_concept_tokens(name: str, split) -> None:
    train = split[0]
    with_concepts = make(name, epochs=1).fit(train)
    assert with_concepts.vocab_.unit == "concept" and "difficulty.weight" in with_concepts.weights_
    assert with_concepts.weights_["difficulty.weight"][0, 0] == 0.0  # the unknown item has difficulty 0
    assert np.any(with_concepts.weights_["difficulty.weight"][1:] != 0.0)  # the known items' were learned
    items = make(name, epochs=1, unit="item").fit(train)
    assert "difficulty.weight" not in items.weights_
    assert "difficulty.weight" not in make(name, epochs=1, rasch=False).fit(train).weights_


def test_simplekt_attention_has_no_decay_and_positions_tell_the_order(make_table) -> None:
    answers = [(f"l{k}", f"q{j % 5}", (f"c{j % 3}",), (k * j + j // 2) % 2) for k in range(12) for j in range(10)]
    table = make_table(answers)
    history = [("q0", ("c0",), 1), ("q1", ("c1",), 0), ("q2", ("c2",), 1)]

    def after(model: SequenceModel, order: list[int]) -> float:
        online = copy.deepcopy(model)
        for j in order:
            item, concepts, correct = history[j]
            online.learn_one({"learner_id": "x", "item_id": item, "concept_ids": concepts, "correct": correct})
        return online.predict_one("x", "q3", ("c0",))

    # one layer without positions: keys and values of the earlier answers are a set, their order cannot matter
    plain = make("simplekt", blocks=1, position=False, epochs=2).fit(table)
    assert not any(k.endswith("gammas") for k in plain.weights_)  # ordinary attention, no monotonic decay
    assert after(plain, [0, 1, 2]) == pytest.approx(after(plain, [1, 0, 2]), abs=1e-12)
    assert after(plain, [0, 1, 2]) != pytest.approx(after(plain, [0, 2]), abs=1e-6)
    # with the position encoding (the default) a reordering is seen
    positioned = make("simplekt", blocks=1, epochs=2).fit(table)
    assert abs(after(positioned, [0, 1, 2]) - after(positioned, [1, 0, 2])) > 1e-6


def test_saved_model_restores_learners_and_refuses_other_format_versions(fitted: SequenceModel, split,
                                                                         tmp_path) -> None:
    train, test = split
    learner = train.column("learner_id")[0].as_py()
    fitted.learn_one({"learner_id": "online", "item_id": "q-new", "concept_ids": ("c-new",), "correct": 1})
    path = fitted.save(tmp_path / "model")
    loaded = KnowledgeModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    for x in (learner, "online"):
        assert loaded.mastery(x) == fitted.mastery(x)
        for key, value in fitted.get_learner_state(x).items():
            np.testing.assert_array_equal(loaded.get_learner_state(x)[key], value)
    meta = json.loads((path / "model.json").read_text())
    meta["format_version"] = 999
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactVersionError, match="format_version"):
        KnowledgeModel.load(path)


@pytest.mark.parametrize("params", [
    {"window": 7}, {"window": 0}, {"unit": "skill"}, {"epochs": 0}, {"lr": 0.0}, {"dropout": 1.0},
    {"valid_share": 1.0}, {"seed": 1.5}, {"device": "tpu"}, {"batch_size": True}, {"lr_decay": 0.0},
    {"lr_decay": 1.5}, {"lr_decay": "half"},
])
@pytest.mark.parametrize("name", list(CLASSES))
def test_bad_hyperparameters_are_refused(name: str, params: dict, split) -> None:
    with pytest.raises(InputError):
        make(name, **params).fit(split[0])


@pytest.mark.parametrize("model, field", [
    (DKT(cell="rnn"), "cell"), (DKT(hidden=0), "hidden"), (SAKT(dim=10, heads=4), "heads"),
    (SAKT(query_position=1), "query_position"), (AKT(d_ff=1), "d_ff"), (AKT(rasch="yes"), "rasch"),
    (AKT(l2=-1.0), "l2"), (SimpleKT(dim=10, heads=4), "heads"), (SimpleKT(blocks=0), "blocks"),
    (SimpleKT(d_ff=1), "d_ff"), (SimpleKT(rasch=1), "rasch"), (SimpleKT(l2=float("nan")), "l2"),
    (SimpleKT(position="no"), "position"),
])
def test_bad_model_hyperparameters_name_the_field(model: SequenceModel, field: str, split) -> None:
    with pytest.raises(InputError) as info:
        model.fit(split[0])
    assert info.value.field == field


def test_concept_unit_needs_concepts(make_table) -> None:
    table = make_table([("a", "q1", (), 1), ("a", "q2", (), 0)])
    with pytest.raises(InputError, match="concept"):
        make("dkt", unit="concept").fit(table)
    for name in ("akt", "simplekt"):
        model = make(name, epochs=1).fit(table)  # auto: items when there are no concepts
        assert model.vocab_.unit == "item" and model.mastery("a") == {}
