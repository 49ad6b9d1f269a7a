"""Errors of the adaptive diagnosis engine; each one says which item, field or session is at fault."""

from __future__ import annotations

from knowtrace.exceptions import InputError, KnowtraceError

__all__ = [
    "BankMismatchError",
    "CatError",
    "DuplicateAnswerError",
    "ItemBankError",
    "ItemNotAskedError",
    "SessionStateError",
    "UnknownSessionError",
]


class CatError(KnowtraceError):
    """Base class of the errors the adaptive engine raises on purpose."""


class ItemBankError(InputError):
    """An item bank is invalid: duplicate ids, an impossible parameter, an unknown enemy item."""


class ItemNotAskedError(CatError, InputError):
    """An answer came for an item that the session has not asked (or asked another one)."""


class DuplicateAnswerError(CatError, InputError):
    """A second answer came for an item already answered in this session."""


class UnknownSessionError(CatError, LookupError):
    """No session with this id is in the store."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"unknown session id {session_id!r}")

    def __str__(self) -> str:  # LookupError would quote the whole message
        return str(self.args[0])


class BankMismatchError(CatError):
    """A saved session refers to an item bank other than the one it is resumed with."""


class SessionStateError(CatError, InputError):
    """A saved session state is inconsistent (wrong lengths, unknown items)."""
