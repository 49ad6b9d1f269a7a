"""``knowtrace cat …``: simulate adaptive tests, generate item banks."""

from __future__ import annotations

import csv
import math
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from knowtrace.cli.common import JsonOption, console, err_console, print_json, print_rows
from knowtrace.exceptions import InputError, UnreadableFileError

if TYPE_CHECKING:  # the CAT engine (numpy, scipy) is imported when a command runs: a fast --help
    import numpy as np

    from knowtrace.cat import ContentBalance

app = typer.Typer(help="Adaptive diagnosis (CAT): simulate adaptive tests and generate item banks.",
                  no_args_is_help=True)


def _fences(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"fences must be LOWER,UPPER like -3.5,3.5, got {text!r}", field="fences") from None
    return lo, hi


def _content(text: str | None, by: str) -> ContentBalance | None:
    if not text:
        return None
    from knowtrace.cat import ContentBalance

    targets: dict[str, float] = {}
    for part in text.split(","):
        name, sep, share = part.rpartition("=")
        if not sep or not name.strip():
            raise InputError(f"content targets are NAME=SHARE,… like algebra=0.6,geometry=0.4, got {text!r}",
                             field="content")
        try:
            targets[name.strip()] = float(share)
        except ValueError:
            raise InputError(f"content share of {name.strip()!r} is not a number: {share!r}", field="content") from None
    try:
        return ContentBalance(by="concept" if by == "concept" else "content_area", targets=targets)
    except ValueError as exc:
        raise InputError(f"bad content targets {text!r}: {exc}", field="content") from None


def read_thetas(path: Path) -> np.ndarray:
    """True abilities from a CSV: the ``theta`` column (or the only column), header optional."""
    import numpy as np

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as exc:
        raise UnreadableFileError(f"cannot read abilities: {exc.strerror or exc}", file=path) from None
    if not rows:
        raise UnreadableFileError("no abilities in the file", file=path)
    header = [h.strip().lower() for h in rows[0]]
    start, column = 0, 0
    if "theta" in header:
        start, column = 1, header.index("theta")
    else:
        try:
            float(rows[0][0])
        except ValueError:
            if len(header) != 1:
                raise InputError(f"no 'theta' column among {', '.join(header)}", file=path, line=1,
                                 field="theta") from None
            start = 1
    values = []
    for line, row in enumerate(rows[start:], start=start + 1):
        try:
            value = float(row[column])
        except (ValueError, IndexError):
            raise InputError(f"not a number: {row[column] if column < len(row) else ''!r}", file=path, line=line,
                             field="theta") from None
        if not math.isfinite(value):
            raise InputError(f"ability must be finite, got {value}", file=path, line=line, field="theta")
        values.append(value)
    if not values:
        raise UnreadableFileError("no abilities in the file", file=path)
    return np.asarray(values)


def _progress(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return None
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False)


