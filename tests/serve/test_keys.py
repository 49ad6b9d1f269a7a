"""API keys: stored as hashes, listed without secrets, revoked at once; the ``knowtrace keys`` commands."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowtrace.cli.app import app
from knowtrace.exceptions import InputError
from knowtrace.serve.keys import ApiKeyError, ApiKeyStore

runner = CliRunner()


def test_a_key_authenticates_its_tenant_until_revoked(tmp_path: Path) -> None:
    store = ApiKeyStore.for_lake(tmp_path / "lake")
    key = store.create("acme")
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "kt" and len(key_id) == 16 and len(secret) >= 43
    assert store.authenticate(key) == "acme"
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate(f"kt_{'0' * 16}_{secret}") is None
    assert store.authenticate("") is None and store.authenticate("Bearer x") is None

    with sqlite3.connect(tmp_path / "lake" / "_meta" / "api_keys.db") as con:
        rows = con.execute("SELECT * FROM api_keys").fetchall()
    stored = " ".join(str(v) for v in rows[0])
    assert secret not in stored and key not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored

    [listed] = store.list()
    assert listed.key_id == key_id and listed.tenant == "acme" and listed.active
    revoked = store.revoke(key_id)
    assert revoked.revoked_at is not None and not revoked.active
    assert store.authenticate(key) is None and store.lookup(key)[1] == "revoked"
    assert store.revoke(key).revoked_at == revoked.revoked_at  # the whole key works too; revoking twice is a no-op
    with pytest.raises(ApiKeyError, match="no API key with id"):
        store.revoke("ffffffffffffffff")


@pytest.mark.parametrize("tenant", ["", "../up", "a b", "-x", "x" * 129, "sl/ash"])
def test_tenant_names_are_plain(tmp_path: Path, tenant: str) -> None:
    with pytest.raises(InputError, match="bad tenant name"):
        ApiKeyStore(tmp_path / "keys.db").create(tenant)


def test_keys_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = tmp_path / "lake"
    created = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--lake", str(lake)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert ApiKeyStore.for_lake(lake).authenticate(key) == "acme"

    monkeypatch.setenv("KNOWTRACE_LAKE", str(lake))
    runner.invoke(app, ["keys", "create", "--tenant", "beta"])
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [r["tenant"] for r in rows] == ["acme", "beta"] and all(r["active"] for r in rows)
    assert key.split("_", 2)[2] not in listed.stdout
    assert "acme" in runner.invoke(app, ["keys", "list"]).stdout

    key_id = key.split("_")[1]
    revoked = runner.invoke(app, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and f"revoked API key {key_id}" in revoked.stdout
    assert ApiKeyStore.for_lake(lake).authenticate(key) is None
    assert [r["active"] for r in json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)] == [False, True]
