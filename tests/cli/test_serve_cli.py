"""`knowtrace keys`, `knowtrace serve` and `knowtrace simulate-tablets` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from knowtrace.lake import Lake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _knowtrace(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "knowtrace", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def _wait_until(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_serve_ingests_simulated_tablets_and_serves_mastery(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    created = _knowtrace("keys", "create", "--tenant", "school-1", "--lake", str(lake_dir))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "knowtrace", "serve", "--lake", str(lake_dir), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200)
        assert httpx.get(f"{url}/v1/learners/x/mastery").status_code == 401

        sent = _knowtrace("simulate-tablets", "--url", url, "--api-key", key, "--learners", "5", "--rate", "400",
                          "--events", "600", "--json")
        assert sent.returncode == 0, sent.stderr
        summary = json.loads(sent.stdout)
        assert summary["accepted"] == 600 and summary["failed_requests"] == 0

        headers = {"Authorization": f"Bearer {key}"}
        health = _wait_until(lambda: (h := httpx.get(f"{url}/healthz").json()) and
                             all(v == 0 for v in h["lag"].values()) and h)
        assert health["lag"] == {"lake": 0, "state": 0}
        mastery = httpx.get(f"{url}/v1/learners/sim-learner-0001/mastery?model=elo", headers=headers).json()
        assert mastery["model"] == "elo" and mastery["n_answers"] > 0 and mastery["concepts"]
        other = _knowtrace("keys", "create", "--tenant", "school-2", "--lake", str(lake_dir)).stdout.splitlines()[-1]
        assert httpx.get(f"{url}/v1/learners/sim-learner-0001/mastery",
                         headers={"Authorization": f"Bearer {other}"}).status_code == 404
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    lake = Lake(lake_dir)
    lake.refresh()
    counts = lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d, min(tenant) AS t FROM interactions")
    assert counts.to_pylist() == [{"n": 600, "d": 600, "t": "school-1"}]
    n_answers = sum(r["n_answers"] for r in lake.query(
        "SELECT count(*) AS n_answers FROM interactions GROUP BY learner_id").to_pylist())
    assert n_answers == 600
