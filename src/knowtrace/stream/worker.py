"""The stream worker: moves log entries into the lake and into the online learner state, exactly once.

Two sinks read the log through their own consumer groups, so each keeps its own pace:

- ``LakeSink`` (group ``lake``) commits micro-batches to bronze (events) and quarantine (rejections)
  as lake loads, then acknowledges them. A load's manifest is its commit point; entries that come
  back after a crash (``redelivered``) are checked against the lake by offset and skipped when
  already committed, so every acknowledged event lands once. Silver and gold are rebuilt from the
  committed loads every ``refresh_seconds`` (and when the log goes quiet), not per micro-batch.
- ``StateSink`` (group ``state``) applies events to the online models (Elo, BKT, DKT: whatever is
  promoted in the model registry for the tenant; a cold-start Elo when nothing is) and writes each
  learner's state with the offset of the last entry applied, so re-applied entries are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from knowtrace.lake import Lake
from knowtrace.models.base import OnlineModel
from knowtrace.state.store import StateStore
from knowtrace.stream.importer import StreamBatchImporter, stream_file
from knowtrace.stream.log import Consumer, EventLog, LogEntry

__all__ = ["LakeSink", "ModelSource", "StateSink", "StreamWorker", "WorkerStats", "registry_models"]

log = logging.getLogger(__name__)

#: tenant -> {model name: (fitted online model, artifact version)}
ModelSource = Callable[[str], dict[str, tuple[OnlineModel, str]]]

#: the online models the worker keeps learner state for, when promoted in the registry
ONLINE_MODELS = ("elo", "bkt", "dkt")


@dataclass
class WorkerStats:
    """What a worker has done since it started."""

    lake_entries: int = 0
    lake_loads: int = 0
    lake_skipped_redelivered: int = 0
    state_entries: int = 0
    state_updates: int = 0
    refreshes: int = 0
    drained: bool = False
    errors: list[str] = field(default_factory=list)


def _collect(consumer: Consumer, limit: int, max_wait_s: float, poll_ms: int) -> list[LogEntry]:
    """Read until ``limit`` entries, or for ``max_wait_s`` after the first one arrived, so that
    micro-batches are not needlessly small. An entry handed out again is kept once."""
    entries = {e.offset: e for e in consumer.read(limit, block_ms=poll_ms)}
    if not entries:
        return []
    deadline = time.monotonic() + max_wait_s
    while len(entries) < limit and time.monotonic() < deadline:
        more = consumer.read(limit - len(entries), block_ms=max(1, int((deadline - time.monotonic()) * 1000)))
        fresh = [e for e in more if e.offset not in entries]
        if not fresh:
            break
        entries.update((e.offset, e) for e in fresh)
    return sorted(entries.values(), key=lambda e: e.offset)


class LakeSink:
    """Log group ``lake`` -> lake bronze and quarantine, in micro-batches, exactly once."""

    group = "lake"

    def __init__(self, lake: Lake, event_log: EventLog, *, consumer: str = "worker",
                 batch_size: int = 5000, max_wait_s: float = 0.5, poll_ms: int = 200) -> None:
        self.lake = lake
        self.log_name = event_log.name
        self.consumer_name = consumer
        self.consumer = event_log.consumer(self.group, consumer)
        self.batch_size, self.max_wait_s, self.poll_ms = batch_size, max_wait_s, poll_ms

    def step(self, stats: WorkerStats) -> int:
        """Commit one micro-batch; returns the entries read (0 when the log had none)."""
        entries = _collect(self.consumer, self.batch_size, self.max_wait_s, self.poll_ms)
        if not entries:
            return 0
        fresh = self._not_committed(entries)
        stats.lake_skipped_redelivered += len(entries) - len(fresh)
        if fresh:
            importer = StreamBatchImporter(fresh, log_name=self.log_name, consumer=self.consumer_name)
            report = self.lake.load(importer, None, build=False)
            stats.lake_loads += 0 if report.skipped else 1
        self.consumer.ack([e.offset for e in entries])
        stats.lake_entries += len(fresh)
        return len(entries)

    def _not_committed(self, entries: Sequence[LogEntry]) -> list[LogEntry]:
        """Drop redelivered entries whose offsets a committed load already holds."""
        again = sorted({e.offset for e in entries if e.redelivered})
        if not again:
            return list(entries)
        listed = ", ".join(str(o) for o in again)
        rows = self.lake.query(
            f"SELECT source_line AS o FROM bronze_interactions WHERE source_file = ? AND source_line IN ({listed}) "
            f"UNION SELECT line AS o FROM quarantine WHERE source_file = ? AND line IN ({listed})",
            [stream_file(self.log_name)] * 2,
        ).column("o").to_pylist()
        done = set(rows)
        return [e for e in entries if e.offset not in done]


class StateSink:
    """Log group ``state`` -> online learner state of the deployed models, exactly once per learner."""

    group = "state"

    def __init__(self, store: StateStore, event_log: EventLog, models: ModelSource, *, consumer: str = "worker",
                 batch_size: int = 2000, max_wait_s: float = 0.05, poll_ms: int = 200) -> None:
        from knowtrace.state.updater import OnlineStateUpdater

        self.consumer = event_log.consumer(self.group, consumer)
        self.batch_size, self.max_wait_s, self.poll_ms = batch_size, max_wait_s, poll_ms
        # the updater asks ``models`` for each tenant's deployment on every batch, so a newly promoted
        # version is used from the next batch on
        self.updater = OnlineStateUpdater(store, models)

    def step(self, stats: WorkerStats) -> int:
        """Apply one batch; returns the entries read."""
        entries = _collect(self.consumer, self.batch_size, self.max_wait_s, self.poll_ms)
        if not entries:
            return 0
        stats.state_updates += self.updater.apply(entries)
        self.consumer.ack([e.offset for e in entries])
        stats.state_entries += len(entries)
        return len(entries)


def registry_models(lake: Lake, names: Sequence[str] = ONLINE_MODELS, *, poll_seconds: float = 2.0) -> ModelSource:
    """The promoted online models of each tenant, re-checked in the registry at most every ``poll_seconds``
    (a newly promoted version replaces the old one without a restart); a cold-start Elo (fit on nothing)
    stands in when the tenant has no promoted Elo."""
    from knowtrace.lake.frames import events_to_table
    from knowtrace.models import get_model_class
    from knowtrace.registry import ModelRegistry
    from knowtrace.registry.deployment import DeployedModels

    deployed = DeployedModels(ModelRegistry(lake.root), poll_seconds=poll_seconds)
    cold_start: dict[str, OnlineModel] = {}

    def models(tenant: str) -> dict[str, tuple[OnlineModel, str]]:
        out: dict[str, tuple[OnlineModel, str]] = {}
        for name in names:
            deployment = deployed.get(tenant, name)
            if deployment is not None and isinstance(deployment.model, OnlineModel):
                out[name] = (deployment.model, deployment.version)
        if "elo" in names and "elo" not in out:
            if tenant not in cold_start:
                cold_start[tenant] = get_model_class("elo")().fit(events_to_table([]))  # type: ignore[assignment]
            out["elo"] = (cold_start[tenant], "cold-start")
        return out

    return models


class StreamWorker:
    """Runs both sinks in their own threads until ``stop`` is set; refreshes silver/gold periodically."""

    def __init__(self, lake: Lake, event_log: EventLog, store: StateStore | None, models: ModelSource | None, *,
                 consumer: str = "worker", refresh_seconds: float = 5.0, lake_batch: int = 5000,
                 lake_wait_s: float = 0.5) -> None:
        self.lake = lake
        self.event_log = event_log
        self.stats = WorkerStats()
        self.lake_sink = LakeSink(lake, event_log, consumer=consumer, batch_size=lake_batch, max_wait_s=lake_wait_s)
        self.state_sink = StateSink(store, event_log, models, consumer=consumer) if store is not None and models else None
        self.refresh_seconds = refresh_seconds
        self.stop = threading.Event()
        self._dirty = True  # a previous run may have committed loads it did not build
        self._last_refresh = 0.0
        self._failure: BaseException | None = None

    def _loop(self, step: Callable[[], int], on_idle: Callable[[], None] | None = None) -> None:
        try:
            while not self.stop.is_set():
                if step() == 0 and on_idle is not None:
                    on_idle()
        except BaseException as exc:  # a sink failure stops the worker; the log keeps the entries
            self._failure = exc
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("stream worker sink failed")
            self.stop.set()

    def _lake_step(self) -> int:
        n = self.lake_sink.step(self.stats)
        self._dirty = self._dirty or n > 0
        if n and time.monotonic() - self._last_refresh >= self.refresh_seconds:
            self._refresh()
        return n

    def _refresh(self) -> None:
        """Rebuild silver and gold when micro-batches were committed since the last rebuild."""
        self._last_refresh = time.monotonic()
        if self._dirty:
            self._dirty = False
            if self.lake.refresh() is not None:
                self.stats.refreshes += 1

    def run(self) -> None:
        """Process the log until ``stop`` is set (or a sink fails: then re-raise its error)."""
        threads = [threading.Thread(target=self._loop, args=(self._lake_step, self._refresh), name="lake-sink",
                                    daemon=True)]
        if self.state_sink is not None:
            sink = self.state_sink
            threads.append(threading.Thread(target=self._loop, args=(lambda: sink.step(self.stats),),
                                            name="state-sink", daemon=True))
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        if self._failure is not None:
            raise self._failure

    def drain(self, timeout_s: float = 600.0) -> WorkerStats:
        """Process until neither group has unacknowledged entries (tests, batch runs, shutdown), then
        refresh the lake. ``stats.drained`` says whether that happened within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        groups = [self.lake_sink.group] + ([self.state_sink.group] if self.state_sink is not None else [])
        while time.monotonic() < deadline:
            moved = self.lake_sink.step(self.stats)
            if self.state_sink is not None:
                moved += self.state_sink.step(self.stats)
            if moved == 0 and all(self.event_log.lag(g) == 0 for g in groups):
                self.stats.drained = True
                break
        self._dirty = True
        self._refresh()
        return self.stats
