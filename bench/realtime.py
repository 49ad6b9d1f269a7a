"""The real-time path over loopback: ingest throughput, answer-to-mastery freshness, /v1/predict latency.

Every run starts its own processes in a temporary folder, on free loopback ports: a lake, an API key
(``knowtrace keys create``), ``knowtrace serve`` (the API under uvicorn, the stream worker as its child)
and, with ``--backend redis``, a throwaway ``redis-server`` (AOF fsynced on every write, no RDB) holding
the event log (db 0) and the learner state (db 1). With ``--backend sqlite`` both live in the lake
(embedded default: SQLite in WAL mode, ``synchronous=FULL``). Every 2xx means the events are durable.
Load generator: simulated tablet answers (``knowtrace.simulate.tablets.tablet_answers``, seed
``--seed``); every answer has its own (learner, seq), so no two share a content-derived event id.

``ingest``     ``--senders`` threads POST pre-built batches of ``--batch`` events (JSON bytes) to
               ``/v1/events`` as fast as the API answers, for ``--seconds``. Reported: accepted events/s
               (2xx only), request p50/p99, the worker's lag when sending stopped and how long it needed to
               drain (lake and state groups at 0 in ``/healthz``), and, after the server stopped and
               ``knowtrace worker --drain`` rebuilt silver, the lake's counts, which must equal accepted.
``freshness``  background load at ``--rate`` events/s (a batch every 100 ms) while a probe, about every
               100 ms, posts one answer of a dedicated learner and polls
               ``GET /v1/learners/{id}/mastery?model=elo`` every ``--poll-ms`` until its ``n_answers``
               counts that answer. Latency: from sending the answer to the poll that shows it.
``predict``    a simulated class (``ClassroomSimulator``) loaded into the lake; Elo, BKT and a small DKT
               fit on 80 % of its learners, scored on the rest, registered and promoted; ``--learners``
               new learners get stored state through ``/v1/events`` and the worker; then, per model, an
               open-loop schedule of ``POST /v1/predict`` (5 items each) at ``--rps`` for ``--seconds``
               from a thread pool. Latency counts from the scheduled send time, so queueing counts.

    python bench/realtime.py ingest --seconds 30 --backend sqlite
    python bench/realtime.py freshness --rate 1000 --probes 200 --backend redis
    python bench/realtime.py predict --rps 200 --seconds 15
    python bench/realtime.py             # all three, defaults, embedded backend
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import knowtrace
from knowtrace.simulate.tablets import tablet_answers

JSON = {"content-type": "application/json"}


# --- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    """CPUs, Python, knowtrace version and the load average: the line every table is printed under."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.machine()}, Python "
            f"{platform.python_version()}, knowtrace {knowtrace.__version__}; load average {load}")


def percentiles(values: list[float], *qs: float) -> list[float]:
    """The ``qs`` percentiles of ``values`` (NaN when empty)."""
    if not values:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)]


