"""``knowtrace quickstart``, ``knowtrace simulate`` and ``knowtrace models``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, open_lake, print_json, print_rows, progress_counter
from knowtrace.cli.importing import TenantOption, run_import

# the models, the quickstart and the simulator (numpy, torch, ...) are imported when a command runs: a fast --help

_METRIC_COLUMNS = ("model", "auc", "acc", "rmse", "logloss", "ece", "fit_seconds", "predict_seconds")


def _metrics_table(results: list[dict], title: str) -> None:
    print_rows([{k: r[k] for k in _METRIC_COLUMNS} for r in results], title=title)


def quickstart(
    lake: LakeOption = None,
    learners: Annotated[int, typer.Option(help="Simulated learners in the class.")] = 300,
    weeks: Annotated[int, typer.Option(help="Weeks of simulated practice.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the simulation and of the learner split.")] = 0,
    report: Annotated[Path, typer.Option(help="Folder for the HTML report (report.html).")] = Path("knowtrace-report"),
    as_json: JsonOption = False,
) -> None:
    """The main job on the embedded default: simulate a class, load it into the lake, evaluate every model."""
    from knowtrace.models import available_models
    from knowtrace.quickstart import QUICKSTART_TENANT, run_quickstart

    store = open_lake(lake)
    started = time.perf_counter()
    if not as_json:
        console.print(f"[bold]knowtrace quickstart[/] — lake {store.root} (embedded DuckDB, no server)")
        console.print(f"1. simulating a class of {learners} learners over {weeks} weeks "
                      f"([italic]SIMULATED data[/], tenant {QUICKSTART_TENANT!r})")
    with progress_counter("loading the simulated class", unit="answers", enabled=not as_json) as update:
        def on_model(name: str, stage: str) -> None:
            if stage == "fit" and not as_json:
                err_console.print(f"   fitting and scoring {name} …")
        if not as_json:
            console.print(f"2. evaluating {', '.join(available_models())} on held-out learners")
        result = run_quickstart(store, learners=learners, weeks=weeks, seed=seed, on_load_progress=update,
                                on_model=on_model, report_dir=report)
    if as_json:
        print_json({"lake": str(store.root), "tenant": QUICKSTART_TENANT, "answers": result.answers,
                    "learners": result.learners, "items": result.items, "concepts": result.concepts,
                    "results": result.results, "report": str(result.report)})
        return
    load = result.load
    console.print(f"   lake holds {result.answers:,} simulated answers from {result.learners:,} learners on "
                  f"{result.items} items and {result.concepts} concepts"
                  + (" (already loaded earlier)" if load.skipped else f" (load {load.load_id})"))
    _metrics_table(result.results, "held-out learners: each answer predicted from earlier answers only")
    console.print(f"HTML report (ROC, calibration, item curves, mastery heatmap): {result.report}")
    console.print(f"done in {time.perf_counter() - started:.1f} s. Next: "
                  f"knowtrace sql \"SELECT * FROM item_stats WHERE tenant = '{QUICKSTART_TENANT}'\"")


def simulate(
    lake: LakeOption = None,
    learners: Annotated[int, typer.Option(help="Simulated learners.")] = 200,
    items: Annotated[int, typer.Option(help="Items in the bank.")] = 60,
    concepts: Annotated[int, typer.Option(help="Concepts in the prerequisite graph.")] = 8,
    weeks: Annotated[int, typer.Option(help="Weeks of practice.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    tenant: TenantOption = "simulated",
    as_json: JsonOption = False,
) -> None:
    """Load a simulated class (synthetic learners, items, concepts and answers) into the lake."""
    from knowtrace.simulate import ClassroomSimulator

    simulator = ClassroomSimulator(tenant=tenant, learners=learners, items=items, concepts=concepts, weeks=weeks,
                                   seed=seed)
    run_import(simulator, None, lake, False, as_json)


def list_models(as_json: JsonOption = False) -> None:
    """The registered learner models."""
    from knowtrace.models import available_models, get_model_class

    rows = [{"model": name, "about": (get_model_class(name).__doc__ or "").strip().splitlines()[0]}
            for name in available_models()]
    if as_json:
        print_json(rows)
    else:
        print_rows(rows)
