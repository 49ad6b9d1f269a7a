"""Load manifests: a load is committed exactly when its manifest file exists."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from knowtrace.exceptions import LakeError

__all__ = ["LoadManifest", "fingerprint_input", "fsync_dir", "new_load_id", "read_manifests", "write_json_atomic"]


class LoadManifest(BaseModel):
    """What one committed load brought into the lake."""

    model_config = ConfigDict(extra="forbid")

    load_id: str
    format: str
    source: str | None
    fingerprint: str
    options: dict[str, Any]
    started_at: datetime
    committed_at: datetime
    rows_read: int
    events: int
    rejected: int
    items: int
    concepts: int
    knowtrace_version: str
    #: committed without rebuilding silver/gold (stream micro-batches); the next build includes it
    deferred_build: bool = False


def new_load_id(now: datetime | None = None) -> str:
    """A load id that sorts by time: ``20261128T150102123456Z-1a2b3c``."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def fingerprint_input(fmt: str, options: dict[str, Any], path: Path | None) -> str:
    """A hash of the format, its options and the bytes of the input (a file or every file of a folder)."""
    digest = hashlib.sha256(json.dumps([fmt, options], sort_keys=True, default=str).encode())
    if path is not None:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifests(folder: Path) -> list[LoadManifest]:
    """Every committed load, oldest first."""
    manifests = []
    for file in sorted(folder.glob("*.json")):
        try:
            manifests.append(LoadManifest.model_validate_json(file.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise LakeError(f"{file}: corrupt load manifest ({exc})") from exc
    return manifests
