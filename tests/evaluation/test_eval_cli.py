"""``knowtrace eval``: JSON shape for every split, the table, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from knowtrace.cli.evaluate import eval_models, model_names
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.models import available_models
from knowtrace.simulate import ClassroomSimulator

app = typer.Typer()
app.command()(eval_models)
runner = CliRunner()
KEYS = {"model", "auc", "acc", "rmse", "logloss", "ece", "fit_seconds", "predict_seconds", "n_train", "n_test",
        "split", "per_concept"}


@pytest.fixture(scope="module")
def sim_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-cli") / "lake"
    Lake(path).load(ClassroomSimulator(tenant="sim", learners=40, weeks=2, seed=2), None)
    return path


def test_dkvmn_json(dkvmn_folder: Path) -> None:
    result = runner.invoke(app, ["--models", "global_rate,elo", "--split", "dkvmn", str(dkvmn_folder), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no progress display with --json
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["global_rate", "elo"]
    for row in rows:
        assert KEYS <= set(row) and row["split"] == "dkvmn" and row["fold"] == 1
        assert isinstance(row["per_concept"], list) and 0 <= row["acc"] <= 1


def test_kfold_json_and_table(sim_lake: Path) -> None:
    result = runner.invoke(app, ["--models", "item_rate,elo", "--lake", str(sim_lake), "--tenant", "sim",
                                 "--folds", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        assert KEYS <= set(row) and row["split"] == "kfold" and row["folds"] == 3 and len(row["fold_results"]) == 3
        assert {"auc_std", "acc_std", "fit_seconds_std"} <= set(row)
        assert row["per_concept"] and {"concept_id", "n", "auc"} <= set(row["per_concept"][0])
    table = runner.invoke(app, ["--models", "elo", "--lake", str(sim_lake), "--tenant", "sim", "--split", "holdout"])
    assert table.exit_code == 0 and "elo" in table.stdout and "auc" in table.stdout


def test_nan_is_written_as_null(sim_lake: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--models", "global_rate", "--lake", str(sim_lake), "--tenant", "sim", "--split",
                                 "holdout", "--json", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["auc"] == 0.5 and (tmp_path / "r" / "report.html").is_file()
    assert "NaN" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "elo", "--split", "dkvmn"], "needs the folder"),
    (["--models", "elo", "--split", "nope"], "unknown split"),
    (["--models", "elo", "somewhere"], "only read with --split dkvmn"),
    (["--models", "elo", "--ids-are", "concepts"], "only apply to --split dkvmn"),
    (["--models", "no-such-model"], "unknown model"),
])
def test_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, InputError) and message in str(result.exception)


def test_model_names() -> None:
    assert model_names("all") == available_models()
    assert model_names(" elo, pfa ") == ["elo", "pfa"]
    with pytest.raises(InputError, match="twice"):
        model_names("elo,elo")
