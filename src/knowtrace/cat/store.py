"""Where sessions live between requests: in memory or as JSON files in a directory, and a small service
that loads a session, runs one step and saves it (a failed step saves nothing)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pydantic import ValidationError

from knowtrace.cat.bank import ItemBank
from knowtrace.cat.errors import SessionStateError, UnknownSessionError
from knowtrace.cat.estimators import Estimate
from knowtrace.cat.report import CatResult
from knowtrace.cat.session import CatConfig, CatEngine, Session, SessionState
from knowtrace.exceptions import InputError

__all__ = ["CatService", "DirectorySessionStore", "MemorySessionStore", "SessionStore"]

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _check_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _ID.match(session_id) or session_id in (".", ".."):
        raise InputError(f"bad session id {session_id!r}: use 1-128 letters, digits, '_', '-' or '.'",
                         field="session_id")
    return session_id


class SessionStore:
    """Saves and loads :class:`SessionState` by session id."""

    def save(self, state: SessionState) -> None:
        """Store ``state`` (replacing an earlier one of the same id)."""
        raise NotImplementedError

    def load(self, session_id: str) -> SessionState:
        """The stored state (``UnknownSessionError`` when there is none)."""
        raise NotImplementedError

    def delete(self, session_id: str) -> None:
        """Forget a session (``UnknownSessionError`` when there is none)."""
        raise NotImplementedError

    def ids(self) -> list[str]:
        """The stored session ids, sorted."""
        raise NotImplementedError

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and session_id in self.ids()


class MemorySessionStore(SessionStore):
    """Sessions kept as JSON text in a dict (so a stored session is a copy, as on disk)."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def save(self, state: SessionState) -> None:
        self._data[_check_id(state.session_id)] = state.model_dump_json()

    def load(self, session_id: str) -> SessionState:
        text = self._data.get(session_id) if isinstance(session_id, str) else None
        if text is None:
            raise UnknownSessionError(str(session_id))
        return SessionState.model_validate_json(text)

    def delete(self, session_id: str) -> None:
        if self._data.pop(session_id, None) is None:
            raise UnknownSessionError(str(session_id))

    def ids(self) -> list[str]:
        return sorted(self._data)


class DirectorySessionStore(SessionStore):
    """One ``<session id>.json`` per session in ``root``, written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        return self.root / f"{_check_id(session_id)}.json"

    def save(self, state: SessionState) -> None:
        path = self._path(state.session_id)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(state.model_dump_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, session_id: str) -> SessionState:
        try:
            path = self._path(session_id)
        except InputError:
            raise UnknownSessionError(str(session_id)) from None
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UnknownSessionError(session_id) from None
        try:
            return SessionState.model_validate_json(text)
        except ValidationError as exc:
            raise SessionStateError(f"session file is not a valid session: {exc.errors()[0]['msg']}",
                                    file=path) from None

    def delete(self, session_id: str) -> None:
        try:
            self._path(session_id).unlink()
        except (FileNotFoundError, InputError):
            raise UnknownSessionError(str(session_id)) from None

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))


class CatService:
    """Sessions of one bank and config kept in a store: every call loads, acts and saves."""

    def __init__(self, bank: ItemBank, config: CatConfig | None = None, store: SessionStore | None = None) -> None:
        self.engine = CatEngine(bank, config)
        self.store = store if store is not None else MemorySessionStore()

    def start(self, session_id: str | None = None, *, seed: int | None = None) -> str:
        """Start a session and return its id."""
        if session_id is not None:
            _check_id(session_id)
            if session_id in self.store:
                raise InputError(f"session {session_id!r} exists already", field="session_id")
        session = self.engine.start(session_id, seed=seed)
        self.store.save(session.state())
        return session.session_id

    def session(self, session_id: str) -> Session:
        """The stored session, restored."""
        return self.engine.restore(self.store.load(session_id))

    def next_item(self, session_id: str) -> str | None:
        """The item to present, or None when the test is over."""
        session = self.session(session_id)
        item = session.next_item()
        self.store.save(session.state())
        return item

    def answer(self, session_id: str, item_id: str, correct: bool | int) -> Estimate:
        """Record an answer; the stored session changes only if it is accepted."""
        session = self.session(session_id)
        estimate = session.record(item_id, correct)
        self.store.save(session.state())
        return estimate

    def result(self, session_id: str) -> CatResult:
        """The diagnosis of the session so far."""
        return self.session(session_id).result()
