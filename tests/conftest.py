"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

import pytest

from knowtrace.events import InteractionEvent
from knowtrace.lake import Lake
from knowtrace.lake.frames import events_to_table

#: the public datasets, laid beside the repository (``../shared/data``)
SHARED_DATA = Path(os.environ.get("KNOWTRACE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public datasets; tests that need it skip where it is absent (fail in CI)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have the real datasets at {SHARED_DATA}")
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty lake in a temporary folder."""
    return Lake(tmp_path / "lake")


def answers_table(answers: list[tuple[str, str, tuple[str, ...], int]], load_id: str = "test") -> pa.Table:
    """A silver-like table from (learner, item, concepts, correct), in history order per learner."""
    positions: dict[str, int] = {}
    events = []
    for learner, item, concepts, correct in answers:
        positions[learner] = positions.get(learner, -1) + 1
        events.append(InteractionEvent(learner_id=learner, item_id=item, concept_ids=concepts, correct=correct,
                                       seq=positions[learner]))
    return events_to_table(events, load_id=load_id)


@pytest.fixture(scope="session")
def make_table() -> Callable[[list[tuple[str, str, tuple[str, ...], int]]], pa.Table]:
    """``answers_table`` as a fixture (test modules cannot import conftest)."""
    return answers_table


@pytest.fixture(scope="session")
def make_answers() -> Callable[[list[tuple[str, str, tuple[str, ...], int]]], pa.Table]:
    """``answers_table`` as a fixture (the name the evaluation tests use)."""
    return answers_table


# --- Redis: a real server for the stream and state tests ------------------------------------------

import shutil  # noqa: E402  (imports of this appended section)
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import redis  # noqa: E402


def _redis_server_binary() -> str:
    """``redis-server`` on the PATH; skip where it is absent (fail under CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have redis-server on the PATH")
        pytest.skip("redis-server not found on the PATH")
    return binary


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, its AOF fsynced on every write, in ``folder``."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder = binary, folder
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port and folder: the server reloads its AOF) and wait for PING."""
        for _ in range(3):
            port = self.port or _free_loopback_port()
            process = subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._answers(port, process):
                self.port, self.process = port, process
                return
            process.kill()
            process.wait()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    @staticmethod
    def _answers(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=2)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    return bool(client.ping())
                except redis.exceptions.RedisError:  # not listening yet, or still loading the AOF
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush anything."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the session (not the one that may run on port 6379)."""
    server = RedisServer(_redis_server_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's server, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Starts servers of the test's own (to kill and restart them); all are stopped at its end."""
    binary = _redis_server_binary()
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        folder = tmp_path / f"redis-{len(servers)}"
        folder.mkdir()
        server = RedisServer(binary, folder)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()
