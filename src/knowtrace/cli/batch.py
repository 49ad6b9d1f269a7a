"""``knowtrace source init`` and ``knowtrace extract postgres|sqlite``: the batch path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, open_lake, print_json

if TYPE_CHECKING:  # the batch path (the lake, the database drivers) is imported when a command runs: a fast --help
    from knowtrace.batch import ExtractReport

__all__ = ["extract_app", "source_app"]

source_app = typer.Typer(help="The reference operational database of a tablet learning service "
                              "(PostgreSQL, or SQLite as the embedded stand-in).", no_args_is_help=True)
extract_app = typer.Typer(help="Extract what changed in an operational database into the lake: incremental "
                               "by watermark, exactly once, bad rows quarantined.", no_args_is_help=True)

DsnOption = Annotated[str, typer.Option("--dsn", help="The database: postgresql://USER@HOST:PORT/DBNAME (or a "
                                                      "libpq key=value string), or sqlite:///PATH.db.",
                                        show_default=False)]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant the extracted answers belong to.")]
BatchRowsOption = Annotated[int, typer.Option("--batch-rows", min=1, help="Rows fetched from the source at a "
                                                                           "time (the extractor holds no more).")]
SourceNameOption = Annotated[str | None, typer.Option(
    "--source-name", help="Name of the source in event ids and watermarks (default: the database name, or "
                          "the SQLite file stem). Keep it stable: a new name starts from scratch.")]
LagOption = Annotated[float, typer.Option("--lag", min=0.0, help="Seconds: leave rows changed in the last LAG "
                                                                 "seconds for the next extract (covers writers "
                                                                 "whose commits lag their updated_at).")]
ToleranceOption = Annotated[float, typer.Option("--future-tolerance", min=0.0,
                                                help="Seconds an answer time may be ahead of the source clock "
                                                     "before the row is rejected.")]
FullOption = Annotated[bool, typer.Option("--full", help="Ignore the watermark: read every row again (safe: "
                                                         "event ids are stable, nothing is duplicated).")]


@source_app.command("init")
def source_init(
    dsn: DsnOption,
    from_lake: Annotated[Path | None, typer.Option("--from-lake", help="Fill it from this lake's interactions, "
                                                                       "items and concepts (one tenant).")] = None,
    simulate: Annotated[int | None, typer.Option("--simulate", min=1, help="Fill it with N simulated learners "
                                                                           "(synthetic data).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The lake tenant to copy (--from-lake; needed "
                                                                "when the lake has several).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the simulator.")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Drop the reference tables first if they exist.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create the reference schema (learners, classes, items, concepts, attempts...) and fill it."""
    if (from_lake is None) == (simulate is None):
        raise typer.BadParameter("give exactly one of --from-lake DIR or --simulate N", param_hint="--from-lake")
    from knowtrace.batch import init_source

    report = init_source(dsn, from_lake=from_lake, simulate=simulate, tenant=tenant, seed=seed, replace=replace)
    if as_json:
        print_json(report.to_dict())
        return
    origin = f"lake {from_lake} (tenant {report.tenant})" if from_lake is not None else \
        f"the simulator ({simulate} learners, seed {seed}; synthetic data)"
    console.print(f"[bold green]created[/] the reference schema ({report.dialect}) and filled it from {origin}: "
                  f"{report.attempts:,} attempts, {report.learners:,} learners, {report.classes:,} classes, "
                  f"{report.items:,} items, {report.concepts:,} concepts, {report.prerequisites:,} prerequisites")


