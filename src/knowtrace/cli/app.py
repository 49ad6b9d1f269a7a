"""The ``knowtrace`` command line."""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from knowtrace import __version__
from knowtrace.cli import batch, cat, evaluate, importing, irt, lake_commands, modelling, serve
from knowtrace.cli import keys as keys_commands
from knowtrace.cli.common import err_console
from knowtrace.cli.models_registry import registry_app
from knowtrace.cli.pipeline import pipeline_app
from knowtrace.exceptions import KnowtraceError

app = typer.Typer(
    name="knowtrace",
    help="knowtrace: what each learner knows, at every moment. Import answers into a lake, "
         "query it, train learner models and evaluate them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(importing.app, name="import")
app.add_typer(lake_commands.app, name="lake")
app.add_typer(cat.app, name="cat")
app.add_typer(irt.app, name="irt")
app.add_typer(batch.source_app, name="source")
app.add_typer(batch.extract_app, name="extract")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
app.add_typer(keys_commands.app, name="keys")
app.command("sql")(lake_commands.sql)
app.command("quickstart")(modelling.quickstart)
app.command("simulate")(modelling.simulate)
app.command("eval")(evaluate.eval_models)
app.command("models")(modelling.list_models)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.command("simulate-tablets")(serve.simulate_tablets)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"knowtrace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """knowtrace command line."""


def main() -> None:
    """Entry point: run the CLI and turn knowtrace errors into one clear line and exit code 2."""
    try:
        app(standalone_mode=False)
    except KnowtraceError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:  # usage errors arrive here in non-standalone mode
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        sys.exit(getattr(exc, "exit_code", 2))
