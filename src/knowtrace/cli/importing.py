"""``knowtrace import FORMAT PATH``: one sub-command per input format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, open_lake, print_json, progress_counter
from knowtrace.exceptions import UnreadableFileError

if TYPE_CHECKING:  # the importers (pyarrow, the event model) are imported when a command runs: a fast --help
    from knowtrace.importers import Importer

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
        f"{report.rejected:,} rejected, {report.items:,} item and {report.concepts:,} concept catalog records"
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
    from knowtrace.importers import DkvmnImporter

    run_import(DkvmnImporter(tenant=tenant, concept_map=concept_map, ids_are=mode), path, lake, force, as_json)


@app.command("items")
def import_items(path: PathArg, lake: LakeOption = None, tenant: TenantOption = "default",
                 force: ForceOption = False, as_json: JsonOption = False) -> None:
    """Item catalog CSV: item_id, concept_ids (;-separated), name, a, b, c; other columns become metadata."""
    from knowtrace.importers import ItemCatalogImporter

    run_import(ItemCatalogImporter(tenant=tenant), path, lake, force, as_json)


@app.command("concepts")
def import_concepts(path: PathArg, lake: LakeOption = None, tenant: TenantOption = "default",
                    force: ForceOption = False, as_json: JsonOption = False) -> None:
    """Concept graph CSV: concept_id,prerequisite_id edges, or concept_id,name,prerequisites (a cycle is refused)."""
    from knowtrace.importers import ConceptGraphImporter

    run_import(ConceptGraphImporter(tenant=tenant), path, lake, force, as_json)


@app.command("assistments")
def import_assistments(
    path: PathArg,
    lake: LakeOption = None,
    encoding: Annotated[str, typer.Option(help="Text encoding: auto (UTF-8, cells that are not fall back to "
                                               "Windows-1252), or a codec name.")] = "auto",
    timezone: Annotated[str, typer.Option(help="Time zone of start_time/end_time, which carry none.")] = "UTC",
    tenant: TenantOption = "default",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Raw ASSISTments skill-builder CSV; the rows of one multi-skill answer become ONE event with several concepts."""
    from knowtrace.importers import AssistmentsImporter

    run_import(AssistmentsImporter(tenant=tenant, encoding=encoding, timezone=timezone), path, lake, force, as_json)


@app.command("ednet-kt1")
def import_ednet(
    path: PathArg,
    lake: LakeOption = None,
    questions: Annotated[Path | None, typer.Option(help="EdNet contents/questions.csv (default: ../contents/"
                                                         "questions.csv next to the KT1 folder).")] = None,
    tenant: TenantOption = "default",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """EdNet KT1 per-learner CSVs (a u<ID>.csv file or a folder of them), scored against questions.csv."""
    from knowtrace.importers import EdnetKt1Importer

    run_import(EdnetKt1Importer(tenant=tenant, questions=questions), path, lake, force, as_json)


@app.command("matrix")
def import_matrix(
    path: PathArg,
    lake: LakeOption = None,
    learner_column: Annotated[str | None, typer.Option(help="Column holding learner ids (default: "
                                                             "<file stem>:<row>).")] = None,
    missing: Annotated[list[str] | None, typer.Option(help="A cell value meaning 'not answered' (repeatable; "
                                                            "default: empty, NA, NaN, nan, ., -).")] = None,
    tenant: TenantOption = "default",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Wide learner x item 0/1 response matrix with missing values (e.g. LSAT.csv)."""
    from knowtrace.importers import MatrixImporter

    options = {"missing": tuple(missing)} if missing else {}
    run_import(MatrixImporter(tenant=tenant, learner_column=learner_column, **options), path, lake, force, as_json)


def _table_options(mapping: Path | None, column: list[str] | None, concept_separator: str | None,
                   timestamp_format: str | None, timestamp_unit: str | None, timezone: str | None) -> dict:
    columns = {}
    for pair in column or []:
        field, sep, name = pair.partition("=")
        if not sep or not field.strip() or not name.strip():
            raise typer.BadParameter(f"expected FIELD=COLUMN, got {pair!r}", param_hint="--column")
        columns[field.strip()] = name.strip()
    return {"mapping": mapping, "columns": columns or None, "concept_separator": concept_separator,
            "timestamp_format": timestamp_format, "timestamp_unit": timestamp_unit, "timezone": timezone}


MappingOption = Annotated[Path | None, typer.Option(help="YAML file: columns: {event field: column}, and "
                                                         "concept_separator, timestamp_format, timestamp_unit, "
                                                         "timezone, constants.")]
ColumnOption = Annotated[list[str] | None, typer.Option(help="FIELD=COLUMN, e.g. learner_id=user (repeatable; "
                                                             "unmapped fields use a column of the same name).")]
SeparatorOption = Annotated[str | None, typer.Option(help="Separator of several concepts in one cell.")]
TsFormatOption = Annotated[str | None, typer.Option(help="strptime format of the timestamp column.")]
TsUnitOption = Annotated[str | None, typer.Option(help="Unit of numeric epoch timestamps: s or ms.")]
TzOption = Annotated[str | None, typer.Option(help="Time zone of timestamps that carry none.")]


@app.command("csv")
def import_csv(path: PathArg, lake: LakeOption = None, mapping: MappingOption = None, column: ColumnOption = None,
               concept_separator: SeparatorOption = None, timestamp_format: TsFormatOption = None,
               timestamp_unit: TsUnitOption = None, timezone: TzOption = None, tenant: TenantOption = "default",
               force: ForceOption = False, as_json: JsonOption = False) -> None:
    """Any CSV table of answers, with a column mapping given as options or in a YAML file."""
    from knowtrace.importers import CsvImporter

    options = _table_options(mapping, column, concept_separator, timestamp_format, timestamp_unit, timezone)
    run_import(CsvImporter(tenant=tenant, **options), path, lake, force, as_json)


@app.command("parquet")
def import_parquet(path: PathArg, lake: LakeOption = None, mapping: MappingOption = None,
                   column: ColumnOption = None, concept_separator: SeparatorOption = None,
                   timestamp_format: TsFormatOption = None, timestamp_unit: TsUnitOption = None,
                   timezone: TzOption = None, tenant: TenantOption = "default", force: ForceOption = False,
                   as_json: JsonOption = False) -> None:
    """Any Parquet table of answers, with a column mapping given as options or in a YAML file."""
    from knowtrace.importers import ParquetImporter

    options = _table_options(mapping, column, concept_separator, timestamp_format, timestamp_unit, timezone)
    run_import(ParquetImporter(tenant=tenant, **options), path, lake, force, as_json)