def _run_extract(dialect: str, dsn: str, lake_dir: Path | None, tenant: str, batch_rows: int,
                 source_name: str | None, lag: float, future_tolerance: float, full: bool, as_json: bool) -> None:
    from knowtrace.batch import SourceExtractor, dialect_for

    lake = open_lake(lake_dir)
    extractor = SourceExtractor(dialect_for(dsn, dialect), lake, tenant=tenant, source_name=source_name,
                                batch_rows=batch_rows, lag_s=lag, future_tolerance_s=future_tolerance, full=full)
    plan = extractor.plan()
    if as_json or plan.up_to_date:
        report = extractor.run(plan)
    else:
        with Progress(SpinnerColumn(), TextColumn("[bold]extracting {task.description}"), BarColumn(bar_width=None),
                      MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(),
                      console=err_console, transient=False) as progress:
            task = progress.add_task(extractor.source, total=max(plan.to_read or 0, 1))
            report = extractor.run(plan, on_progress=lambda done: progress.update(task, completed=done))
    if as_json:
        print_json(report.to_dict() | {"lake": str(lake.root)})
        return
    _print_summary(report, str(lake.root))


def _print_summary(report: ExtractReport, lake: str) -> None:
    where = f"{report.source} ({report.dialect}) into {lake}, tenant {report.tenant}"
    if report.skipped:
        console.print(f"[yellow]up to date[/]: nothing changed in {where} since watermark {report.watermark}; "
                      "0 rows read")
    else:
        console.print(
            f"[bold green]extracted[/] {where} as {report.load_id}: {report.rows_read:,} rows read, "
            f"{report.events:,} events ({report.added:,} new, {report.already_in_lake:,} already in the lake), "
            f"{report.rejected:,} rejected, {report.pending:,} not answered yet"
            + (f", catalog: {report.items:,} items, {report.concepts:,} concepts" if report.items or report.concepts
               else "")
        )
        console.print(f"watermark: {report.watermark_from or 'start'} -> [bold]{report.watermark or 'start'}[/]")
    if report.rejected:
        console.print(f"[yellow]{report.rejected:,} rejected rows are in the quarantine table[/] "
                      f"(knowtrace sql \"SELECT * FROM quarantine WHERE load_id = '{report.load_id}'\"):")
        for reason, count in sorted(report.rejection_reasons.items(), key=lambda kv: -kv[1])[:10]:
            console.print(f"  {count:>8,}  {reason}")
    if report.held_back:
        why = report.held_by or "changed at or after the bound"
        console.print(f"[yellow]held back[/] {report.held_back:,} rows with updated_at >= {report.bound} "
                      f"({why}); the next extract reads them")
    if report.future_updates:
        console.print(f"[yellow]warning[/]: {report.future_updates:,} rows have an updated_at in the future "
                      "(source clock skew?); they wait until that time has passed")
    if report.never_extracted:
        console.print(f"[bold red]warning[/]: {report.never_extracted:,} rows have no updated_at and can never "
                      "be extracted: set it (the reference schema has updated_at NOT NULL)")
    if report.ignored_columns:
        console.print(f"[yellow]schema[/]: columns ignored (not in the reference schema): "
                      f"{', '.join(report.ignored_columns)}")
    if report.missing_columns or report.missing_tables:
        console.print("[yellow]schema[/]: absent, their fields stay empty: "
                      f"{', '.join([*report.missing_columns, *(f'table {t}' for t in report.missing_tables)])}")


def _extract_command(kind: str, help_text: str) -> None:
    """Register ``knowtrace extract KIND``: the same options for every source kind."""

    def extract(
        dsn: DsnOption,
        lake: LakeOption = None,
        tenant: TenantOption = "default",
        batch_rows: BatchRowsOption = 10_000,
        source_name: SourceNameOption = None,
        lag: LagOption = 0.0,
        future_tolerance: ToleranceOption = 300.0,
        full: FullOption = False,
        as_json: JsonOption = False,
    ) -> None:
        _run_extract(kind, dsn, lake, tenant, batch_rows, source_name, lag, future_tolerance, full, as_json)

    extract.__doc__ = help_text
    extract_app.command(kind)(extract)


_extract_command("postgres", "Extract the attempts changed since the watermark from PostgreSQL (server-side cursor).")
_extract_command("sqlite", "Extract the attempts changed since the watermark from SQLite (sqlite:///PATH.db), like "
                           "postgres.")
