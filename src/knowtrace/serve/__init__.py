"""The HTTP API (FastAPI): ingest events and xAPI statements, serve mastery and predictions, run CAT sessions.

``create_app`` (``knowtrace.serve.app``) builds the app; ``ServeSettings`` configures it; API keys
live in ``ApiKeyStore`` (``knowtrace keys``). Imported lazily, so the command line does not load
FastAPI unless it serves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiKeyStore", "ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from knowtrace.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from knowtrace.serve.settings import ServeSettings

        return ServeSettings
    if name == "ApiKeyStore":
        from knowtrace.serve.keys import ApiKeyStore

        return ApiKeyStore
    raise AttributeError(f"module 'knowtrace.serve' has no attribute {name!r}")
