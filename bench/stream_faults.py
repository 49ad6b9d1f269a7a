"""Fault test of the real-time path: kill -9 the stream worker and the API at random while events stream in;
afterwards the lake must hold exactly the acknowledged events, none lost, none twice.

Processes (temporary folder, free loopback ports, as in ``bench/realtime.py``): the API alone
(``knowtrace serve --no-worker``) and ``knowtrace worker``, each a process of its own, on the
embedded SQLite log and state (``--backend sqlite``) or a throwaway ``redis-server`` (AOF fsynced on
every write; never killed here). Load: ``--events`` simulated tablet answers (``tablet_answers``,
seed ``--seed``, each with its own (learner, seq), so its own content-derived event id), pre-built as
bodies of ``--batch`` events, posted in order at about ``--rate`` events/s. An event is *acknowledged*
when a request holding it got a 2xx. On a connection error, a timeout or a 5xx the sender pauses
``--retry-ms`` and posts the same body again (same content, so same event ids).

A killer thread sends ``--kills`` SIGKILLs, alternating worker and API (the first drawn at random):
it waits until its target is ready (the API answers ``/healthz``; the worker has started its sinks),
then ``--min-gap``..``--max-gap`` seconds more (uniform), kills it and restarts it at once. It also
restarts, and counts, a process that died on its own. When the sender is done: wait for the worker to
catch up (lag 0 in ``/healthz``), stop both, run ``knowtrace worker --drain`` (rebuilds silver), then
compare the lake with what the sender saw:

- lost: acknowledged event ids missing from silver ``interactions``; extra: silver ids never sent;
  silver duplicates: silver rows - distinct ids;
- bronze: one row per log entry (rows = log length, distinct offsets = rows: the worker wrote every
  entry exactly once); bronze duplicate event ids = rows - distinct ids. These are not worker
  duplicates: when the API is killed after its append was durable but before its answer reached the
  client, the client sends the batch again and the log holds those events twice, under new offsets.
  Silver keeps each event id's first arrival, so the lake's answers hold them once;
- state: every learner's Elo ``n_answers`` equals its bronze rows (each log entry applied once);
  reported, not checked: learners whose ``n_answers`` differs from their silver rows (an event the
  log holds twice is applied twice to the state).

Exits 1 when anything is lost, extra or duplicated in silver, a log entry is missing from bronze or
there twice, a learner state does not match, a process died on its own, or fewer kills than asked for
happened while events streamed in.

    python bench/stream_faults.py --events 100000 --kills 20
    python bench/stream_faults.py --backend redis --events 20000 --kills 6
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np

from realtime import JSON, Stack, answer_stream, client, encode, handle_sigterm, header, table

TENANT = "faults"


def prepare(events: int, batch: int, learners: int, seed: int) -> tuple[list[bytes], list[list[str]]]:
    """Request bodies and, for each, the event ids the API derives for its events."""
    from knowtrace.events import InteractionEvent

    answers = answer_stream(learners, seed)
    bodies, ids = [], []
    while events > 0:
        n = min(batch, events)
        chunk = [next(answers) for _ in range(n)]
        bodies.append(encode(chunk))
        ids.append([str(InteractionEvent.model_validate({**a, "tenant": TENANT, "source": "stream"}).event_id)
                    for a in chunk])
        events -= n
    return bodies, ids


class Sender(threading.Thread):
    """Posts every body until a 2xx, in order, paced at ``rate`` events/s (0: as fast as possible)."""

    def __init__(self, stack: Stack, key: str, bodies: list[bytes], ids: list[list[str]], *, rate: float,
                 retry_s: float) -> None:
        super().__init__(name="sender")
        self.stack, self.key, self.bodies, self.ids = stack, key, bodies, ids
        self.rate, self.retry_s = rate, retry_s
        self.acked: set[str] = set()
        self.acked_count = 0
        self.resent_batches = 0
        self.id_mismatches = 0
        self.errors: Counter[str] = Counter()
        self.refused: list[str] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as exc:  # reported by the main thread
            self.failure = exc

    def _send(self) -> None:
        with client(self.stack, self.key, timeout=30) as http:
            started, sent = time.perf_counter(), 0
            for body, expected in zip(self.bodies, self.ids):
                if self.rate > 0:
                    pause = started + sent / self.rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                attempts = 0
                while not self.stop.is_set():
                    attempts += 1
                    try:
                        response = http.post("/v1/events", content=body, headers=JSON)
                    except httpx.HTTPError as exc:
                        self.errors[type(exc).__name__] += 1
                        time.sleep(self.retry_s)
                        continue
                    if response.status_code >= 500:
                        self.errors[f"HTTP {response.status_code}"] += 1
                        time.sleep(self.retry_s)
                        continue
                    if not response.is_success:
                        self.refused.append(f"HTTP {response.status_code}: {response.text[:300]}")
                        break
                    got = response.json()["event_ids"]
                    self.id_mismatches += sum(a != b for a, b in zip(got, expected)) + abs(len(got) - len(expected))
                    self.acked.update(got)
                    self.acked_count += len(got)
                    self.resent_batches += attempts > 1
                    break
                if self.stop.is_set():
                    return
                sent += len(expected)


class Killer(threading.Thread):
    """SIGKILLs worker and API in turn at random intervals, restarting each at once."""

    def __init__(self, stack: Stack, sender: Sender, *, kills: int, gaps: tuple[float, float], seed: int) -> None:
        super().__init__(name="killer")
        self.stack, self.sender, self.kills = stack, sender, kills
        self.rng = np.random.default_rng(seed)
        self.gaps = gaps
        self.log: list[dict[str, Any]] = []
        self.died: list[str] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def restart(self, name: str) -> None:
        (self.stack.start_worker if name == "worker" else self.stack.start_api)()

    def watch(self, seconds: float) -> None:
        """Wait, restarting (and noting) a process that exits on its own."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            for name in ("worker", "api"):
                proc = self.stack.procs[name]
                if proc.poll() is not None:
                    last = "\n    ".join(self.stack.output(name).strip().splitlines()[-12:])
                    self.died.append(f"{name} exited with {proc.returncode}; its last output:\n    {last}")
                    self.restart(name)
            time.sleep(0.05)

    def ready(self, name: str) -> bool:
        """The API answers /healthz; the worker has opened the log and the lake and runs its sinks."""
        if name == "api":
            return self.stack.health() is not None
        return "worker worker:" in self.stack.output("worker")

    def run(self) -> None:
        try:
            first = str(self.rng.choice(["worker", "api"]))
            order = [first, "api" if first == "worker" else "worker"]
            for k in range(self.kills):
                name = order[k % 2]
                while not self.stop.is_set() and not self.ready(name):
                    self.watch(0.05)
                ready_at = time.monotonic()
                self.watch(float(self.rng.uniform(*self.gaps)))
                if self.stop.is_set():
                    return
                now = time.monotonic()
                self.log.append({"target": name, "at_s": now, "acked": self.sender.acked_count,
                                 "up_s": now - self.stack.started_at[name], "ready_s": now - ready_at})
                self.stack.kill9(name)
                self.restart(name)
            self.watch(float("inf"))
        except BaseException as exc:
            self.failure = exc


