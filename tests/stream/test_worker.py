"""The stream worker moves log entries into the lake and the learner state exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowtrace.lake import Lake
from knowtrace.state.store import open_state
from knowtrace.stream.log import LogRecord, open_log
from knowtrace.stream.worker import LakeSink, StreamWorker, WorkerStats, registry_models


def _event(learner: str, item: str, correct: int, seq: int, tenant: str = "default") -> LogRecord:
    return LogRecord("event", tenant, {"learner_id": learner, "item_id": item, "correct": correct, "seq": seq,
                                       "concept_ids": [f"c-{item}"], "tenant": tenant})


def _events(n: int, learners: int = 7) -> list[LogRecord]:
    return [_event(f"l{i % learners}", f"q{i % 13}", (i * 7) % 3 != 0, i // learners) for i in range(n)]


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Lake, str, str]:
    lake = Lake(tmp_path / "lake")
    return lake, f"sqlite:///{tmp_path / 'lake' / '_stream' / 'events.db'}", f"sqlite:///{tmp_path / 'lake' / '_state' / 'state.db'}"


def test_worker_lands_events_and_quarantines_rejections(parts: tuple[Lake, str, str]) -> None:
    lake, log_url, state_url = parts
    event_log = open_log(log_url)
    rejection = LogRecord("rejection", "default", {"index": 1, "reason": "correct must be 0 or 1, got 7",
                                                   "field": "correct", "raw": '{"correct": 7}'})
    result = event_log.append([*_events(3), rejection])
    StreamWorker(lake, event_log, None, None).drain()

    rows = lake.query("SELECT learner_id, source, load_id FROM interactions").to_pylist()
    assert len(rows) == 3 and {r["source"] for r in rows} == {"stream"}
    quarantined = lake.query("SELECT source_file, line, field, reason FROM quarantine").to_pylist()
    assert quarantined == [{"source_file": f"stream:{event_log.name}", "line": result.offsets[3], "field": "correct",
                            "reason": "correct must be 0 or 1, got 7"}]
    assert event_log.lag("lake") == 0
    manifest = lake.manifests()[-1]
    assert manifest.format == "stream" and manifest.deferred_build
    assert manifest.options["first_offset"] == result.offsets[0]


def test_crash_between_commit_and_ack_adds_nothing_twice(parts: tuple[Lake, str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    lake, log_url, _ = parts
    event_log = open_log(log_url)
    event_log.append(_events(50))
    sink = LakeSink(lake, event_log, consumer="w1", max_wait_s=0.0)

    def crash(offsets: object) -> None:
        raise RuntimeError("killed before ack")

    monkeypatch.setattr(sink.consumer, "ack", crash)
    with pytest.raises(RuntimeError):
        sink.step(WorkerStats())
    assert len(lake.manifests()) == 1  # committed, not acknowledged

    reopened = open_log(log_url)
    stats = StreamWorker(lake, reopened, None, None, consumer="w1").drain()
    assert stats.lake_skipped_redelivered == 50 and stats.lake_entries == 0
    assert lake.query("SELECT count(*) AS n FROM bronze_interactions").to_pylist() == [{"n": 50}]
    assert lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM interactions").to_pylist() == [
        {"n": 50, "d": 50}]


def test_state_sink_keeps_cold_start_elo_per_learner(parts: tuple[Lake, str, str]) -> None:
    lake, log_url, state_url = parts
    event_log, store = open_log(log_url), open_state(state_url)
    event_log.append([_event("ada", "q1", 1, 0), _event("ada", "q2", 1, 1), _event("bob", "q1", 0, 0)])
    stats = StreamWorker(lake, event_log, store, registry_models(lake)).drain()
    assert stats.state_updates == 3
    ada, bob = store.get("default", "elo", "ada"), store.get("default", "elo", "bob")
    assert ada is not None and bob is not None
    assert ada.n_answers == 2 and ada.version == "cold-start"
    assert ada.mastery["c-q1"][0] > 0.5 > bob.mastery["c-q1"][0]
    assert event_log.lag("state") == 0


def _lake_counts(lake_dir: Path) -> dict[str, int]:
    lake = Lake(lake_dir)
    lake.refresh()
    return lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_ids, "
                      "(SELECT count(*) FROM bronze_interactions) AS bronze FROM interactions").to_pylist()[0]


@pytest.mark.slow
def test_kill_9_of_the_worker_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    Lake(lake_dir)
    log_url = f"sqlite:///{lake_dir / '_stream' / 'events.db'}"
    state_url = f"sqlite:///{lake_dir / '_state' / 'state.db'}"
    event_log = open_log(log_url)
    command = [sys.executable, "-m", "knowtrace", "worker", "--lake", str(lake_dir), "--stream", log_url,
               "--state", state_url, "--refresh-seconds", "1"]
    rng = random.Random(7)
    appended, kills = 0, 0
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6):
            for _ in range(10):
                batch = [_event(f"l{rng.randrange(40)}", f"q{rng.randrange(30)}", rng.randrange(2), appended + i)
                         for i in range(200)]
                appended += event_log.append(batch).appended
                time.sleep(0.02)
            time.sleep(rng.uniform(0.5, 2.5))  # let it start and get somewhere, then kill it mid-work
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    drained = subprocess.run([*command, "--drain"], capture_output=True, text=True, timeout=300)
    assert drained.returncode == 0, drained.stderr
    assert kills == 6 and appended == 12_000
    counts = _lake_counts(lake_dir)
    assert counts == {"n": appended, "distinct_ids": appended, "bronze": appended}
    store = open_state(state_url)
    total = sum(s.n_answers for s in store.get_many("default", "elo", [f"l{i}" for i in range(40)]).values())
    assert total == appended


def test_worker_on_redis_log_and_state(tmp_path: Path, redis_url: str) -> None:
    lake = Lake(tmp_path / "lake")
    state_url = redis_url.rsplit("/", 1)[0] + "/1"
    event_log, store = open_log(redis_url), open_state(state_url)
    result = event_log.append([*_events(30, learners=3),
                               LogRecord("rejection", "default", {"index": 0, "reason": "bad", "field": None,
                                                                  "raw": "[]"})])
    stats = StreamWorker(lake, event_log, store, registry_models(lake)).drain()
    assert stats.drained and stats.lake_entries == 31 and stats.state_updates == 30
    assert lake.query("SELECT count(*) AS n FROM interactions").to_pylist() == [{"n": 30}]
    assert lake.query("SELECT line FROM quarantine").to_pylist() == [{"line": result.offsets[-1]}]
    assert sum(s.n_answers for s in store.get_many("default", "elo", ["l0", "l1", "l2"]).values()) == 30
    assert (event_log.lag("lake"), event_log.lag("state")) == (0, 0)
