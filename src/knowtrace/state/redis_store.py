"""Learner states in Redis: for deployments where the API and the worker run on several hosts.

Each learner state is one hash ``<prefix>:state:<tenant>:<model>:<learner>`` with the fields
``version``, ``n_answers``, ``last_offset``, ``updated_at``, ``arrays`` (``state.codec`` bytes) and
``mastery`` (JSON); each (tenant, model) has a set ``<prefix>:learners:<tenant>:<model>`` of its
learner ids. Key parts are escaped (``%`` -> ``%25``, ``:`` -> ``%3A``) so ids holding a colon
cannot collide. ``put_many`` sends every write in one MULTI/EXEC transaction: other clients see
all of it or none, and a failure before EXEC (encoding, connection) writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from knowtrace.state.codec import checked_states, decode_arrays, decode_mastery, encode_arrays, encode_mastery
from knowtrace.state.store import LearnerState, StateError, StateStore

__all__ = ["RedisStateStore"]

FIELDS = (b"version", b"n_answers", b"last_offset", b"updated_at", b"arrays", b"mastery")


def _part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


class RedisStateStore(StateStore):
    """Learner states in the Redis database of ``client`` (a ``redis.Redis`` returning bytes)."""

    def __init__(self, client: Any, *, prefix: str = "knowtrace") -> None:
        self._redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "knowtrace") -> RedisStateStore:
        """``redis://host:port/db`` (``rediss://`` for TLS, ``unix:///path.sock?db=N``)."""
        import redis

        try:
            client = redis.Redis.from_url(url, decode_responses=False)
        except ValueError as exc:
            raise StateError(f"bad Redis URL {url!r}: {exc}") from exc
        return cls(client, prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisStateStore({self._redis!r})"

    def _key(self, tenant: str, model: str, learner_id: str) -> str:
        return f"{self.prefix}:state:{_part(tenant)}:{_part(model)}:{_part(learner_id)}"

    def _set_key(self, tenant: str, model: str) -> str:
        return f"{self.prefix}:learners:{_part(tenant)}:{_part(model)}"

    def get_many(self, tenant: str, model: str, learner_ids: Sequence[str]) -> dict[str, LearnerState]:
        import redis

        ids = list(dict.fromkeys(learner_ids))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for learner_id in ids:
                pipe.hmget(self._key(tenant, model, learner_id), FIELDS)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise StateError(f"cannot read learner states from Redis: {exc}") from exc
        out = {}
        for learner_id, values in zip(ids, replies):
            if values[0] is None:
                continue
            version, n_answers, last_offset, updated_at, arrays, mastery = values
            where = f"Redis {self._key(tenant, model, learner_id)}"
            if any(v is None for v in values):
                raise StateError(f"{where}: the stored state lacks fields")
            try:
                out[learner_id] = LearnerState(model=model, version=version.decode(), n_answers=int(n_answers),
                                               last_offset=int(last_offset), updated_at=float(updated_at),
                                               arrays=decode_arrays(arrays, where),
                                               mastery=decode_mastery(mastery, where))
            except (ValueError, UnicodeDecodeError) as exc:
                raise StateError(f"{where}: the stored state cannot be read: {exc}") from exc
        return out

    def put_many(self, tenant: str, states: Mapping[tuple[str, str], LearnerState]) -> None:
        import redis

        try:
            with self._redis.pipeline(transaction=True) as pipe:
                for model, learner_id, state, where in checked_states(tenant, states):
                    hash_key = self._key(tenant, model, learner_id)
                    # DEL first: HSET on a key of another type would fail inside EXEC, after the rest applied
                    pipe.delete(hash_key)
                    pipe.hset(hash_key, mapping={
                        "version": state.version, "n_answers": int(state.n_answers),
                        "last_offset": int(state.last_offset), "updated_at": repr(float(state.updated_at)),
                        "arrays": encode_arrays(state.arrays), "mastery": encode_mastery(state.mastery, where)})
                    pipe.sadd(self._set_key(tenant, model), learner_id)
                pipe.execute()
        except redis.RedisError as exc:
            raise StateError(f"cannot write learner states to Redis: {exc}") from exc

    def learners(self, tenant: str, model: str) -> list[str]:
        import redis

        try:
            members = self._redis.smembers(self._set_key(tenant, model))
        except redis.RedisError as exc:
            raise StateError(f"cannot read learner ids from Redis: {exc}") from exc
        return sorted(m.decode() for m in members)

    def close(self) -> None:
        self._redis.close()
