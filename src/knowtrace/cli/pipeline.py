"""``knowtrace pipeline run``: extract -> transform -> train -> evaluate -> publish, with a summary;
``knowtrace pipeline step``: one step at a time, a scheduler task each (``knowtrace.batch.steps``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, print_json
from knowtrace.cli.evaluate import model_names
from knowtrace.constants import ENGINE_NAMES
from knowtrace.constants import PIPELINE_MODELS as DEFAULT_MODELS

if TYPE_CHECKING:  # the pipeline (the lake, the models, the database drivers) is imported when a command runs
    from knowtrace.batch.extract import ExtractReport
    from knowtrace.batch.pipeline import PipelineResult, PipelineStep, TransformResult

__all__ = ["pipeline_app"]

pipeline_app = typer.Typer(help="The batch pipeline: extract from the operational database, rebuild silver/gold, "
                                "train and evaluate models, register them and promote the ones not worse.",
                           no_args_is_help=True)


step_app = typer.Typer(help="One step of a pipeline run, in its own process (an Airflow task each): the steps of "
                             "one run share --run-id and hand over through the lake (<lake>/runs/<run id>/).",
                        no_args_is_help=True)
pipeline_app.add_typer(step_app, name="step")

RunIdOption = Annotated[str, typer.Option("--run-id", help="The run this step belongs to (e.g. the Airflow run id); "
                                                           "its folder is <lake>/runs/<run id>/.",
                                          show_default=False)]
EngineOption = Annotated[str, typer.Option("--engine", help=f"Engine of the silver/gold rebuild: "
                                                            f"{' or '.join(ENGINE_NAMES)}.")]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant to extract into and train for.")]
ModelsOption = Annotated[str, typer.Option("--models", help="Comma-separated model names (see `knowtrace models`), "
                                                           "or `all`.")]
FullOption = Annotated[bool, typer.Option("--full", help="Monthly run: rebuild silver/gold from all bronze and refit "
                                                         "every model even when no answer changed (the extract "
                                                         "stays incremental).")]
SourceNameOption = Annotated[str | None, typer.Option(
    "--source-name", help="Name of the source in event ids and watermarks (default: the database name or the "
                          "SQLite file stem).", show_default=False)]
TestFractionOption = Annotated[float, typer.Option("--test-fraction", min=0.01, max=0.99,
                                                   help="Share of learners held out to evaluate.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the learner split.")]
BatchRowsOption = Annotated[int, typer.Option("--batch-rows", min=1, help="Rows fetched from the source at a time.")]
LagOption = Annotated[float, typer.Option("--lag", min=0.0, help="Seconds: leave rows changed in the last LAG "
                                                                 "seconds for the next run.")]


@pipeline_app.callback()
def _group() -> None:
    """The batch pipeline."""


@pipeline_app.command("dags-folder")
def dags_folder() -> None:
    """Print the folder of the Airflow DAGs shipped with knowtrace (for AIRFLOW__CORE__DAGS_FOLDER)."""
    from knowtrace.batch.dags import DAGS_FOLDER

    typer.echo(str(DAGS_FOLDER))


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[PipelineStep], None] | None]:
    """One progress line per stage on stderr; yields the ``on_step`` callback."""
    if not enabled:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<9}[/] {task.description}"),
                  BarColumn(bar_width=None), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def on_step(step: PipelineStep) -> None:
            if step.stage not in tasks:
                tasks[step.stage] = progress.add_task("", total=None, stage=step.stage)
            task = tasks[step.stage]
            if step.message == "done":
                total = step.total if step.total is not None else 1
                progress.update(task, total=max(total, 1), completed=max(total, 1),
                                description="done" if total else "nothing to do")
                progress.stop_task(task)
                return
            progress.update(task, description=step.message,
                            **({"total": max(step.total, 1)} if step.total is not None else {}),
                            **({"completed": step.done} if step.done is not None else {}))

        yield on_step


@pipeline_app.command("run")
def run(
    source_dsn: Annotated[str | None, typer.Option(
        "--source-dsn", help="The operational database to extract from: postgresql://USER@HOST:PORT/DB or "
                             "sqlite:///PATH.db.", show_default=False)] = None,
    no_extract: Annotated[bool, typer.Option("--no-extract", help="Skip the extract: rebuild and train on what "
                                                                  "the lake holds.")] = False,
    engine: EngineOption = "duckdb",
    models: ModelsOption = ",".join(DEFAULT_MODELS),
    tenant: TenantOption = "default",
    lake: LakeOption = None,
    full: FullOption = False,
    source_name: SourceNameOption = None,
    test_fraction: TestFractionOption = 0.2,
    seed: SeedOption = 0,
    batch_rows: BatchRowsOption = 10_000,
    lag: LagOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Run extract -> transform -> train -> evaluate -> publish once, and print what each step did."""
    if (source_dsn is None) == (not no_extract):
        raise typer.BadParameter("give --source-dsn DSN to extract, or --no-extract to train on the lake as it is "
                                 "(exactly one of them)", param_hint="--source-dsn")
    names = model_names(models)
    from knowtrace.batch.pipeline import run_pipeline

    with _progress(not as_json) as on_step:
        result = run_pipeline(lake, source_dsn=source_dsn, source_name=source_name,
                              engine=engine, models=names, tenant=tenant, full=full, test_fraction=test_fraction,
                              seed=seed, batch_rows=batch_rows, lag_s=lag, on_step=on_step)
    if as_json:
        print_json(result.to_dict())
    else:
        _print_summary(result)
    if not result.ok:
        raise typer.Exit(1)


