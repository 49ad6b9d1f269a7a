"""API keys: each key speaks for one tenant; only a hash of its secret is stored.

A key reads ``kt_<key id>_<secret>``: the key id (16 hex digits) names it in listings and
revocations, the secret (``secrets.token_urlsafe(32)``) is shown once, at creation, and kept only
as its SHA-256. Keys live in SQLite at ``<lake>/_meta/api_keys.db``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from knowtrace.exceptions import InputError, KnowtraceError

__all__ = ["ApiKey", "ApiKeyError", "ApiKeyStore", "KEY_PREFIX", "TENANT_PATTERN", "check_tenant"]

KEY_PREFIX = "kt"
_KEY = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{16,128}})$")
#: tenants name folders of the lake (models, CAT sessions), so they are plain names
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_TENANT = re.compile(TENANT_PATTERN)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""
#: compared against when a key id is unknown, so unknown and wrong keys take the same time
_DUMMY_HASH = hashlib.sha256(b"knowtrace-no-such-key").hexdigest()


class ApiKeyError(KnowtraceError):
    """An API key cannot be created, found or revoked."""


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant name (letters, digits, ``_ . -``; 1-128, not starting with a sign)."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InputError(f"bad tenant name {tenant!r}: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit", field="tenant")
    return tenant


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    tenant: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, str | bool | None]:
        return {"key_id": self.key_id, "tenant": self.tenant, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "active": self.active}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ApiKeyStore:
    """API keys in one SQLite file. Every call opens its own connection, so a store is safe to share
    between threads and processes, and a revocation takes effect at the next request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(_SCHEMA)

    @classmethod
    def for_lake(cls, root: str | Path) -> ApiKeyStore:
        """The keys of the lake at ``root`` (``<lake>/_meta/api_keys.db``); opens (or creates) the lake."""
        from knowtrace.lake import Lake

        return cls(Lake(root).layout.meta / "api_keys.db")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ApiKeyError(f"cannot open the API key store {self.path}: {exc}") from exc
        with closing(con):
            try:
                yield con
            except sqlite3.Error as exc:
                raise ApiKeyError(f"API key store {self.path}: {exc}") from exc

    def create(self, tenant: str) -> str:
        """A new key for ``tenant``; the full key is returned once and never stored."""
        check_tenant(tenant)
        secret = secrets.token_urlsafe(32)
        with self._connect() as con:
            while True:
                key_id = secrets.token_hex(8)
                try:
                    con.execute("INSERT INTO api_keys (key_id, tenant, secret_sha256, created_at) VALUES (?, ?, ?, ?)",
                                (key_id, tenant, _hash(secret), _now()))
                    break
                except sqlite3.IntegrityError:  # a key id drawn twice: draw again
                    continue
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant``, or all), oldest first, without secrets."""
        query = "SELECT key_id, tenant, created_at, revoked_at FROM api_keys"
        params: tuple[str, ...] = ()
        if tenant is not None:
            query += " WHERE tenant = ?"
            params = (tenant,)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY rowid", params).fetchall()
        return [ApiKey(*row) for row in rows]

    def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, or None."""
        with self._connect() as con:
            row = con.execute("SELECT key_id, tenant, created_at, revoked_at FROM api_keys WHERE key_id = ?",
                              (key_id,)).fetchone()
        return ApiKey(*row) if row else None

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (it stops working at once); revoking a revoked key changes nothing."""
        key_id = key_id.strip()
        match = _KEY.match(key_id)
        if match:  # a whole key was given: use its id
            key_id = match.group(1)
        with self._connect() as con:
            con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (_now(), key_id))
        key = self.get(key_id)
        if key is None:
            raise ApiKeyError(f"no API key with id {key_id!r} (see `knowtrace keys list`)")
        return key

    def lookup(self, key: str) -> tuple[ApiKey | None, str]:
        """The stored key a presented key matches, and why not when it matches none
        ("malformed", "unknown", or "revoked" with the key returned)."""
        match = _KEY.match(key) if isinstance(key, str) else None
        if match is None:
            hmac.compare_digest(_DUMMY_HASH, _DUMMY_HASH)
            return None, "malformed"
        key_id, secret = match.groups()
        with self._connect() as con:
            row = con.execute("SELECT key_id, tenant, created_at, revoked_at, secret_sha256 FROM api_keys "
                              "WHERE key_id = ?", (key_id,)).fetchone()
        stored_hash = row[4] if row else _DUMMY_HASH
        same = hmac.compare_digest(_hash(secret), stored_hash)
        if row is None or not same:
            return None, "unknown"
        found = ApiKey(*row[:4])
        return (found, "revoked") if found.revoked_at is not None else (found, "ok")

    def authenticate(self, key: str) -> str | None:
        """The tenant a key speaks for, or None when it is malformed, unknown or revoked."""
        found, status = self.lookup(key)
        return found.tenant if found is not None and status == "ok" else None
