"""The pipeline one step per process (``knowtrace pipeline step``), and the Airflow DAGs that run it.

The Airflow test installs Apache Airflow into its own environment (``scripts/airflow-env``, cached in
``.venv-airflow``) and runs the shipped DAGs with ``airflow dags test`` against a temporary PostgreSQL.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowtrace.batch import init_source
from knowtrace.batch.dags import DAG_FILE, DAGS_FOLDER
from knowtrace.batch.pipeline import run_pipeline
from knowtrace.batch.steps import RUNS_DIR, RunFolder
from knowtrace.cli.app import app
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.models import ModelError
from knowtrace.models.elo import Elo
from knowtrace.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
LEARNERS = 5
ATTEMPTS = LEARNERS * 6 * 3 * 12
runner = CliRunner()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    path = tmp_path / "service.db"
    dsn = f"sqlite:///{path}"
    init_source(dsn, simulate=LEARNERS)
    conn = sqlite3.connect(path, isolation_level=None)
    yield dsn, conn
    conn.close()


def step(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["pipeline", "step", *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def step_json(*args: str) -> dict | list:
    return json.loads(step(*args, "--json"))


# -- the steps, one process each ---------------------------------------------------------------------


def test_the_steps_one_at_a_time_do_what_run_pipeline_does(source, tmp_path: Path) -> None:
    dsn, conn = source
    lake, other = str(tmp_path / "lake"), tmp_path / "other"
    common = ("--run-id", "r1", "--lake", lake)
    extracted = step_json("extract", *common, "--source-dsn", dsn, "--tenant", "s1")
    assert (extracted["rows_read"], extracted["added"]) == (ATTEMPTS, ATTEMPTS)
    assert not step_json("transform", *common)["rebuilt"]  # the extract's load built silver/gold
    trained = step_json("train", *common, "--tenant", "s1", "--models", "elo,irt")
    assert [(m["name"], m["fitted"]) for m in trained["models"]] == [("elo", True), ("irt", True)]
    folder = RunFolder(lake, "r1")
    assert (folder.path / "candidates" / "elo" / "model.json").is_file() and (folder.path / "test.parquet").is_file()
    scores = step_json("evaluate", *common)
    assert [s["name"] for s in scores] == ["elo", "irt"]
    result = step_json("publish", *common)
    assert result["ok"] and result["mode"] == "daily" and result["tenant"] == "s1"
    assert result["extract"]["rows_read"] == ATTEMPTS and result["data_window"] == trained["data_window"]
    assert json.loads((folder.path / "result.json").read_text()) == result
    assert not (folder.path / "candidates").exists() and not (folder.path / "test.parquet").exists()

    # the same source through run_pipeline in another lake: the same split, models and scores
    reference = run_pipeline(other, source_dsn=dsn, models=["elo", "irt"], tenant="s1").to_dict()
    registry = ModelRegistry(lake)
    for mine, theirs, score in zip(result["models"], reference["models"], scores, strict=True):
        assert (mine["version"], mine["promoted"]) == ("v0001", True)
        assert mine["metrics"]["auc"] == theirs["metrics"]["auc"] == score["metrics"]["auc"]
        version = registry.promoted("s1", mine["model"])
        assert version is not None and version.metrics == mine["metrics"]
        same = ("answers", "learners", "train_answers", "test_answers", "first_timestamp", "last_timestamp")
        assert {k: version.data_window[k] for k in same} == {k: reference["data_window"][k] for k in same}

    # publish again: nothing is registered twice; train again under the published run id: refused
    assert step_json("publish", *common)["models"] == result["models"]
    assert [v.version for v in registry.versions("s1", "elo")] == ["v0001"]
    refused = runner.invoke(app, ["pipeline", "step", "train", *common, "--tenant", "s1"])
    assert isinstance(refused.exception, InputError) and "was published already (elo, irt)" in str(refused.exception)

    # a daily run with nothing new: the models are not refit; a full one refits them
    daily = ("--run-id", "r2", "--lake", lake)
    assert step_json("extract", *daily, "--source-dsn", dsn, "--tenant", "s1")["skipped"]
    out = step("train", *daily, "--tenant", "s1", "--models", "elo,irt")
    assert "elo: skipped: no new answers since v0001" in out
    step("evaluate", *daily)
    assert "no new answers since v0001" in step("publish", *daily)
    assert [v.version for v in registry.versions("s1", "irt")] == ["v0001"]
    full = ("--run-id", "monthly 2026/07", "--lake", lake)  # any text is a run id
    assert step_json("transform", *full, "--full")["rebuilt"]
    step("train", *full, "--tenant", "s1", "--models", "elo", "--full")
    step("evaluate", *full)
    monthly = step_json("publish", *full)
    assert monthly["mode"] == "full" and monthly["extract"] is None and monthly["models"][0]["version"] == "v0002"
    assert (Path(lake) / RUNS_DIR / "monthly%202026%2F07" / "result.json").is_file()


def test_a_model_that_fails_fails_publish_after_the_others(source, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, _ = source
    common = ("--run-id", "r1", "--lake", str(tmp_path / "lake"))

    def diverge(self, data, *, valid=None) -> None:
        raise ModelError("elo diverged on this data")

    monkeypatch.setattr(Elo, "_fit", diverge)
    step("extract", *common, "--source-dsn", dsn)
    assert "elo: failed: fit failed: elo diverged" in step("train", *common, "--models", "elo,irt")
    step("evaluate", *common)
    out = step("publish", *common, code=1)
    assert "fit failed: elo diverged on this data" in out and "some models failed" in out
    registry = ModelRegistry(tmp_path / "lake")
    assert registry.versions("default", "elo") == [] and registry.promoted("default", "irt") is not None


def test_steps_out_of_order_or_without_input_are_clear_errors(source, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, _ = source
    lake = str(tmp_path / "lake")
    monkeypatch.delenv("KNOWTRACE_SOURCE_DSN", raising=False)
    result = runner.invoke(app, ["pipeline", "step", "extract", "--run-id", "r1", "--lake", lake])
    assert result.exit_code == 2 and "KNOWTRACE_SOURCE_DSN" in result.output
    monkeypatch.setenv("KNOWTRACE_SOURCE_DSN", dsn)  # how the Airflow task passes it
    assert step_json("extract", "--run-id", "r1", "--lake", lake)["added"] == ATTEMPTS
    for args, message in [
        (["evaluate", "--run-id", "r1"], "run 'r1' has no training record in"),
        (["publish", "--run-id", "r1"], "run `knowtrace pipeline step train --run-id r1` first"),
        (["train", "--run-id", " "], "the run id is empty"),
        (["train", "--run-id", "r1", "--models", "elo,nope"], "unknown model 'nope'"),
        (["train", "--run-id", "r1", "--tenant", "s9"], "no answers for tenant 's9'"),
    ]:
        result = runner.invoke(app, ["pipeline", "step", *args, "--lake", lake])
        assert isinstance(result.exception, InputError), result.output
        assert message in str(result.exception)
    step("train", "--run-id", "r1", "--lake", lake, "--models", "elo")
    result = runner.invoke(app, ["pipeline", "step", "publish", "--run-id", "r1", "--lake", lake])
    assert isinstance(result.exception, InputError) and "step evaluate --run-id r1` first" in str(result.exception)


def test_the_dag_file_ships_with_the_package_and_imports_no_knowtrace() -> None:
    result = runner.invoke(app, ["pipeline", "dags-folder"])
    assert result.exit_code == 0 and Path(result.output.strip()) == DAGS_FOLDER
    assert DAG_FILE.parent == DAGS_FOLDER and DAG_FILE.is_file()
    # Airflow parses it in its own environment, where knowtrace is not installed
    imported = set()
    for node in ast.walk(ast.parse(DAG_FILE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported == {"__future__", "os", "typing", "pendulum", "airflow"}
    # Airflow parses only the files that mention both words; the package's own module must not be one
    init = (DAGS_FOLDER / "__init__.py").read_text().lower()
    assert not ("airflow" in init and "dag" in init)


# -- Airflow: the DAGs end to end ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_bin() -> Path:
    """``airflow`` of the Airflow environment, made (once, cached) by scripts/airflow-env."""
    try:
        done = subprocess.run([str(ROOT / "scripts" / "airflow-env")], capture_output=True, text=True, timeout=2400)
        failure = None if done.returncode == 0 else (
            f"scripts/airflow-env exited {done.returncode}: "
            + "\n".join(line for line in done.stderr.splitlines() if "is ignored: it is neither" not in line)[-3000:])
    except subprocess.TimeoutExpired:
        failure = "scripts/airflow-env did not finish in 40 minutes"
    if failure is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the Airflow DAGs: {failure}")
        pytest.skip(f"no Airflow environment: {failure}")
    return Path(done.stdout.strip().splitlines()[-1]) / "bin" / "airflow"


def _knowtrace_bin() -> str:
    here = Path(sys.executable).parent / "knowtrace"
    found = str(here) if here.is_file() else shutil.which("knowtrace")
    assert found, f"no knowtrace executable beside {sys.executable} nor on PATH: install knowtrace (scripts/_env.sh)"
    return found


class Airflow:
    """The ``airflow`` command with its own home (SQLite metadata), the shipped DAGs and the settings."""

    def __init__(self, binary: Path, home: Path, settings: dict[str, str]) -> None:
        product_bin = str(Path(sys.executable).parent)
        self.binary = binary
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AIRFLOW", "KNOWTRACE_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # the tasks find knowtrace through the bin setting, not through the product environment on PATH
        self.env["PATH"] = os.pathsep.join(p for p in self.env.get("PATH", "").split(os.pathsep) if p != product_bin)
        self.env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
                     "AIRFLOW__CORE__LOAD_EXAMPLES": "False"} | settings

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=900)
        output = done.stdout + done.stderr
        if ok:
            assert done.returncode == 0, f"airflow {' '.join(args)} exited {done.returncode}:\n{output[-6000:]}"
        return done


def _new_run(lake: Path, seen: set[str]) -> dict:
    runs = {p.name for p in (lake / RUNS_DIR).iterdir()} - seen
    assert len(runs) == 1, runs
    seen |= runs
    return json.loads((lake / RUNS_DIR / runs.pop() / "result.json").read_text())


@pytest.mark.slow
def test_the_airflow_dags_run_the_pipeline(airflow_bin: Path, pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = runner.invoke(app, ["source", "init", "--dsn", pg_dsn, "--simulate", str(LEARNERS)])
    assert result.exit_code == 0, result.output
    assert pg_exec("SELECT count(*) FROM attempts")[0][0] == ATTEMPTS
    # the lake and the DSN from the worker's environment, the executable and the tenant from Airflow
    # Variables (given as environment variables), the models from the run's params
    settings = {"KNOWTRACE_LAKE": str(lake), "KNOWTRACE_SOURCE_DSN": pg_dsn,
                "AIRFLOW_VAR_KNOWTRACE_BIN": _knowtrace_bin(), "AIRFLOW_VAR_KNOWTRACE_TENANT": "s1"}
    airflow = Airflow(airflow_bin, tmp_path / "airflow", settings)
    airflow("db", "migrate")
    conf = json.dumps({"models": "elo,irt"})

    # without a lake the run fails, naming the setting and where to give it; nothing was written
    unset = Airflow(airflow_bin, tmp_path / "airflow", {k: v for k, v in settings.items() if k != "KNOWTRACE_LAKE"})
    failed = unset("dags", "test", "knowtrace_daily", "2026-05-31", "-c", conf, ok=False)
    assert failed.returncode != 0
    assert "knowtrace setting 'lake' is not set" in failed.stdout + failed.stderr
    assert not lake.exists()

    # the first daily run: every answer extracted, both models registered and promoted
    first = airflow("dags", "test", "knowtrace_daily", "2026-06-01", "-c", conf)
    assert pg_dsn not in first.stdout + first.stderr  # masked in the task logs
    seen: set[str] = set()
    run = _new_run(lake, seen)
    assert next(iter(seen)).startswith("knowtrace_daily__manual__")
    assert run["ok"] and run["mode"] == "daily" and run["tenant"] == "s1"
    assert (run["extract"]["rows_read"], run["extract"]["added"]) == (ATTEMPTS, ATTEMPTS)
    silver = Lake(lake).query("SELECT count(*) AS n FROM interactions WHERE tenant = 's1'").column("n")[0].as_py()
    assert silver == ATTEMPTS
    registry = ModelRegistry(lake)
    assert [m["model"] for m in run["models"]] == ["elo", "irt"]
    for name in ("elo", "irt"):
        promoted = registry.promoted("s1", name)
        assert promoted is not None and promoted.version == "v0001"
        assert promoted.data_window["answers"] == ATTEMPTS
        assert promoted.metrics == next(m["metrics"] for m in run["models"] if m["model"] == name)
    assert not any((lake / RUNS_DIR).glob("*/candidates"))

    # two new answers at the source: the next daily run extracts exactly them and refits on them
    pg_exec("INSERT INTO attempts (learner_id, item_id, correct, answered_at) VALUES "
            "('sim-learner-0001', 'sim-item-001', true, now()), ('sim-learner-0002', 'sim-item-002', false, now())")
    airflow("dags", "test", "knowtrace_daily", "2026-06-02", "-c", conf)
    run = _new_run(lake, seen)
    assert (run["extract"]["rows_read"], run["extract"]["added"]) == (2, 2)
    assert run["data_window"]["answers"] == ATTEMPTS + 2
    for name in ("elo", "irt"):
        old, new = registry.get("s1", name, 1), registry.get("s1", name, 2)
        assert new.data_window["answers"] == ATTEMPTS + 2
        assert registry.promoted("s1", name).version == ("v0002" if new.auc >= old.auc else "v0001")  # type: ignore

    # the monthly run: nothing new to extract, silver/gold rebuilt, every model refit and registered
    airflow("dags", "test", "knowtrace_monthly", "2026-07-01", "-c", conf)
    run = _new_run(lake, seen)
    assert run["ok"] and run["mode"] == "full" and run["extract"]["skipped"]
    assert run["transform"]["rebuilt"] and "full rebuild" in run["transform"]["reason"]
    assert [m["version"] for m in run["models"]] == ["v0003", "v0003"]
    assert Lake(lake).current_build()["build_id"] == run["transform"]["build_id"]  # type: ignore[index]
