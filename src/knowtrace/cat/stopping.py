"""Stopping rules: SE threshold, fixed length, small change in ability, SPRT classification, any/all.

A :class:`StoppingRule` always stops at ``max_items`` (or when no item is left), never stops before
``min_items``, and in between stops when its ``criterion`` is met. Criteria are pydantic models, so
a rule (nested ``any``/``all`` included) serialises with a session.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowtrace.exceptions import InputError

__all__ = [
    "AllOf",
    "AnyOf",
    "Criterion",
    "Length",
    "SEBelow",
    "SPRT",
    "StopDecision",
    "StopView",
    "StopState",
    "StoppingRule",
    "ThetaChange",
    "parse_stop",
]


class StopState(Protocol):
    """What a rule may look at: test length, the estimate and its history, the log-likelihood.
    A running :class:`~knowtrace.cat.session.Session` is one."""

    @property
    def n_items(self) -> int: ...
    @property
    def theta(self) -> float: ...
    @property
    def se(self) -> float: ...
    @property
    def thetas(self) -> list[float]: ...
    @property
    def items_left(self) -> int: ...
    def log_likelihood(self, theta: float) -> float: ...


@dataclass
class StopView:
    """A :class:`StopState` given by its values (to check rules outside a session)."""

    n_items: int
    theta: float
    se: float
    thetas: list[float]
    log_likelihood: Callable[[float], float]
    items_left: int


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def met(self, view: StopState) -> str | None:  # pragma: no cover - every rule overrides it
        """Why the test may stop (a short reason), or None."""
        raise NotImplementedError

    def walk(self) -> Iterator[_Rule]:
        """This rule and the rules inside it."""
        yield self


class SEBelow(_Rule):
    """The standard error is at most ``threshold``."""

    kind: Literal["se"] = "se"
    threshold: float = Field(gt=0)

    def met(self, view: StopState) -> str | None:
        return f"se {view.se:.3f} <= {self.threshold:g}" if view.se <= self.threshold else None


class Length(_Rule):
    """At least ``n`` items were given (a fixed-length test when alone)."""

    kind: Literal["length"] = "length"
    n: int = Field(ge=1)

    def met(self, view: StopState) -> str | None:
        return f"length {view.n_items} >= {self.n}" if view.n_items >= self.n else None


class ThetaChange(_Rule):
    """The last answer moved the estimate by less than ``threshold``."""

    kind: Literal["delta"] = "delta"
    threshold: float = Field(gt=0)

    def met(self, view: StopState) -> str | None:
        if len(view.thetas) < 2:
            return None
        change = abs(view.thetas[-1] - view.thetas[-2])
        return f"ability change {change:.4f} < {self.threshold:g}" if change < self.threshold else None


class SPRT(_Rule):
    """Wald's sequential probability ratio test of ``θ ≥ cut + delta`` against ``θ ≤ cut - delta``
    (indifference region ``cut ± delta``) with error rates ``alpha`` and ``beta``."""

    kind: Literal["sprt"] = "sprt"
    cut: float
    delta: float = Field(default=0.2, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    beta: float = Field(default=0.05, gt=0, lt=0.5)

    def log_ratio(self, view: StopState) -> float:
        """log L(cut + delta) - log L(cut - delta) of the answers so far."""
        return view.log_likelihood(self.cut + self.delta) - view.log_likelihood(self.cut - self.delta)

    def decide(self, view: StopState) -> Literal["above", "below"] | None:
        """``above``/``below`` once the ratio crosses a bound, else None."""
        if view.n_items == 0:
            return None
        ratio = self.log_ratio(view)
        if ratio >= math.log((1.0 - self.beta) / self.alpha):
            return "above"
        if ratio <= math.log(self.beta / (1.0 - self.alpha)):
            return "below"
        return None

    def met(self, view: StopState) -> str | None:
        side = self.decide(view)
        return f"sprt: {side} cut {self.cut:g}" if side else None


class AnyOf(_Rule):
    """Met when any of ``rules`` is met."""

    kind: Literal["any"] = "any"
    rules: list[Criterion]

    def met(self, view: StopState) -> str | None:
        for rule in self.rules:
            reason = rule.met(view)
            if reason:
                return reason
        return None

    def walk(self) -> Iterator[_Rule]:
        yield self
        for rule in self.rules:
            yield from rule.walk()


class AllOf(_Rule):
    """Met when every one of ``rules`` is met."""

    kind: Literal["all"] = "all"
    rules: list[Criterion] = Field(min_length=1)

    def met(self, view: StopState) -> str | None:
        reasons = []
        for rule in self.rules:
            reason = rule.met(view)
            if not reason:
                return None
            reasons.append(reason)
        return " and ".join(reasons)

    def walk(self) -> Iterator[_Rule]:
        yield self
        for rule in self.rules:
            yield from rule.walk()


Criterion = Annotated[Union[SEBelow, Length, ThetaChange, SPRT, AnyOf, AllOf], Field(discriminator="kind")]
AnyOf.model_rebuild()
AllOf.model_rebuild()


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop, and why."""

    stop: bool
    reason: str | None = None


