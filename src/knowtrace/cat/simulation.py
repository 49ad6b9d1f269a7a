"""Simulated adaptive tests: simulees with known abilities answer through real sessions; precision,
test length, exposure and speed are reported."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knowtrace.cat.bank import ItemBank
from knowtrace.cat.session import CatConfig, CatEngine
from knowtrace.exceptions import InputError

__all__ = ["DEFAULT_BANDS", "SimulationResult", "conditional_metrics", "overlap_rate", "simulate", "simulees"]

#: ability bands of the conditional report
DEFAULT_BANDS: tuple[float, ...] = (-math.inf, -2.0, -1.0, 0.0, 1.0, 2.0, math.inf)


def simulees(n: int, *, mean: float = 0.0, sd: float = 1.0, seed: int = 0) -> np.ndarray:
    """``n`` true abilities drawn from N(mean, sd²)."""
    if n < 1:
        raise InputError(f"need at least one examinee, got {n}", field="examinees")
    if not sd > 0:
        raise InputError(f"the ability sd must be > 0, got {sd}", field="theta_sd")
    return np.random.default_rng(seed).normal(mean, sd, n)


def overlap_rate(counts: np.ndarray, examinees: int, mean_length: float) -> float:
    """Test overlap rate: the mean share of items two examinees have in common,
    ``Σ_k C(m_k, 2) / (C(N, 2) · mean length)`` with ``m_k`` the examinees who saw item ``k``."""
    if examinees < 2 or mean_length <= 0:
        return 0.0
    pairs = examinees * (examinees - 1) / 2.0
    shared = float(np.sum(counts * (counts - 1) / 2.0))
    return shared / (pairs * mean_length)


def conditional_metrics(true: np.ndarray, est: np.ndarray, se: np.ndarray,
                        bands: Sequence[float] = DEFAULT_BANDS) -> list[dict[str, Any]]:
    """Per ability band of the true ability: n, bias, rmse and the mean reported SE."""
    out = []
    for lo, hi in zip(bands[:-1], bands[1:]):
        inside = (true >= lo) & (true < hi)
        n = int(inside.sum())
        err = est[inside] - true[inside]
        finite_se = se[inside][np.isfinite(se[inside])]
        out.append({
            "band": f"[{lo:g}, {hi:g})", "lo": lo if math.isfinite(lo) else None,
            "hi": hi if math.isfinite(hi) else None, "n": n,
            "bias": float(err.mean()) if n else None,
            "rmse": float(np.sqrt(np.mean(err * err))) if n else None,
            "se": float(finite_se.mean()) if finite_se.size else None,
        })
    return out


@dataclass
class SimulationResult:
    """Per simulee: true and estimated ability, SE, items given; per item: how often given or set aside."""

    true_theta: np.ndarray
    estimates: np.ndarray
    ses: np.ndarray
    lengths: np.ndarray
    administered: list[np.ndarray]
    administered_counts: np.ndarray
    set_aside_counts: np.ndarray
    select_seconds: float
    estimate_seconds: float
    steps: int
    traces: list[list[float]] = field(default_factory=list)

    @property
    def examinees(self) -> int:
        """Number of simulees."""
        return len(self.true_theta)

    @property
    def exposure_rates(self) -> np.ndarray:
        """Share of simulees who were given each item."""
        return self.administered_counts / self.examinees

    def metrics(self, bands: Sequence[float] = DEFAULT_BANDS) -> dict[str, Any]:
        """The report: rmse, bias, mean_length, conditional, max/mean exposure, overlap, ms per step."""
        err = self.estimates - self.true_theta
        rates = self.exposure_rates
        mean_length = float(self.lengths.mean())
        steps = max(self.steps, 1)
        return {
            "examinees": self.examinees,
            "rmse": float(np.sqrt(np.mean(err * err))),
            "bias": float(err.mean()),
            "mean_length": mean_length,
            "mean_se": float(np.mean(self.ses[np.isfinite(self.ses)])) if np.isfinite(self.ses).any() else None,
            "conditional": conditional_metrics(self.true_theta, self.estimates, self.ses, bands),
            "max_exposure": float(rates.max()),
            "mean_exposure": float(rates.mean()),
            "unused_items": int(np.sum(self.administered_counts == 0)),
            "overlap": overlap_rate(self.administered_counts, self.examinees, mean_length),
            "select_ms": 1000.0 * self.select_seconds / steps,
            "estimate_ms": 1000.0 * self.estimate_seconds / steps,
        }


def simulate(
    bank: ItemBank,
    config: CatConfig,
    thetas: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    keep_traces: bool = False,
) -> SimulationResult:
    """Run one session per true ability in ``thetas``; answers are drawn from the bank's response model.

    Deterministic for a seed. ``select`` time covers ``next_item`` (stopping check and selection),
    ``estimate`` time covers ``record`` (likelihood update and estimate)."""
    true = np.asarray(thetas, dtype=np.float64).reshape(-1)
    if true.size == 0 or not np.all(np.isfinite(true)):
        raise InputError("true abilities must be a non-empty list of finite numbers", field="thetas")
    engine = CatEngine(bank, config)
    root = np.random.SeedSequence(seed)
    answer_seq, session_seq = root.spawn(2)
    answer_rng = np.random.default_rng(answer_seq)
    session_seeds = session_seq.generate_state(len(true), dtype=np.uint64)
    n = len(true)
    estimates, ses, lengths = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
    administered: list[np.ndarray] = []
    counts = np.zeros(len(bank), dtype=np.int64)
    aside = np.zeros(len(bank), dtype=np.int64)
    traces: list[list[float]] = []
    select_s = estimate_s = 0.0
    steps = 0
    clock = time.perf_counter
    a, b, c, d = bank.a, bank.b, bank.c, bank.d
    for k in range(n):
        session = engine.start(f"sim-{k}", seed=int(session_seeds[k]))
        theta = true[k]
        while True:
            t0 = clock()
            item = session.next_item()
            t1 = clock()
            select_s += t1 - t0
            if item is None:
                break
            j = session.pending
            assert j is not None
            z = a[j] * (theta - b[j])
            s = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            p = c[j] + (d[j] - c[j]) * s
            correct = answer_rng.random() < p
            t2 = clock()
            session.record(item, correct)
            estimate_s += clock() - t2
            steps += 1
        given = np.asarray(session.ability.items, dtype=np.intp)
        administered.append(given)
        counts[given] += 1
        aside += session.set_aside
        estimates[k], ses[k], lengths[k] = session.theta, session.se, len(given)
        if keep_traces:
            traces.append(list(session.thetas))
        if on_progress is not None:
            on_progress(k + 1)
    return SimulationResult(true, estimates, ses, lengths, administered, counts, aside, select_s, estimate_s,
                            steps, traces)