# -- one step at a time ----------------------------------------------------------------------------


@step_app.command("extract")
def step_extract_command(
    run_id: RunIdOption,
    source_dsn: Annotated[str | None, typer.Option(
        "--source-dsn", envvar="KNOWTRACE_SOURCE_DSN", show_default=False,
        help="The operational database: postgresql://USER@HOST:PORT/DB or sqlite:///PATH.db (from the environment "
             "keeps a password out of the process list).")] = None,
    tenant: TenantOption = "default",
    source_name: SourceNameOption = None,
    engine: EngineOption = "duckdb",
    batch_rows: BatchRowsOption = 10_000,
    lag: LagOption = 0.0,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Extract what changed in the source since the lake's watermark (the run's first step)."""
    if not source_dsn:
        raise typer.BadParameter("give the source: --source-dsn DSN or the environment variable "
                                 "KNOWTRACE_SOURCE_DSN", param_hint="--source-dsn")
    from knowtrace.batch.steps import step_extract

    report = step_extract(lake, run_id, source_dsn, tenant=tenant, source_name=source_name, engine=engine,
                          batch_rows=batch_rows, lag_s=lag)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_extract(report)


@step_app.command("transform")
def step_transform_command(run_id: RunIdOption, engine: EngineOption = "duckdb", full: FullOption = False,
                           lake: LakeOption = None, as_json: JsonOption = False) -> None:
    """Rebuild silver/gold when needed (always with --full)."""
    from knowtrace.batch.steps import step_transform

    result = step_transform(lake, run_id, engine, full=full)
    if as_json:
        print_json(dict(result.__dict__))
    else:
        _print_transform(result)


@step_app.command("train")
def step_train_command(
    run_id: RunIdOption,
    models: ModelsOption = ",".join(DEFAULT_MODELS),
    tenant: TenantOption = "default",
    full: FullOption = False,
    test_fraction: TestFractionOption = 0.2,
    seed: SeedOption = 0,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fit each model on the train learners; the fitted models wait in the run's folder for evaluate."""
    from knowtrace.batch.steps import step_train

    training = step_train(lake, run_id, model_names(models), tenant, full=full, test_fraction=test_fraction,
                          seed=seed)
    if as_json:
        print_json({"tenant": training.tenant, "data_window": training.data_window,
                    "models": [{"name": t.name, "fitted": t.model is not None, "fit_seconds": t.fit_seconds,
                                "skipped": t.skipped, "error": t.error} for t in training.models]})
        return
    _print_window(training.tenant, training.data_window)
    for t in training.models:
        what = (f"[red]failed[/]: {t.error}" if t.error else f"skipped: {t.skipped}" if t.skipped
                else f"fitted in {t.fit_seconds:.2f} s")
        console.print(f"[bold]train[/]     {t.name}: {what}")


