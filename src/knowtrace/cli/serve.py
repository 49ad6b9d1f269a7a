"""``knowtrace serve``, ``knowtrace worker`` and ``knowtrace simulate-tablets``: the real-time path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, open_lake, print_json, print_rows

StreamOption = Annotated[
    str | None,
    typer.Option("--stream", envvar="KNOWTRACE_STREAM_URL", show_default=False,
                 help="Event log: sqlite:///PATH (default <lake>/_stream/events.db) or redis://HOST:PORT/DB."),
]
StateOption = Annotated[
    str | None,
    typer.Option("--state", envvar="KNOWTRACE_STATE_URL", show_default=False,
                 help="Learner state store: sqlite:///PATH (default <lake>/_state/state.db) or redis://HOST:PORT/DB."),
]


def _settings(lake: Path | None, stream: str | None, state: str | None):  # type: ignore[no-untyped-def]
    from knowtrace.serve.settings import ServeSettings

    root = open_lake(lake).root  # creates the lake first: the log and the state live inside it
    return ServeSettings(lake=root, stream_url=stream or "", state_url=state or "")


def worker(
    lake: LakeOption = None,
    stream: StreamOption = None,
    state: StateOption = None,
    name: Annotated[str, typer.Option(help="Consumer name (unique per worker process sharing a Redis log).")] = "worker",
    refresh_seconds: Annotated[float, typer.Option(help="Rebuild silver/gold at most this often.")] = 5.0,
    drain: Annotated[bool, typer.Option("--drain", help="Process what the log holds, then exit.")] = False,
) -> None:
    """Move events from the log into the lake and the online learner state, exactly once."""
    from knowtrace.state.store import open_state
    from knowtrace.stream.log import open_log
    from knowtrace.stream.worker import StreamWorker, registry_models

    settings = _settings(lake, stream, state)
    the_lake = open_lake(settings.lake)
    event_log, store = open_log(settings.stream_url), open_state(settings.state_url)
    runner = StreamWorker(the_lake, event_log, store, registry_models(the_lake), consumer=name,
                          refresh_seconds=refresh_seconds)
    try:
        if drain:
            stats = runner.drain()
            done = f"{stats.lake_entries:,} entries to the lake, {stats.state_updates:,} learner-state updates"
            if not stats.drained:
                err_console.print(f"[red]not drained:[/] {done}; still unacknowledged: "
                                  f"lake {event_log.lag('lake'):,}, state {event_log.lag('state'):,}")
                raise typer.Exit(1)
            console.print(f"drained: {done}")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: runner.stop.set())
        err_console.print(f"worker {name}: {settings.stream_url} -> lake {the_lake.root}, state {settings.state_url}")
        runner.run()
    finally:
        event_log.close()
        store.close()


def serve(
    lake: LakeOption = None,
    stream: StreamOption = None,
    state: StateOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_workers: Annotated[int, typer.Option("--api-workers", help="API processes.")] = 1,
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker",
                                              help="Also run the stream worker (restarted if it dies).")] = True,
) -> None:
    """Start the HTTP API (and the stream worker) on the lake; OpenAPI at /docs."""
    import uvicorn

    settings = _settings(lake, stream, state)
    os.environ.update({"KNOWTRACE_LAKE": str(settings.lake), "KNOWTRACE_STREAM_URL": settings.stream_url,
                       "KNOWTRACE_STATE_URL": settings.state_url})
    supervisor = _WorkerSupervisor(settings.lake, settings.stream_url, settings.state_url) if with_worker else None
    if supervisor is not None:
        supervisor.start()
    err_console.print(f"knowtrace API on http://{host}:{port} (docs at /docs), lake {settings.lake}")
    try:
        uvicorn.run("knowtrace.serve.app:create_app", factory=True, host=host, port=port, workers=api_workers,
                    log_level="warning")
    finally:
        if supervisor is not None:
            supervisor.stop()


class _WorkerSupervisor:
    """Runs ``knowtrace worker`` as a child process and starts it again when it dies."""

    def __init__(self, lake: Path, stream: str, state: str) -> None:
        self.command = [sys.executable, "-m", "knowtrace", "worker", "--lake", str(lake), "--stream", stream,
                        "--state", state]
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = subprocess.Popen(self.command)
            code = self.process.wait()
            if self._stopping.is_set():
                return
            err_console.print(f"[yellow]stream worker exited with {code}; restarting[/]")
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 10.0)
            self._stopping.wait(backoff)

    def stop(self) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def simulate_tablets(
    url: Annotated[str, typer.Option(help="Root URL of the knowtrace API.")] = "http://127.0.0.1:8000",
    api_key: Annotated[str, typer.Option("--api-key", envvar="KNOWTRACE_API_KEY", help="API key of the tenant.")] = "",
    learners: Annotated[int, typer.Option(help="Learners in the class.")] = 30,
    rate: Annotated[float, typer.Option(help="Answers per second, all tablets together.")] = 20.0,
    events: Annotated[int | None, typer.Option(help="Stop after this many answers.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    batch: Annotated[int, typer.Option(help="Answers per request (0: about ten requests a second).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated class.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Send simulated tablet answers (synthetic learners) to the ingest API: demos and load tests."""
    from knowtrace.exceptions import InputError
    from knowtrace.simulate.tablets import TabletLoad

    if not api_key:
        raise InputError("an API key is needed: --api-key KEY or KNOWTRACE_API_KEY (knowtrace keys create)",
                         field="api_key")
    if events is None and seconds is None:
        seconds = 60.0
    load = TabletLoad(url, api_key, learners=learners, rate=rate, batch=batch, seed=seed)
    last = [0.0]

    def progress(report) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        if not as_json and now - last[0] >= 2.0:
            last[0] = now
            err_console.print(f"sent {report.sent:,}, accepted {report.accepted:,}, failed requests "
                              f"{report.failed_requests}")

    try:
        summary = load.run(events=events, seconds=seconds, on_progress=progress).summary()
    finally:
        load.close()
    if as_json:
        print_json(summary)
    else:
        print_rows([{k: v for k, v in summary.items() if k != "errors"}], title="simulate-tablets")
        if summary["errors"]:
            err_console.print(f"[red]errors:[/] {summary['errors']}")
