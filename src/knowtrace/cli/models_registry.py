"""``knowtrace registry list|show|promote``: the registered model versions of a lake and their promotion.

(``knowtrace models`` already lists the model kinds, so the registry has its own group.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from knowtrace.cli.common import JsonOption, LakeOption, console, print_json
from knowtrace.exceptions import InputError

if TYPE_CHECKING:  # the registry and the lake are imported when a command runs: a fast --help
    from knowtrace.registry import ModelRegistry, ModelVersion

__all__ = ["registry_app"]

registry_app = typer.Typer(help="The model registry: every trained version of each tenant's models, with its "
                                "metrics and data window, and the promoted version a server uses.",
                           no_args_is_help=True)

ModelArgument = Annotated[str, typer.Argument(help="Model name (elo, bkt, irt, ...).", show_default=False)]
TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant the model was trained for.")]


def _registry(lake: Any) -> ModelRegistry:
    from knowtrace.lake import resolve_lake_path
    from knowtrace.lake.layout import LakeLayout
    from knowtrace.registry import ModelRegistry

    root = resolve_lake_path(lake)
    if not LakeLayout(root.absolute()).version_file.is_file():
        raise InputError(f"{root} is not a knowtrace lake (no _meta/lake.json)", field="lake")
    return ModelRegistry(root)


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}"


def _window(version: ModelVersion) -> str:
    window = version.data_window
    first, last = window.get("first_timestamp"), window.get("last_timestamp")
    span = f"{first[:10]} .. {last[:10]}" if first and last else "–"
    return f"{span} ({window.get('answers', '?')} answers)"


@registry_app.command("list")
def list_versions(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's models.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered version (newest last), its metrics, data window and whether it is promoted."""
    registry = _registry(lake)
    rows = []
    for tenant_name, model_name in registry.models(tenant):
        if model is not None and model_name != model:
            continue
        promoted = registry.promoted(tenant_name, model_name)
        for version in registry.versions(tenant_name, model_name):
            rows.append((version, promoted is not None and promoted.version == version.version))
    if as_json:
        print_json([v.to_dict() | {"promoted": current} for v, current in rows])
        return
    if not rows:
        console.print(f"no model registered in {registry.lake_root}" + (f" for tenant {tenant!r}" if tenant else ""))
        return
    table = Table(title=f"model registry — {registry.lake_root}")
    for column in ("tenant", "model", "version", "created", "auc", "acc", "n", "data window", "promoted"):
        table.add_column(column, justify="right" if column in ("auc", "acc", "n") else "left")
    for version, current in rows:
        table.add_row(version.tenant, version.model, version.version, version.created_at.strftime("%Y-%m-%d %H:%M"),
                      _num(version.auc), _num(version.metrics.get("acc")), str(version.metrics.get("n", "–")),
                      _window(version), "[bold green]* promoted[/]" if current else
                      (f"was, {version.promoted_at:%Y-%m-%d %H:%M}" if version.promoted_at else ""))
    console.print(table)


@registry_app.command("show")
def show(
    model: ModelArgument,
    version: Annotated[str | None, typer.Argument(help="Version (v0003 or 3); default: the promoted one.",
                                                  show_default=False)] = None,
    tenant: TenantOption = "default",
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """One version in full: metrics, data window, training fingerprint, hyperparameters, artifact path."""
    registry = _registry(lake)
    if version is None:
        entry = registry.promoted(tenant, model)
        if entry is None:
            raise InputError(f"model {model!r} of tenant {tenant!r} has no promoted version; name a version "
                             "(see `knowtrace registry list`)", field="version")
    else:
        entry = registry.get(tenant, model, version)
    promoted = registry.promoted(tenant, model)
    data = entry.to_dict() | {"promoted": promoted is not None and promoted.version == entry.version}
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{entry.model} {entry.version}[/] (tenant {entry.tenant})"
                  + (" [bold green]promoted[/]" if data["promoted"] else ""))
    for key in ("created_at", "promoted_at", "path", "training_fingerprint", "n_train", "knowtrace_version"):
        console.print(f"  {key}: {data[key]}")
    for group in ("metrics", "data_window", "params"):
        console.print(f"  {group}:")
        for key, value in data[group].items():
            console.print(f"    {key}: {value}")


@registry_app.command("promote")
def promote(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="Version to promote (v0003 or 3).", show_default=False)],
    tenant: TenantOption = "default",
    force: Annotated[bool, typer.Option("--force", help="Promote even if its AUC is worse than the promoted "
                                                        "version's (a rollback).")] = False,
    lake: LakeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the one servers use; refused when its AUC is worse than the promoted one's, unless --force."""
    promotion = _registry(lake).promote(tenant, model, version, force=force)
    if as_json:
        print_json(promotion.to_dict())
    elif not promotion.changed:
        console.print(f"[yellow]unchanged[/]: {promotion.reason}")
    else:
        before = f"replaces {promotion.previous}" if promotion.previous else "the first promoted version"
        console.print(f"[bold green]promoted[/] {model} {promotion.version} for tenant {tenant!r} ({before}): "
                      f"{promotion.reason}")
