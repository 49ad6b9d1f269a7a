"""OnlineStateUpdater: log entries -> learner states, exactly once, equal to replaying learn_one."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.events import InteractionEvent
from knowtrace.exceptions import InputError
from knowtrace.models import ModelError, OnlineModel, get_model_class
from knowtrace.simulate import simulated_interactions
from knowtrace.state import LearnerState, OnlineStateUpdater, StateError, StateStore, open_state
from knowtrace.state.updater import model_arrays
from knowtrace.stream.log import LogEntry, LogRecord

Answer = tuple[str, str, tuple[str, ...], int]  # learner, item, concepts, correct


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return simulated_interactions(learners=30, items=12, concepts=3, weeks=1, sessions_per_week=2,
                                  answers_per_session=8, seed=11)


@pytest.fixture(scope="module")
def pristine(table: pa.Table) -> dict[str, OnlineModel]:
    """Fitted models never handed to an updater (tests deep-copy them)."""
    return {name: get_model_class(name)(**get_model_class(name)._test_params()).fit(table) for name in ("elo", "bkt")}


@pytest.fixture
def deployed(pristine: dict[str, OnlineModel]) -> dict[str, tuple[OnlineModel, str]]:
    return {name: (copy.deepcopy(model), "v1") for name, model in pristine.items()}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    opened = open_state(url)
    yield opened
    opened.close()


def entries(answers: list[Answer], *, start: int = 0, tenant: str = "default") -> list[LogEntry]:
    out = []
    for k, (learner, item, concepts, correct) in enumerate(answers):
        # a distinct seq: answers with the same content are one answer (one event id) and learned once
        event = InteractionEvent(tenant=tenant, learner_id=learner, item_id=item, concept_ids=concepts,
                                 correct=correct, source="stream", seq=start + k)
        out.append(LogEntry(offset=start + k, record=LogRecord("event", tenant, event.model_dump(mode="json"))))
    return out


def stream_answers(table: pa.Table, n: int, seed: int = 0) -> list[Answer]:
    """``n`` answers of new learners and of learners seen in fit, to items of the training data."""
    rng = np.random.default_rng(seed)
    rows = table.select(["item_id", "concept_ids"]).to_pylist()
    trained = table.column("learner_id")
    learners = ["new-1", "new-2", "new-3", trained[0].as_py(), trained[-1].as_py()]
    out = []
    for _ in range(n):
        row = rows[int(rng.integers(len(rows)))]
        out.append((learners[int(rng.integers(len(learners)))], row["item_id"], tuple(row["concept_ids"]),
                    int(rng.integers(2))))
    return out


def replayed(model: OnlineModel, answers: list[Answer]) -> OnlineModel:
    """A copy of ``model`` that learnt the answers one by one, shared parameters frozen."""
    copy_ = copy.deepcopy(model)
    for learner, item, concepts, correct in answers:
        copy_.learn_one({"learner_id": learner, "item_id": item, "concept_ids": concepts, "correct": correct},
                        update_shared=False)
    return copy_


def snapshot(store: StateStore, tenant: str, models: list[str]) -> dict:
    out = {}
    for name in models:
        for learner, s in store.get_many(tenant, name, store.learners(tenant, name)).items():
            out[name, learner] = (s.version, s.n_answers, s.last_offset, s.updated_at, s.mastery,
                                  {k: (v.dtype.str, v.tolist()) for k, v in s.arrays.items()})
    return out


def restored(model: OnlineModel, state: LearnerState, learner: str) -> OnlineModel:
    out = copy.deepcopy(model)
    out.set_learner_state(learner, model_arrays(state))
    return out


def test_states_equal_replaying_the_answers(store: StateStore, deployed, pristine, table: pa.Table) -> None:
    answers = stream_answers(table, 60)
    updater = OnlineStateUpdater(store, deployed, clock=lambda: 99.0)
    log = entries(answers)
    assert updater.apply(log[:25]) == 2 * 25
    for entry in log[25:]:  # the rest one entry per batch
        assert updater.apply([entry]) == 2
    items = table.column("item_id").unique().to_pylist()
    for name in ("elo", "bkt"):
        expected = replayed(pristine[name], answers)
        learners = sorted({a[0] for a in answers})
        assert store.learners("default", name) == learners
        for learner in learners:
            stored = store.get("default", name, learner)
            assert stored is not None and stored.version == "v1" and stored.updated_at == 99.0
            mine = [k for k, a in enumerate(answers) if a[0] == learner]
            assert stored.n_answers == len(mine) and stored.last_offset == mine[-1]
            model = restored(pristine[name], stored, "someone")
            for item in items:
                assert model.predict_one("someone", item) == expected.predict_one(learner, item)
            assert stored.mastery == expected.mastery(learner)
            assert all(type(p) is float and (se is None or type(se) is float) for p, se in stored.mastery.values())
    # BKT reports an uncertainty, Elo none
    assert all(se is not None for _, se in store.get("default", "bkt", "new-1").mastery.values())
    assert all(se is None for _, se in store.get("default", "elo", "new-1").mastery.values())
    # the deployed models forgot the learners again, and kept their shared parameters
    for name, (model, _) in deployed.items():
        for learner in ("new-1", "new-2"):
            np.testing.assert_equal(model.get_learner_state(learner), pristine[name].get_learner_state("never-seen"))
        assert model.item_concepts_ == pristine[name].item_concepts_
    assert deployed["elo"][0].item_difficulty_ == pristine["elo"].item_difficulty_


def test_learners_seen_in_fit_continue_from_their_fitted_state(store: StateStore, deployed, pristine,
                                                               table: pa.Table) -> None:
    learner = table.column("learner_id")[0].as_py()
    answers = [(learner, "item-x", ("concept-x",), 1), (learner, table.column("item_id")[0].as_py(), (), 0)]
    OnlineStateUpdater(store, deployed).apply(entries(answers))
    for name in ("elo", "bkt"):
        stored = store.get("default", name, learner)
        assert stored is not None and stored.n_answers == 2
        expected = replayed(pristine[name], answers)
        np.testing.assert_equal(model_arrays(stored), expected.get_learner_state(learner))
        assert stored.mastery == expected.mastery(learner)


def test_applying_the_same_entries_again_changes_nothing(store: StateStore, deployed, table: pa.Table) -> None:
    log = entries(stream_answers(table, 40))
    times = iter(range(100))
    updater = OnlineStateUpdater(store, deployed, clock=lambda: float(next(times)))
    assert updater.apply(log) == 80
    once = snapshot(store, "default", ["elo", "bkt"])
    assert updater.apply(log) == 0
    assert updater.apply(list(reversed(log[10:20]))) == 0
    assert snapshot(store, "default", ["elo", "bkt"]) == once


def test_a_redelivered_overlapping_batch_is_applied_once(store: StateStore, deployed, pristine, table: pa.Table,
                                                         tmp_path: Path) -> None:
    log = entries(stream_answers(table, 50, seed=3))
    # the worker applied and wrote the first 30 entries, then died before acknowledging 20..29
    crashed = OnlineStateUpdater(store, deployed, clock=lambda: 1.0)
    crashed.apply(log[:30])
    restarted = OnlineStateUpdater(store, {n: (copy.deepcopy(m), "v1") for n, m in pristine.items()},
                                   clock=lambda: 1.0)
    applied = restarted.apply(log[20:])
    assert applied == 2 * 20
    reference = open_state(f"sqlite:///{tmp_path / 'reference.db'}")
    OnlineStateUpdater(reference, {n: (copy.deepcopy(m), "v1") for n, m in pristine.items()},
                       clock=lambda: 1.0).apply(log)
    assert snapshot(store, "default", ["elo", "bkt"]) == snapshot(reference, "default", ["elo", "bkt"])
    reference.close()


def test_a_failed_write_leaves_states_and_models_as_before(store: StateStore, deployed, pristine, table: pa.Table,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    trained = table.column("learner_id").unique()[5].as_py()  # a training learner not yet in the store
    answers = stream_answers(table, 30, seed=5) + [(trained, table.column("item_id")[1].as_py(), (), 1)]
    assert trained not in {a[0] for a in answers[:10]}
    log = entries(answers)
    updater = OnlineStateUpdater(store, deployed, clock=lambda: 1.0)
    updater.apply(log[:10])
    before = snapshot(store, "default", ["elo", "bkt"])

    def refuse(*_: object) -> None:
        raise StateError("the store went away")

    monkeypatch.setattr(store, "put_many", refuse)
    with pytest.raises(StateError, match="went away"):
        updater.apply(log[10:])
    monkeypatch.undo()
    assert snapshot(store, "default", ["elo", "bkt"]) == before
    for name, (model, _) in deployed.items():  # the training learner keeps its fitted state in memory
        np.testing.assert_equal(model.get_learner_state(trained), pristine[name].get_learner_state(trained))
    assert updater.apply(log[10:]) == 2 * (len(log) - 10)
    for name in ("elo", "bkt"):
        expected = replayed(pristine[name], answers)
        for learner in {a[0] for a in answers}:
            np.testing.assert_equal(model_arrays(store.get("default", name, learner)), expected.get_learner_state(learner))


def test_a_new_model_version_starts_learners_afresh(store: StateStore, deployed, pristine, table: pa.Table) -> None:
    answers = [("only-before", "i1", ("c1",), 1), *stream_answers(table, 29, seed=7)]
    OnlineStateUpdater(store, deployed).apply(entries(answers[:20]))
    v2 = {"elo": (copy.deepcopy(pristine["elo"]), "v2"), "bkt": deployed["bkt"]}
    OnlineStateUpdater(store, v2).apply(entries(answers[20:], start=20))
    elo_fresh = replayed(pristine["elo"], answers[20:])
    bkt_all = replayed(pristine["bkt"], answers)
    for learner in {a[0] for a in answers[20:]}:
        elo = store.get("default", "elo", learner)
        bkt = store.get("default", "bkt", learner)
        assert elo.version == "v2" and bkt.version == "v1"
        assert elo.n_answers == sum(a[0] == learner for a in answers[20:])
        assert bkt.n_answers == sum(a[0] == learner for a in answers)
        np.testing.assert_equal(model_arrays(elo), elo_fresh.get_learner_state(learner))
        np.testing.assert_equal(model_arrays(bkt), bkt_all.get_learner_state(learner))
    # a learner with no answer since the new version keeps the old state until it answers
    assert store.get("default", "elo", "only-before").version == "v1"


def test_rejections_are_ignored_and_tenants_kept_apart(store: StateStore, deployed, pristine) -> None:
    log = entries([("u1", "i1", ("c1",), 1), ("u1", "i2", ("c1",), 1)], tenant="a")
    log += entries([("u1", "i1", ("c1",), 0)], start=2, tenant="b")
    log.append(LogEntry(3, LogRecord("rejection", "a", {"reason": "bad", "field": "correct", "raw": "{}",
                                                        "index": 0})))
    assert OnlineStateUpdater(store, deployed).apply(log) == 2 * 3
    a, b = store.get("a", "elo", "u1"), store.get("b", "elo", "u1")
    assert (a.n_answers, a.last_offset, b.n_answers, b.last_offset) == (2, 1, 1, 2)
    assert a.arrays["skill"][0] > 0 > b.arrays["skill"][0]
    assert store.learners("default", "elo") == []


def test_models_per_tenant(store: StateStore, pristine) -> None:
    per_tenant = {"a": {"elo": (copy.deepcopy(pristine["elo"]), "a-1")},
                  "b": {"bkt": (copy.deepcopy(pristine["bkt"]), "b-7")}}
    log = entries([("u1", "i1", ("c1",), 1)], tenant="a") + entries([("u1", "i1", ("c1",), 1)], start=1, tenant="b")
    assert OnlineStateUpdater(store, per_tenant.__getitem__).apply(log) == 2
    assert store.get("a", "elo", "u1").version == "a-1" and store.get("a", "bkt", "u1") is None
    assert store.get("b", "bkt", "u1").version == "b-7" and store.get("b", "elo", "u1") is None


def test_bad_events_and_models_are_refused(store: StateStore, deployed, pristine) -> None:
    updater = OnlineStateUpdater(store, deployed)
    bad = entries([("u1", "i1", ("c1",), 1)])[0]
    payload = {**bad.record.payload, "correct": 3, "score": None}
    with pytest.raises(InputError, match="offset 7") as exc:
        updater.apply([LogEntry(7, LogRecord("event", "default", payload))])
    assert exc.value.field == "correct"
    with pytest.raises(InputError, match="learner_id"):
        updater.apply([LogEntry(8, LogRecord("event", "default", {"item_id": "x"}))])
    assert store.learners("default", "elo") == []
    with pytest.raises(ModelError, match="keeps no exportable learner state"):
        OnlineStateUpdater(store, {"irt": (_FittedWithoutState(), "v1")})
    with pytest.raises(ModelError, match="not fitted"):
        OnlineStateUpdater(store, {"elo": (get_model_class("elo")(), "v1")})
    with pytest.raises(InputError, match="version"):
        OnlineStateUpdater(store, {"elo": (pristine["elo"], "")})
    with pytest.raises(InputError, match="not an online model"):
        OnlineStateUpdater(store, {"rate": (get_model_class("global_rate")(), "v1")})


class _FittedWithoutState(get_model_class("irt")):  # type: ignore[misc]
    """An online model that keeps no exportable learner state, marked fitted without training."""

    def __init__(self) -> None:
        super().__init__()
        self.n_train_ = 1


def test_a_stored_state_that_does_not_fit_the_model_is_reported(store: StateStore, deployed) -> None:
    store.put_many("default", {("elo", "u1"): LearnerState(model="elo", version="v1", arrays={"x": np.zeros(1)})})
    with pytest.raises(StateError, match="learner 'u1'.*does not fit"):
        OnlineStateUpdater(store, deployed).apply(entries([("u1", "i1", ("c1",), 1)]))


@pytest.fixture(scope="module")
def dkt(table: pa.Table) -> OnlineModel:
    return get_model_class("dkt")(hidden=8, epochs=1, window=8, batch_size=16).fit(table)


def test_dkt_states_equal_replaying_the_answers(tmp_path: Path, dkt: OnlineModel, table: pa.Table) -> None:
    store = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    answers = stream_answers(table, 30, seed=9)  # more than a window of 8 per learner for some
    log = entries(answers)
    updater = OnlineStateUpdater(store, {"dkt": (copy.deepcopy(dkt), "d1")})
    for start in range(0, len(log), 7):
        updater.apply(log[start:start + 7])
    expected = replayed(dkt, answers)
    item = table.column("item_id")[0].as_py()
    for learner in {a[0] for a in answers}:
        stored = store.get("default", "dkt", learner)
        assert stored.arrays["count"][0] == expected.get_learner_state(learner)["count"][0]
        model = restored(dkt, stored, "someone")
        assert model.predict_one("someone", item) == pytest.approx(expected.predict_one(learner, item), abs=1e-12)
        mastery = expected.mastery(learner)
        assert stored.mastery.keys() == mastery.keys()
        for concept, (p, se) in mastery.items():
            assert stored.mastery[concept][0] == pytest.approx(p, abs=1e-12) and stored.mastery[concept][1] is se
    store.close()


def test_an_answer_that_reaches_the_log_twice_is_learned_once(tmp_path: Path) -> None:
    """A client that lost the response resends the request: same event, new offset."""
    from knowtrace.events import InteractionEvent
    from knowtrace.lake.frames import events_to_table
    from knowtrace.models import get_model_class
    from knowtrace.state.sqlite_store import SQLiteStateStore
    from knowtrace.state.updater import OnlineStateUpdater
    from knowtrace.stream.log import LogEntry, LogRecord

    elo = get_model_class("elo")().fit(events_to_table([]))
    store = SQLiteStateStore(tmp_path / "state.db")
    updater = OnlineStateUpdater(store, {"elo": (elo, "v1")})

    def entry(offset: int, seq: int) -> LogEntry:
        event = InteractionEvent(learner_id="ada", item_id=f"q{seq}", correct=1, seq=seq, concept_ids=["c"])
        return LogEntry(offset, LogRecord("event", "default", event.model_dump(mode="json")))

    assert updater.apply([entry(1, 0), entry(2, 1)]) == 2
    assert updater.apply([entry(3, 0), entry(4, 1), entry(5, 2)]) == 1  # offsets 3 and 4 resend 1 and 2
    state = store.get("default", "elo", "ada")
    assert state is not None and state.n_answers == 3 and state.last_offset == 5
    once = get_model_class("elo")().fit(events_to_table([]))
    for seq in range(3):
        once.learn_one({"learner_id": "ada", "item_id": f"q{seq}", "correct": 1, "concept_ids": ["c"]},
                       update_shared=False)
    assert state.mastery["c"][0] == pytest.approx(once.mastery("ada")["c"][0])
