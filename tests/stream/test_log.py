"""The event log contract, on both backends: a real SQLite file and a real redis-server."""

from __future__ import annotations

import math
import socket
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from knowtrace.events import InteractionEvent
from knowtrace.stream import EventLog, LogError, LogRecord, StatementConflict, open_log

#: appends BATCHES batches of N records tagged WRITER, prints "ok" and the offsets, then sleeps SLEEP seconds
WRITER = """
import sys, time
from knowtrace.stream import LogRecord, open_log
url, writer, n, batches, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
log = open_log(url)
offsets = []
for b in range(batches):
    records = [LogRecord("event", "default", {"writer": writer, "n": b * n + i}) for i in range(n)]
    offsets += log.append(records).offsets
print("ok", *offsets, flush=True)
time.sleep(sleep)
"""

#: reads LIMIT entries of group "lake" as consumer NAME, prints "ok" and their offsets, then hangs unacknowledged
READER = """
import sys, time
from knowtrace.stream import open_log
url, name, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
entries = open_log(url).consumer("lake", name).read(limit)
print("ok", *(entry.offset for entry in entries), flush=True)
time.sleep(60)
"""


@pytest.fixture(params=["sqlite", "redis"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def log(log_url: str) -> Iterator[EventLog]:
    log = open_log(log_url)
    yield log
    log.close()


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def event(n: int, tenant: str = "default") -> LogRecord:
    answer = InteractionEvent(tenant=tenant, learner_id=f"learner-{n % 3}", item_id=f"item-{n}",
                              concept_ids=("fractions",), correct=n % 2)
    return LogRecord("event", tenant, answer.model_dump(mode="json"))


def statement(statement_id: str, content_hash: str, n: int = 0, tenant: str = "default") -> LogRecord:
    return LogRecord("event", tenant, event(n, tenant).payload, statement_id, content_hash)


def offsets_of(entries: list) -> list[int]:
    return [entry.offset for entry in entries]


def test_records_come_back_in_order_until_acknowledged(log: EventLog) -> None:
    records = [event(n) for n in range(5)] + [
        LogRecord("rejection", "default", {"reason": "no item_id", "field": "item_id", "raw": "{}", "index": 5})]
    offsets = log.append(records).offsets
    assert all(isinstance(o, int) for o in offsets) and offsets == sorted(set(offsets))  # type: ignore[type-var]
    consumer = log.consumer("lake")
    first = consumer.read(4)
    assert offsets_of(first) == offsets[:4]
    assert [entry.record for entry in first] == records[:4]
    assert not any(entry.redelivered for entry in first)
    consumer.ack(offsets_of(first))
    rest = consumer.read(10)
    assert [entry.record for entry in rest] == records[4:] and not any(entry.redelivered for entry in rest)
    consumer.ack(offsets_of(rest))
    assert consumer.read(10) == []
    assert (log.length(), log.lag("lake")) == (6, 0)


def test_entries_read_and_not_acknowledged_come_again_flagged(log: EventLog) -> None:
    offsets = log.append([event(n) for n in range(4)]).offsets
    consumer = log.consumer("lake")
    assert offsets_of(consumer.read(3)) == offsets[:3]
    assert offsets_of(consumer.read(4)) == offsets[3:]  # the same object never hands an entry out twice
    restarted = log.consumer("lake")  # a new process with the same consumer name
    again = restarted.read(4)
    assert offsets_of(again) == offsets
    assert all(entry.redelivered for entry in again)


def test_an_empty_append_appends_nothing(log: EventLog) -> None:
    assert log.append([]).offsets == []
    assert log.length() == 0


@pytest.mark.parametrize("bad", [
    LogRecord("event", "default", {"score": math.nan}),
    LogRecord("event", "default", {"when": object()}),
    LogRecord("answer", "default", {}),  # type: ignore[arg-type]
    LogRecord("event", "", {}),
    LogRecord("event", "default", {}, statement_id="s-1"),
])
def test_a_batch_with_a_record_that_cannot_be_logged_appends_nothing(log: EventLog, bad: LogRecord) -> None:
    with pytest.raises(LogError, match="record 2"):
        log.append([event(0), event(1), bad, event(3)])
    assert log.length() == 0


def test_a_statement_sent_again_is_skipped_and_a_changed_one_is_refused(log: EventLog) -> None:
    first = log.append([statement("s-1", "hash-a"), event(1)]).offsets
    assert first[0] is not None
    again = log.append([statement("s-1", "hash-a"), statement("s-2", "hash-b")])
    assert again.offsets[0] is None and again.offsets[1] is not None and again.appended == 1
    with pytest.raises(StatementConflict) as refused:
        log.append([event(2), statement("s-3", "hash-c"), statement("s-1", "hash-changed"),
                    statement("s-2", "hash-changed")])
    assert refused.value.statement_ids == ["s-1", "s-2"]
    assert log.length() == 3
    # the refused batch stored nothing: s-3 is new next time
    assert log.append([statement("s-3", "hash-other")]).appended == 1
    # statement ids are per tenant
    assert log.append([statement("s-1", "hash-changed", tenant="school-2")]).appended == 1


def test_one_call_with_a_statement_id_twice(log: EventLog) -> None:
    with pytest.raises(StatementConflict) as refused:
        log.append([statement("s-9", "hash-a"), event(1), statement("s-9", "hash-b")])
    assert refused.value.statement_ids == ["s-9"]
    assert log.length() == 0
    offsets = log.append([statement("s-9", "hash-a"), statement("s-9", "hash-a")]).offsets
    assert offsets[0] is not None and offsets[1] is None
    assert log.length() == 1


def test_a_reopened_log_redelivers_what_was_read_but_not_acknowledged(log_url: str) -> None:
    log = open_log(log_url)
    offsets = log.append([event(n) for n in range(6)]).offsets
    consumer = log.consumer("lake")
    assert offsets_of(consumer.read(4)) == offsets[:4]
    consumer.ack([offsets[2], offsets[0]])
    consumer.close()
    log.close()  # the worker dies here

    reopened = open_log(log_url)
    consumer = reopened.consumer("lake")
    entries = consumer.read(10)
    assert [(entry.offset, entry.redelivered) for entry in entries] == [
        (offsets[1], True), (offsets[3], True), (offsets[4], False), (offsets[5], False)]
    consumer.ack(offsets_of(entries))
    assert consumer.read(10) == []
    assert reopened.consumer("lake").read(10) == []
    reopened.close()


def test_acknowledgements_out_of_order(log: EventLog) -> None:
    offsets = log.append([event(n) for n in range(6)]).offsets
    consumer = log.consumer("state")
    consumer.read(6)
    consumer.ack([offsets[5], offsets[3], offsets[1]])
    assert log.lag("state") == 3
    assert consumer.read(6) == []  # it holds them already
    consumer = log.consumer("state")  # after a restart they come back
    again = consumer.read(6)
    assert offsets_of(again) == [offsets[0], offsets[2], offsets[4]] and all(e.redelivered for e in again)
    consumer.ack([offsets[4]])
    consumer.ack([offsets[0], offsets[2], offsets[2]])
    assert log.lag("state") == 0
    assert consumer.read(6) == []
    later = log.append([event(6)]).offsets
    assert offsets_of(consumer.read(6)) == later


def test_acknowledging_an_offset_not_yet_read_does_nothing(log: EventLog) -> None:
    offsets = log.append([event(n) for n in range(2)]).offsets
    consumer = log.consumer("lake")
    consumer.ack([offsets[1]])
    assert offsets_of(consumer.read(5)) == offsets


def test_groups_are_independent(log: EventLog) -> None:
    offsets = log.append([event(n) for n in range(3)]).offsets
    lake, state = log.consumer("lake"), log.consumer("state")
    lake.ack(offsets_of(lake.read(10)))
    assert (log.lag("lake"), log.lag("state")) == (0, 3)
    entries = state.read(10)
    assert offsets_of(entries) == offsets and not any(e.redelivered for e in entries)
    assert log.lag("never-read") == log.length() == 3


def test_consumers_of_one_group_share_the_work_and_take_over_from_an_idle_one(log_url: str) -> None:
    log = open_log(with_option(log_url, "claim_idle_ms=300"))
    offsets = log.append([event(n) for n in range(5)]).offsets
    first, second = log.consumer("lake", "first"), log.consumer("lake", "second")
    assert offsets_of(first.read(3)) == offsets[:3]
    taken = second.read(10)
    assert offsets_of(taken) == offsets[3:] and not any(e.redelivered for e in taken)
    time.sleep(0.4)  # "first" does not read again: it stopped answering
    claimed = second.read(10)
    assert [(e.offset, e.redelivered) for e in claimed] == [(o, True) for o in offsets[:3]]  # not its own again
    assert first.read(10) == []
    second.ack(offsets)
    assert log.lag("lake") == 0
    log.close()


def test_entries_of_a_killed_consumer_go_to_another_one_of_its_group(log_url: str) -> None:
    url = with_option(log_url, "claim_idle_ms=200")
    log = open_log(url)
    offsets = log.append([event(n) for n in range(5)]).offsets
    log.consumer("lake")
    with subprocess.Popen([sys.executable, "-c", READER, url, "dead", "3"], stdout=subprocess.PIPE,
                          text=True) as reader:
        try:
            line = reader.stdout.readline().split()  # type: ignore[union-attr]
        finally:
            reader.send_signal(signal.SIGKILL)
    assert line == ["ok", *map(str, offsets[:3])]
    alive = log.consumer("lake", "alive")
    time.sleep(0.3)
    entries = alive.read(10)
    assert [(e.offset, e.redelivered) for e in entries] == [(o, o in offsets[:3]) for o in offsets]
    alive.ack(offsets)
    assert log.lag("lake") == 0
    log.close()


def test_lag_and_length(log: EventLog) -> None:
    assert (log.length(), log.lag("lake")) == (0, 0)
    log.consumer("lake")
    offsets = log.append([event(n) for n in range(7)]).offsets
    consumer = log.consumer("lake")
    assert log.lag("lake") == 7
    consumer.read(5)
    assert log.lag("lake") == 7  # read is not acknowledged
    consumer.ack(offsets[:2])
    assert (log.length(), log.lag("lake")) == (7, 5)


def test_trim_deletes_only_what_every_group_acknowledged(log: EventLog) -> None:
    assert log.trim() == 0
    offsets = log.append([statement(f"s-{n}", "h", n) for n in range(8)]).offsets
    assert log.trim() == 0  # no group yet: nothing is known to be processed
    lake, state = log.consumer("lake"), log.consumer("state")
    lake.read(8)
    state.read(8)
    lake.ack(offsets[:6])
    state.ack(offsets[:2] + offsets[3:5])
    assert log.trim() == 2
    assert log.length() == 6
    assert (log.lag("lake"), log.lag("state")) == (2, 4)
    assert state.read(8) == [] and lake.read(8) == []  # each holds the rest already
    assert offsets_of(log.consumer("state").read(8)) == [offsets[2]] + offsets[5:]
    assert offsets_of(log.consumer("lake").read(8)) == offsets[6:]
    # statements outlive the trimmed entries
    assert log.append([statement("s-0", "h", 0)]).offsets == [None]
    later = log.append([event(9)]).offsets[0]
    assert later is not None and later > offsets[-1]  # type: ignore[operator]


def test_a_blocking_read_waits_for_an_append(log: EventLog) -> None:
    consumer = log.consumer("lake")
    started = time.monotonic()
    assert consumer.read(5, block_ms=200) == []
    assert time.monotonic() - started >= 0.19
    timer = threading.Timer(0.2, lambda: log.append([event(1)]))
    timer.start()
    started = time.monotonic()
    entries = consumer.read(5, block_ms=5_000)
    timer.join()
    assert len(entries) == 1 and time.monotonic() - started < 3


def test_an_append_that_returned_survives_kill_9_of_the_writer(log_url: str) -> None:
    with subprocess.Popen([sys.executable, "-c", WRITER, log_url, "w", "50", "2", "60"],
                          stdout=subprocess.PIPE, text=True) as writer:
        try:
            line = writer.stdout.readline().split()  # type: ignore[union-attr]
            assert line[0] == "ok"
        finally:
            writer.send_signal(signal.SIGKILL)
    offsets = [int(o) for o in line[1:]]
    log = open_log(log_url)
    entries = log.consumer("lake").read(1000)
    assert offsets_of(entries) == offsets
    assert [entry.record.payload["n"] for entry in entries] == list(range(100))
    log.close()


def test_concurrent_writers(log_url: str) -> None:
    open_log(log_url).close()  # made once, so that the writers race on appends only
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, log_url, name, "25", "8", "0"],
                                stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    printed = {}
    for name, writer in zip("ab", writers):
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0
        printed[name] = [int(o) for o in out.split()[1:]]
    log = open_log(log_url)
    entries = log.consumer("lake").read(1000)
    assert len(entries) == log.length() == 400
    assert offsets_of(entries) == sorted(set(offsets_of(entries)))
    for name in "ab":
        mine = [e for e in entries if e.record.payload["writer"] == name]
        assert offsets_of(mine) == printed[name]
        assert [e.record.payload["n"] for e in mine] == list(range(200))
    log.close()


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://host/log", "unknown event log URL"),
    ("sqlite://relative.db", "expected sqlite:///PATH"),
    ("sqlite:///:memory:", "expected sqlite:///PATH"),
    ("sqlite:///{tmp}/events.db?retention=1", "unknown option"),
    ("sqlite:///{tmp}/events.db?claim_idle_ms=soon", "claim_idle_ms must be a whole number"),
    ("sqlite:///{tmp}", "is a directory"),
    ("sqlite:///{tmp}/notes.txt", "not a knowtrace event log"),
    ("redis://127.0.0.1:{port}/0", "cannot reach Redis 127.0.0.1"),
    ("redis://127.0.0.1:{port}/0?claim_idle_ms=-1", "claim_idle_ms must be"),
    ("redis://127.0.0.1:{port}/0?stream=", "stream must not be empty"),
    ("redis://127.0.0.1:{port}/x", "bad Redis URL"),
])
def test_a_bad_url_is_named(tmp_path: Path, url: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just notes\n" * 100)
    with socket_bound() as port:  # a port where nothing answers
        with pytest.raises(LogError, match=message):
            open_log(url.format(tmp=tmp_path, port=port))


@contextmanager
def socket_bound() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
