"""Sessions: serialise, restore and continue to the same result; bad input leaves the session valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from knowtrace.cat import (
    BankMismatchError,
    CatConfig,
    CatEngine,
    CatService,
    ContentBalance,
    DirectorySessionStore,
    DuplicateAnswerError,
    EstimatorConfig,
    ItemBank,
    ItemNotAskedError,
    MemorySessionStore,
    SelectorConfig,
    SessionState,
    SessionStateError,
    UnknownSessionError,
    parse_exposure,
    parse_stop,
)
from knowtrace.exceptions import InputError, KnowtraceError

CONFIGS = {
    "kl-randomesque-content": CatConfig(
        selector=SelectorConfig(name="kl"), exposure=parse_exposure("randomesque:4"),
        content=ContentBalance(by="concept", targets={"concept-1": 0.4, "concept-2": 0.3, "concept-3": 0.3}),
        stopping=parse_stop("se:0.3,max:25")),
    "mle-maxinfo": CatConfig(estimator=EstimatorConfig(method="mle"), stopping=parse_stop("max:18")),
    "map-astrat": CatConfig(estimator=EstimatorConfig(method="map"), selector=SelectorConfig(name="astrat"),
                            stopping=parse_stop("max:16")),
}


def answer(bank: ItemBank, item: str, theta: float, rng: np.random.Generator) -> bool:
    return bool(rng.random() < bank.probability(theta, np.array([bank.index(item)]))[0])


def trace(session) -> list[tuple[str, float, float]]:  # type: ignore[no-untyped-def]
    return list(zip(session.items, session.thetas, session.ses))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_serialise_restore_continue_equals_uninterrupted(bank2: ItemBank, tmp_path: Path, name: str) -> None:
    config = CONFIGS[name]
    theta = 0.7
    straight = CatEngine(bank2, config).start("s1", seed=42)
    rng = np.random.default_rng(1)
    while (item := straight.next_item()) is not None:
        straight.record(item, answer(bank2, item, theta, rng))

    session = CatEngine(bank2, config).start("s1", seed=42)
    rng = np.random.default_rng(1)
    for _ in range(6):
        item = session.next_item()
        session.record(item, answer(bank2, item, theta, rng))
    pending = session.next_item()                      # saved with an item on screen
    path = tmp_path / "state.json"
    path.write_text(session.state().model_dump_json())
    del session
    # "restart": a new bank object read from CSV, a new engine, the JSON from disk
    bank_again = ItemBank.from_csv(bank2.to_csv(tmp_path / "bank.csv"))
    restored = CatEngine.for_state(SessionState.model_validate_json(path.read_text()), bank_again)
    assert restored.next_item() == pending
    while (item := restored.next_item()) is not None:
        restored.record(item, answer(bank2, item, theta, rng))
    assert trace(restored) == trace(straight)
    assert restored.stop_reason == straight.stop_reason
    assert restored.result().model_dump() == straight.result().model_dump()


def test_state_is_plain_json_with_bank_fingerprint(bank2: ItemBank) -> None:
    session = CatEngine(bank2).start("abc", seed=0)
    session.record(session.next_item(), True)
    data = json.loads(session.state().model_dump_json())
    assert data["bank_fingerprint"] == bank2.fingerprint and data["bank_size"] == 200
    assert data["session_id"] == "abc" and len(data["items"]) == 1 and len(data["loglik"]) == 121
    assert data["config"]["estimator"]["method"] == "eap"


def test_bad_input_raises_specific_errors_and_leaves_the_session_valid(bank2: ItemBank) -> None:
    engine = CatEngine(bank2, CatConfig(stopping=parse_stop("max:5")))
    session = engine.start("s", seed=0)
    first = session.next_item()
    other = next(i for i in bank2.item_ids if i != first)
    before = session.state().model_dump_json()
    with pytest.raises(ItemNotAskedError, match=f"'{other}' was not asked") as info:
        session.record(other, True)
    assert isinstance(info.value, InputError) and isinstance(info.value, KnowtraceError)
    with pytest.raises(ItemNotAskedError, match="not in the bank"):
        session.record("no-such-item", True)
    with pytest.raises(InputError, match="True/False or 1/0"):
        session.record(first, 2)
    assert session.state().model_dump_json() == before
    session.record(first, 1)
    with pytest.raises(DuplicateAnswerError, match="already answered"):
        session.record(first, 0)
    with pytest.raises(ItemNotAskedError, match="call next_item first"):
        session.record(session.bank.item_ids[5] if session.bank.item_ids[5] != first else other, 0)
    # still valid: the test runs to its end
    while (item := session.next_item()) is not None:
        session.record(item, False)
    assert session.n_items == 5 and session.finished
    with pytest.raises(ItemNotAskedError, match="the test is over"):
        session.record(next(i for i in bank2.item_ids if i not in session.items), 1)


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_service_in_a_store_survives_a_restart(bank2: ItemBank, tmp_path: Path, kind: str) -> None:
    config = CatConfig(exposure=parse_exposure("randomesque:3"), stopping=parse_stop("max:8"))

    def store():  # type: ignore[no-untyped-def]
        return DirectorySessionStore(tmp_path / "sessions") if kind == "directory" else shared

    shared = MemorySessionStore()
    service = CatService(bank2, config, store())
    sid = service.start(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(3):
        item = service.next_item(sid)
        service.answer(sid, item, answer(bank2, item, 0.0, rng))
    item = service.next_item(sid)
    with pytest.raises(ItemNotAskedError):
        service.answer(sid, next(i for i in bank2.item_ids if i != item), True)
    service = CatService(bank2, config, store())       # a new process: only the store is left
    assert service.next_item(sid) == item
    service.answer(sid, item, True)
    with pytest.raises(DuplicateAnswerError):
        service.answer(sid, item, True)
    while (item := service.next_item(sid)) is not None:
        service.answer(sid, item, answer(bank2, item, 0.0, rng))
    result = service.result(sid)
    assert result.n_items == 8 and result.finished
    with pytest.raises(UnknownSessionError, match="unknown session id 'nope'"):
        service.next_item("nope")
    with pytest.raises(UnknownSessionError):
        service.answer("../etc", item or "x", True)
    assert sid in service.store.ids()


def test_restoring_on_another_bank_or_a_tampered_state_fails(bank2: ItemBank, bank3: ItemBank) -> None:
    session = CatEngine(bank2).start("s", seed=0)
    session.record(session.next_item(), True)
    state = session.state()
    with pytest.raises(BankMismatchError, match="fingerprint"):
        CatEngine.for_state(state, bank3)
    tampered = state.model_copy(update={"loglik": [x + 1.0 for x in state.loglik]})
    with pytest.raises(SessionStateError, match="log-likelihood"):
        CatEngine.for_state(tampered, bank2)
    unknown = state.model_copy(update={"items": ["zzz"]})
    with pytest.raises(SessionStateError, match="'zzz'"):
        CatEngine.for_state(unknown, bank2)
    with pytest.raises(SessionStateError, match="another config"):
        CatEngine(bank2, CatConfig(stopping=parse_stop("max:3"))).restore(state)


def test_next_item_repeats_until_answered_and_start_theta_is_used(bank2: ItemBank) -> None:
    engine = CatEngine(bank2, CatConfig(start_theta=2.0))
    session = engine.start(seed=0)
    first = session.next_item()
    assert session.next_item() == first
    assert first == bank2.item_ids[int(np.argmax(bank2.information(2.0)))]


@pytest.mark.parametrize("method", ["eap", "map", "mle"])
def test_banks_too_large_for_tables_give_the_same_session(bank2: ItemBank, monkeypatch: pytest.MonkeyPatch,
                                                          method: str) -> None:
    import knowtrace.cat.session as module

    config = CatConfig(estimator=EstimatorConfig(method=method), stopping=parse_stop("max:15"))

    def run(engine: CatEngine) -> list[tuple[str, float, float]]:
        session = engine.start("s", seed=3)
        rng = np.random.default_rng(4)
        while (item := session.next_item()) is not None:
            session.record(item, answer(bank2, item, -0.4, rng))
        return trace(session)

    with_tables = CatEngine(bank2, config)
    assert with_tables.tables is not None
    monkeypatch.setattr(module, "TABLE_CELLS", 0)
    without = CatEngine(bank2, config)
    assert without.tables is None
    one, two = run(with_tables), run(without)
    assert [i for i, _, _ in one] == [i for i, _, _ in two]
    np.testing.assert_allclose([t for _, t, _ in one], [t for _, t, _ in two], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose([s for _, _, s in one], [s for _, _, s in two], rtol=1e-9)
