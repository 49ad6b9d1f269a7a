"""Exposure control: randomesque-k and Sympson–Hetter, with SH parameters calibrated by simulation."""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowtrace.cat.bank import ItemBank
from knowtrace.exceptions import InputError

if TYPE_CHECKING:
    from knowtrace.cat.session import CatConfig

__all__ = [
    "ExposureConfig",
    "ExposureControl",
    "SympsonHetterCalibration",
    "calibrate_sympson_hetter",
    "parse_exposure",
]


class ExposureConfig(BaseModel):
    """``none``; ``randomesque`` (uniform among the ``k`` best items); ``sympson-hetter`` (the best item is
    given with probability ``parameters[i]``, else set aside for this examinee and the next one tried)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["none", "randomesque", "sympson-hetter"] = "none"
    k: int = Field(default=5, ge=1)
    #: Sympson–Hetter target: the highest share of examinees who should see any item
    target: float = Field(default=0.2, gt=0, le=1)
    #: Sympson–Hetter exposure-control parameters, one per bank item (from calibrate_sympson_hetter)
    parameters: tuple[float, ...] | None = None


def parse_exposure(text: str | None) -> ExposureConfig:
    """``none``, ``randomesque:K`` or ``sympson-hetter:TARGET`` (alias ``sh:TARGET``)."""
    if text is None or not text.strip() or text.strip().lower() == "none":
        return ExposureConfig()
    kind, _, value = text.strip().lower().partition(":")
    try:
        if kind in ("randomesque", "random"):
            return ExposureConfig(method="randomesque", k=int(value) if value else 5)
        if kind in ("sympson-hetter", "sh", "sympson_hetter"):
            return ExposureConfig(method="sympson-hetter", target=float(value) if value else 0.2)
    except ValueError as exc:
        raise InputError(f"bad exposure control {text!r}: {exc}", field="exposure") from None
    raise InputError(f"unknown exposure control {text!r}; use none, randomesque:K or sympson-hetter:TARGET",
                     field="exposure")


class ExposureControl:
    """Picks the item to give from the criterion scores (``-inf`` = not allowed)."""

    def __init__(self, config: ExposureConfig, bank: ItemBank) -> None:
        self.config = config
        self.method = config.method
        if config.method == "sympson-hetter":
            if config.parameters is None:
                raise InputError("sympson-hetter exposure control needs calibrated parameters: run "
                                 "knowtrace.cat.calibrate_sympson_hetter(bank, config) first", field="exposure")
            if len(config.parameters) != len(bank):
                raise InputError(f"{len(config.parameters)} Sympson-Hetter parameters for a bank of {len(bank)} "
                                 "items", field="exposure")
            self.k_params = np.asarray(config.parameters, dtype=np.float64)
            if np.any(~np.isfinite(self.k_params) | (self.k_params < 0) | (self.k_params > 1)):
                raise InputError("Sympson-Hetter parameters must be in [0, 1]", field="exposure")

    def choose(self, scores: np.ndarray, rng: np.random.Generator) -> tuple[int, list[int]]:
        """``(item, set_aside)``: the item to give and the items Sympson–Hetter set aside on the way."""
        if self.method == "randomesque":
            finite = np.isfinite(scores)
            n = int(finite.sum())
            k = min(self.config.k, n)
            if k <= 1:
                return int(scores.argmax()), []
            top = np.argpartition(-scores, k - 1)[:k]
            top.sort()  # argpartition's order is not part of its contract; the choice must be reproducible
            return int(top[rng.integers(k)]), []
        if self.method == "sympson-hetter":
            work = scores.copy()
            first = int(np.argmax(work))
            set_aside: list[int] = []
            item = first
            while True:
                if rng.random() < self.k_params[item]:
                    return item, set_aside
                set_aside.append(item)
                work[item] = -np.inf
                item = int(np.argmax(work))
                if not np.isfinite(work[item]):  # every candidate set aside: give the best one after all
                    set_aside.remove(first)
                    return first, set_aside
        return int(scores.argmax()), []


@dataclass
class SympsonHetterCalibration:
    """Calibrated parameters and, per iteration, the largest exposure rate seen with the parameters used."""

    parameters: np.ndarray
    targets: np.ndarray
    max_exposure: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def iterations(self) -> int:
        """Simulation rounds run."""
        return len(self.max_exposure)


def calibrate_sympson_hetter(
    bank: ItemBank,
    config: CatConfig,
    *,
    examinees: int = 1000,
    theta_mean: float = 0.0,
    theta_sd: float = 1.0,
    iterations: int = 20,
    tolerance: float = 0.01,
    seed: int = 0,
    on_iteration: Callable[[int, float], None] | None = None,
) -> SympsonHetterCalibration:
    """Sympson–Hetter parameters by iterated simulation (Sympson & Hetter 1985).

    Each round simulates ``examinees`` fresh simulees from N(theta_mean, theta_sd) with the current
    parameters ``K``, counts how often each item was selected (``P(S)``) and given (``P(A)``), and sets
    ``K_i = r_i / P(S_i)`` where ``P(S_i) > r_i`` (else 1), ``r_i`` being the config's target capped by
    the item's exposure limit. Stops when every ``P(A_i) <= r_i + tolerance`` (``converged``) or after
    ``iterations`` rounds; the parameters returned are those of the round whose largest excess over
    the targets was smallest (simulation noise makes later rounds oscillate around the target)."""
    from knowtrace.cat.simulation import simulate  # the simulation uses the engine, which uses this module

    if examinees < 1 or iterations < 1:
        raise InputError("Sympson-Hetter calibration needs examinees >= 1 and iterations >= 1", field="examinees")
    target = config.exposure.target
    targets = np.minimum(target, bank.exposure_limits)
    k_params = np.ones(len(bank))
    out = SympsonHetterCalibration(k_params, targets)
    best_excess = math.inf
    seeds = np.random.SeedSequence(seed).spawn(iterations)
    for round_no in range(iterations):
        exposure = ExposureConfig(method="sympson-hetter", target=target, parameters=tuple(k_params.tolist()))
        round_config = config.model_copy(update={"exposure": exposure})
        rng = np.random.default_rng(seeds[round_no])
        thetas = rng.normal(theta_mean, theta_sd, examinees)
        result = simulate(bank, round_config, thetas, seed=int(rng.integers(2**63)))
        given = result.exposure_rates
        selected = (result.administered_counts + result.set_aside_counts) / examinees
        excess = float(np.max(given - targets))
        if not out.max_exposure or excess < best_excess:
            out.parameters, best_excess = k_params, excess
        out.max_exposure.append(float(given.max()))
        if on_iteration is not None:
            on_iteration(round_no + 1, float(given.max()))
        if np.all(given <= targets + tolerance):
            out.converged = True
            break
        k_params = np.where(selected > targets, targets / np.maximum(selected, 1e-12), 1.0)
    return out
