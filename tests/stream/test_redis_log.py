"""What only the Redis event log does: offsets from entry ids, streams, the server's own durability."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from knowtrace.stream import LogError, LogRecord, open_log
from knowtrace.stream.redis_log import RedisEventLog, id_to_offset, offset_to_id


def event(n: int) -> LogRecord:
    return LogRecord("event", "default", {"n": n})


def test_offsets_and_entry_ids_map_one_to_one() -> None:
    for entry_id in ("0-1", "1795889364410-0", "1795889364410-1048575"):
        assert offset_to_id(id_to_offset(entry_id)) == entry_id
    assert id_to_offset("1-0") == 1 << 20 and id_to_offset("1-0") > id_to_offset("0-1048575")
    assert id_to_offset("1795889364410-5") < 2**63
    with pytest.raises(LogError, match="sequence number above 1048575"):
        id_to_offset("1-1048576")


def test_streams_of_one_database_are_separate_logs(redis_url: str) -> None:
    first, second = open_log(f"{redis_url}?stream=school-1"), open_log(f"{redis_url}?stream=school-2")
    first.append([event(0), event(1)])
    second.append([LogRecord("event", "default", {"n": 0}, "s-1", "hash")])
    assert (first.length(), second.length(), first.name) == (2, 1, "school-1")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.hgetall("school-2:statements:default") == {"s-1": "hash"}
    client.close()
    first.close()
    second.close()


def test_a_client_that_does_not_decode_is_refused(redis_url: str) -> None:
    with pytest.raises(LogError, match="decode_responses=True"):
        RedisEventLog(redis.Redis.from_url(redis_url))


def test_lag_is_counted_when_redis_cannot_tell_it(redis_url: str) -> None:
    log = open_log(redis_url)
    offsets = log.append([event(n) for n in range(6)]).offsets
    log.consumer("lake").read(2)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xdel("knowtrace:events", offset_to_id(offsets[4]))  # type: ignore[arg-type]
    assert client.xinfo_groups("knowtrace:events")[0]["lag"] is None
    client.close()
    assert log.lag("lake") == 2 + 3
    log.close()


def test_appends_and_acknowledgements_survive_kill_9_of_the_server(
        make_redis_server: Callable[[], object]) -> None:
    server = make_redis_server()
    log = open_log(server.url)  # type: ignore[attr-defined]
    offsets = log.append([event(n) for n in range(5)]).offsets
    log.append([LogRecord("event", "default", {"n": 5}, "s-1", "hash")])
    consumer = log.consumer("lake")
    consumer.ack([entry.offset for entry in consumer.read(2)])
    log.close()
    server.kill()  # type: ignore[attr-defined]
    server.start()  # type: ignore[attr-defined]

    log = open_log(server.url)  # type: ignore[attr-defined]
    assert (log.length(), log.lag("lake")) == (6, 4)
    entries = log.consumer("lake").read(10)
    assert [entry.offset for entry in entries][:3] == offsets[2:]
    assert [entry.record.payload["n"] for entry in entries] == [2, 3, 4, 5]
    assert log.append([LogRecord("event", "default", {"n": 5}, "s-1", "hash")]).offsets == [None]
    log.close()
