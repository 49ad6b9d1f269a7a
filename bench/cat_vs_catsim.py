"""knowtrace's adaptive engine side by side with catsim 0.21.0, same item banks, same true abilities.

(a) The SimulCAT protocol of Han (2018): simulees from N(0, 1), a 300-item 2PL pool, maximum
    information with randomesque-5, stop at SE < 0.3 or 50 items, MLE with fences at ±3.5; then
    the same with EAP (catsim 0.21.0 has no EAP estimator: knowtrace only).
(b) A 500-item 3PL bank, fixed length 20, maximum information: RMSE, and time per step
    (select + estimate); the time per step again with a 1,000-item 3PL bank.
(c) Sympson–Hetter with target 0.2 on the bank of (b): maximum exposure and the RMSE cost
    (catsim's own exposure control, MaxInfoSelector(r_max=0.2), as reference).

Banks (simulated, knowtrace's generator, seeded): 2PL a ~ U(0.5, 2), b ~ N(0, 1); 3PL as 2PL
with a ~ lognormal(0, 0.25) and c ~ U(0.1, 0.25). Both engines get the same parameter arrays and
the same true abilities; each draws its own answers (its own RNG). catsim runs
NumericalSearchEstimator (bounded search on [-6, 6], Dodd's heuristic for all-right/all-wrong
answers; it has no fences) from theta 0 (FixedPointInitializer(0)). Times are means per
administered item measured around each engine's own select and estimate calls
(knowtrace: ``next_item`` incl. the stopping check, and ``record``).

    python bench/cat_vs_catsim.py                       # the full sizes (about 10 minutes)
    python bench/cat_vs_catsim.py --examinees-a 1000    # smaller, while developing
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from knowtrace.cat import (
    CatConfig,
    EstimatorConfig,
    ExposureConfig,
    ItemBank,
    calibrate_sympson_hetter,
    conditional_metrics,
    overlap_rate,
    parse_exposure,
    parse_stop,
    simulate,
    simulees,
)


@dataclass
class Row:
    engine: str
    setting: str
    rmse: float
    bias: float
    mean_length: float
    max_exposure: float
    overlap: float
    unused: int
    select_ms: float
    estimate_ms: float
    seconds: float
    conditional: list[dict[str, Any]]

    @property
    def step_ms(self) -> float:
        return self.select_ms + self.estimate_ms


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_ours(bank: ItemBank, config: CatConfig, thetas: np.ndarray, seed: int, setting: str) -> Row:
    started = time.perf_counter()
    result = simulate(bank, config, thetas, seed=seed)
    seconds = time.perf_counter() - started
    m = result.metrics()
    return Row("knowtrace", setting, m["rmse"], m["bias"], m["mean_length"], m["max_exposure"], m["overlap"],
               m["unused_items"], m["select_ms"], m["estimate_ms"], seconds, m["conditional"])


def run_catsim(bank: ItemBank, thetas: np.ndarray, seed: int, setting: str, *, randomesque: int = 0,
               r_max: float = 1.0, min_error: float | None = None, max_items: int = 20) -> Row:
    from catsim.estimation import NumericalSearchEstimator
    from catsim.initialization import FixedPointInitializer
    from catsim.selection import MaxInfoSelector, RandomesqueSelector
    from catsim.simulation import Simulator
    from catsim.stopping import MinErrorStopper, TestLengthStopper

    items = np.column_stack([bank.a, bank.b, bank.c, bank.d])
    selector = RandomesqueSelector(randomesque) if randomesque else MaxInfoSelector(r_max=r_max)
    estimator = NumericalSearchEstimator()
    stopper = (MinErrorStopper(min_error, max_items=max_items) if min_error is not None
               else TestLengthStopper(max_items=max_items))
    clock = {"select": 0.0, "estimate": 0.0}
    select, estimate = selector.select, estimator.estimate

    def timed_select(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = select(*args, **kwargs)
        clock["select"] += time.perf_counter() - t
        return out

    def timed_estimate(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = estimate(*args, **kwargs)
        clock["estimate"] += time.perf_counter() - t
        return out

    selector.select = timed_select  # type: ignore[method-assign]
    estimator.estimate = timed_estimate  # type: ignore[method-assign]
    started = time.perf_counter()
    # catsim prints its bank validation (an empty line) on stdout: keep it out of the tables
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        simulator = Simulator(items, np.asarray(thetas, dtype=float), FixedPointInitializer(0.0), selector,
                              estimator, stopper, seed=seed)
        simulator.simulate()
    seconds = time.perf_counter() - started
    est = np.asarray(simulator.latest_estimations, dtype=float)
    true = np.asarray(thetas, dtype=float)
    given = [np.asarray(x, dtype=np.intp) for x in simulator.administered_items]
    lengths = np.array([len(g) for g in given])
    counts = np.bincount(np.concatenate(given), minlength=len(bank))
    steps = int(lengths.sum())
    err = est - true
    # catsim's own SE: 1/sqrt(test information) at the estimate, as its MinErrorStopper computes it
    info = [float(np.sum(bank_info(bank, e, g))) for e, g in zip(est, given)]
    se = np.array([1 / np.sqrt(i) if i > 0 else np.inf for i in info])
    return Row("catsim", setting, float(np.sqrt(np.mean(err ** 2))), float(err.mean()), float(lengths.mean()),
               float(counts.max() / len(true)), overlap_rate(counts, len(true), float(lengths.mean())),
               int(np.sum(counts == 0)), 1000 * clock["select"] / steps, 1000 * clock["estimate"] / steps, seconds,
               conditional_metrics(true, est, se))


def bank_info(bank: ItemBank, theta: float, items: np.ndarray) -> np.ndarray:
    return bank.information(float(np.clip(theta, -6, 6)))[items]


def table(rows: list[Row], title: str) -> str:
    out = [f"**{title}**", "",
           "| engine | setting | RMSE | bias | mean length | max exposure | overlap | unused items "
           "| select ms | estimate ms | ms per step | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.engine} | {r.setting} | {r.rmse:.3f} | {r.bias:+.3f} | {r.mean_length:.1f} | "
                   f"{r.max_exposure:.3f} | {r.overlap:.3f} | {r.unused} | {r.select_ms:.3f} | {r.estimate_ms:.3f} | "
                   f"{r.step_ms:.3f} | {r.seconds:.1f} |")
    return "\n".join(out)


def conditional_table(rows: list[Row], title: str) -> str:
    bands = [b["band"] for b in rows[0].conditional]
    out = [f"**{title}** (RMSE / bias by true ability; n per band: "
           + ", ".join(f"{b['band']} {b['n']}" for b in rows[0].conditional) + ")", "",
           "| engine | setting | " + " | ".join(bands) + " |", "|---|---|" + "---|" * len(bands)]
    for r in rows:
        cells = [f"{b['rmse']:.3f} / {b['bias']:+.3f}" if b["n"] else "—" for b in r.conditional]
        out.append(f"| {r.engine} | {r.setting} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average %.2f at the start" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} logical CPUs{load}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, catsim {version('catsim')}")


def part_a(n: int, seed: int, catsim: bool) -> str:
    bank = ItemBank.generate(300, model="2pl", a_dist="uniform", seed=seed)
    thetas = simulees(n, seed=seed + 1)
    stop = parse_stop("se:0.3,max:50")
    rows = []
    for method in ("mle", "eap"):
        log(f"(a) knowtrace {method} …")
        config = CatConfig(estimator=EstimatorConfig(method=method, fences=(-3.5, 3.5)),
                           exposure=parse_exposure("randomesque:5"), stopping=stop)
        label = "MLE, fences ±3.5" if method == "mle" else "EAP, N(0,1) prior"
        rows.append(run_ours(bank, config, thetas, seed + 2, label))
    if catsim:
        log("(a) catsim …")
        rows.insert(1, run_catsim(bank, thetas, seed + 2, "MLE (numerical search, Dodd)", randomesque=5,
                                  min_error=0.3, max_items=50))
    title = (f"(a) SimulCAT protocol: {n:,} simulees N(0,1), 300-item 2PL pool (a ~ U(0.5,2), b ~ N(0,1)), "
             "max information + randomesque-5, stop SE < 0.3 or 50 items")
    return table(rows, title) + "\n\n" + conditional_table(rows, "(a) by ability band")


def part_b(n: int, speed_n: int, seed: int, catsim: bool) -> str:
    bank = ItemBank.generate(500, model="3pl", seed=seed + 10)
    thetas = simulees(n, seed=seed + 11)
    rows = []
    for method in ("mle", "eap"):
        log(f"(b) knowtrace {method} …")
        config = CatConfig(estimator=EstimatorConfig(method=method), stopping=parse_stop("max:20"))
        rows.append(run_ours(bank, config, thetas, seed + 12,
                             "MLE, fences ±3.5" if method == "mle" else "EAP, N(0,1) prior"))
    if catsim:
        log("(b) catsim …")
        rows.insert(1, run_catsim(bank, thetas, seed + 12, "MLE (numerical search, Dodd)", max_items=20))
    text = table(rows, f"(b) 500-item 3PL bank, {n:,} simulees N(0,1), fixed length 20, maximum information")
    text += "\n\n" + conditional_table(rows, "(b) by ability band")
    big = ItemBank.generate(1000, model="3pl", seed=seed + 20)
    people = simulees(speed_n, seed=seed + 21)
    speed = []
    for method in ("mle", "eap"):
        log(f"(b) 1,000 items: knowtrace {method} …")
        config = CatConfig(estimator=EstimatorConfig(method=method), stopping=parse_stop("max:20"))
        speed.append(run_ours(big, config, people, seed + 22,
                              "MLE, fences ±3.5" if method == "mle" else "EAP, N(0,1) prior"))
    if catsim:
        log("(b) 1,000 items: catsim …")
        speed.insert(1, run_catsim(big, people, seed + 22, "MLE (numerical search, Dodd)", max_items=20))
    text += "\n\n" + table(speed, f"(b) speed with a 1,000-item 3PL bank, {speed_n:,} simulees, fixed length 20, "
                                  "maximum information")
    ratios = []
    for rows_of in (rows, speed):
        cs = [r for r in rows_of if r.engine == "catsim"]
        if cs:
            for r in rows_of:
                if r.engine == "knowtrace":
                    ratios.append(f"{len(bank) if rows_of is rows else len(big)} items, {r.setting}: "
                                  f"catsim ms per step / knowtrace ms per step = {cs[0].step_ms / r.step_ms:.1f}×")
    if ratios:
        text += "\n\n" + "\n".join(f"- {line}" for line in ratios)
    return text


def part_c(n: int, seed: int, catsim: bool, sh_examinees: int, sh_rounds: int) -> str:
    bank = ItemBank.generate(500, model="3pl", seed=seed + 10)
    thetas = simulees(n, seed=seed + 31)
    base = CatConfig(estimator=EstimatorConfig(method="eap"), stopping=parse_stop("max:20"))
    log("(c) knowtrace without exposure control …")
    rows = [run_ours(bank, base, thetas, seed + 32, "EAP, no exposure control")]
    log(f"(c) calibrating Sympson-Hetter ({sh_rounds} rounds of {sh_examinees} simulees) …")
    started = time.perf_counter()
    sh_config = base.model_copy(update={"exposure": ExposureConfig(method="sympson-hetter", target=0.2)})
    calibration = calibrate_sympson_hetter(bank, sh_config, examinees=sh_examinees, iterations=sh_rounds,
                                           seed=seed + 33)
    calibration_s = time.perf_counter() - started
    controlled = sh_config.model_copy(update={"exposure": sh_config.exposure.model_copy(
        update={"parameters": tuple(calibration.parameters.tolist())})})
    log("(c) knowtrace with Sympson-Hetter …")
    rows.append(run_ours(bank, controlled, thetas, seed + 32, "EAP, Sympson–Hetter 0.2"))
    rows.append(run_ours(bank, base.model_copy(update={"exposure": parse_exposure("randomesque:5")}), thetas,
                         seed + 32, "EAP, randomesque-5"))
    if catsim:
        log("(c) catsim with r_max = 0.2 …")
        rows.append(run_catsim(bank, thetas, seed + 32, "MLE, MaxInfoSelector(r_max=0.2)", r_max=0.2, max_items=20))
        rows.insert(1, run_catsim(bank, thetas, seed + 32, "MLE, no exposure control", max_items=20))
    text = table(rows, f"(c) exposure control, 500-item 3PL bank of (b), {n:,} new simulees N(0,1), fixed length 20")
    cost = rows[[r.setting for r in rows].index("EAP, Sympson–Hetter 0.2")].rmse - rows[0].rmse
    text += (f"\n\nSympson–Hetter parameters calibrated on {sh_examinees:,} fresh simulees per round "
             f"({calibration.iterations} rounds, {'converged' if calibration.converged else 'not converged'} "
             f"to max exposure ≤ 0.21, {calibration_s:.0f} s); largest exposure per round: "
             + ", ".join(f"{x:.3f}" for x in calibration.max_exposure)
             + f". RMSE cost of Sympson–Hetter: {cost:+.3f}.")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "a", "b", "c"], default="all")
    parser.add_argument("--examinees-a", type=int, default=10_000)
    parser.add_argument("--examinees-b", type=int, default=1000)
    parser.add_argument("--examinees-c", type=int, default=1000)
    parser.add_argument("--speed-examinees", type=int, default=200, help="simulees of the 1,000-item timing")
    parser.add_argument("--sh-examinees", type=int, default=1000)
    parser.add_argument("--sh-rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-catsim", action="store_true", help="run knowtrace only")
    args = parser.parse_args()
    catsim = not args.no_catsim
    command = "python bench/cat_vs_catsim.py " + " ".join(sys.argv[1:])
    where = machine()
    sections = []
    if args.part in ("all", "a"):
        sections.append(part_a(args.examinees_a, args.seed, catsim))
    if args.part in ("all", "b"):
        sections.append(part_b(args.examinees_b, args.speed_examinees, args.seed, catsim))
    if args.part in ("all", "c"):
        sections.append(part_c(args.examinees_c, args.seed, catsim, args.sh_examinees, args.sh_rounds))
    print(f"machine: {where}")
    print(f"command: `{command.strip()}`\n")
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