@app.command("simulate")
def simulate_command(
    bank: Annotated[Path | None, typer.Option("--bank", help="Item bank CSV (item_id,a,b[,c,d,concepts,...]).",
                                              exists=False, dir_okay=False)] = None,
    bank_size: Annotated[int | None, typer.Option(help="Generate a bank of N items instead of reading one.")] = None,
    model: Annotated[str, typer.Option(help="Generated bank: 1pl, 2pl or 3pl (c ~ U(0.1, 0.25)).")] = "2pl",
    a_dist: Annotated[str, typer.Option(help="Generated bank: a ~ lognormal(0, 0.25) or uniform U(0.5, 2).")]
    = "lognormal",
    concepts: Annotated[int, typer.Option(help="Generated bank: tag each item with one of K concepts.")] = 0,
    areas: Annotated[int, typer.Option(help="Generated bank: put each item in one of K content areas "
                                            "(area-1 … area-K).")] = 0,
    examinees: Annotated[int, typer.Option(help="Simulees drawn from N(theta-mean, theta-sd).")] = 1000,
    theta_mean: Annotated[float, typer.Option(help="Mean of the simulees' abilities.")] = 0.0,
    theta_sd: Annotated[float, typer.Option(help="SD of the simulees' abilities.")] = 1.0,
    thetas: Annotated[Path | None, typer.Option(help="CSV of true abilities (column 'theta') instead of drawing.")]
    = None,
    max_items: Annotated[int | None, typer.Option(help="Maximum test length (fixed length without --stop).")]
    = None,
    selector: Annotated[str, typer.Option(help="maxinfo, kl (KL-EAP), mpwi or astrat.")] = "maxinfo",
    estimator: Annotated[str, typer.Option(help="eap, map or mle.")] = "eap",
    stop: Annotated[str | None, typer.Option(help="Stopping rules, e.g. se:0.3,max:50 (also min:N, length:N, "
                                                  "delta:X, sprt:CUT[:DELTA[:ALPHA[:BETA]]]).")] = None,
    stop_mode: Annotated[str, typer.Option(help="Combine the criteria of --stop: any or all.")] = "any",
    exposure: Annotated[str, typer.Option(help="none, randomesque:K or sympson-hetter:TARGET.")] = "none",
    sh_examinees: Annotated[int, typer.Option(help="Simulees per Sympson-Hetter calibration round.")] = 1000,
    sh_iterations: Annotated[int, typer.Option(help="Most Sympson-Hetter calibration rounds.")] = 20,
    content: Annotated[str | None, typer.Option(help="Content balancing targets NAME=SHARE,…")] = None,
    content_by: Annotated[str, typer.Option(help="Balance content 'area's or 'concept's.")] = "area",
    prior_mean: Annotated[float, typer.Option(help="Mean of the normal ability prior (EAP, MAP, KL, MPWI).")] = 0.0,
    prior_sd: Annotated[float, typer.Option(help="SD of the normal ability prior.")] = 1.0,
    fences: Annotated[str, typer.Option(help="MLE fences LOWER,UPPER.")] = "-3.5,3.5",
    seed: Annotated[int, typer.Option(help="Seed of the bank, the simulees and their answers.")] = 0,
    estimates_out: Annotated[Path | None, typer.Option(help="Write true and estimated ability per simulee here.")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate adaptive tests and report precision (rmse, bias, per ability band), length, exposure and speed."""
    if bank is not None and bank_size is not None:
        raise InputError("give either --bank or --bank-size, not both", field="bank")
    if estimator not in ("eap", "map", "mle"):
        raise InputError(f"unknown estimator {estimator!r}; use eap, map or mle", field="estimator")
    if stop_mode not in ("any", "all"):
        raise InputError(f"--stop-mode must be any or all, got {stop_mode!r}", field="stop_mode")
    if content_by not in ("area", "concept"):
        raise InputError(f"--content-by must be area or concept, got {content_by!r}", field="content_by")
    from knowtrace.cat import (
        CatConfig,
        EstimatorConfig,
        ItemBank,
        SelectorConfig,
        calibrate_sympson_hetter,
        parse_exposure,
        parse_stop,
        selector_name,
        simulate,
        simulees,
    )

    if bank is not None:
        item_bank = ItemBank.from_csv(bank)
        bank_text = f"{bank} ({len(item_bank)} items, {item_bank.model})"
    else:
        size = bank_size if bank_size is not None else 300
        item_bank = ItemBank.generate(size, model=model.lower(), a_dist=a_dist.lower(),  # type: ignore[arg-type]
                                      seed=seed, concepts=concepts, content_areas=areas)
        bank_text = (f"generated {model.lower()} bank of {size} items: b ~ N(0,1), "
                     + ("a = 1" if model.lower() == "1pl" else
                        "a ~ lognormal(0,0.25)" if a_dist.lower() == "lognormal" else "a ~ U(0.5,2)")
                     + (", c ~ U(0.1,0.25)" if model.lower() == "3pl" else "") + f", seed {seed}")
    stopping = parse_stop(stop, mode=stop_mode) if stop else None  # type: ignore[arg-type]
    if stopping is None:
        stopping = parse_stop(f"max:{max_items if max_items is not None else 50}")
    elif max_items is not None:
        stopping = stopping.model_copy(update={"max_items": max_items})
        if stopping.min_items > max_items:
            raise InputError(f"min length {stopping.min_items} exceeds --max-items {max_items}", field="max_items")
    try:
        est_config = EstimatorConfig(method=estimator, prior_mean=prior_mean, prior_sd=prior_sd,  # type: ignore[arg-type]
                                     fences=_fences(fences))
    except ValueError as exc:
        raise InputError(f"bad estimator settings: {exc}", field="estimator") from None
    exposure_config = parse_exposure(exposure)
    config = CatConfig(estimator=est_config, selector=SelectorConfig(name=selector_name(selector)),
                       exposure=exposure_config, content=_content(content, content_by), stopping=stopping)
    if thetas is not None:
        true = read_thetas(thetas)
        people = f"{len(true)} abilities from {thetas}"
    else:
        true = simulees(examinees, mean=theta_mean, sd=theta_sd, seed=seed + 1)
        people = f"{examinees} simulees from N({theta_mean:g}, {theta_sd:g}²), seed {seed + 1}"
    started = time.perf_counter()
    calibration = None
    if exposure_config.method == "sympson-hetter":
        if not as_json:
            err_console.print(f"calibrating Sympson-Hetter parameters (target {exposure_config.target:g}, "
                              f"{sh_examinees} simulees per round) …")

        def on_round(k: int, max_rate: float) -> None:
            if not as_json:
                err_console.print(f"  round {k}: max exposure {max_rate:.3f}")

        calibration = calibrate_sympson_hetter(item_bank, config, examinees=sh_examinees, theta_mean=theta_mean,
                                               theta_sd=theta_sd, iterations=sh_iterations, seed=seed + 2,
                                               on_iteration=on_round)
        config = config.model_copy(update={"exposure": exposure_config.model_copy(
            update={"parameters": tuple(calibration.parameters.tolist())})})
    progress = _progress(len(true), "simulees", enabled=not as_json)
    if progress is not None:
        with progress:
            task = progress.add_task("simulees", total=len(true))
            result = simulate(item_bank, config, true, seed=seed,
                              on_progress=lambda k: progress.update(task, completed=k))
    else:
        result = simulate(item_bank, config, true, seed=seed)
    seconds = time.perf_counter() - started
    metrics = result.metrics()
    if estimates_out is not None:
        with estimates_out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["simulee", "theta", "theta_hat", "se", "length"])
            for k in range(result.examinees):
                writer.writerow([k + 1, repr(float(result.true_theta[k])), repr(float(result.estimates[k])),
                                 repr(float(result.ses[k])), int(result.lengths[k])])
    report: dict[str, Any] = {
        "bank": bank_text, "bank_size": len(item_bank), "bank_fingerprint": item_bank.fingerprint,
        "simulees": people, "selector": config.selector.name, "estimator": estimator,
        "stopping": stopping.model_dump(mode="json"), "exposure": exposure_config.method,
        **metrics, "seconds": seconds,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    if calibration is not None:
        report["sympson_hetter"] = {"target": exposure_config.target, "rounds": calibration.iterations,
                                    "converged": calibration.converged,
                                    "max_exposure_by_round": calibration.max_exposure}
    if as_json:
        print_json(report)
        return
    console.print(f"[bold]bank[/]: {bank_text}\n[bold]simulees[/]: {people}\n"
                  f"[bold]selector[/] {config.selector.name}, [bold]estimator[/] {estimator}, "
                  f"[bold]exposure[/] {exposure}, [bold]stop[/] {stop or f'max:{stopping.max_items}'}")
    print_rows([{"rmse": metrics["rmse"], "bias": metrics["bias"], "mean length": metrics["mean_length"],
                 "max exposure": metrics["max_exposure"], "overlap": metrics["overlap"],
                 "select ms": metrics["select_ms"], "estimate ms": metrics["estimate_ms"]}], title="overall")
    print_rows([{"band": r["band"], "n": r["n"], "bias": r["bias"], "rmse": r["rmse"], "se": r["se"]}
                for r in metrics["conditional"]], title="by true ability")
    console.print(f"done in {seconds:.1f} s")


@app.command("generate-bank")
def generate_bank_command(
    out: Annotated[Path, typer.Argument(help="CSV file to write.", dir_okay=False)],
    size: Annotated[int, typer.Option(help="Number of items.")] = 300,
    model: Annotated[str, typer.Option(help="1pl, 2pl or 3pl.")] = "2pl",
    a_dist: Annotated[str, typer.Option(help="lognormal (0, 0.25) or uniform U(0.5, 2).")] = "lognormal",
    concepts: Annotated[int, typer.Option(help="Tag each item with one of this many concepts (0 = none).")] = 0,
    areas: Annotated[int, typer.Option(help="Put each item in one of this many content areas (0 = none).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bank).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Write a simulated item bank CSV (b ~ N(0,1), a and c as chosen)."""
    from knowtrace.cat import ItemBank

    bank = ItemBank.generate(size, model=model.lower(), a_dist=a_dist.lower(), seed=seed,  # type: ignore[arg-type]
                             concepts=concepts, content_areas=areas)
    bank.to_csv(out)
    if as_json:
        print_json({"path": str(out), "items": len(bank), "model": bank.model, "fingerprint": bank.fingerprint})
    else:
        console.print(f"wrote {len(bank)} items ({bank.model}) to {out}")
