"""What the routes share: the lake, API keys, the event log, the learner state, the deployed models, CAT sessions."""

from __future__ import annotations

import threading

from knowtrace.lake import Lake
from knowtrace.serve.cat_sessions import CatSessions
from knowtrace.registry.deployment import DeployedModels, PromotedSource, settle_heap
from knowtrace.serve.keys import ApiKeyStore
from knowtrace.serve.settings import ServeSettings
from knowtrace.state.store import StateStore, open_state
from knowtrace.stream.log import EventLog, open_log

__all__ = ["Services"]


class Services:
    """Opened once per app. The event log and the state store open at first use (so the API starts, and
    ``/healthz`` reports, while Redis is still coming up) and are shared by all requests."""

    def __init__(self, settings: ServeSettings, *, registry: PromotedSource | None = None) -> None:
        self.settings = settings
        self.lake = Lake(settings.lake)
        self.keys = ApiKeyStore(self.lake.layout.meta / "api_keys.db")
        if registry is None:
            from knowtrace.registry import ModelRegistry

            registry = ModelRegistry(self.lake.root)
        self.models = DeployedModels(registry, poll_seconds=settings.model_poll_seconds, on_load=settle_heap)
        self.cat = CatSessions(self.lake, self.models)
        self._log: EventLog | None = None
        self._state: StateStore | None = None
        self._lock = threading.Lock()

    @property
    def log(self) -> EventLog:
        """The event log (``LogError`` when it cannot be opened)."""
        if self._log is None:
            with self._lock:
                if self._log is None:
                    self._log = open_log(self.settings.stream_url)
        return self._log

    @property
    def state(self) -> StateStore:
        """The learner state store (``StateError`` when it cannot be opened)."""
        if self._state is None:
            with self._lock:
                if self._state is None:
                    self._state = open_state(self.settings.state_url)
        return self._state

    def close(self) -> None:
        """Close the log and the state store (they reopen if used again)."""
        with self._lock:
            for resource in (self._log, self._state):
                if resource is not None:
                    resource.close()
            self._log = self._state = None

