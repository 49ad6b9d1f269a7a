"""``knowtrace keys …``: API keys of the HTTP API (one tenant per key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, print_json, print_rows

if TYPE_CHECKING:  # the key store and the lake are imported when a command runs: a fast --help
    from knowtrace.serve.keys import ApiKeyStore

app = typer.Typer(help="API keys of the HTTP API: create, list, revoke.", no_args_is_help=True)


def _store(lake: LakeOption) -> ApiKeyStore:
    from knowtrace.lake import resolve_lake_path
    from knowtrace.serve.keys import ApiKeyStore

    return ApiKeyStore.for_lake(resolve_lake_path(lake))


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key reads and writes for.",
                                        show_default=False)],
    lake: LakeOption = None,
) -> None:
    """Create a key for a tenant; the key is printed once, alone on the last line."""
    key = _store(lake).create(tenant)
    typer.echo(f"created an API key for tenant {tenant!r}; it is shown only now, keep it secret:")
    typer.echo(key)


@app.command("list")
def list_keys(
    lake: LakeOption = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only the keys of this tenant.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every key: id, tenant, when created and revoked (never the secret)."""
    keys = [k.to_dict() for k in _store(lake).list(tenant)]
    if as_json:
        print_json(keys)
    elif keys:
        print_rows(keys)
    else:
        console.print("no API keys (create one with: knowtrace keys create --tenant NAME)")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (as `keys list` shows it) or the whole key.",
                                          show_default=False)],
    lake: LakeOption = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    key = _store(lake).revoke(key_id)
    typer.echo(f"revoked API key {key.key_id} of tenant {key.tenant!r} at {key.revoked_at}")
