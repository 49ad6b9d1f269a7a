"""Adaptive test sessions: start → next item → record answer → … → result, with serialisable state."""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowtrace.cat.bank import ItemBank
from knowtrace.cat.errors import (
    BankMismatchError,
    DuplicateAnswerError,
    ItemNotAskedError,
    SessionStateError,
)
from knowtrace.cat.estimators import AbilityState, Estimate, EstimatorConfig, make_estimator
from knowtrace.cat.exposure import ExposureConfig, ExposureControl
from knowtrace.cat.report import LevelScale
from knowtrace.cat.selectors import ContentBalance, ContentBalancer, SelectionContext, SelectorConfig, make_selector
from knowtrace.cat.stopping import StopDecision, StoppingRule, StopState
from knowtrace.exceptions import InputError

if TYPE_CHECKING:
    from knowtrace.cat.report import CatResult

__all__ = ["STATE_FORMAT", "CatConfig", "CatEngine", "Session", "SessionState"]

#: version of the saved session format
STATE_FORMAT = 1
#: largest bank × grid size whose tables are precomputed (two float64 tables, seven for MAP/MLE)
TABLE_CELLS = 1_500_000


class CatConfig(BaseModel):
    """Everything that defines how a test runs: estimator, selection, exposure, content, stopping, levels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    estimator: EstimatorConfig = EstimatorConfig()
    selector: SelectorConfig = SelectorConfig()
    exposure: ExposureConfig = ExposureConfig()
    content: ContentBalance | None = None
    stopping: StoppingRule = StoppingRule()
    #: ability used to choose the first item (None: the estimator's starting estimate)
    start_theta: float | None = None
    levels: LevelScale = LevelScale()


class SessionState(BaseModel):
    """A session as JSON: bank reference and fingerprint, config, items and answers, estimator state, RNG."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = STATE_FORMAT
    session_id: str = Field(min_length=1, max_length=128)
    bank_name: str | None = None
    bank_fingerprint: str
    bank_size: int
    config: CatConfig
    items: list[str] = []
    responses: list[int] = []
    thetas: list[float] = []
    #: standard error after each answer; None where it is infinite (MLE before any information)
    ses: list[float | None] = []
    pending: str | None = None
    set_aside: list[str] = []
    finished: bool = False
    stop_reason: str | None = None
    #: estimator state: log-likelihood of the answers on the ability grid
    loglik: list[float]
    rng: dict[str, Any]


class CatEngine:
    """An item bank with a config, precomputed once; it starts and restores sessions.

    >>> bank = ItemBank.generate(50, seed=1)
    >>> session = CatEngine(bank).start(seed=0)
    >>> item = session.next_item()
    >>> estimate = session.record(item, True)
    >>> estimate.theta > 0
    True
    """

    def __init__(self, bank: ItemBank, config: CatConfig | None = None) -> None:
        self.bank = bank
        self.config = config or CatConfig()
        cfg = self.config
        self.estimator = make_estimator(cfg.estimator)
        self.nodes = self.estimator.nodes
        self.selector = make_selector(cfg.selector, bank, self.nodes)
        self.exposure = ExposureControl(cfg.exposure, bank)
        self.content = ContentBalancer(cfg.content, bank) if cfg.content is not None else None
        self.test_length = cfg.stopping.planned_length(len(bank))
        self.sprt = cfg.stopping.sprt()
        self.start_estimate = self.estimator.start()
        #: MAP and MLE read the mode off the grid: their sessions keep the derivative grids too
        self.derivatives = cfg.estimator.method in ("map", "mle") and not cfg.estimator.exact
        # answers add precomputed rows to the grids when the tables are not too large
        self.tables = (bank.grid_tables(self.nodes, derivatives=self.derivatives)
                       if len(bank) * len(self.nodes) <= TABLE_CELLS else None)

    def start(self, session_id: str | None = None, *, seed: int | None = None) -> Session:
        """A new session (``seed`` fixes its random choices: randomesque, Sympson–Hetter)."""
        sid = session_id or secrets.token_hex(16)
        return Session(self, sid, np.random.default_rng(seed))

    def restore(self, state: SessionState) -> Session:
        """The session saved in ``state`` (same bank and config required)."""
        if state.bank_fingerprint != self.bank.fingerprint or state.bank_size != len(self.bank):
            raise BankMismatchError(
                f"session {state.session_id!r} was run on bank {state.bank_name or '?'} "
                f"(fingerprint {state.bank_fingerprint[:12]}…, {state.bank_size} items), not on "
                f"{self.bank.name or 'this bank'} (fingerprint {self.bank.fingerprint[:12]}…, {len(self.bank)} items)")
        if state.config != self.config:
            raise SessionStateError(f"session {state.session_id!r} was run with another config", field="config")
        return Session._from_state(self, state)

    @classmethod
    def for_state(cls, state: SessionState, bank: ItemBank) -> Session:
        """Restore ``state`` on ``bank`` with the config saved in it."""
        return cls(bank, state.config).restore(state)


