"""Stopping rules, their combinations and the SPRT classification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from knowtrace.cat import (
    SPRT,
    AllOf,
    AnyOf,
    CatConfig,
    CatEngine,
    ItemBank,
    Length,
    SEBelow,
    StoppingRule,
    ThetaChange,
    parse_stop,
)
from knowtrace.cat.stopping import StopView
from knowtrace.exceptions import InputError


def view(n: int = 5, se: float = 0.5, thetas: list[float] | None = None, left: int = 100) -> StopView:
    thetas = thetas if thetas is not None else [0.0] * n
    return StopView(n_items=n, theta=thetas[-1] if thetas else 0.0, se=se, thetas=thetas,
                    log_likelihood=lambda t: 0.0, items_left=left)


def test_single_rules() -> None:
    assert SEBelow(threshold=0.3).met(view(se=0.29))
    assert not SEBelow(threshold=0.3).met(view(se=0.31))
    assert Length(n=5).met(view(n=5)) and not Length(n=6).met(view(n=5))
    assert ThetaChange(threshold=0.05).met(view(n=3, thetas=[0.1, 0.5, 0.52]))
    assert not ThetaChange(threshold=0.01).met(view(n=3, thetas=[0.1, 0.5, 0.52]))
    assert not ThetaChange(threshold=0.05).met(view(n=1, thetas=[0.5]))


def test_limits_wrap_the_criterion() -> None:
    rule = StoppingRule(min_items=4, max_items=10, criterion=SEBelow(threshold=0.3))
    assert not rule.check(view(n=3, se=0.1)).stop                       # min length vetoes
    assert rule.check(view(n=4, se=0.1)).stop
    assert not rule.check(view(n=9, se=0.5)).stop
    decision = rule.check(view(n=10, se=0.5))
    assert decision.stop and decision.reason == "max length 10"
    assert rule.check(view(n=2, se=0.5, left=0)).reason == "item bank exhausted"
    with pytest.raises(ValueError, match="min_items"):
        StoppingRule(min_items=5, max_items=3)


def test_any_and_all_combine_and_nest() -> None:
    se, change = SEBelow(threshold=0.3), ThetaChange(threshold=0.05)
    both = view(n=3, se=0.2, thetas=[0.0, 0.4, 0.41])
    only_se = view(n=3, se=0.2, thetas=[0.0, 0.4, 0.9])
    only_change = view(n=3, se=0.6, thetas=[0.0, 0.4, 0.41])
    neither = view(n=3, se=0.6, thetas=[0.0, 0.4, 0.9])
    any_rule, all_rule = AnyOf(rules=[se, change]), AllOf(rules=[se, change])
    assert [bool(any_rule.met(v)) for v in (both, only_se, only_change, neither)] == [True, True, True, False]
    assert [bool(all_rule.met(v)) for v in (both, only_se, only_change, neither)] == [True, False, False, False]
    nested = StoppingRule(max_items=40, criterion=AnyOf(rules=[AllOf(rules=[se, change]), Length(n=30)]))
    assert nested.check(both).stop and not nested.check(only_se).stop
    assert nested.check(view(n=30, se=0.9)).stop
    again = StoppingRule.model_validate_json(nested.model_dump_json())
    assert again == nested


def test_parse_stop() -> None:
    rule = parse_stop("se:0.3,max:50")
    assert rule.max_items == 50 and rule.criterion == SEBelow(threshold=0.3)
    rule = parse_stop("se:0.3, delta:0.02, min:5, max:40", mode="all")
    assert rule.min_items == 5 and isinstance(rule.criterion, AllOf) and len(rule.criterion.rules) == 2
    assert isinstance(parse_stop("se:0.3,delta:0.1").criterion, AnyOf)
    assert parse_stop("max:20").criterion is None
    sprt = parse_stop("sprt:0.5:0.3:0.1,max:60").criterion
    assert sprt == SPRT(cut=0.5, delta=0.3, alpha=0.1, beta=0.05)
    for bad in ("se", "se:x", "warp:3", "", "min:9,max:3", "sprt:1:2:3:4:5", "se:-1"):
        with pytest.raises(InputError) as info:
            parse_stop(bad)
        assert info.value.field == "stop"


@pytest.mark.parametrize(("theta", "side"), [(1.8, "above"), (-1.8, "below")])
def test_sprt_classifies_clear_cases_early(theta: float, side: str) -> None:
    bank = ItemBank.generate(300, a_dist="uniform", seed=21)
    config = CatConfig(stopping=parse_stop("sprt:0:0.3,max:60"))
    engine = CatEngine(bank, config)
    decided_early = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        session = engine.start(seed=seed)
        while (item := session.next_item()) is not None:
            p = bank.probability(theta, np.array([bank.index(item)]))[0]
            session.record(item, bool(rng.random() < p))
        got, decided = session.classification()
        assert got == side
        decided_early += decided and session.n_items < 60
        result = session.result()
        assert result.classification == side and result.cut == 0.0
    assert decided_early >= 9


def test_sprt_bounds_follow_wald() -> None:
    rule = SPRT(cut=0.0, delta=0.5, alpha=0.05, beta=0.1)
    upper, lower = math.log(0.9 / 0.05), math.log(0.1 / 0.95)

    def at(ratio: float) -> StopView:
        # log L(θ) linear in θ with slope ratio / (2 delta): log-ratio exactly ``ratio``
        return StopView(n_items=3, theta=0.0, se=1.0, thetas=[0.0], log_likelihood=lambda t: ratio * t,
                        items_left=10)

    assert rule.decide(at(upper + 1e-9)) == "above"
    assert rule.decide(at(upper - 1e-3)) is None
    assert rule.decide(at(lower - 1e-9)) == "below"
    assert rule.decide(at(lower + 1e-3)) is None
