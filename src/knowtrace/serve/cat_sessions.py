"""Adaptive test sessions over HTTP: per tenant, on the item bank of the promoted IRT model (or one
calibrated from the tenant's answers in the lake), saved under ``<lake>/_cat/<tenant>/`` so they
survive a restart.

Layout of a tenant's folder::

    sessions/<session id>.json   the session state (``DirectorySessionStore``)
    meta/<session id>.json       learner id, creation time, where the bank came from
    banks/<fingerprint>.csv      every bank a session ran on, so it resumes on exactly that bank
    .lock                        serialises the steps of the tenant's sessions across processes
"""

from __future__ import annotations

import fcntl
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from knowtrace.cat.bank import ItemBank
from knowtrace.cat.errors import (
    BankMismatchError,
    DuplicateAnswerError,
    ItemBankError,
    ItemNotAskedError,
    SessionStateError,
    UnknownSessionError,
)
from knowtrace.cat.report import CatResult
from knowtrace.cat.session import CatConfig, CatEngine, Session
from knowtrace.cat.store import DirectorySessionStore
from knowtrace.exceptions import InputError, KnowtraceError
from knowtrace.lake import Lake
from knowtrace.lake.manifest import write_json_atomic
from knowtrace.registry.deployment import DeployedModels, Deployment
from knowtrace.serve.errors import ApiError

__all__ = ["BankSource", "CatSessions", "SessionView"]

#: most engines (bank x config, with their precomputed tables) kept in memory
_ENGINES = 32


@dataclass(frozen=True)
class BankSource:
    """Where a bank came from: ``kind`` "registry" (the promoted IRT model ``version``) or "lake"
    (calibrated from the tenant's answers at lake build ``version``)."""

    kind: str
    version: str | None
    name: str
    items: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SessionView:
    """A session as the API shows it."""

    session_id: str
    learner_id: str
    created_at: str
    bank: dict[str, Any]
    finished: bool
    stop_reason: str | None
    n_items: int
    theta: float
    se: float | None
    next_item: dict[str, Any] | None
    report: CatResult


