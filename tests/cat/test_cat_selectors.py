"""Item selection: the criteria, never repeating, enemies, content balancing, exposure control."""

from __future__ import annotations

import numpy as np
import pytest

from knowtrace.cat import (
    CatConfig,
    CatEngine,
    ContentBalance,
    EstimatorConfig,
    ExposureConfig,
    ItemBank,
    SelectorConfig,
    calibrate_sympson_hetter,
    make_estimator,
    parse_exposure,
    parse_stop,
    simulate,
    simulees,
)
from knowtrace.cat.selectors import AStratified, KLPosterior, PosteriorWeightedInformation, SelectionContext
from knowtrace.exceptions import InputError


def run(engine: CatEngine, theta: float, seed: int = 0) -> list[str]:
    """Answer one session by the response model at ``theta``; the items given."""
    rng = np.random.default_rng(seed)
    session = engine.start(seed=seed)
    while (item := session.next_item()) is not None:
        session.record(item, bool(rng.random() < engine.bank.probability(theta, np.array([engine.bank.index(item)]))[0]))
    return session.items


def test_max_info_picks_the_argmax_at_the_estimate(bank3: ItemBank) -> None:
    engine = CatEngine(bank3, CatConfig(stopping=parse_stop("max:10")))
    session = engine.start(seed=1)
    rng = np.random.default_rng(3)
    for _ in range(10):
        item = session.next_item()
        info = bank3.information(session.theta)
        info[[bank3.index(i) for i in session.items]] = -np.inf
        assert item == bank3.item_ids[int(np.argmax(info))]
        session.record(item, bool(rng.random() < 0.5))


@pytest.mark.parametrize("name", ["maxinfo", "kl", "mpwi", "astrat"])
def test_no_item_is_given_twice_until_the_bank_runs_out(name: str) -> None:
    bank = ItemBank.generate(25, seed=4)
    engine = CatEngine(bank, CatConfig(selector=SelectorConfig(name=name), stopping=parse_stop("max:100")))
    session = engine.start(seed=0)
    rng = np.random.default_rng(0)
    while (item := session.next_item()) is not None:
        session.record(item, bool(rng.random() < 0.6))
    assert sorted(session.items) == sorted(bank.item_ids)
    assert session.stop_reason == "item bank exhausted"


def test_enemy_items_never_share_a_test() -> None:
    base = ItemBank.generate(60, seed=7)
    order = np.argsort(-base.information(0.0))
    ids = base.item_ids
    pairs = [(ids[order[2 * k]], ids[order[2 * k + 1]]) for k in range(10)]  # the most informative items
    enemies = [[] for _ in ids]
    for x, y in pairs:
        enemies[base.index(x)].append(y)
    bank = ItemBank(ids, base.a, base.b, enemies=enemies)
    engine = CatEngine(bank, CatConfig(stopping=parse_stop("max:30")))
    for seed in range(5):
        given = set(run(engine, theta=float(seed) - 2.0, seed=seed))
        assert len(given) == 30
        for x, y in pairs:
            assert not (x in given and y in given)


def test_content_balancing_hits_its_targets(bank2: ItemBank) -> None:
    targets = {"area-1": 0.5, "area-2": 0.3, "area-3": 0.2}
    config = CatConfig(content=ContentBalance(by="content_area", targets=targets), stopping=parse_stop("max:20"))
    result = simulate(bank2, config, simulees(60, seed=1), seed=2)
    areas = np.array([a or "" for a in bank2.content_areas])
    shares = {k: [] for k in targets}
    for given in result.administered:
        for k in targets:
            shares[k].append(np.mean(areas[given] == k))
    for k, share in targets.items():
        assert abs(np.mean(shares[k]) - share) < 0.03, k
        assert max(abs(np.array(shares[k]) - share)) <= 1 / 20 + 1e-9, k  # every single test within one item


def test_content_targets_must_exist_in_the_bank(bank2: ItemBank) -> None:
    with pytest.raises(InputError, match="'nowhere'"):
        CatEngine(bank2, CatConfig(content=ContentBalance(by="concept", targets={"nowhere": 1.0})))
    with pytest.raises(ValueError):
        ContentBalance(targets={"x": -0.1, "y": 1})


def test_kl_and_mpwi_scores_equal_their_definitions(bank3: ItemBank) -> None:
    config = EstimatorConfig()
    nodes = config.grid.nodes()
    rng = np.random.default_rng(5)
    w = rng.random(len(nodes)) ** 4
    w /= w.sum()
    ctx = SelectionContext(theta=0.4, weights=w, step=3, test_length=20, available=np.ones(len(bank3), bool))
    kl, mpwi = KLPosterior(bank3, nodes).scores(ctx), PosteriorWeightedInformation(bank3, nodes).scores(ctx)
    for j in (0, 17, 99):
        p_hat = bank3.probability(0.4, np.array([j]))[0]
        expected_kl = expected_pwi = 0.0
        for t, wt in zip(nodes, w):
            p = bank3.probability(float(t), np.array([j]))[0]
            expected_kl += wt * (p_hat * np.log(p_hat / p) + (1 - p_hat) * np.log((1 - p_hat) / (1 - p)))
            expected_pwi += wt * bank3.information(float(t))[j]
        assert kl[j] == pytest.approx(expected_kl, rel=1e-9, abs=1e-12)
        assert mpwi[j] == pytest.approx(expected_pwi, rel=1e-9)


