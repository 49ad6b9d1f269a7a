"""The learner state stores, SQLite and Redis (both real): round trip, isolation, atomicity, errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from knowtrace.state import LearnerState, StateError, StateStore, open_state
from knowtrace.state import redis_store, sqlite_store
from knowtrace.state.redis_store import RedisStateStore
from knowtrace.state.sqlite_store import SQLiteStateStore


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    opened = open_state(store_url)
    yield opened
    opened.close()


def state(version: str = "v1", value: float = 0.5, *, model: str = "elo", n: int = 3, offset: int = 10) -> LearnerState:
    return LearnerState(
        model=model, version=version, n_answers=n, last_offset=offset, updated_at=1234.5,
        arrays={"skill": np.array([value]), "answers": np.array([n], dtype=np.int64),
                "ids": np.array(["c1", "concept-ü"]), "empty": np.zeros((0, 2), dtype=np.int64),
                "flags": np.array([True, False]), "small": np.array([1, 2], dtype=np.int8)},
        mastery={"c1": (0.25, None), "concept-ü": (0.75, 0.125)})


def assert_equal_states(got: LearnerState, want: LearnerState) -> None:
    assert (got.model, got.version, got.n_answers, got.last_offset, got.updated_at) == \
        (want.model, want.version, want.n_answers, want.last_offset, want.updated_at)
    assert got.mastery == want.mastery
    assert got.arrays.keys() == want.arrays.keys()
    for key, value in want.arrays.items():
        assert got.arrays[key].dtype == value.dtype and got.arrays[key].shape == value.shape, key
        np.testing.assert_array_equal(got.arrays[key], value, err_msg=key)


def test_round_trip(store: StateStore) -> None:
    assert store.get_many("t", "elo", ["a", "b"]) == {}
    assert store.get("t", "elo", "a") is None
    assert store.learners("t", "elo") == []
    written = {("elo", "b"): state(value=0.1), ("elo", "a"): state(value=0.2), ("bkt", "a"): state(model="bkt")}
    store.put_many("t", written)
    got = store.get_many("t", "elo", ["a", "b", "missing", "a"])
    assert set(got) == {"a", "b"}
    assert_equal_states(got["a"], written["elo", "a"])
    assert_equal_states(got["b"], written["elo", "b"])
    assert_equal_states(store.get("t", "bkt", "a"), written["bkt", "a"])  # type: ignore[arg-type]
    assert store.learners("t", "elo") == ["a", "b"]
    assert store.learners("t", "bkt") == ["a"]
    assert isinstance(got["a"].mastery["c1"][0], float) and got["a"].mastery["c1"][1] is None


def test_overwrite_replaces_the_whole_state(store: StateStore) -> None:
    store.put_many("t", {("elo", "a"): state()})
    newer = LearnerState(model="elo", version="v2", n_answers=4, last_offset=11, updated_at=2.0,
                         arrays={"skill": np.array([0.9])}, mastery={})
    store.put_many("t", {("elo", "a"): newer})
    assert_equal_states(store.get("t", "elo", "a"), newer)  # type: ignore[arg-type]
    assert store.learners("t", "elo") == ["a"]


def test_tenants_models_and_ids_with_separators_do_not_collide(store: StateStore) -> None:
    store.put_many("a:b", {("elo", "c"): state(value=1.0)})
    store.put_many("a", {("elo", "b:c"): state(value=2.0), ("elo:x", "c"): state(value=3.0, model="elo:x")})
    store.put_many("a%3Ab", {("elo", "c"): state(value=4.0)})
    assert store.get("a:b", "elo", "c").arrays["skill"].tolist() == [1.0]  # type: ignore[union-attr]
    assert store.get("a", "elo", "b:c").arrays["skill"].tolist() == [2.0]  # type: ignore[union-attr]
    assert store.get("a%3Ab", "elo", "c").arrays["skill"].tolist() == [4.0]  # type: ignore[union-attr]
    assert store.get("a", "elo", "c") is None
    assert store.learners("a", "elo") == ["b:c"]
    assert store.learners("a:b", "elo") == ["c"]
    assert store.learners("a", "elo:x") == ["c"]


def test_many_learners_in_one_call(store: StateStore) -> None:
    ids = [f"learner-{j:04d}" for j in range(1200)]  # more than one SQLite IN (...) chunk
    store.put_many("t", {("elo", x): state(value=j) for j, x in enumerate(ids)})
    got = store.get_many("t", "elo", ids[::-1])
    assert len(got) == len(ids) and got["learner-1100"].arrays["skill"].tolist() == [1100.0]
    assert store.learners("t", "elo") == ids


@pytest.mark.parametrize(("bad", "message"), [
    (lambda s: setattr(s, "arrays", {"x": np.array([object()], dtype=object)}), "array 'x'"),
    (lambda s: setattr(s, "mastery", {"c": (float("nan"), None)}), "mastery of 'c'"),
    (lambda s: setattr(s, "mastery", {"c": 0.5}), "mastery of 'c'"),
    (lambda s: setattr(s, "version", ""), "version"),
    (lambda s: setattr(s, "model", "bkt"), "keyed under 'elo'"),
])
def test_an_invalid_state_writes_nothing(store: StateStore, bad, message: str) -> None:
    store.put_many("t", {("elo", "a"): state(value=0.1)})
    broken = state()
    bad(broken)
    with pytest.raises(StateError, match=message):
        store.put_many("t", {("elo", "a"): state(value=0.9), ("elo", "new"): state(), ("elo", "z"): broken})
    assert store.get("t", "elo", "a").arrays["skill"].tolist() == [0.1]  # type: ignore[union-attr]
    assert store.learners("t", "elo") == ["a"]


def test_a_failure_midway_leaves_the_old_states(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    old = {("elo", x): state(value=0.1) for x in ("a", "b", "c")}
    store.put_many("t", old)
    module = sqlite_store if isinstance(store, SQLiteStateStore) else redis_store
    real = module.encode_arrays
    calls = []

    def failing(arrays):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk on fire")
        return real(arrays)

    monkeypatch.setattr(module, "encode_arrays", failing)
    with pytest.raises(OSError, match="disk on fire"):
        store.put_many("t", {("elo", x): state(value=0.9) for x in ("a", "b", "c", "d")})
    assert len(calls) == 3  # two states were written before the failure
    monkeypatch.undo()
    for x in ("a", "b", "c"):
        assert_equal_states(store.get("t", "elo", x), old["elo", x])  # type: ignore[arg-type]
    assert store.learners("t", "elo") == ["a", "b", "c"]
    store.put_many("t", {("elo", "d"): state()})  # the store still works
    assert store.learners("t", "elo") == ["a", "b", "c", "d"]


def test_sqlite_rolls_back_when_the_database_refuses_a_row(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.db")
    store.put_many("t", {("elo", "a"): state(value=0.1)})
    # a real constraint failure inside the transaction, after other rows were inserted
    store._conn.execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON learner_state WHEN NEW.learner_id = 'bad' "
                        "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
    with pytest.raises(StateError, match="refused by trigger"):
        store.put_many("t", {("elo", "a"): state(value=0.9), ("elo", "b"): state(), ("elo", "bad"): state()})
    assert store.get("t", "elo", "a").arrays["skill"].tolist() == [0.1]  # type: ignore[union-attr]
    assert store.learners("t", "elo") == ["a"]
    store.close()


READER = textwrap.dedent("""
    import sys, time
    from knowtrace.state import open_state
    store = open_state(sys.argv[1])
    ids = [f"l{j}" for j in range(20)]
    seen, deadline = set(), time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        got = store.get_many("t", "elo", ids)
        versions = {s.version for s in got.values()}
        if len(versions) != 1 or len(got) != len(ids):
            print("TORN", sorted(versions), len(got)); sys.exit(1)
        seen |= versions
    print("seen", len(seen)); sys.exit(0 if len(seen) >= 5 else 3)
