"""What every command shares: the lake option, console output, progress, error reporting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowtrace.constants import LAKE_ENV

if TYPE_CHECKING:  # the lake (duckdb, pyarrow) is imported when a command opens it: a fast --help
    from knowtrace.lake import Lake

__all__ = ["LakeOption", "JsonOption", "console", "err_console", "open_lake", "print_json", "print_rows", "progress_counter"]

# wide when piped, so tables are not cut to 80 columns in logs and CI
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

LakeOption = Annotated[
    Path | None,
    typer.Option("--lake", envvar=LAKE_ENV, help="Lake directory (default ./knowtrace-lake).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def open_lake(path: Path | None) -> Lake:
    """The lake at ``path`` (or the default), created if missing."""
    from knowtrace.lake import Lake

    return Lake(path)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, default=str))


def print_rows(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Print rows as a table."""
    table = Table(title=title, show_lines=False)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in columns))
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@contextmanager
def progress_counter(description: str, unit: str = "rows", enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A live counter; the yielded function sets how many ``unit`` are done so far."""
    if not enabled:
        yield lambda done: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
        TextColumn("{task.completed:,.0f} " + unit), TimeElapsedColumn(),
        console=err_console, transient=False,
    ) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done: progress.update(task, completed=done)
