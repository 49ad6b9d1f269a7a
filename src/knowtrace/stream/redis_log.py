"""The event log on a Redis stream, for API and worker processes on several machines.

Durability: an append is as durable as the server's append-only file. The knowtrace guarantee
(an append that returned survives a crash of every process) holds with ``appendonly yes`` and
``appendfsync always``; with ``appendfsync everysec`` the last second of appends may be lost, and
with no AOF everything since the last snapshot. (``WAITAOF``, which confirms the fsync to the
client, needs Redis 7.2; it is not used.)

Atomicity: one Lua script checks the statement ids and appends; Redis runs it without interleaving
other clients' commands. Offsets are entry ids ``MS-SEQ`` packed as ``MS << 20 | SEQ``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from time import monotonic
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from knowtrace.stream.log import AppendResult, Consumer, EventLog, LogEntry, LogError, LogRecord, StatementConflict
from knowtrace.stream.records import DEFAULT_CLAIM_IDLE_MS, dump_payloads, load_record, ms_option

__all__ = ["DEFAULT_STREAM", "RedisConsumer", "RedisEventLog", "id_to_offset", "offset_to_id"]

DEFAULT_STREAM = "knowtrace:events"
SEQ_BITS = 20
SEQ_MASK = (1 << SEQ_BITS) - 1
#: Redis may give every entry of one script the same millisecond, so a batch must fit in SEQ_BITS
MAX_BATCH = 1 << (SEQ_BITS - 1)
#: a blocking read returns to look at idle consumers' entries at least this often
BLOCK_SLICE_MS = 1_000
FIELDS_PER_RECORD = 6

# KEYS[1]: the stream; KEYS[2..]: statement hashes (one per tenant).
# ARGV, per record: kind, tenant, payload, statement id, content hash, index in KEYS of its hash (0: none).
# Reply: {'conflict', id...}, or {'ok', entry id or '' (same statement already stored)...}.
APPEND_LUA = """
local stream, width = KEYS[1], 6
local n = #ARGV / width
local known, fresh, conflicts = {}, {}, {'conflict'}
for i = 1, n do
  local b = (i - 1) * width
  local key_index = tonumber(ARGV[b + 6])
  if key_index == 0 then
    fresh[i] = true
  else
    local key, sid, hash = KEYS[key_index], ARGV[b + 4], ARGV[b + 5]
    local tag = key .. '\\n' .. sid
    if known[tag] == nil then
      local stored = redis.call('HGET', key, sid)
      if stored then known[tag] = stored else known[tag] = hash; fresh[i] = true end
    end
    if not fresh[i] and known[tag] ~= hash then conflicts[#conflicts + 1] = sid end
  end
end
if #conflicts > 1 then return conflicts end
local reply = {'ok'}
for i = 1, n do
  local b = (i - 1) * width
  local id = ''
  if fresh[i] then
    if ARGV[b + 6] == '0' then
      id = redis.call('XADD', stream, '*', 'kind', ARGV[b + 1], 'tenant', ARGV[b + 2], 'payload', ARGV[b + 3])
    else
      id = redis.call('XADD', stream, '*', 'kind', ARGV[b + 1], 'tenant', ARGV[b + 2], 'payload', ARGV[b + 3],
                      'statement_id', ARGV[b + 4], 'content_hash', ARGV[b + 5])
      redis.call('HSET', KEYS[tonumber(ARGV[b + 6])], ARGV[b + 4], ARGV[b + 5])
    end
  end
  reply[#reply + 1] = id
end
return reply
"""


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def id_to_offset(entry_id: str) -> int:
    """The offset of a stream entry id."""
    ms, seq = _parse_id(entry_id)
    if seq > SEQ_MASK:
        raise LogError(f"stream entry id {entry_id} has a sequence number above {SEQ_MASK}; it has no offset")
    return ms << SEQ_BITS | seq


def offset_to_id(offset: int) -> str:
    """The stream entry id of an offset."""
    return f"{offset >> SEQ_BITS}-{offset & SEQ_MASK}"


def _entry(entry_id: str, fields: dict[str, str], redelivered: bool) -> LogEntry:
    record = load_record(fields["kind"], fields["tenant"], fields["payload"], fields.get("statement_id"),
                         fields.get("content_hash"))
    return LogEntry(id_to_offset(entry_id), record, redelivered)


def _stream_items(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """The (id, fields) pairs of an XREADGROUP reply on one stream."""
    streams = reply.items() if isinstance(reply, dict) else reply or []
    return [tuple(item) for _, items in streams for item in items]  # type: ignore[misc]


class RedisEventLog(EventLog):
    """An event log in the Redis stream ``stream``; statement ids in hashes ``<stream>:statements:<tenant>``.

    ``client`` must decode responses. ``claim_idle_ms``: how long entries given to a consumer may
    stay unacknowledged before another consumer of the group takes them over.
    """

    def __init__(self, client: redis.Redis, stream: str = DEFAULT_STREAM, *,
                 claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS) -> None:
        settings = client.connection_pool.connection_kwargs
        self.where = (f"Redis {settings.get('host', settings.get('path'))}:{settings.get('port', '')}"
                      f"/{settings.get('db', 0)} stream {stream!r}")
        if not settings.get("decode_responses"):
            raise LogError(f"{self.where}: the Redis client must be made with decode_responses=True")
        self.client, self.stream, self.name, self.claim_idle_ms = client, stream, stream, claim_idle_ms
        self._append_script = client.register_script(APPEND_LUA)
        with self.errors():
            client.ping()

    @classmethod
    def from_url(cls, url: str) -> RedisEventLog:
        """The log at ``redis://HOST:PORT/DB`` with the options ``?stream=NAME`` (default
        ``knowtrace:events``) and ``claim_idle_ms=N``; other options go to redis-py."""
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        stream = options.pop("stream", DEFAULT_STREAM)
        if not stream:
            raise LogError(f"event log URL {url!r}: stream must not be empty")
        claim_idle_ms = ms_option(url, options, "claim_idle_ms", DEFAULT_CLAIM_IDLE_MS)
        database = parts.path.strip("/")
        if parts.scheme != "unix" and database and not database.isdigit():  # redis-py would use db 0 instead
            raise LogError(f"bad Redis URL {url!r}: the database must be a number, got {database!r}")
        options.pop("claim_idle_ms", None)
        try:
            client = redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(options))), decode_responses=True)
        except (ValueError, TypeError) as exc:
            raise LogError(f"bad Redis URL {url!r}: {exc}") from None
        return cls(client, stream, claim_idle_ms=claim_idle_ms)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turns Redis errors into LogErrors that name the server and stream."""
        try:
            yield
        except redis.exceptions.ConnectionError as exc:
            raise LogError(f"cannot reach {self.where}: {exc}") from None
        except redis.exceptions.RedisError as exc:
            raise LogError(f"{self.where}: {exc}") from None

    def append(self, records: Sequence[LogRecord]) -> AppendResult:
        if len(records) > MAX_BATCH:
            raise LogError(f"{self.where}: at most {MAX_BATCH} records per append, got {len(records)}")
        payloads = dump_payloads(records)
        if not records:
            return AppendResult()
        keys, key_index, args = [self.stream], {}, []
        for record, payload in zip(records, payloads):
            index = 0
            if record.statement_id is not None:
                key = f"{self.stream}:statements:{record.tenant}"
                index = key_index.setdefault(key, len(keys) + 1)
                if index > len(keys):
                    keys.append(key)
            args += [record.kind, record.tenant, payload, record.statement_id or "", record.content_hash or "", index]
        with self.errors():
            status, *ids = self._append_script(keys=keys, args=args)
        if status == "conflict":
            raise StatementConflict(list(dict.fromkeys(ids)))
        return AppendResult([id_to_offset(entry_id) if entry_id else None for entry_id in ids])

    def consumer(self, group: str, name: str = "worker") -> RedisConsumer:
        return RedisConsumer(self, group, name)

    def length(self) -> int:
        with self.errors():
            return int(self.client.xlen(self.stream))

    def lag(self, group: str) -> int:
        with self.errors():
            info = self._groups().get(group)
            if info is None:
                return int(self.client.xlen(self.stream))
            behind = info["lag"]
            if behind is None:  # Redis cannot tell after deletions: count what follows the last delivered entry
                behind = self._count_after(info["last-delivered-id"])
            return int(info["pending"]) + int(behind)

    def trim(self) -> int:
        """Delete the entries before the oldest one some group has not acknowledged (none while no
        group exists); how many. Statement ids stay, so a statement sent again is still recognised.
        A group made while this runs may miss the deleted entries."""
        with self.errors():
            firsts = []
            for name, info in self._groups().items():
                if info["pending"]:
                    firsts.append(_parse_id(self.client.xpending(self.stream, name)["min"]))
                else:
                    ms, seq = _parse_id(info["last-delivered-id"])
                    firsts.append((ms, seq + 1))
            if not firsts:
                return 0
            ms, seq = min(firsts)
            return int(self.client.xtrim(self.stream, minid=f"{ms}-{seq}", approximate=False))

    def _groups(self) -> dict[str, dict[str, Any]]:
        try:
            return {info["name"]: info for info in self.client.xinfo_groups(self.stream)}
        except redis.exceptions.ResponseError as exc:
            if "no such key" in str(exc):
                return {}
            raise

    def _count_after(self, entry_id: str, page: int = 10_000) -> int:
        count, start = 0, f"({entry_id}"
        while True:
            items = self.client.xrange(self.stream, min=start, max="+", count=page)
            count += len(items)
            if len(items) < page:
                return count
            start = f"({items[-1][0]}"

    def close(self) -> None:
        self.client.close()


class RedisConsumer(Consumer):
    """A reader of one consumer group of the log's stream (the group is made if new)."""

    def __init__(self, log: RedisEventLog, group: str, name: str) -> None:
        self.group, self.name, self._log = group, name, log
        #: offsets this consumer object handed out and that are not acked yet: not handed out again
        self._in_hand: set[int] = set()
        with log.errors():
            try:
                log.client.xgroup_create(log.stream, group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, limit: int, block_ms: int = 0) -> list[LogEntry]:
        if limit < 1:
            raise LogError(f"read limit must be at least 1, got {limit}")
        deadline = monotonic() + max(block_ms, 0) / 1000
        while True:
            with self._log.errors():
                entries = self._held(limit)
                if len(entries) < limit:
                    wait_ms = int((deadline - monotonic()) * 1000)
                    block = min(wait_ms, BLOCK_SLICE_MS) if not entries and wait_ms > 0 else None
                    reply = self._log.client.xreadgroup(self.group, self.name, {self._log.stream: ">"},
                                                        count=limit - len(entries), block=block)
                    entries += [_entry(i, fields, False) for i, fields in _stream_items(reply) if fields]
            if entries or monotonic() >= deadline:
                self._in_hand.update(e.offset for e in entries)
                return entries

    def _held(self, limit: int) -> list[LogEntry]:
        """Entries given to this consumer, then those of consumers idle too long, unacknowledged."""
        client, stream = self._log.client, self._log.stream
        held = dict(_stream_items(client.xreadgroup(self.group, self.name, {stream: "0"},
                                                    count=limit + len(self._in_hand))))
        gone = [entry_id for entry_id, fields in held.items() if not fields]  # deleted from the stream
        if gone:
            client.xack(stream, self.group, *gone)
        held = {entry_id: fields for entry_id, fields in held.items()
                if fields and id_to_offset(entry_id) not in self._in_hand}
        held = dict(list(held.items())[:limit])
        cursor = "0-0"
        while len(held) < limit:
            cursor, claimed, _ = client.xautoclaim(stream, self.group, self.name, self._log.claim_idle_ms,
                                                   start_id=cursor, count=limit - len(held))
            for entry_id, fields in claimed:
                held.setdefault(entry_id, fields)
            if cursor == "0-0":
                break
        return sorted((_entry(i, fields, True) for i, fields in held.items()), key=lambda e: e.offset)

    def ack(self, offsets: Sequence[int]) -> None:
        if offsets:
            self._in_hand.difference_update(int(o) for o in offsets)
            with self._log.errors():
                self._log.client.xack(self._log.stream, self.group, *(offset_to_id(int(o)) for o in offsets))