""")


def test_readers_in_other_processes_never_see_half_a_write(store: StateStore, store_url: str) -> None:
    ids = [f"l{j}" for j in range(20)]
    store.put_many("t", {("elo", x): state("v0") for x in ids})
    reader = subprocess.Popen([sys.executable, "-c", READER, store_url], stdout=subprocess.PIPE, text=True)
    try:
        deadline, k = time.monotonic() + 40, 0
        while reader.poll() is None and time.monotonic() < deadline:
            k += 1
            store.put_many("t", {("elo", x): state(f"v{k}", value=k) for x in ids})
            time.sleep(0.005)  # let the reader in between writes
        out, _ = reader.communicate(timeout=10)
    finally:
        reader.kill()
    assert reader.returncode == 0, out


def test_urls_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "s.db"
    store = open_state(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStateStore) and store.path == path and path.is_file()
    store.close()
    with pytest.raises(StateError, match="sqlite:///PATH"):
        SQLiteStateStore.from_url("sqlite://")
    with pytest.raises(StateError, match="unknown state store URL"):
        open_state("mongodb://x")
    assert isinstance(open_state("redis://127.0.0.1:1/0"), RedisStateStore)


def test_sqlite_refuses_another_schema_version_and_corrupt_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteStateStore(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=7")
    con.close()
    with pytest.raises(StateError, match="schema version 7"):
        SQLiteStateStore(path)
    other = tmp_path / "other.db"
    store = SQLiteStateStore(other)
    store.put_many("t", {("elo", "a"): state()})
    store._conn.execute("UPDATE learner_state SET arrays = x'00010203'")
    with pytest.raises(StateError, match="learner 'a'.*cannot be read"):
        store.get("t", "elo", "a")
    store.close()
    not_sqlite = tmp_path / "text.db"
    not_sqlite.write_text("this is not a database, " * 100)
    with pytest.raises(StateError, match="not a usable state store"):
        SQLiteStateStore(not_sqlite)


def test_redis_errors_are_state_errors(redis_url: str) -> None:
    with socket_closed_port() as port:
        store = RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(StateError, match="cannot read"):
            store.get_many("t", "elo", ["a"])
        with pytest.raises(StateError, match="cannot write"):
            store.put_many("t", {("elo", "a"): state()})
        with pytest.raises(StateError, match="cannot read"):
            store.learners("t", "elo")
    store = RedisStateStore.from_url(redis_url)
    store.put_many("t", {("elo", "a"): state()})
    store._redis.hset(store._key("t", "elo", "a"), "arrays", b"garbage")
    with pytest.raises(StateError, match="cannot be read"):
        store.get("t", "elo", "a")
    store.close()


class socket_closed_port:
    """A loopback port with nothing listening."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *_: object) -> None:
        self.sock.close()


def test_array_encoding_refuses_what_it_does_not_store() -> None:
    from knowtrace.state.codec import MAGIC, decode_arrays, encode_arrays

    arrays = state().arrays
    blob = encode_arrays(arrays)
    assert decode_arrays(blob, "x").keys() == arrays.keys()
    with pytest.raises(StateError, match="here: .*past the end"):
        decode_arrays(blob[:-3], "here")
    with pytest.raises(StateError, match="bytes after the last array"):
        decode_arrays(blob + b"\0", "here")
    header = b'[["x","|O",[1]]]'
    with pytest.raises(StateError, match="dtype object"):
        decode_arrays(MAGIC + len(header).to_bytes(4, "little") + header + b"\0" * 8, "here")
    with pytest.raises(StateError, match="not a knowtrace learner state"):
        decode_arrays(b"\x80\x04pickle", "here")
    # .npz bytes (the model artifacts' format) are read too, never unpickled
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    for key, value in decode_arrays(buffer.getvalue(), "x").items():
        np.testing.assert_array_equal(value, arrays[key])
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([object()], dtype=object))
    with pytest.raises(StateError, match="cannot be read"):
        decode_arrays(buffer.getvalue(), "here")
