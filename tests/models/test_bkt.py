"""Bayesian Knowledge Tracing: EM against brute force, parameter recovery, multi-concept answers,
sparse concepts, online updates, artifacts, and test AUC against pyBKT on ASSIST2009."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.evaluation.split import learner_split
from knowtrace.exceptions import InputError
from knowtrace.models import Interactions, KnowledgeModel, OnlineModel, get_model
from knowtrace.models.bkt import BKT
from knowtrace.models.bkt_em import PARAMS, Bounds, baum_welch, forward_filter

ORDER = ("prior", "learn", "guess", "slip", "forget")


def simulate(params: dict[str, tuple[float, ...]], learners: int, length: int, seed: int) -> pa.Table:
    """Answers drawn from BKT: each learner answers ``length`` items of every concept in turn;
    ``params`` maps concept -> (prior, learn, guess, slip, forget)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("learner_id", "item_id", "concept_ids", "correct", "position")}
    for s in range(learners):
        position = 0
        for concept, (prior, learn, guess, slip, forget) in params.items():
            known = rng.random() < prior
            for _ in range(length):
                rows["learner_id"].append(f"s{s}")
                rows["item_id"].append(f"q-{concept}")
                rows["concept_ids"].append([concept])
                rows["correct"].append(int(rng.random() < ((1 - slip) if known else guess)))
                rows["position"].append(position)
                position += 1
                known = bool(rng.random() >= forget) if known else bool(rng.random() < learn)
    return pa.table({**rows, "correct": pa.array(rows["correct"], pa.int8())})


def recovered(model: BKT) -> dict[str, np.ndarray]:
    return {c: np.array([p[k] for k in ORDER]) for c, p in model.concept_parameters().items()}


# EM kernel against brute force ---------------------------------------------------------------

