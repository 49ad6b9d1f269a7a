"""``knowtrace import FORMAT PATH``: one sub-command per input format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, open_lake, print_json, progress_counter
from knowtrace.exceptions import UnreadableFileError
from knowtrace.importers import Importer
from knowtrace.importers.catalog_files import ConceptGraphImporter, ItemCatalogImporter
from knowtrace.importers.dkvmn import DkvmnImporter

app = typer.Typer(help="Import answers from a file into the lake (atomic, idempotent; bad rows are quarantined).",
                  no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="Input file (or folder, where the format allows).", show_default=False)]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant the answers belong to.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Load even if this exact input was loaded before "
                                                            "(events already in the lake are still not duplicated).")]


def run_import(importer: Importer, path: Path | None, lake_dir: Path | None, force: bool, as_json: bool) -> None:
    """Load ``path`` with ``importer`` and report rows read, imported, rejected."""
    if path is not None and not path.exists():
        raise UnreadableFileError("no such file or folder", file=path)
    lake = open_lake(lake_dir)
    with progress_counter(f"importing {path.name if path else importer.format}", enabled=not as_json) as update:
        report = lake.load(importer, path, force=force, on_progress=update)
    if as_json:
        print_json(report.to_dict() | {"lake": str(lake.root)})
        return
    if report.skipped:
        console.print(f"[yellow]skipped[/]: {path} was {report.skipped_reason}; 0 rows added (use --force to reload)")
        return
    console.print(
        f"[bold green]loaded[/] {report.source or importer.format} into {lake.root} as {report.load_id}: "
        f"{report.rows_read:,} rows read, {report.events:,} events imported "
        f"({report.added:,} new, {report.duplicates:,} already in the lake), "
        f"{report.rejected:,} rejected, {report.items:,} items, {report.concepts:,} concepts"
    )
    if report.rejected:
        console.print(f"[yellow]{report.rejected:,} rejected records are in the quarantine table[/] "
                      f"(knowtrace sql \"SELECT * FROM quarantine WHERE load_id = '{report.load_id}'\"):")
        for reason, count in sorted(report.rejection_reasons.items(), key=lambda kv: -kv[1])[:10]:
            console.print(f"  {count:>8,}  {reason}")


@app.command("dkvmn")
def import_dkvmn(
    path: PathArg,
    lake: LakeOption = None,
    concept_map: Annotated[Path | None, typer.Option(help="Item-to-concept map: a Q-matrix (e.g. STATICS "
                                                           "Qmatrix.csv) or an id,concept table.")] = None,
    ids_are: Annotated[str, typer.Option(help="Whether the ids are item ids or concept (skill) ids.")] = "items",
    tenant: TenantOption = "default",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """DKVMN/DKT benchmark splits: three lines per learner (length; ids; 0/1 answers)."""
    if ids_are not in ("items", "concepts"):
        raise typer.BadParameter("must be 'items' or 'concepts'", param_hint="--ids-are")
    mode: Literal["items", "concepts"] = "items" if ids_are == "items" else "concepts"
    run_import(DkvmnImporter(tenant=tenant, concept_map=concept_map, ids_are=mode), path, lake, force, as_json)


@app.command("items")
def import_items(path: PathArg, lake: LakeOption = None, tenant: TenantOption = "default",
                 force: ForceOption = False, as_json: JsonOption = False) -> None:
    """Item catalog CSV: item_id, concept_ids (;-separated), name, a, b, c; other columns become metadata."""
    run_import(ItemCatalogImporter(tenant=tenant), path, lake, force, as_json)


@app.command("concepts")
def import_concepts(path: PathArg, lake: LakeOption = None, tenant: TenantOption = "default",
                    force: ForceOption = False, as_json: JsonOption = False) -> None:
    """Concept graph CSV: concept_id,prerequisite_id edges, or concept_id,name,prerequisites (a cycle is refused)."""
    run_import(ConceptGraphImporter(tenant=tenant), path, lake, force, as_json)
