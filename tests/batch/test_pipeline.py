"""``knowtrace pipeline run`` end to end on a SQLite source, its steps from Python, and bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowtrace.batch import init_source
from knowtrace.batch.pipeline import (
    PipelineStep,
    data_window,
    evaluate,
    extract,
    publish,
    run_pipeline,
    train,
    transform,
)
from knowtrace.cli.app import app
from knowtrace.evaluation.metrics import score_all
from knowtrace.evaluation.split import learner_split
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.models import ModelError
from knowtrace.models.elo import Elo
from knowtrace.registry import ModelRegistry

LEARNERS = 8
ATTEMPTS = LEARNERS * 6 * 3 * 12
MODELS = ("elo", "bkt", "irt")
runner = CliRunner()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    path = tmp_path / "service.db"
    dsn = f"sqlite:///{path}"
    init_source(dsn, simulate=LEARNERS)
    conn = sqlite3.connect(path, isolation_level=None)
    yield dsn, conn
    conn.close()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def run_json(*args: str) -> dict:
    return json.loads(invoke("pipeline", "run", *args, "--json"))


def settle() -> None:
    """SQLite's clock has millisecond steps: let a change be strictly before the next extract's bound."""
    time.sleep(0.003)


def current(registry: ModelRegistry, model: str, tenant: str = "s1") -> str:
    promoted = registry.promoted(tenant, model)
    assert promoted is not None
    return promoted.version


def test_pipeline_end_to_end_then_incremental(source, tmp_path: Path) -> None:
    dsn, conn = source
    lake_dir = tmp_path / "lake"
    common = ("--lake", str(lake_dir), "--tenant", "s1")
    first = run_json("--source-dsn", dsn, *common)
    assert first["ok"] and first["mode"] == "daily" and first["engine"] == "duckdb"
    assert (first["extract"]["rows_read"], first["extract"]["added"]) == (ATTEMPTS, ATTEMPTS)
    assert first["transform"]["rows"]["interactions"] == ATTEMPTS
    window = first["data_window"]
    assert window["answers"] == ATTEMPTS and window["learners"] == LEARNERS
    assert window["train_answers"] + window["test_answers"] == ATTEMPTS
    mark = window["extract_watermarks"]["sqlite:service"]
    assert mark["load_id"] == first["extract"]["load_id"]
    assert f"{mark['watermark']['updated_at']} #{mark['watermark']['id']}" == first["extract"]["watermark"]
    assert [m["model"] for m in first["models"]] == list(MODELS)
    for row in first["models"]:
        assert (row["version"], row["promoted"], row["reason"]) == ("v0001", True, "first promoted version")
        assert {"auc", "acc", "rmse", "logloss", "ece", "n"} <= set(row["metrics"])
        assert row["metrics"]["n"] == window["test_answers"] and 0 < row["metrics"]["auc"] < 1

    # the promoted artifacts are the models that were scored: they give the same metrics again
    lake = Lake(lake_dir)
    registry = ModelRegistry(lake_dir)
    table = lake.query("SELECT * FROM interactions WHERE tenant = 's1' ORDER BY learner_id, position")
    test = learner_split(table, test_fraction=0.2, seed=0).test
    for row in first["models"]:
        version = registry.promoted("s1", row["model"])
        assert version is not None and version.data_window == window
        model = registry.load(version)
        y = test.column("correct").to_numpy().astype(float)
        assert score_all(y, model.predict_proba(test))["auc"] == pytest.approx(row["metrics"]["auc"], abs=1e-12)

    # new answers at the source: the next daily run extracts only them and registers new versions
    conn.execute("INSERT INTO attempts (learner_id, item_id, correct, answered_at) VALUES "
                 "('sim-learner-0001', 'sim-item-001', 1, '2026-11-01T10:00:00.000Z'), "
                 "('sim-learner-0002', 'sim-item-002', 0, '2026-11-01T10:05:00.000Z')")
    settle()
    out = invoke("pipeline", "run", "--source-dsn", dsn, *common)
    assert "2 rows extracted" in out and "2 new answers" in out and f"{ATTEMPTS + 2:,} rows" in out
    assert "v0002" in out and "promoted" in out
    for name in MODELS:
        old, new = registry.get("s1", name, 1), registry.get("s1", name, 2)
        assert new.data_window["answers"] == ATTEMPTS + 2
        # promoted exactly when not worse than the version it would replace
        assert current(registry, name) == ("v0002" if new.auc >= old.auc else "v0001")  # type: ignore[operator]

    # nothing new: the extract is up to date and no model is refit
    before = {name: current(registry, name) for name in MODELS}
    third = run_json("--source-dsn", dsn, *common)
    assert third["extract"]["skipped"] and third["transform"]["rebuilt"] is False
    for row in third["models"]:
        assert row["version"] is None and not row["promoted"]
        assert row["reason"].startswith("no new answers since v0002")
    assert [v.version for v in registry.versions("s1", "elo")] == ["v0001", "v0002"]

    # the monthly run: rebuild from all bronze and refit, even with nothing new
    full = run_json("--no-extract", "--full", *common)
    assert full["mode"] == "full" and full["extract"] is None
    assert full["transform"]["rebuilt"] and "full rebuild" in full["transform"]["reason"]
    for row in full["models"]:
        previous = registry.get("s1", row["model"], before[row["model"]])
        auc = row["metrics"]["auc"]
        assert row["version"] == "v0003" and row["promoted"] == (auc >= previous.auc)
        assert current(registry, row["model"]) == ("v0003" if row["promoted"] else previous.version)
        if not row["promoted"]:
            assert row["reason"] == f"kept {previous.version}: auc {auc:.4f} is worse than {previous.auc:.4f}"
        elif auc == previous.auc:  # refit from scratch on the same answers: a tie is not worse
            assert row["reason"] == f"auc {auc:.4f} equal to {previous.auc:.4f} of {previous.version}"


def test_the_steps_as_a_scheduler_calls_them(source, tmp_path: Path) -> None:
    dsn, _ = source
    lake_dir = tmp_path / "lake"
    report = extract(lake_dir, dsn, kind="sqlite", tenant="t", batch_rows=100)
    assert report.added == ATTEMPTS
    built = transform(lake_dir, "duckdb")
    assert not built.rebuilt and "up to date" in built.reason  # the extract's load built silver/gold
    rebuilt = transform(lake_dir, "duckdb", full=True)
    assert rebuilt.rebuilt and rebuilt.rows["interactions"] == ATTEMPTS and rebuilt.build_id != built.build_id
    training = train(lake_dir, ["elo", "item_rate"], "t", test_fraction=0.25, seed=3)
    assert [t.name for t in training.models] == ["elo", "item_rate"] and all(t.model for t in training.models)
    assert training.train.num_rows + training.test.num_rows == ATTEMPTS
    learners = [set(t.column("learner_id").to_pylist()) for t in (training.train, training.test)]
    assert not learners[0] & learners[1]
    assert training.data_window["test_fraction"] == 0.25 and training.data_window["seed"] == 3
    scores = evaluate(training)
    assert [s.name for s in scores] == ["elo", "item_rate"]
    published = publish(ModelRegistry(lake_dir), training, scores)
    assert [(p.model, p.version, p.promoted) for p in published] == [("elo", "v0001", True),
                                                                     ("item_rate", "v0001", True)]
    # the same answers give the same fingerprint; another split of them is other training data
    window = data_window(lake_dir, training.train, "t")
    assert window["answers"] == training.train.num_rows and window["fingerprint"] != training.data_window["fingerprint"]
    steps: list[PipelineStep] = []
    result = run_pipeline(lake_dir, models=["elo"], tenant="t", test_fraction=0.25, seed=3, on_step=steps.append)
    assert result.models[0].reason.startswith("no new answers since v0001")  # same data, split and params
    assert [s.stage for s in steps if s.message == "done"] == ["transform", "train", "evaluate", "publish"]
    assert json.loads(json.dumps(result.to_dict()))["models"][0]["version"] is None


def test_a_model_that_fails_is_reported_and_the_others_publish(source, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, _ = source

    def diverge(self, data, *, valid=None) -> None:
        raise ModelError("elo diverged on this data")

    monkeypatch.setattr(Elo, "_fit", diverge)
    result = runner.invoke(app, ["pipeline", "run", "--source-dsn", dsn, "--lake", str(tmp_path / "lake"),
                                 "--models", "elo,irt"])
    assert result.exit_code == 1, result.output
    assert "fit failed: elo diverged on this data" in result.output and "some models failed" in result.output
    registry = ModelRegistry(tmp_path / "lake")
    assert registry.versions("default", "elo") == [] and registry.promoted("default", "irt") is not None


def test_bad_input_is_a_clear_error(source, tmp_path: Path) -> None:
    dsn, _ = source
    lake_dir = tmp_path / "lake"

    def error(*args: str) -> BaseException:
        result = runner.invoke(app, ["pipeline", "run", *args])
        assert result.exception is not None, result.output
        return result.exception

    exc = error("--source-dsn", dsn, "--lake", str(lake_dir), "--models", "elo,nope")
    assert isinstance(exc, InputError) and "unknown model 'nope'" in str(exc)
    assert not lake_dir.exists()  # checked before anything was read or written
    with pytest.raises(InputError, match="unknown engine 'flink'; choose one of: duckdb, spark"):
        run_pipeline(lake_dir, source_dsn=dsn, engine="flink")
    assert not lake_dir.exists()
    exc = error("--no-extract", "--lake", str(lake_dir))
    assert isinstance(exc, InputError) and "has no loads yet" in str(exc)
    for args in ([], ["--source-dsn", dsn, "--no-extract"]):
        result = runner.invoke(app, ["pipeline", "run", "--lake", str(lake_dir), *args])
        assert result.exit_code == 2 and "exactly one of them" in result.output
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).execute("CREATE TABLE answers (id INTEGER)").connection.close()
    exc = error("--source-dsn", f"sqlite:///{bare}", "--lake", str(lake_dir))
    assert isinstance(exc, InputError) and "the source has no table attempts" in str(exc)
    invoke("pipeline", "run", "--source-dsn", dsn, "--lake", str(lake_dir), "--tenant", "s1", "--models", "elo")
    exc = error("--no-extract", "--lake", str(lake_dir), "--tenant", "s9")
    assert isinstance(exc, InputError) and "no answers for tenant 's9' (tenants with answers: s1)" in str(exc)
    init_source(f"sqlite:///{tmp_path / 'one.db'}", simulate=1)
    exc = error("--source-dsn", f"sqlite:///{tmp_path / 'one.db'}", "--lake", str(lake_dir), "--tenant", "solo")
    assert isinstance(exc, InputError) and "only one learner" in str(exc)


def test_the_command_line_reports_errors_in_one_line(source, tmp_path: Path) -> None:
    dsn, _ = source
    lake_dir = tmp_path / "lake"
    run_pipeline(lake_dir, source_dsn=dsn, models=["elo"], tenant="s1")
    script = ("import sys, knowtrace.cli.app as cli; "
              "assert 'pyspark' not in sys.modules, 'the Spark engine must load only when asked for'; "
              f"sys.argv = ['knowtrace', 'pipeline', 'run', '--no-extract', '--lake', {str(lake_dir)!r}]; cli.main()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr and "no answers for tenant 'default'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_spark_engine_rebuilds_the_same_silver(source, tmp_path: Path) -> None:
    pytest.importorskip("knowtrace.lake.spark_engine")
    dsn, _ = source
    lake_dir = tmp_path / "lake"
    result = run_pipeline(lake_dir, source_dsn=dsn, models=["elo"], engine="spark")
    try:
        assert result.engine == "spark" and result.transform is not None
        assert result.transform.engine == "spark" and result.transform.rows["interactions"] == ATTEMPTS
        assert Lake(lake_dir).current_build()["engine"] == "spark"  # type: ignore[index]
        rebuilt = transform(lake_dir, "duckdb")  # another engine: daily rebuilds too
        assert rebuilt.rebuilt and rebuilt.rows == result.transform.rows
        assert result.models[0].version == "v0001" and result.models[0].promoted
    finally:
        from knowtrace.lake.spark_engine import SparkEngine

        SparkEngine().stop()