def audit(stack: Stack, sender: Sender, sent: set[str]) -> dict[str, Any]:
    """Compare the lake, the log and the learner state with what the sender sent and saw acknowledged."""
    from knowtrace.lake import Lake
    from knowtrace.state.store import open_state
    from knowtrace.stream.log import open_log

    lake = Lake(stack.lake)
    silver_table = lake.query("SELECT event_id, learner_id FROM interactions WHERE tenant = ?", [TENANT])
    silver = silver_table.column("event_id").to_pylist()
    silver_per_learner = Counter(silver_table.column("learner_id").to_pylist())
    bronze = lake.query("SELECT event_id, source_line, learner_id FROM bronze_interactions "
                        "WHERE tenant = ? AND source_file LIKE 'stream:%'", [TENANT]).to_pydict()
    event_log = open_log(stack.stream_url)
    try:
        log_length, lag = event_log.length(), {g: event_log.lag(g) for g in ("lake", "state")}
    finally:
        event_log.close()
    per_learner = Counter(bronze["learner_id"])
    store = open_state(stack.state_url)
    try:
        states = store.get_many(TENANT, "elo", sorted(per_learner))
    finally:
        store.close()
    state_mismatches = sum(states[who].n_answers != n if who in states else 1 for who, n in per_learner.items())
    state_vs_silver = sum(states[who].n_answers != silver_per_learner[who] for who in states)
    silver_ids = set(silver)
    bronze_rows = len(bronze["event_id"])
    return {
        "sent": len(sent), "acked": len(sender.acked), "silver_rows": len(silver),
        "lost": len(sender.acked - silver_ids), "extra": len(silver_ids - sent),
        "silver_dups": len(silver) - len(silver_ids), "log_length": log_length, "lag": lag,
        "bronze_rows": bronze_rows, "bronze_offset_dups": bronze_rows - len(set(bronze["source_line"])),
        "bronze_id_dups": bronze_rows - len(set(bronze["event_id"])),
        "learners": len(per_learner), "state_mismatches": state_mismatches, "state_vs_silver": state_vs_silver,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    parser.add_argument("--rate", type=float, default=1500, help="events/s the sender aims at (0: no pacing)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--min-gap", type=float, default=0.5, help="seconds a target runs once ready, at least")
    parser.add_argument("--max-gap", type=float, default=3.0, help="seconds a target runs once ready, at most")
    parser.add_argument("--retry-ms", type=float, default=200, help="pause before posting a failed batch again")
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (lake, process logs)")
    args = parser.parse_args()
    handle_sigterm()

    started = time.perf_counter()
    bodies, ids = prepare(args.events, args.batch, args.learners, args.seed)
    sent = {i for chunk in ids for i in chunk}
    if len(sent) != args.events:
        raise SystemExit(f"the load has {args.events - len(sent)} repeated event ids")
    prepare_s = time.perf_counter() - started
    with Stack(args.backend, keep=args.keep, tag="faults") as stack:
        key = stack.create_key(TENANT)
        stack.start_api()
        stack.start_worker()
        stack.wait_healthy("api")
        sender = Sender(stack, key, bodies, ids, rate=args.rate, retry_s=args.retry_ms / 1000)
        killer = Killer(stack, sender, kills=args.kills, gaps=(args.min_gap, args.max_gap), seed=args.seed)
        stream_start = time.monotonic()
        sender.start()
        killer.start()
        try:
            sender.join()
        finally:
            sender.stop.set()
            sender.join()
            killer.stop.set()
            killer.join()
        stream_s = time.monotonic() - stream_start
        for failed in (sender.failure, killer.failure):
            if failed is not None:
                raise failed
        kills_in_stream = sum(k["at_s"] <= stream_start + stream_s for k in killer.log)
        stack.wait_healthy("api")
        drain_start = time.monotonic()
        stack.wait_drained(args.drain_timeout)
        catch_up_s = time.monotonic() - drain_start
        stack.stop("worker")
        stack.stop("api")
        stack.drain()
        result = audit(stack, sender, sent)
    ok_lake = result["lost"] == 0 and result["extra"] == 0 and result["silver_dups"] == 0
    ok_log = (result["bronze_rows"] == result["log_length"] and result["bronze_offset_dups"] == 0
              and result["lag"] == {"lake": 0, "state": 0})
    ok = (ok_lake and ok_log and result["state_mismatches"] == 0 and not killer.died and not sender.refused
          and sender.id_mismatches == 0 and kills_in_stream >= args.kills and result["acked"] == args.events)
    header(f"python bench/stream_faults.py {' '.join(sys.argv[1:])}")
    targets = Counter(k["target"] for k in killer.log)
    ready = [k["ready_s"] for k in killer.log]
    print(f"load: {args.events:,} events (tablet_answers, {args.learners} learners, seed {args.seed}) in "
          f"{len(bodies):,} bodies of {args.batch}, paced at {args.rate:g} events/s (prepared in {prepare_s:.1f} s); "
          f"kills: worker {targets['worker']}, API {targets['api']}, each {min(ready, default=0):.1f}–"
          f"{max(ready, default=0):.1f} s after its target was ready; streaming took "
          f"{stream_s:.1f} s, the worker caught up {catch_up_s:.1f} s later\n")
    table(["backend", "kills (in stream)", "acknowledged", "silver rows", "lost", "extra", "silver duplicates",
           "log entries", "bronze rows", "bronze offsets twice", "bronze duplicate ids", "resent batches",
           "learner states off", "states ≠ silver", "died on their own", "result"],
          [[args.backend, f"{len(killer.log)} ({kills_in_stream})", result["acked"], result["silver_rows"],
            result["lost"], result["extra"], result["silver_dups"], result["log_length"], result["bronze_rows"],
            result["bronze_offset_dups"], result["bronze_id_dups"], sender.resent_batches,
            result["state_mismatches"], result["state_vs_silver"], len(killer.died), "pass" if ok else "FAIL"]])
    print(f"\nsender errors (each followed by a resend): {dict(sender.errors) or 'none'}")
    at = ", ".join(f"{k['target']}@{k['acked']:,}" for k in killer.log)
    print(f"kills at acknowledged events: {at}")
    if result["bronze_id_dups"]:
        print(f"\nbronze holds {result['bronze_id_dups']:,} event ids twice: batches whose first post was appended "
              "to the log before the API was killed, so the client got no answer and sent them again. The log "
              "holds them twice (as many log entries as bronze rows, no offset twice), and silver keeps the "
              "first arrival of each event id. The learner state is kept per log entry, so it counts them twice "
              f"({result['state_vs_silver']} learner(s) whose Elo n_answers differs from their silver rows).")
    for line in killer.died:
        print(f"died on its own: {line}")
    for line in sender.refused:
        print(f"refused: {line}")
    if sender.id_mismatches:
        print(f"event ids answered that differ from the ids derived here: {sender.id_mismatches}")
    if kills_in_stream < args.kills:
        print(f"only {kills_in_stream} of {args.kills} kills happened while events streamed in: lower --rate or "
              "--max-gap")
    if result["lag"] != {"lake": 0, "state": 0}:
        print(f"log lag after the drain: {result['lag']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