class Session:
    """One examinee's adaptive test. Methods check their input before changing anything, so a rejected
    call leaves the session as it was."""

    def __init__(self, engine: CatEngine, session_id: str, rng: np.random.Generator) -> None:
        self.engine = engine
        self.bank = engine.bank
        self.session_id = session_id
        self.rng = rng
        self.ability = AbilityState.empty(engine.nodes, engine.tables, derivatives=engine.derivatives)
        self.available = np.ones(len(engine.bank), dtype=bool)
        self.set_aside = np.zeros(len(engine.bank), dtype=bool)
        self.pending: int | None = None
        self.estimate: Estimate = engine.start_estimate
        self.thetas: list[float] = []
        self.ses: list[float] = []
        self.finished = False
        self.stop_reason: str | None = None
        self._answered: set[int] = set()
        self._open = np.ones(len(engine.bank), dtype=bool)          # available and not set aside
        self._open_count = len(engine.bank)
        self._n_available = len(engine.bank)
        self._content_counts = (np.zeros(len(engine.content.names)) if engine.content is not None else None)

    # -- reading ----------------------------------------------------------------------------

    @property
    def theta(self) -> float:
        """The current ability estimate."""
        return self.estimate.theta

    @property
    def se(self) -> float:
        """Its standard error."""
        return self.estimate.se

    @property
    def items(self) -> list[str]:
        """Ids of the items answered, in order."""
        ids = self.bank.item_ids
        return [ids[i] for i in self.ability.items]

    @property
    def responses(self) -> list[int]:
        """The answers (1 = correct), in order."""
        return list(self.ability.answers)

    @property
    def n_items(self) -> int:
        """How many items were answered."""
        return len(self.thetas)

    @property
    def items_left(self) -> int:
        """Items that may still be given (not answered, not enemies of answered ones)."""
        return self._n_available

    def log_likelihood(self, theta: float) -> float:
        """Log-likelihood of the answers so far at ``theta``."""
        return self.ability.log_likelihood_at(self.bank, theta)

    def _view(self) -> StopState:
        return self

    def stop_decision(self) -> StopDecision:
        """What the stopping rule says now."""
        return self.engine.config.stopping.check(self._view())

    def classification(self) -> tuple[Literal["above", "below"] | None, bool]:
        """Against the SPRT rule's cut (if the config has one): the side, and whether the SPRT decided it
        (else the side of the estimate)."""
        sprt = self.engine.sprt
        if sprt is None or self.n_items == 0:
            return None, False
        decided = sprt.decide(self._view())
        if decided is not None:
            return decided, True
        return ("above" if self.estimate.theta >= sprt.cut else "below"), False

    # -- running ----------------------------------------------------------------------------

    def next_item(self) -> str | None:
        """The item to present (the same one again until it is answered), or None when the test is over."""
        if self.finished:
            return None
        if self.pending is not None:
            return self.bank.item_ids[self.pending]
        decision = self.stop_decision()
        if decision.stop:
            self.finished, self.stop_reason = True, decision.reason
            return None
        self.pending = self._select()
        return self.bank.item_ids[self.pending]

    def _select(self) -> int:
        engine = self.engine
        candidates = self._open if self._open_count > 0 else self.available
        if engine.content is not None:
            assert self._content_counts is not None
            due = engine.content.mask(self._content_counts, self.n_items, candidates)
            if due is not None:
                candidates = due
        theta = self.estimate.theta
        if self.n_items == 0 and engine.config.start_theta is not None:
            theta = engine.config.start_theta
        weights = engine.estimator.posterior(self.ability) if engine.selector.needs_posterior else None
        ctx = SelectionContext(theta, weights, self.n_items, engine.test_length, candidates)
        scores = np.where(candidates, engine.selector.scores(ctx), -np.inf)
        item, aside = engine.exposure.choose(scores, self.rng)
        if not candidates[item]:  # no finite score (cannot happen with the built-in selectors)
            item = int(np.argmax(candidates))
        if aside:
            self.set_aside[aside] = True
            self._open[aside] = False
            self._open_count = int(np.count_nonzero(self._open))
        return item

    def record(self, item_id: str, correct: bool | int) -> Estimate:
        """Record the answer to the item presented; returns the new estimate."""
        value = _as_answer(correct)
        index = self.bank._index.get(item_id) if isinstance(item_id, str) else None
        if index is None:
            raise ItemNotAskedError(f"item {item_id!r} is not in the bank {self.bank.name or ''}".rstrip(),
                                    field="item_id")
        if index in self._answered:
            raise DuplicateAnswerError(f"item {item_id!r} was already answered in session {self.session_id!r}",
                                       field="item_id")
        if self.pending != index:
            asked = (f"the item asked is {self.bank.item_ids[self.pending]!r}" if self.pending is not None
                     else "no item is asked now (call next_item first)" if not self.finished
                     else "the test is over")
            raise ItemNotAskedError(f"item {item_id!r} was not asked in session {self.session_id!r}; {asked}",
                                    field="item_id")
        self._apply(index, value)
        return self.estimate

    def answer(self, item_id: str, correct: bool | int) -> Estimate:
        """Same as :meth:`record`."""
        return self.record(item_id, correct)

    def _apply(self, index: int, value: int) -> None:
        engine = self.engine
        self.ability.add(self.bank, index, value)
        self._answered.add(index)
        self._n_available -= int(self.available[index])
        self._open_count -= int(self._open[index])
        self.available[index] = False
        self._open[index] = False
        enemies = self.bank.enemy_index[index]
        if enemies.size:
            self._n_available -= int(np.count_nonzero(self.available[enemies]))
            self._open_count -= int(np.count_nonzero(self._open[enemies]))
            self.available[enemies] = False
            self._open[enemies] = False
        if self._content_counts is not None:
            assert engine.content is not None
            self._content_counts += engine.content.matrix[:, index]
        self.pending = None
        self.estimate = engine.estimator.estimate(self.ability, self.bank)
        self.thetas.append(self.estimate.theta)
        self.ses.append(self.estimate.se)

    def finish(self, reason: str = "ended by the caller") -> None:
        """End the test now (a pending item is dropped)."""
        if not self.finished:
            self.pending = None
            self.finished, self.stop_reason = True, reason

    def result(self, *, levels: LevelScale | None = None) -> CatResult:
        """Ability, SE, level overall and per concept, and the full trace."""
        from knowtrace.cat.report import diagnose

        return diagnose(self, levels=levels)

    # -- saving -----------------------------------------------------------------------------

    def state(self) -> SessionState:
        """The session as a pydantic model (``.model_dump_json()`` to save it)."""
        ids = self.bank.item_ids
        return SessionState(
            session_id=self.session_id, bank_name=self.bank.name, bank_fingerprint=self.bank.fingerprint,
            bank_size=len(self.bank), config=self.engine.config, items=self.items, responses=self.responses,
            thetas=list(self.thetas), ses=[s if math.isfinite(s) else None for s in self.ses],
            pending=ids[self.pending] if self.pending is not None else None,
            set_aside=[ids[i] for i in np.flatnonzero(self.set_aside)], finished=self.finished,
            stop_reason=self.stop_reason, loglik=self.ability.loglik.tolist(),
            rng=_jsonable(self.rng.bit_generator.state))

    @classmethod
    def _from_state(cls, engine: CatEngine, state: SessionState) -> Session:
        bank = engine.bank

        def index(item_id: str, field: str) -> int:
            i = bank._index.get(item_id)
            if i is None:
                raise SessionStateError(f"session {state.session_id!r}: item {item_id!r} is not in the bank",
                                        field=field)
            return i

        n = len(state.items)
        if not (len(state.responses) == len(state.thetas) == len(state.ses) == n):
            raise SessionStateError(f"session {state.session_id!r}: items, responses, thetas and ses differ in "
                                    "length", field="items")
        if len(state.loglik) != len(engine.nodes):
            raise SessionStateError(f"session {state.session_id!r}: the log-likelihood has {len(state.loglik)} "
                                    f"points, the grid {len(engine.nodes)}", field="loglik")
        if any(r not in (0, 1) for r in state.responses):
            raise SessionStateError(f"session {state.session_id!r}: responses must be 0 or 1", field="responses")
        try:
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
        except (TypeError, ValueError, KeyError) as exc:
            raise SessionStateError(f"session {state.session_id!r}: bad random state: {exc}", field="rng") from None
        session = cls(engine, state.session_id, rng)
        for item_id, value in zip(state.items, state.responses):
            i = index(item_id, "items")
            if i in session._answered:
                raise SessionStateError(f"session {state.session_id!r}: item {item_id!r} appears twice",
                                        field="items")
            session._apply(i, value)
        saved = np.asarray(state.loglik, dtype=np.float64)
        if not np.allclose(saved, session.ability.loglik, rtol=1e-9, atol=1e-9):
            raise SessionStateError(f"session {state.session_id!r}: the saved log-likelihood does not match the "
                                    "answers", field="loglik")
        session.ability.loglik = saved
        session.thetas = list(state.thetas)
        session.ses = [s if s is not None else math.inf for s in state.ses]
        if n:
            session.estimate = Estimate(session.thetas[-1], session.ses[-1])
        for item_id in state.set_aside:
            session.set_aside[index(item_id, "set_aside")] = True
        session._open = session.available & ~session.set_aside
        session._open_count = int(np.count_nonzero(session._open))
        if state.pending is not None:
            pending = index(state.pending, "pending")
            if pending in session._answered:
                raise SessionStateError(f"session {state.session_id!r}: pending item {state.pending!r} was "
                                        "already answered", field="pending")
            session.pending = pending
        session.finished, session.stop_reason = state.finished, state.stop_reason
        return session


def _as_answer(correct: object) -> int:
    if isinstance(correct, (bool, np.bool_)):
        return int(correct)
    if isinstance(correct, (int, np.integer)) and int(correct) in (0, 1):
        return int(correct)
    raise InputError(f"an answer must be True/False or 1/0, got {correct!r}", field="correct")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value