class Stack:
    """The processes of one run, in a temporary folder: started here, stopped (process group and all) on exit."""

    def __init__(self, backend: str, *, keep: bool = False, tag: str = "realtime") -> None:
        self.backend = backend
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"kt-{tag}-"))
        self.lake = self.tmp / "lake"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.log_start: dict[str, int] = {}
        self.redis_port: int | None = None
        self.stream_url = f"sqlite:///{self.lake / '_stream' / 'events.db'}"
        self.state_url = f"sqlite:///{self.lake / '_state' / 'state.db'}"

    def __enter__(self) -> Stack:
        if self.backend == "redis":
            self.start_redis()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- redis ------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """A throwaway redis-server (AOF, fsync on every write) on a free loopback port."""
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on the PATH (needed for --backend redis)")
        folder = self.tmp / "redis"
        folder.mkdir()
        self.redis_port = free_port()
        self.spawn("redis", [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--save", "", "--appendonly", "yes", "--appendfsync", "always"], python=False)
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        try:
            while True:
                self.check_alive("redis")
                try:
                    if client.ping():
                        break
                except redis.exceptions.RedisError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"redis-server did not answer; see {self.tmp / 'redis.log'}") from None
                    time.sleep(0.05)
        finally:
            client.close()
        self.stream_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.state_url = f"redis://127.0.0.1:{self.redis_port}/1"

    def backend_args(self) -> list[str]:
        return ["--stream", self.stream_url, "--state", self.state_url]

    # -- knowtrace processes ------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 600) -> str:
        """Run ``python -m knowtrace ARGS`` to completion; its stdout (raises with stderr on failure)."""
        done = subprocess.run([sys.executable, "-m", "knowtrace", *args], capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise SystemExit(f"knowtrace {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_key(self, tenant: str) -> str:
        """A new API key of ``tenant`` (the last line ``keys create`` prints)."""
        return self.cli("keys", "create", "--tenant", tenant, "--lake", str(self.lake)).strip().splitlines()[-1]

    def spawn(self, name: str, args: list[str], *, python: bool = True) -> subprocess.Popen[bytes]:
        """Start a process in its own session (its output appended to ``<tmp>/<name>.log``)."""
        command = [sys.executable, "-m", "knowtrace", *args] if python else args
        with (self.tmp / f"{name}.log").open("ab") as out:
            out.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            out.flush()
            self.log_start[name] = out.tell()
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs[name] = proc
        self.started_at[name] = time.monotonic()
        return proc

    def start_serve(self) -> None:
        """``knowtrace serve``: the API and, as its child, the stream worker."""
        self.spawn("serve", ["serve", "--lake", str(self.lake), "--port", str(self.port), *self.backend_args()])

    def start_api(self) -> None:
        """``knowtrace serve --no-worker``: the API alone."""
        self.spawn("api", ["serve", "--no-worker", "--lake", str(self.lake), "--port", str(self.port),
                           *self.backend_args()])

    def start_worker(self) -> None:
        """``knowtrace worker`` as a process of its own."""
        self.spawn("worker", ["worker", "--lake", str(self.lake), *self.backend_args()])

    def drain(self) -> str:
        """``knowtrace worker --drain``: process what the log holds, rebuild silver and gold, exit."""
        return self.cli("worker", "--drain", "--lake", str(self.lake), *self.backend_args())

    def output(self, name: str) -> str:
        """What the current process ``name`` has written so far."""
        with (self.tmp / f"{name}.log").open("rb") as out:
            out.seek(self.log_start.get(name, 0))
            return out.read().decode(errors="replace")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def check_alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def health(self, client: httpx.Client | None = None) -> dict[str, Any] | None:
        """``/healthz`` as JSON, or None when the API does not answer 200."""
        try:
            response = (client or httpx).get(f"{self.url}/healthz", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_healthy(self, name: str, timeout: float = 120) -> float:
        """Wait until ``/healthz`` answers 200 (``name``: the API's process, checked for an early exit)."""
        started = time.monotonic()
        with httpx.Client(timeout=2) as client:
            while self.health(client) is None:
                self.check_alive(name)
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"the API did not become healthy in {timeout:g} s:\n{self.log_tail(name)}")
                time.sleep(0.05)
        return time.monotonic() - started

    def wait_drained(self, timeout: float, groups: tuple[str, ...] = ("lake", "state"),
                     poll_s: float = 0.25) -> dict[str, float]:
        """Seconds until each group's lag in ``/healthz`` is 0 (raises after ``timeout``)."""
        started = time.monotonic()
        done: dict[str, float] = {}
        with httpx.Client(timeout=5) as client:
            while len(done) < len(groups):
                health = self.health(client)
                now = time.monotonic() - started
                if health is not None:
                    for group in groups:
                        if group not in done and health["lag"].get(group, 1) == 0:
                            done[group] = now
                if now > timeout:
                    raise SystemExit(f"the worker did not drain in {timeout:g} s (last health: {health})")
                if len(done) < len(groups):
                    time.sleep(poll_s)
        return done

    def wait_lake_built(self, timeout: float, poll_s: float = 0.25) -> float:
        """Seconds until silver and gold include every committed load (the worker's deferred rebuild)."""
        from knowtrace.lake import Lake

        started = time.monotonic()
        lake = Lake(self.lake)  # an existing lake: opening it only reads its version file
        while lake.pending_loads():
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the worker did not rebuild silver in {timeout:g} s")
            time.sleep(poll_s)
        return time.monotonic() - started

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM to the process group of ``name`` (SIGKILL after ``timeout``)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # children left in the group (a worker whose parent was killed)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def kill9(self, name: str) -> None:
        """SIGKILL the process ``name`` itself (not its group): no cleanup of any kind."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for name in [n for n in self.procs if n != "redis"] + (["redis"] if "redis" in self.procs else []):
            self.stop(name)
        if self.keep:
            print(f"kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def lake_counts(lake: Path, tenant: str) -> dict[str, int]:
    """Silver rows and distinct event ids of ``tenant``; bronze rows, distinct event ids and distinct log
    offsets of the events that came through the event log."""
    from knowtrace.lake import Lake

    the_lake = Lake(lake)
    silver = the_lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM interactions "
                            "WHERE tenant = ?", [tenant]).to_pylist()[0]
    bronze = the_lake.query(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids, count(DISTINCT (source_file, source_line)) AS offsets "
        "FROM bronze_interactions WHERE tenant = ? AND source_file LIKE 'stream:%'", [tenant]).to_pylist()[0]
    return {"silver_rows": silver["n"], "silver_ids": silver["ids"], "bronze_rows": bronze["n"],
            "bronze_ids": bronze["ids"], "bronze_offsets": bronze["offsets"]}


def handle_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C, so the processes it started are stopped."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def header(command: str) -> None:
    print(f"machine: {machine()}")
    print(f"command: {command}\n")


def table(columns: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|")
    for row in rows:
        print("| " + " | ".join(_cell(v) for v in row) + " |")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --- load ---------------------------------------------------------------------------------------------


def answer_stream(learners: int, seed: int, *, prefix: str = "", items: int = 200,
                  concepts: int = 12) -> Iterator[dict[str, Any]]:
    """Simulated tablet answers stamped with increasing times (1 ms apart, from now)."""
    base = datetime.now(timezone.utc)
    for n, answer in enumerate(tablet_answers(learners, items=items, concepts=concepts, seed=seed)):
        if prefix:
            answer["learner_id"] = prefix + answer["learner_id"]
            answer["session_id"] = prefix + answer["session_id"]
        answer["timestamp"] = (base + timedelta(milliseconds=n)).isoformat()
        yield answer


def encode(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


def build_bodies(answers: Iterator[dict[str, Any]], events: int, batch: int) -> list[bytes]:
    """``events`` answers as request bodies of ``batch`` events each."""
    bodies = []
    while events > 0:
        n = min(batch, events)
        bodies.append(encode([next(answers) for _ in range(n)]))
        events -= n
    return bodies


def client(stack: Stack, key: str, timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=timeout, headers={"Authorization": f"Bearer {key}"})


# --- ingest -------------------------------------------------------------------------------------------


def run_ingest(args: argparse.Namespace) -> int:
    budget = int(args.seconds * args.max_rate)
    started = time.perf_counter()
    bodies = build_bodies(answer_stream(args.learners, args.seed), budget, args.batch)
    build_s = time.perf_counter() - started
    tenant = "bench"
    with Stack(args.backend, keep=args.keep, tag="ingest") as stack:
        key = stack.create_key(tenant)
        stack.start_serve()
        stack.wait_healthy("serve")
        lock = threading.Lock()
        queue = iter(bodies)
        latencies: list[float] = []
        accepted = [0]
        errors: Counter[str] = Counter()
        exhausted = threading.Event()
        stop_at = time.perf_counter() + args.seconds

        halt = threading.Event()

        def send() -> None:
            with client(stack, key) as http:
                while time.perf_counter() < stop_at and not halt.is_set():
                    with lock:
                        body = next(queue, None)
                    if body is None:
                        exhausted.set()
                        return
                    t0 = time.perf_counter()
                    try:
                        response = http.post("/v1/events", content=body, headers=JSON)
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] += 1
                        continue
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)
                        if response.is_success:
                            accepted[0] += int(response.json()["accepted"])
                        else:
                            errors[f"HTTP {response.status_code}"] += 1

        send_start = time.perf_counter()
        threads = [threading.Thread(target=send, name=f"sender-{i}", daemon=True) for i in range(args.senders)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        finally:
            halt.set()
        send_s = time.perf_counter() - send_start
        health = stack.health() or {"lag": {}}
        lag_at_end = health["lag"]
        drained = stack.wait_drained(args.drain_timeout)
        stack.stop("serve")
        stack.drain()
        counts = lake_counts(stack.lake, tenant)
    n = accepted[0]
    p50, p99 = percentiles([x * 1000 for x in latencies], 50, 99)
    lake_s = send_s + drained["lake"]
    lake_lag, state_lag = int(lag_at_end.get("lake", -1)), int(lag_at_end.get("state", -1))
    ok = counts["silver_rows"] == n and counts["bronze_rows"] == n and counts["silver_ids"] == n
    header(f"python bench/realtime.py {args.argv}")
    print(f"load: {len(bodies):,} pre-built bodies of {args.batch:,} events ({budget:,} events, built in "
          f"{build_s:.1f} s), {args.senders} sender thread(s), {args.seconds:g} s; tablet_answers "
          f"({args.learners} learners, seed {args.seed})\n")
    table(["backend", "accepted events", "send s", "accepted events/s", "request p50 ms", "request p99 ms",
           "failed requests", "lake lag at end", "state lag at end", "lake drain s", "state drain s",
           "worker drain events/s", "worker events/s overall", "silver rows", "bronze rows", "lake = accepted"],
          [[args.backend, n, send_s, n / send_s, p50, p99, sum(errors.values()), lake_lag, state_lag,
            drained["lake"], drained["state"], lake_lag / drained["lake"] if drained["lake"] else float("nan"),
            n / lake_s, counts["silver_rows"], counts["bronze_rows"], "yes" if ok else "NO"]])
    if errors:
        print(f"\nerrors: {dict(errors)}")
    if exhausted.is_set():
        print(f"\nthe {budget:,} pre-built events ran out before {args.seconds:g} s: raise --max-rate")
    print("\nworker drain events/s: lake lag at end / lake drain s (the worker alone, after sending stopped); "
          "worker events/s overall: accepted / (send s + lake drain s) (the worker shared the CPUs with the API "
          "and the senders while they ran).")
    return 0 if ok and not errors else 1


# --- freshness ----------------------------------------------------------------------------------------


def run_freshness(args: argparse.Namespace) -> int:
    tenant = "bench"
    probe_learner = "probe-learner"
    latencies: list[float] = []
    ack_ms: list[float] = []
    timeouts = 0
    with Stack(args.backend, keep=args.keep, tag="freshness") as stack:
        key = stack.create_key(tenant)
        stack.start_serve()
        stack.wait_healthy("serve")
        stop = threading.Event()
        load = {"accepted": 0, "requests": 0, "errors": Counter(), "late": 0}
        per_batch = max(1, round(args.rate / 10))

        def background() -> None:
            answers = answer_stream(args.learners, args.seed)
            with client(stack, key) as http:
                next_at = time.perf_counter()
                while not stop.is_set():
                    body = encode([next(answers) for _ in range(per_batch)])
                    try:
                        response = http.post("/v1/events", content=body, headers=JSON)
                        load["requests"] += 1
                        if response.is_success:
                            load["accepted"] += response.json()["accepted"]
                        else:
                            load["errors"][f"HTTP {response.status_code}"] += 1
                    except httpx.HTTPError as exc:
                        load["errors"][type(exc).__name__] += 1
                    next_at += 0.1
                    pause = next_at - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    else:
                        load["late"] += 1

        loader = threading.Thread(target=background, name="background-load")
        load_start = time.perf_counter()
        loader.start()
        deadline = time.perf_counter() + args.max_seconds
        try:
            with client(stack, key) as http:
                next_at = time.perf_counter() + 1.0  # let the load settle
                for k in range(1, args.warmup + args.probes + 1):
                    if time.perf_counter() > deadline:
                        break
                    pause = next_at - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    next_at = time.perf_counter() + args.interval_ms / 1000
                    answer = {"learner_id": probe_learner, "item_id": f"sim-item-{1 + k % 200:03d}",
                              "concept_ids": ["concept-01"], "correct": k % 2, "seq": k - 1,
                              "timestamp": datetime.now(timezone.utc).isoformat()}
                    t0 = time.perf_counter()
                    response = http.post("/v1/events", content=encode([answer]), headers=JSON)
                    if response.status_code != 202:
                        raise SystemExit(f"probe answer refused: {response.status_code} {response.text}")
                    acked = time.perf_counter()
                    seen = None
                    while time.perf_counter() - t0 < args.probe_timeout:
                        got = http.get(f"/v1/learners/{probe_learner}/mastery", params={"model": "elo"})
                        if got.status_code == 200 and got.json()["n_answers"] >= k:
                            seen = time.perf_counter()
                            break
                        if got.status_code not in (200, 404):
                            raise SystemExit(f"mastery: {got.status_code} {got.text}")
                        time.sleep(args.poll_ms / 1000)
                    if k <= args.warmup:
                        continue
                    if seen is None:
                        timeouts += 1
                    else:
                        latencies.append((seen - t0) * 1000)
                        ack_ms.append((acked - t0) * 1000)
        finally:
            stop.set()
            loader.join()
        load_s = time.perf_counter() - load_start
    p50, p95, p99 = percentiles(latencies, 50, 95, 99)
    a50, a99 = percentiles(ack_ms, 50, 99)
    header(f"python bench/realtime.py {args.argv}")
    print(f"background: tablet_answers ({args.learners} learners, seed {args.seed}), {per_batch} events every "
          f"100 ms for {load_s:.1f} s; probe every {args.interval_ms:g} ms (after the previous one was seen), "
          f"mastery polled every {args.poll_ms:g} ms, {args.warmup} warm-up probes not counted\n")
    table(["backend", "background events/s", "background errors", "probes", "timeouts (> "
           f"{args.probe_timeout:g} s)", "probe POST p50 ms", "probe POST p99 ms", "answer→mastery p50 ms",
           "p95 ms", "p99 ms", "max ms"],
          [[args.backend, load["accepted"] / load_s, sum(load["errors"].values()), len(latencies), timeouts, a50,
            a99, p50, p95, p99, max(latencies, default=float("nan"))]])
    if load["errors"]:
        print(f"\nbackground errors: {dict(load['errors'])}")
    if load["late"]:
        print(f"\nbackground batches sent late (behind the 100 ms schedule): {load['late']:,}")
    return 0 if latencies and not timeouts else 1


# --- predict ------------------------------------------------------------------------------------------

PREDICT_MODELS: dict[str, dict[str, Any]] = {
    "elo": {},
    "bkt": {},
    "dkt": {"hidden": 32, "window": 100, "device": "cpu"},
}


def fit_and_promote(lake_root: Path, tenant: str, args: argparse.Namespace) -> list[list[Any]]:
    """Simulate a class into the lake, fit each model on 80 % of its learners, score the rest,
    register and promote every model. Returns (model, fit s, test AUC, version) rows."""
    from knowtrace.batch.pipeline import data_window
    from knowtrace.evaluation.metrics import score_all
    from knowtrace.evaluation.split import learner_split
    from knowtrace.lake import Lake
    from knowtrace.models import get_model_class
    from knowtrace.registry import ModelRegistry
    from knowtrace.simulate import ClassroomSimulator

    lake = Lake(lake_root)
    lake.load(ClassroomSimulator(tenant=tenant, learners=args.class_learners, items=args.items,
                                 concepts=args.concepts, weeks=args.weeks, seed=args.seed), None)
    answers = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
    graph = lake.concept_graph(tenant)
    split = learner_split(answers, test_fraction=0.2, seed=args.seed)
    window = data_window(lake, answers, tenant)
    y = np.asarray(split.test.column("correct").to_numpy(zero_copy_only=False), dtype=np.float64)
    registry = ModelRegistry(lake.root)
    rows = []
    for name in args.models:
        params = dict(PREDICT_MODELS[name])
        if name == "dkt":
            params["epochs"] = args.dkt_epochs
        started = time.perf_counter()
        model = get_model_class(name)(**params).fit(split.train, graph=graph)
        fit_s = time.perf_counter() - started
        metrics = score_all(y, model.predict_proba(split.test)) | {"n": int(split.test.num_rows)}
        version = registry.register(model, tenant=tenant, metrics=metrics, data_window=window)
        registry.promote(tenant, name, version.version)
        rows.append([name, fit_s, metrics["auc"], version.version])
    return rows


def run_predict(args: argparse.Namespace) -> int:
    tenant = "bench"
    rng = np.random.default_rng(args.seed)
    items = [f"sim-item-{j + 1:03d}" for j in range(args.items)]
    results = []
    with Stack(args.backend, keep=args.keep, tag="predict") as stack:
        started = time.perf_counter()
        fitted = fit_and_promote(stack.lake, tenant, args)
        setup_s = time.perf_counter() - started
        key = stack.create_key(tenant)
        stack.start_serve()
        stack.wait_healthy("serve")
        # learners new to the models, with state: their answers go through the API and the worker
        answers = answer_stream(args.learners, args.seed, prefix="rt-", items=args.items, concepts=args.concepts)
        warm = [next(answers) for _ in range(args.learners * args.answers_each)]
        learners = sorted({a["learner_id"] for a in warm})
        with client(stack, key) as http:
            for start in range(0, len(warm), 500):
                response = http.post("/v1/events", content=encode(warm[start:start + 500]), headers=JSON)
                if response.status_code != 202:
                    raise SystemExit(f"warm-up answers refused: {response.status_code} {response.text}")
        stack.wait_drained(args.drain_timeout)
        stack.wait_lake_built(args.drain_timeout)
        with client(stack, key) as http:
            for name in args.models:
                got = http.get(f"/v1/learners/{learners[0]}/mastery", params={"model": name})
                if got.status_code != 200:
                    raise SystemExit(f"no {name} state for {learners[0]} after the worker drained: {got.status_code} "
                                     f"{got.text}")
        local = threading.local()
        opened: list[httpx.Client] = []

        def http_client() -> httpx.Client:
            if not hasattr(local, "client"):
                local.client = client(stack, key, timeout=10)
                opened.append(local.client)
            return local.client

        def one(body: bytes, due: float) -> tuple[float, int, bytes]:
            try:
                response = http_client().post("/v1/predict", content=body, headers=JSON)
                return time.perf_counter() - due, response.status_code, response.content
            except httpx.HTTPError as exc:
                return time.perf_counter() - due, -1, type(exc).__name__.encode()

        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            # every pool thread opens its client (and connection) before the clock runs
            barrier = threading.Barrier(args.threads)

            def prime(_: int) -> None:
                http_client().get("/healthz")
                barrier.wait(timeout=60)

            list(pool.map(prime, range(args.threads)))
            for name in args.models:
                n = int(args.rps * args.seconds)
                bodies = [encode({"learner_id": str(rng.choice(learners)),  # type: ignore[arg-type]
                                  "item_ids": [str(i) for i in rng.choice(items, 5, replace=False)],
                                  "model": name})
                          for _ in range(n)]
                for body in bodies[:args.warmup]:  # warm-up: sequential, not counted
                    latency, status, content = one(body, time.perf_counter())
                    if status != 200:
                        raise SystemExit(f"predict {name} failed in the warm-up: {status} {content[:500]!r}")
                futures = []
                # the client's own garbage collection must not be timed as server latency: its full
                # collections grow with the results kept, and stalled every in-flight request by up
                # to 0.3 s late in a run (seen as a DKT tail while the server answered in 7 ms)
                gc.collect()
                gc.freeze()
                gc.disable()
                try:
                    t0 = time.perf_counter() + 0.05
                    for i, body in enumerate(bodies):
                        due = t0 + i / args.rps
                        pause = due - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                        futures.append(pool.submit(one, body, due))
                    done = [f.result() for f in futures]
                    span = time.perf_counter() - t0
                finally:
                    gc.enable()
                    gc.unfreeze()
                ok = [lat * 1000 for lat, status, _ in done if status == 200]
                errors = Counter(str(status) for _, status, _ in done if status != 200)
                stored = sum(json.loads(c)["learner_state"] == "stored" for _, s, c in done if s == 200)
                p50, p99 = percentiles(ok, 50, 99)
                results.append([name, n, n / span, p50, p99, max(ok, default=float("nan")), sum(errors.values()),
                                f"{stored / max(1, len(ok)):.0%}", dict(errors)])
        for http in opened:
            http.close()
    header(f"python bench/realtime.py {args.argv}")
    print(f"setup: ClassroomSimulator({args.class_learners} learners, {args.items} items, {args.concepts} concepts, "
          f"{args.weeks} weeks, seed {args.seed}); fit on 80 % of the learners, registered and promoted in "
          f"{setup_s:.1f} s; {args.learners} new learners × {args.answers_each} answers through the API first; "
          f"5 items per request, {args.threads} client threads, {args.warmup} warm-up requests per model\n")
    table(["model", "fit s", "test AUC", "version"], fitted)
    print()
    table(["backend / model", "requests", "achieved rps", "p50 ms", "p99 ms", "max ms", "errors", "stored state"],
          [[f"{args.backend} / {r[0]}", *r[1:8]] for r in results])
    failures = {r[0]: r[8] for r in results if r[8]}
    if failures:
        print(f"\nerrors: {failures}")
    return 0 if not failures else 1


# --- command line -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite",
                        help="event log and learner state: embedded SQLite in the lake, or a temp redis-server")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--keep", action="store_true", help="keep the temporary folder (lake, logs)")
    common.add_argument("--drain-timeout", type=float, default=600, help="seconds to wait for the worker")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", parents=[common], help="sustained ingest throughput")
    ingest.add_argument("--seconds", type=float, default=30)
    ingest.add_argument("--batch", type=int, default=1000, help="events per request")
    ingest.add_argument("--senders", type=int, default=2, help="sender threads")
    ingest.add_argument("--learners", type=int, default=1000)
    ingest.add_argument("--max-rate", type=float, default=20000,
                        help="events/s the pre-built bodies can sustain (seconds × max-rate events are built)")

    fresh = sub.add_parser("freshness", parents=[common], help="answer → updated mastery latency under load")
    fresh.add_argument("--rate", type=float, default=1000, help="background events/s")
    fresh.add_argument("--probes", type=int, default=200)
    fresh.add_argument("--warmup", type=int, default=5, help="probes not counted")
    fresh.add_argument("--interval-ms", type=float, default=100, help="probe period")
    fresh.add_argument("--poll-ms", type=float, default=5, help="mastery poll period")
    fresh.add_argument("--probe-timeout", type=float, default=10)
    fresh.add_argument("--max-seconds", type=float, default=300, help="stop probing after this long")
    fresh.add_argument("--learners", type=int, default=1000)

    predict = sub.add_parser("predict", parents=[common], help="/v1/predict latency, open loop")
    predict.add_argument("--rps", type=float, default=200)
    predict.add_argument("--seconds", type=float, default=15)
    predict.add_argument("--models", nargs="+", choices=list(PREDICT_MODELS), default=list(PREDICT_MODELS))
    predict.add_argument("--threads", type=int, default=32, help="client threads")
    predict.add_argument("--warmup", type=int, default=50, help="sequential requests per model, not counted")
    predict.add_argument("--learners", type=int, default=50, help="new learners given state through the API")
    predict.add_argument("--answers-each", type=int, default=20)
    predict.add_argument("--class-learners", type=int, default=150, help="learners of the simulated class")
    predict.add_argument("--items", type=int, default=60)
    predict.add_argument("--concepts", type=int, default=8)
    predict.add_argument("--weeks", type=int, default=4)
    predict.add_argument("--dkt-epochs", type=int, default=2)

    handle_sigterm()
    runners = {"ingest": run_ingest, "freshness": run_freshness, "predict": run_predict}
    # without arguments (``./scripts/bench`` runs every script so): each benchmark with its defaults
    argvs = [sys.argv[1:]] if sys.argv[1:] else [[name] for name in runners]
    failed = 0
    for argv in argvs:
        args = parser.parse_args(argv)
        args.argv = " ".join(argv)
        failed |= runners[args.command](args)
        print()
    return failed


if __name__ == "__main__":
    sys.exit(main())
