"""Watermarks: where the last committed extract of a source stopped, kept in the lake's load manifests.

An extract's manifest (format ``batch-extract``) records in its ``options`` the source, the tenant
and the watermark it reached. The manifest is the lake's commit point, so the watermark moves
exactly when the rows read up to it are in the lake: an extract that fails leaves no manifest, and
the next one starts again from the last committed watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knowtrace.exceptions import LakeError
from knowtrace.lake import Lake
from knowtrace.lake.manifest import LoadManifest

__all__ = ["EXTRACT_FORMAT", "Watermark", "last_extract", "read_watermark"]

#: the load format of extracts (a lake's ``loads`` view lists them under this name)
EXTRACT_FORMAT = "batch-extract"


@dataclass(frozen=True)
class Watermark:
    """The last ``(updated_at, id)`` of ``attempts`` an extract read; the next reads the rows after it.

    ``updated_at`` is kept as the source gave it (ISO 8601 text), so that it compares in the source
    exactly like the column does.
    """

    updated_at: str
    id: int

    def to_json(self) -> dict[str, Any]:
        return {"updated_at": self.updated_at, "id": self.id}

    @classmethod
    def from_json(cls, data: Any) -> Watermark | None:
        """The watermark stored in a manifest (None stands for "before the first row")."""
        if data is None:
            return None
        try:
            return cls(updated_at=str(data["updated_at"]), id=int(data["id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LakeError(f"corrupt extract watermark {data!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.updated_at} #{self.id}"


def last_extract(lake: Lake, *, dialect: str, source: str, tenant: str) -> LoadManifest | None:
    """The newest committed extract of ``source`` (a ``dialect`` database) into ``tenant``, if any."""
    for manifest in reversed(lake.manifests()):
        options = manifest.options
        if (manifest.format == EXTRACT_FORMAT and options.get("dialect") == dialect
                and options.get("source") == source and options.get("tenant") == tenant):
            return manifest
    return None


def read_watermark(lake: Lake, *, dialect: str, source: str, tenant: str) -> Watermark | None:
    """Where the newest committed extract of ``source`` into ``tenant`` stopped (None: extract everything)."""
    manifest = last_extract(lake, dialect=dialect, source=source, tenant=tenant)
    return None if manifest is None else Watermark.from_json(manifest.options.get("watermark"))
