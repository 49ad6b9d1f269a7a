"""``knowtrace sql`` and ``knowtrace lake …``: look into the lake."""

from __future__ import annotations

from typing import Annotated

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, open_lake, print_json, print_rows
from knowtrace.exceptions import InputError

app = typer.Typer(help="Inspect and maintain the lake.", no_args_is_help=True)


def sql(
    query: Annotated[str, typer.Argument(help="SQL over the lake's tables (interactions, items, concepts, "
                                              "learner_sequences, item_stats, concept_stats, quarantine, loads, "
                                              "bronze_*).", show_default=False)],
    lake: LakeOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="Most rows to print as a table.")] = 50,
) -> None:
    """Run SQL over the lake with DuckDB."""
    rows = open_lake(lake).query(query).to_pylist()
    if as_json:
        print_json(rows)
    else:
        print_rows(rows[:limit])
        if len(rows) > limit:
            console.print(f"... {len(rows) - limit:,} more rows (--limit or --json to see them)")


@app.command("status")
def status(lake: LakeOption = None, as_json: JsonOption = False) -> None:
    """Tables, row counts and loads of the lake."""
    store = open_lake(lake)
    counts = store.query(
        "SELECT (SELECT count(*) FROM interactions) AS interactions, (SELECT count(*) FROM items) AS items, "
        "(SELECT count(*) FROM concepts) AS concepts, (SELECT count(DISTINCT learner_id) FROM interactions) AS learners, "
        "(SELECT count(*) FROM quarantine) AS quarantined, (SELECT count(*) FROM loads) AS loads"
    ).to_pylist()[0]
    loads = [m.model_dump(mode="json", include={"load_id", "format", "source", "events", "rejected"})
             for m in store.manifests()]
    if as_json:
        print_json({"lake": str(store.root), **counts, "load_list": loads})
        return
    console.print(f"lake [bold]{store.root}[/]")
    print_rows([counts])
    if loads:
        print_rows(loads, title="loads")


#: the engines ``lake rebuild --engine`` offers (Spark needs the ``spark`` extra)
_ENGINES = ("duckdb", "spark")


@app.command("rebuild")
def rebuild(
    lake: LakeOption = None,
    engine: Annotated[str, typer.Option("--engine", help="What runs the transforms: duckdb (embedded) or spark "
                                                         "(PySpark at $KNOWTRACE_SPARK_MASTER, default local[*]).")]
    = "duckdb",
) -> None:
    """Recompute silver and gold from every committed load."""
    if engine not in _ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(_ENGINES)}", field="engine")
    from knowtrace.lake import Lake, get_engine

    store = open_lake(lake) if engine == "duckdb" else Lake(lake, engine=get_engine(engine))
    counts = store.rebuild(on_step=lambda step, n: console.print(f"  {step.layer}.{step.table}: {n:,} rows"))
    console.print(f"[green]rebuilt[/] {len(counts)} tables with {engine}")