def brute_force(sequences: list[list[int]], prior: float, learn: float, guess: float, slip: float,
                forget: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Log-likelihood, one EM update and the expected counts behind it, enumerating every hidden path."""
    loglik = 0.0
    counts = np.zeros(10)  # first known, sequences, 0->1, from 0, 1->0, from 1, L0 & right, L0, L1 & wrong, L1
    for obs in sequences:
        paths = list(itertools.product((0, 1), repeat=len(obs)))
        weights = []
        for path in paths:
            w = prior if path[0] else 1 - prior
            for t, (k, o) in enumerate(zip(path, obs)):
                w *= ((1 - slip) if o else slip) if k else (guess if o else 1 - guess)
                if t + 1 < len(path):
                    nxt = path[t + 1]
                    w *= (forget if nxt == 0 else 1 - forget) if k else (learn if nxt else 1 - learn)
            weights.append(w)
        total = sum(weights)
        loglik += math.log(total)
        for path, w in zip(paths, weights):
            q = w / total
            counts[0] += q * path[0]
            for t, (k, o) in enumerate(zip(path, obs)):
                if t + 1 < len(path):
                    counts[2] += q * (k == 0 and path[t + 1] == 1)
                    counts[3] += q * (k == 0)
                    counts[4] += q * (k == 1 and path[t + 1] == 0)
                    counts[5] += q * (k == 1)
                counts[6] += q * (k == 0 and o == 1)
                counts[7] += q * (k == 0)
                counts[8] += q * (k == 1 and o == 0)
                counts[9] += q * (k == 1)
        counts[1] += 1
    update = np.array([counts[0] / counts[1], counts[2] / counts[3], counts[6] / counts[7], counts[8] / counts[9],
                       counts[4] / counts[5]])
    return loglik, update, counts


@pytest.mark.parametrize("forgets", [False, True])
def test_em_step_matches_brute_force(forgets: bool) -> None:
    sequences = [[0, 1, 1, 0, 1], [1], [0, 0], [1, 1, 0, 1, 1, 1], [0, 1, 0]]
    start = np.array([0.35, 0.2, 0.25, 0.15, 0.1 if forgets else 0.0])
    loglik, update, _ = brute_force(sequences, *start)
    obs = np.concatenate([np.array(s) for s in sequences])
    lengths = np.array([len(s) for s in sequences])
    tasks = np.zeros(len(sequences), dtype=np.int64)
    bounds = Bounds(np.zeros(5), np.ones(5))
    one = baum_welch(obs, lengths, tasks, start[None, :], bounds=bounds, forgets=forgets, max_iter=1, tol=0.0)
    assert one.loglik[0] == pytest.approx(loglik, rel=1e-12)
    np.testing.assert_array_equal(one.params[0], start)  # the last E-step's parameters are kept
    two = baum_welch(obs, lengths, tasks, start[None, :], bounds=bounds, forgets=forgets, max_iter=2, tol=0.0)
    expected = update if forgets else np.r_[update[:4], 0.0]
    np.testing.assert_allclose(two.params[0], expected, rtol=1e-10)
    assert two.loglik[0] == pytest.approx(brute_force(sequences, *expected)[0], rel=1e-12)
    assert two.loglik[0] > one.loglik[0]


def test_map_em_step_adds_pseudo_observations() -> None:
    sequences = [[0, 1, 1, 0, 1], [1], [0, 0], [1, 1, 0, 1, 1, 1], [0, 1, 0]]
    start = np.array([0.35, 0.2, 0.25, 0.15, 0.1])
    centre = np.array([0.5, 0.1, 0.2, 0.1, 0.05])
    _, _, counts = brute_force(sequences, *start)
    pseudo = 4.0
    numerators, denominators = counts[[0, 2, 6, 8, 4]], counts[[1, 3, 7, 9, 5]]
    expected = (numerators + pseudo * centre) / (denominators + pseudo)
    obs = np.concatenate([np.array(s) for s in sequences])
    lengths = np.array([len(s) for s in sequences])
    two = baum_welch(obs, lengths, np.zeros(5, dtype=np.int64), start[None, :], bounds=Bounds(np.zeros(5), np.ones(5)),
                     forgets=True, max_iter=2, tol=0.0, pseudo=pseudo, centre=centre)
    np.testing.assert_allclose(two.params[0], expected, rtol=1e-10)
    log_prior = pseudo * np.sum(centre * np.log(expected) + (1 - centre) * np.log(1 - expected))
    assert two.loglik[0] == pytest.approx(brute_force(sequences, *expected)[0] + log_prior, rel=1e-12)


def test_em_tasks_are_independent_and_bounded() -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 30, 60)
    obs = (rng.random(lengths.sum()) < 0.9).astype(np.int8)
    tasks = np.repeat([0, 1, 2], 20)
    init = np.tile([0.3, 0.1, 0.2, 0.1, 0.0], (4, 1))  # task 3 has no sequences
    bounds = Bounds(np.full(5, 1e-6), np.array([1 - 1e-6, 1 - 1e-6, 0.3, 0.1, 0.0]))
    together = baum_welch(obs, lengths, tasks, init, bounds=bounds, forgets=False, max_iter=50, tol=1e-9)
    assert np.all(together.params[:, 2] <= 0.3) and np.all(together.params[:, 3] <= 0.1)
    assert together.n_iter[3] == 0 and np.all(np.isfinite(together.params))
    starts = np.r_[0, np.cumsum(lengths)]
    alone = baum_welch(obs[starts[20]:starts[40]], lengths[20:40], np.zeros(20, dtype=np.int64), init[:1],
                       bounds=bounds, forgets=False, max_iter=50, tol=1e-9)
    np.testing.assert_allclose(together.params[1], alone.params[0], rtol=1e-9)


def test_forward_filter_predicts_before_each_answer() -> None:
    params = np.array([[0.2, 0.3, 0.25, 0.1, 0.0], [0.5, 0.1, 0.2, 0.2, 0.1]])
    before, after = forward_filter(np.array([1, 0, 1, 1]), np.array([3, 1]), np.array([0.2, 0.7]), params)
    p = 0.2
    for t, o in enumerate([1, 0, 1]):
        assert before[t] == pytest.approx(p)
        x = p * (0.9 if o else 0.1)
        f = x / (x + (1 - p) * (0.25 if o else 0.75))
        p = f + (1 - f) * 0.3
    assert after[0] == pytest.approx(p) and before[3] == pytest.approx(0.7)
    f = 0.7 * 0.8 / (0.7 * 0.8 + 0.3 * 0.2)
    assert after[1] == pytest.approx(f * 0.9 + (1 - f) * 0.1)


# parameter recovery --------------------------------------------------------------------------

TRUE = {"a": (0.3, 0.15, 0.2, 0.1, 0.0), "b": (0.6, 0.05, 0.25, 0.15, 0.0), "c": (0.1, 0.3, 0.1, 0.05, 0.0)}


@pytest.fixture(scope="module")
def simulated() -> pa.Table:
    """800 learners x 15 answers per concept from ``TRUE`` (seed 11)."""
    return simulate(TRUE, 800, 15, seed=11)


@pytest.mark.parametrize("forgets", [False, True])
def test_recovers_simulated_parameters(simulated: pa.Table, forgets: bool) -> None:
    model = BKT(restarts=3, forgets=forgets, seed=2).fit(simulated)
    for concept, params in recovered(model).items():
        np.testing.assert_allclose(params[:4], TRUE[concept][:4], atol=0.04, err_msg=concept)
        assert (params[4] < 0.02) if forgets else (params[4] == 0.0)
    assert model.unit_converged_.all()


def test_recovers_forgetting() -> None:
    truth = {"a": (0.3, 0.2, 0.2, 0.1, 0.1), "b": (0.6, 0.1, 0.25, 0.15, 0.05)}
    table = simulate(truth, 1500, 15, seed=12)
    with_forget = BKT(restarts=3, forgets=True, seed=0).fit(table)
    for concept, params in recovered(with_forget).items():
        np.testing.assert_allclose(params, truth[concept], atol=0.05, err_msg=concept)
    without = BKT(restarts=3, forgets=False, seed=0).fit(table)
    assert all(p[4] == 0.0 for p in recovered(without).values())
    assert with_forget.unit_loglik_.sum() > without.unit_loglik_.sum()


def test_smoothing_pulls_small_concepts_towards_the_population(simulated: pa.Table) -> None:
    small = simulate({"d": (0.9, 0.02, 0.45, 0.02, 0.0)}, 6, 4, seed=3)
    small = small.set_column(0, "learner_id", pa.array([f"x{s}" for s in small.column("learner_id").to_pylist()]))
    table = pa.concat_tables([simulated, small])
    plain = BKT(restarts=3, smoothing=0).fit(table)
    shrunk = BKT(restarts=3, smoothing=10).fit(table)
    np.testing.assert_array_equal(plain.fallback_, shrunk.fallback_)  # the centre is the ML population median
    distance = {m: np.abs(recovered(m)["d"] - m.fallback_)[:4].sum() for m in (plain, shrunk)}
    assert distance[shrunk] < 0.5 * distance[plain]
    for concept in TRUE:
        np.testing.assert_allclose(recovered(shrunk)[concept], recovered(plain)[concept], atol=0.01)


def test_bounds_can_be_set_and_are_off_by_default() -> None:
    table = simulate({"odd": (0.5, 0.1, 0.8, 0.4, 0.0)}, 400, 10, seed=8)  # guess > 1 - slip
    bounded = recovered(BKT(restarts=3, smoothing=0, max_guess=0.5, max_slip=0.5).fit(table))["odd"]
    assert bounded[2] < 0.5 and bounded[3] < 0.5
    lifted = recovered(BKT(restarts=3, smoothing=0).fit(table))["odd"]  # as pyBKT: guess and slip in (0, 1)
    assert lifted[2] > 0.6


def test_same_seed_same_fit(simulated: pa.Table) -> None:
    a = BKT(restarts=2, seed=4, max_iter=10).fit(simulated)
    b = BKT(restarts=2, seed=4, max_iter=10).fit(simulated)
    np.testing.assert_array_equal(a.unit_params_, b.unit_params_)


# prediction ----------------------------------------------------------------------------------

MULTI = [
    ("ada", "q1", ("c1",), 1), ("ada", "q2", ("c2",), 0), ("ada", "q12", ("c1", "c2"), 1),
    ("ada", "q1", ("c1",), 1), ("bo", "q2", ("c2",), 1), ("bo", "q12", ("c1", "c2"), 0),
    ("bo", "q2", ("c2",), 1), ("cy", "q1", ("c1",), 0), ("cy", "q12", ("c1", "c2"), 1),
    ("cy", "free", (), 1), ("cy", "free", (), 0), ("ada", "free", (), 1),
]


@pytest.mark.parametrize("combine", ["mean", "min", "product"])
def test_multi_concept_answers_are_predicted_once(make_table, combine: str) -> None:
    model = BKT(restarts=2, min_answers=1, combine=combine).fit(make_table(MULTI))
    test = make_table([("new", "q12", ("c1", "c2"), 1), ("new", "q1", ("c1",), 0), ("new", "q12", ("c1", "c2"), 0)])
    p = model.predict_proba(test)
    assert p.shape == (3,)
    params = model.concept_parameters()

    def correct(concept: str, learned: float) -> float:
        return learned * (1 - params[concept]["slip"]) + (1 - learned) * params[concept]["guess"]

    first = [correct(c, params[c]["prior"]) for c in ("c1", "c2")]
    expected = {"mean": np.mean(first), "min": min(first), "product": np.prod(first)}[combine]
    assert p[0] == pytest.approx(expected)
    # the first answer updated both concepts: c1's knowledge after it drives row 2
    replay = copy.deepcopy(model)
    replay.learn_one({"learner_id": "new", "item_id": "q12", "concept_ids": ["c1", "c2"], "correct": 1})
    assert p[1] == pytest.approx(correct("c1", replay.knowledge("new")["c1"]))
    view = Interactions.from_table(test)
    np.testing.assert_allclose(model._predict(view), OnlineModel._predict(model, view), rtol=0, atol=1e-12)


def test_untagged_items_are_their_own_concept(make_table) -> None:
    model = BKT(restarts=2, min_answers=1).fit(make_table(MULTI))
    assert set(model.mastery("cy")) == {"c1", "c2"}  # the item unit is not a concept
    assert (1, "free") in model.learner_state_["cy"]
    # a row without concepts of an item tagged in training uses the item's concepts
    tagged = model.predict_proba(make_table([("z", "q12", ("c1", "c2"), 1)]))
    untagged = model.predict_proba(make_table([("z", "q12", (), 1)]))
    assert untagged[0] == pytest.approx(tagged[0])
    free = model.predict_proba(make_table([("z", "free", (), 1)]))[0]
    params = model.unit_params_[model._row[(1, "free")]]
    assert free == pytest.approx(params[0] * (1 - params[3]) + (1 - params[0]) * params[2])


def test_vectorised_predictions_equal_the_replay(small_table: pa.Table) -> None:
    train, test = learner_split(small_table, test_fraction=0.3, seed=2)
    model = BKT(restarts=2, forgets=True).fit(train)
    for table in (train, test):
        view = Interactions.from_table(table)
        np.testing.assert_allclose(model._predict(view), OnlineModel._predict(model, view), rtol=0, atol=1e-12)


def test_predict_one_and_learn_one_follow_predict_proba(small_table: pa.Table) -> None:
    train, test = learner_split(small_table, test_fraction=0.3, seed=2)
    model = BKT(restarts=2).fit(train)
    expected = model.predict_proba(test)
    learner = test.column("learner_id")[0].as_py()
    online = copy.deepcopy(model)
    rows = [r for r in test.to_pylist() if r["learner_id"] == learner]
    positions = np.flatnonzero(np.array(test.column("learner_id").to_pylist()) == learner)
    for at, row in zip(positions, sorted(rows, key=lambda r: r["position"])):
        assert online.predict_one(learner, row["item_id"], row["concept_ids"]) == pytest.approx(expected[at], abs=1e-12)
        online.learn_one(row)
    assert online.knowledge(learner) != model.knowledge(learner)
    np.testing.assert_array_equal(online.unit_params_, model.unit_params_)  # parameters change only in fit


def test_training_learners_continue_from_their_state(make_table) -> None:
    model = BKT(restarts=2, min_answers=1).fit(make_table(MULTI))
    row = [("ada", "q1", ("c1",), 1)]
    params = model.concept_parameters()["c1"]
    learned = model.knowledge("ada")["c1"]
    assert learned != params["prior"]
    p = model.predict_proba(make_table(row))[0]
    assert p == pytest.approx(learned * (1 - params["slip"]) + (1 - learned) * params["guess"])
    assert model.predict_proba(make_table([("new", "q1", ("c1",), 1)]))[0] != pytest.approx(p)


def test_mastery_reports_success_probability_and_its_spread(make_table) -> None:
    model = BKT(restarts=2, min_answers=1).fit(make_table(MULTI))
    for concept, (p, sd) in model.mastery("bo").items():
        learned = model.knowledge("bo")[concept]
        params = model.concept_parameters()[concept]
        assert p == pytest.approx(learned * (1 - params["slip"]) + (1 - learned) * params["guess"])
        assert sd == pytest.approx(abs(1 - params["slip"] - params["guess"]) * math.sqrt(learned * (1 - learned)))


# sparse data, bounds and errors --------------------------------------------------------------

def test_sparse_concepts_get_finite_fallback_parameters(make_table, simulated: pa.Table) -> None:
    extra = make_table([("x0", "lonely", ("one-answer",), 1), ("x1", "easy", ("all-right",), 1),
                        ("x2", "easy", ("all-right",), 1), ("x3", "easy", ("all-right",), 1)])
    table = pa.concat_tables([simulated, extra.select(simulated.column_names).cast(simulated.schema)])
    for min_answers in (1, 10):
        model = BKT(restarts=2, min_answers=min_answers, max_guess=0.3, max_slip=0.1, smoothing=0).fit(table)
        assert np.all(np.isfinite(model.unit_params_))
        params = model.concept_parameters()
        for concept in ("one-answer", "all-right"):
            values = np.array([params[concept][k] for k in ORDER])
            assert np.all((values >= 0) & (values <= 1))
            assert values[2] <= 0.3 and values[3] <= 0.1
        fallback = model.unit_fallback_[[model._row[(0, c)] for c in ("one-answer", "all-right", "a")]].tolist()
        if min_answers == 10:
            assert fallback == [1, 1, 0]
            np.testing.assert_array_equal([params["one-answer"][k] for k in ORDER], model.fallback_)
            np.testing.assert_allclose(model.fallback_, np.median(model.unit_params_[model.unit_fallback_ == 0], 0))
        else:
            assert fallback == [0, 0, 0]
    unseen = model.predict_proba(make_table([("z", "nowhere", ("never-seen",), 1)]))[0]
    f = model.fallback_
    assert unseen == pytest.approx(f[0] * (1 - f[3]) + (1 - f[0]) * f[2])


def test_pooled_fallback_when_no_concept_has_enough_answers(make_table) -> None:
    model = BKT(restarts=2, min_answers=1000).fit(make_table(MULTI))
    assert model.unit_fallback_.all() and np.all(np.isfinite(model.fallback_))
    np.testing.assert_array_equal(model.unit_params_, np.tile(model.fallback_, (len(model.unit_params_), 1)))


@pytest.mark.parametrize("params, field", [
    ({"restarts": 0}, "restarts"), ({"max_iter": 1.5}, "max_iter"), ({"tol": -1}, "tol"),
    ({"max_guess": 0.0}, "max_guess"), ({"max_slip": 1.5}, "max_slip"), ({"smoothing": -1.0}, "smoothing"),
    ({"combine": "sum"}, "combine"), ({"min_answers": -1}, "min_answers"), ({"forgets": "yes"}, "forgets"),
])
def test_bad_hyperparameters_are_refused(make_table, params: dict, field: str) -> None:
    with pytest.raises(InputError) as caught:
        BKT(**params).fit(make_table(MULTI))
    assert caught.value.field == field


def test_empty_training_data_is_refused(make_table) -> None:
    with pytest.raises(InputError, match="no interactions"):
        BKT().fit(make_table(MULTI).slice(0, 0))


def test_save_load_keeps_parameters_and_learner_states(make_table, tmp_path: Path) -> None:
    model = BKT(restarts=2, min_answers=1, forgets=True).fit(make_table(MULTI))
    model.learn_one({"learner_id": "dee", "item_id": "q9", "concept_ids": ["c9"], "correct": 1})
    loaded = KnowledgeModel.load(model.save(tmp_path / "bkt"))
    assert isinstance(loaded, BKT) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.unit_params_, model.unit_params_)
    assert loaded.learner_state_ == model.learner_state_
    assert loaded.item_concepts_ == model.item_concepts_
    assert loaded.mastery("dee") == model.mastery("dee") and "c9" in loaded.mastery("dee")
    test = make_table(MULTI[:5])
    np.testing.assert_array_equal(loaded.predict_proba(test), model.predict_proba(test))
    assert get_model("bkt").get_params()["restarts"] == 5


def test_parameter_names_follow_the_kernel_order() -> None:
    assert PARAMS == ORDER


# accuracy against pyBKT on real data ---------------------------------------------------------

def _bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "bkt_vs_pybkt.py"
    spec = importlib.util.spec_from_file_location("bkt_vs_pybkt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_assist2009_auc_at_least_pybkt(shared_data: Path) -> None:
    """Both fitted here on the 10 concepts ranked 41-50 by training answers (pyBKT is ~1000x slower
    than this model: the whole split would take it many minutes), 2 restarts each, scored on
    every test answer of those concepts."""
    bench = _bench()
    train, test = bench.load_split("assist2009", shared_data)
    assert train.num_rows == 176684 and test.num_rows == 101419
    keep = bench.largest_concepts(train, 10, skip=40)
    train, test = bench.only_concepts(train, keep), bench.only_concepts(test, keep)
    options = {"fits": 2, "forgets": False, "seed": 0}
    ours = bench.run_ours(train, test, **options)
    theirs = bench.run_pybkt(train, test, **options)
    assert ours["scored"] == theirs["scored"] == test.num_rows
    assert ours["auc"] >= theirs["auc"]