class StoppingRule(BaseModel):
    """Hard limits ``min_items``/``max_items`` around an optional criterion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_items: int = Field(default=1, ge=0)
    max_items: int | None = Field(default=50, ge=1)
    criterion: Criterion | None = None

    @model_validator(mode="after")
    def _check(self) -> StoppingRule:
        if self.max_items is not None and self.min_items > self.max_items:
            raise ValueError(f"min_items ({self.min_items}) > max_items ({self.max_items})")
        return self

    def check(self, view: StopState) -> StopDecision:
        """Stop or go on after ``view.n_items`` answers."""
        if view.items_left <= 0:
            return StopDecision(True, "item bank exhausted")
        if self.max_items is not None and view.n_items >= self.max_items:
            return StopDecision(True, f"max length {self.max_items}")
        if view.n_items < self.min_items or self.criterion is None:
            return StopDecision(False)
        reason = self.criterion.met(view)
        return StopDecision(bool(reason), reason)

    def sprt(self) -> SPRT | None:
        """The first SPRT rule inside the criterion, if any (it defines the classification)."""
        if self.criterion is None:
            return None
        return next((r for r in self.criterion.walk() if isinstance(r, SPRT)), None)

    def planned_length(self, bank_size: int) -> int:
        """The longest the test can run (for a-stratification)."""
        return min(self.max_items or bank_size, bank_size)


def parse_stop(text: str, *, mode: Literal["any", "all"] = "any") -> StoppingRule:
    """A rule from ``se:0.3,max:50`` style text.

    Tokens: ``se:X`` (SE at most X), ``max:N``, ``min:N``, ``length:N`` (stop at N items),
    ``delta:X`` (estimate moved less than X), ``sprt:CUT[:DELTA[:ALPHA[:BETA]]]``. The criteria
    (all but min/max) combine by ``mode``: ``any`` or ``all``.
    """
    min_items, max_items = 1, None
    criteria: list[Criterion] = []
    try:
        for token in (t.strip() for t in text.split(",")):
            if not token:
                continue
            kind, _, rest = token.partition(":")
            kind = kind.strip().lower()
            args = [x for x in rest.split(":") if x.strip()] if rest else []
            if kind in ("max", "min", "length", "se", "delta") and len(args) != 1:
                raise ValueError(f"{token!r} needs one value, like {kind}:{'0.3' if kind in ('se', 'delta') else '20'}")
            if kind == "max":
                max_items = int(args[0])
            elif kind == "min":
                min_items = int(args[0])
            elif kind == "length":
                criteria.append(Length(n=int(args[0])))
            elif kind == "se":
                criteria.append(SEBelow(threshold=float(args[0])))
            elif kind == "delta":
                criteria.append(ThetaChange(threshold=float(args[0])))
            elif kind == "sprt":
                if not 1 <= len(args) <= 4:
                    raise ValueError(f"{token!r}: use sprt:CUT[:DELTA[:ALPHA[:BETA]]]")
                names = ("cut", "delta", "alpha", "beta")
                criteria.append(SPRT(**{n: float(v) for n, v in zip(names, args)}))
            else:
                raise ValueError(f"unknown stopping rule {kind!r} (use se, max, min, length, delta, sprt)")
        if max_items is None and not criteria:
            raise ValueError("no rule: give at least max:N or a criterion")
        criterion: Criterion | None
        if not criteria:
            criterion = None
        elif len(criteria) == 1:
            criterion = criteria[0]
        else:
            criterion = AnyOf(rules=criteria) if mode == "any" else AllOf(rules=criteria)
        return StoppingRule(min_items=min_items, max_items=max_items, criterion=criterion)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise InputError(f"bad stopping rule {text!r}: {exc}", field="stop") from None
