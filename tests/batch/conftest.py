"""A real PostgreSQL for the batch tests: one temporary cluster per session, a fresh database per test.

The cluster is made with ``initdb`` (as the ``postgres`` OS user when the tests run as root) on a
free loopback port, and stopped and deleted at the end. Where no ``initdb`` can run, the tests use
the server named by ``KNOWTRACE_TEST_POSTGRES`` (an admin DSN) instead; with neither, they skip
(and fail under CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Cluster:
    """A throwaway PostgreSQL cluster owned by the test session."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            raise RuntimeError("initdb/pg_ctl not found")
        self.prefix: list[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix="knowtrace-pg-"))
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                   "--no-instructions"])
        for attempt in range(3):
            self.port = _free_port()
            options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off " \
                      "-c synchronous_commit=off -c full_page_writes=off"
            try:
                self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                           "-w", "-t", "30", "start"])
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str]) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    """An admin DSN of a PostgreSQL server the tests may create databases on."""
    try:
        cluster = _Cluster()
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as exc:
        existing = os.environ.get("KNOWTRACE_TEST_POSTGRES")
        if existing:
            yield existing
            return
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL for the batch tests: {exc}")
        pytest.skip(f"no temporary PostgreSQL cluster ({exc}) and KNOWTRACE_TEST_POSTGRES is not set")
    try:
        yield cluster.admin_dsn
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(postgres_admin: str) -> Iterator[str]:
    """The DSN of a fresh, empty database (dropped after the test)."""
    name = f"kt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    info = psycopg.conninfo.conninfo_to_dict(postgres_admin)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_exec(pg_dsn: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run one statement on the test database in autocommit; returns its rows (if any)."""
    conn = psycopg.connect(pg_dsn, autocommit=True)

    def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []

    try:
        yield run
    finally:
        conn.close()