class CatSessions:
    """Start, answer and read adaptive test sessions of any tenant."""

    def __init__(self, lake: Lake, models: DeployedModels) -> None:
        self.lake = lake
        self.models = models
        self.root = lake.root / "_cat"
        self._banks: dict[str, ItemBank] = {}
        #: tenant -> ((source kind, version), the bank new sessions get)
        self._current: dict[str, tuple[tuple[str, str | None], ItemBank]] = {}
        self._engines: OrderedDict[tuple[str, str], CatEngine] = OrderedDict()
        self._lock = threading.Lock()

    # -- folders -----------------------------------------------------------------------------

    def _dir(self, tenant: str) -> Path:
        folder = self.root / tenant
        for sub in ("sessions", "meta", "banks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return folder

    def _store(self, tenant: str) -> DirectorySessionStore:
        return DirectorySessionStore(self._dir(tenant) / "sessions")

    @contextmanager
    def _locked(self, tenant: str) -> Iterator[None]:
        with (self._dir(tenant) / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- banks -------------------------------------------------------------------------------

    def _current_bank(self, tenant: str) -> tuple[ItemBank, BankSource]:
        """The bank new sessions of the tenant run on: the promoted IRT model's, else the lake's (kept until
        another version is promoted or the lake is rebuilt)."""
        deployment = self.models.get(tenant, "irt")
        if deployment is not None:
            key = ("registry", deployment.version)
        else:
            build = self.lake.current_build()
            key = ("lake", None if build is None else str(build.get("build_id")))
        with self._lock:
            hit = self._current.get(tenant)
        if hit is not None and hit[0] == key:
            bank = hit[1]
        else:
            bank = self._irt_bank(tenant, deployment) if deployment is not None else self._lake_bank(tenant)
            with self._lock:
                self._current[tenant] = (key, bank)
        return bank, BankSource(key[0], key[1], bank.name or "", len(bank), bank.fingerprint)

    @staticmethod
    def _irt_bank(tenant: str, deployment: Deployment) -> ItemBank:
        try:
            return ItemBank.from_irt(deployment.model, name=f"{tenant}-irt-{deployment.version}")
        except ItemBankError as exc:
            raise ApiError(409, f"the promoted irt model {deployment.version} of tenant {tenant!r} does not make "
                                f"an item bank: {exc}") from None

    def _lake_bank(self, tenant: str) -> ItemBank:
        count = self.lake.query("SELECT count(*) AS n FROM interactions WHERE tenant = ?", [tenant]).to_pylist()
        if not count[0]["n"]:
            raise ApiError(404, f"no item bank for tenant {tenant!r}: no irt model is promoted and the lake holds "
                                "no answers of the tenant to calibrate one (train and promote an irt model with "
                                "`knowtrace pipeline run`, or load answers into the lake)")
        try:
            return ItemBank.from_lake(self.lake, tenant=tenant)
        except (ItemBankError, InputError) as exc:
            raise ApiError(409, f"cannot calibrate an item bank from tenant {tenant!r}'s answers in the lake: "
                                f"{exc}") from None

    def _save_bank(self, tenant: str, bank: ItemBank) -> None:
        path = self._dir(tenant) / "banks" / f"{bank.fingerprint}.csv"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            bank.to_csv(tmp)
            tmp.replace(path)
        with self._lock:
            self._banks[bank.fingerprint] = bank

    def _bank(self, tenant: str, fingerprint: str) -> ItemBank:
        with self._lock:
            bank = self._banks.get(fingerprint)
        if bank is not None:
            return bank
        path = self._dir(tenant) / "banks" / f"{fingerprint}.csv"
        if not path.is_file():
            raise ApiError(409, f"the item bank of this session ({fingerprint[:12]}…) is no longer in {path.parent}")
        bank = ItemBank.from_csv(path)
        if bank.fingerprint != fingerprint:
            raise ApiError(409, f"the saved item bank {path} does not match its fingerprint")
        with self._lock:
            self._banks[fingerprint] = bank
        return bank

    def _engine(self, bank: ItemBank, config: CatConfig) -> CatEngine:
        key = (bank.fingerprint, config.model_dump_json())
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
        engine = CatEngine(bank, config)
        with self._lock:
            self._engines[key] = engine
            while len(self._engines) > _ENGINES:
                self._engines.popitem(last=False)
        return engine

    # -- sessions ----------------------------------------------------------------------------

    def _meta_path(self, tenant: str, session_id: str) -> Path:
        return self._dir(tenant) / "meta" / f"{session_id}.json"

    def _load(self, tenant: str, session_id: str) -> tuple[Session, dict[str, Any]]:
        store = self._store(tenant)
        try:
            state = store.load(session_id)
        except UnknownSessionError:
            raise ApiError(404, f"no CAT session {session_id!r} for tenant {tenant!r}") from None
        except SessionStateError as exc:
            raise ApiError(409, f"CAT session {session_id!r} cannot be read: {exc}") from None
        try:
            meta = json.loads(self._meta_path(tenant, session_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {"learner_id": None, "created_at": None, "bank": {"fingerprint": state.bank_fingerprint}}
        bank = self._bank(tenant, state.bank_fingerprint)
        try:
            return self._engine(bank, state.config).restore(state), meta
        except (BankMismatchError, SessionStateError) as exc:
            raise ApiError(409, f"CAT session {session_id!r} cannot be resumed: {exc}") from None

    def start(self, tenant: str, learner_id: str, config: CatConfig, *, seed: int | None = None) -> SessionView:
        """A new session for the learner; its first item is chosen."""
        bank, source = self._current_bank(tenant)
        self._save_bank(tenant, bank)
        session = self._engine(bank, config).start(seed=seed)
        session.next_item()
        meta = {"learner_id": learner_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "bank": source.to_dict()}
        with self._locked(tenant):
            write_json_atomic(self._meta_path(tenant, session.session_id), meta)
            self._store(tenant).save(session.state())
        return self._view(session, meta)

    def answer(self, tenant: str, session_id: str, item_id: str, correct: bool) -> SessionView:
        """Record the answer to the item asked; the next item is chosen (or the test ends)."""
        with self._locked(tenant):
            session, meta = self._load(tenant, session_id)
            if session.finished:
                raise ApiError(409, f"CAT session {session_id!r} is finished ({session.stop_reason}); "
                                    "start a new one")
            try:
                session.record(item_id, correct)
            except (ItemNotAskedError, DuplicateAnswerError) as exc:
                raise ApiError(409, exc.reason, field=exc.field) from None
            session.next_item()
            self._store(tenant).save(session.state())
        return self._view(session, meta)

    def get(self, tenant: str, session_id: str) -> SessionView:
        """The session as it stands."""
        session, meta = self._load(tenant, session_id)
        return self._view(session, meta)

    def _view(self, session: Session, meta: dict[str, Any]) -> SessionView:
        pending = session.pending
        next_item = None
        if pending is not None and not session.finished:
            bank = session.bank
            next_item = {"item_id": bank.item_ids[pending], "concepts": list(bank.concepts[pending])}
        try:
            report = session.result()
        except KnowtraceError as exc:  # pragma: no cover - diagnose raises only on a broken session
            raise ApiError(409, f"CAT session {session.session_id!r}: {exc}") from None
        return SessionView(session_id=session.session_id, learner_id=meta.get("learner_id") or "",
                           created_at=meta.get("created_at") or "", bank=meta.get("bank") or {},
                           finished=session.finished, stop_reason=session.stop_reason, n_items=session.n_items,
                           theta=report.theta, se=report.se, next_item=next_item, report=report)