def test_a_stratification_moves_up_the_strata(bank2: ItemBank) -> None:
    config = CatConfig(selector=SelectorConfig(name="astrat", strata=4), stopping=parse_stop("max:20"))
    engine = CatEngine(bank2, config)
    selector = engine.selector
    assert isinstance(selector, AStratified)
    given = run(engine, theta=0.5, seed=3)
    strata = [int(selector.stratum[bank2.index(i)]) for i in given]
    assert strata == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    # within a stratum: the available item whose difficulty is closest to the estimate


def test_randomesque_draws_among_the_k_best(bank2: ItemBank) -> None:
    config = CatConfig(exposure=parse_exposure("randomesque:5"), stopping=parse_stop("max:1"))
    engine = CatEngine(bank2, config)
    best = set(np.array(bank2.item_ids)[np.argsort(-bank2.information(0.0))[:5]])
    firsts = {engine.start(seed=s).next_item() for s in range(80)}
    assert firsts == best


def test_sympson_hetter_sets_items_aside_by_their_parameters(bank2: ItemBank) -> None:
    order = np.argsort(-bank2.information(0.0))
    params = np.ones(len(bank2))
    params[order[0]] = 0.0          # never give the best item
    params[order[1]] = 0.5
    config = CatConfig(exposure=ExposureConfig(method="sympson-hetter", parameters=tuple(params)),
                       stopping=parse_stop("max:1"))
    engine = CatEngine(bank2, config)
    firsts = [engine.start(seed=s).next_item() for s in range(400)]
    ids = bank2.item_ids
    assert ids[order[0]] not in firsts
    share = firsts.count(ids[order[1]]) / len(firsts)
    assert 0.4 < share < 0.6
    assert set(firsts) == {ids[order[1]], ids[order[2]]}


def test_sympson_hetter_needs_parameters_for_the_whole_bank(bank2: ItemBank) -> None:
    with pytest.raises(InputError, match="calibrated parameters"):
        CatEngine(bank2, CatConfig(exposure=parse_exposure("sympson-hetter:0.2")))
    with pytest.raises(InputError, match="3 Sympson-Hetter parameters"):
        CatEngine(bank2, CatConfig(exposure=ExposureConfig(method="sympson-hetter", parameters=(1.0, 1.0, 1.0))))
    with pytest.raises(InputError, match="unknown exposure"):
        parse_exposure("lottery:3")


def test_sympson_hetter_calibration_brings_exposure_down() -> None:
    bank = ItemBank.generate(80, seed=9)
    config = CatConfig(exposure=parse_exposure("sympson-hetter:0.3"), stopping=parse_stop("max:8"))
    calibration = calibrate_sympson_hetter(bank, config, examinees=300, iterations=6, seed=1)
    assert calibration.max_exposure[0] == 1.0          # round 1 runs without control
    assert min(calibration.max_exposure) < 0.45
    assert np.all((calibration.parameters >= 0) & (calibration.parameters <= 1))
    controlled = config.model_copy(update={"exposure": config.exposure.model_copy(
        update={"parameters": tuple(calibration.parameters.tolist())})})
    result = simulate(bank, controlled, simulees(300, seed=77), seed=5)
    assert result.exposure_rates.max() < 0.5


def test_exposure_limits_of_the_bank_cap_the_targets() -> None:
    base = ItemBank.generate(80, seed=9)
    limits = np.ones(80)
    best = int(np.argmax(base.information(0.0)))
    limits[best] = 0.05
    bank = ItemBank(base.item_ids, base.a, base.b, exposure_limits=limits)
    config = CatConfig(exposure=parse_exposure("sympson-hetter:0.5"), stopping=parse_stop("max:8"))
    calibration = calibrate_sympson_hetter(bank, config, examinees=200, iterations=3, seed=1)
    assert calibration.targets[best] == 0.05 and calibration.targets[best - 1 if best else 1] == 0.5
    assert calibration.parameters[best] < 0.2


def test_unknown_selector_name() -> None:
    from knowtrace.cat import selector_name

    assert selector_name("KL-EAP") == "kl" and selector_name("mfi") == "maxinfo"
    with pytest.raises(InputError, match="unknown selector"):
        selector_name("best")


def test_posterior_weights_sum_to_one(bank2: ItemBank) -> None:
    est = make_estimator(EstimatorConfig())
    engine = CatEngine(bank2, CatConfig(selector=SelectorConfig(name="kl")))
    session = engine.start(seed=0)
    session.record(session.next_item(), True)
    w = est.posterior(session.ability)
    assert w.sum() == pytest.approx(1.0) and float(w @ est.nodes) == pytest.approx(session.theta)