@step_app.command("evaluate")
def step_evaluate_command(run_id: RunIdOption, lake: LakeOption = None, as_json: JsonOption = False) -> None:
    """Score the run's fitted models on every answer of the held-out learners."""
    from knowtrace.batch.steps import step_evaluate

    scores = step_evaluate(lake, run_id)
    if as_json:
        print_json([{"name": s.name, "metrics": s.metrics} for s in scores])
        return
    if not scores:
        console.print("[bold]evaluate[/]  no model to score (none was fitted)")
    for s in scores:
        console.print(f"[bold]evaluate[/]  {s.name}: auc {_num(s.metrics.get('auc'))}, acc "
                      f"{_num(s.metrics.get('acc'))} on {s.metrics['n']:,} held-out answers")


@step_app.command("publish")
def step_publish_command(
    run_id: RunIdOption,
    no_promote: Annotated[bool, typer.Option("--no-promote", help="Register the models without promoting them.")
                          ] = False,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register the run's models, promote those not worse, print the whole run (exit 1: a model failed)."""
    from knowtrace.batch.steps import step_publish

    result = step_publish(lake, run_id, promote=not no_promote)
    if as_json:
        print_json(result.to_dict())
    else:
        _print_summary(result)
    if not result.ok:
        raise typer.Exit(1)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _print_extract(ex: ExtractReport | None) -> None:
    if ex is None:
        console.print("[bold]extract[/]   skipped (--no-extract)")
    elif ex.skipped:
        console.print(f"[bold]extract[/]   up to date: nothing changed in {ex.source} ({ex.dialect}) since watermark "
                      f"{ex.watermark}; 0 rows extracted")
    else:
        console.print(f"[bold]extract[/]   {ex.rows_read:,} rows extracted from {ex.source} ({ex.dialect}): "
                      f"{ex.added:,} new answers, {ex.already_in_lake:,} already in the lake, {ex.rejected:,} "
                      f"rejected (quarantine), {ex.pending:,} not answered yet; watermark "
                      f"{ex.watermark_from or 'start'} -> {ex.watermark}")


def _print_transform(tr: TransformResult) -> None:
    console.print(f"[bold]transform[/] {tr.reason}; silver interactions: {tr.rows.get('interactions', 0):,} rows")


def _print_window(tenant: str, window: dict[str, Any]) -> None:
    console.print(f"[bold]data[/]      tenant {tenant}: {window['answers']:,} answers of "
                  f"{window['learners']:,} learners, {window['first_timestamp']} .. {window['last_timestamp']}; "
                  f"trained on {window['train_learners']:,} learners, evaluated on {window['test_learners']:,} "
                  f"held-out learners ({window['test_answers']:,} answers)")


def _print_summary(result: PipelineResult) -> None:
    _print_extract(result.extract)
    if result.transform is not None:
        _print_transform(result.transform)
    if result.data_window:
        _print_window(result.tenant, result.data_window)
    table = Table(title=f"pipeline ({result.mode}, {result.engine}) — {result.lake}, tenant {result.tenant}")
    for column in ("model", "auc", "acc", "fit s", "version", "promoted", "why"):
        table.add_column(column, justify="right" if column in ("auc", "acc", "fit s") else "left")
    for row in result.models:
        promoted = "[green]yes[/]" if row.promoted else "[red]failed[/]" if row.error else "no"
        table.add_row(row.model, _num(row.metrics.get("auc")), _num(row.metrics.get("acc")),
                      _num(row.fit_seconds, 2) if row.version or row.error else "–", row.version or "–", promoted,
                      row.error or row.reason)
    console.print(table)
    console.print(f"done in {result.seconds:.1f} s" + ("" if result.ok else " — [bold red]some models failed[/]"))
