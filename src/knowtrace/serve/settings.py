"""Settings of the HTTP API, read from ``KNOWTRACE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from knowtrace.lake.layout import DEFAULT_LAKE

__all__ = ["ServeSettings"]

MiB = 1024 * 1024


class ServeSettings(BaseSettings):
    """Where the API finds the lake, the event log and the learner state, and its request limits.

    ``KNOWTRACE_LAKE`` (lake directory), ``KNOWTRACE_STREAM_URL`` (event log; default
    ``sqlite:///<lake>/_stream/events.db``), ``KNOWTRACE_STATE_URL`` (learner state; default
    ``sqlite:///<lake>/_state/state.db``), ``KNOWTRACE_MAX_EVENTS_PER_REQUEST``,
    ``KNOWTRACE_MAX_BODY_BYTES``, ``KNOWTRACE_MODEL_POLL_SECONDS`` (how often a deployed model
    checks the registry for a newly promoted version).
    """

    model_config = SettingsConfigDict(env_prefix="KNOWTRACE_", extra="ignore")

    lake: Path = Path(DEFAULT_LAKE)
    stream_url: str = ""
    state_url: str = ""
    max_events_per_request: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=16 * MiB, ge=1024)
    model_poll_seconds: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _default_urls(self) -> ServeSettings:
        root = self.lake.absolute()
        if not self.stream_url:
            self.stream_url = f"sqlite:///{root / '_stream' / 'events.db'}"
        if not self.state_url:
            self.state_url = f"sqlite:///{root / '_state' / 'state.db'}"
        return self
