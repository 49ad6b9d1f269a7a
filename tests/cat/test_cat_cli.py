"""``knowtrace cat simulate`` and ``knowtrace cat generate-bank`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowtrace.cat import ItemBank
from knowtrace.cli.cat import app
from knowtrace.exceptions import InputError

KEYS = {"rmse", "bias", "mean_length", "conditional", "max_exposure", "mean_exposure", "overlap", "select_ms",
        "estimate_ms"}


def invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_simulate_json_keys_and_determinism() -> None:
    args = ("simulate", "--bank-size", "120", "--examinees", "40", "--max-items", "12", "--selector", "kl",
            "--estimator", "map", "--stop", "se:0.3,max:30", "--exposure", "randomesque:4", "--seed", "3", "--json")
    out = invoke(*args)
    assert KEYS <= set(out)
    assert out["mean_length"] <= 12 and out["stopping"]["max_items"] == 12
    assert out["examinees"] == 40 and out["bank_size"] == 120
    for band in out["conditional"]:
        assert set(band) >= {"se", "bias", "rmse", "n"}
    again = invoke(*args)
    assert again["rmse"] == out["rmse"] and again["overlap"] == out["overlap"]


def test_simulate_on_the_same_people_from_csv_files(tmp_path: Path) -> None:
    bank_csv = tmp_path / "bank.csv"
    generated = CliRunner().invoke(app, ["generate-bank", str(bank_csv), "--size", "80", "--model", "3pl",
                                         "--seed", "2", "--json"])
    assert generated.exit_code == 0, generated.output
    assert json.loads(generated.stdout)["fingerprint"] == ItemBank.from_csv(bank_csv).fingerprint
    thetas = tmp_path / "thetas.csv"
    thetas.write_text("id,theta\n1,-1.5\n2,0.0\n3,0.4\n4,2.2\n")
    estimates = tmp_path / "est.csv"
    out = invoke("simulate", "--bank", str(bank_csv), "--thetas", str(thetas), "--max-items", "10",
                 "--estimator", "mle", "--estimates-out", str(estimates), "--json")
    assert out["examinees"] == 4 and out["mean_length"] == 10 and out["bank_size"] == 80
    lines = estimates.read_text().splitlines()
    assert lines[0] == "simulee,theta,theta_hat,se,length" and len(lines) == 5
    assert float(lines[4].split(",")[1]) == 2.2


def test_simulate_with_sympson_hetter_reports_its_calibration() -> None:
    out = invoke("simulate", "--bank-size", "60", "--examinees", "50", "--max-items", "5",
                 "--exposure", "sympson-hetter:0.4", "--sh-examinees", "100", "--sh-iterations", "3", "--json")
    assert out["exposure"] == "sympson-hetter"
    assert out["sympson_hetter"]["rounds"] >= 1 and out["sympson_hetter"]["max_exposure_by_round"][0] == 1.0


def test_simulate_prints_tables_without_json() -> None:
    result = CliRunner().invoke(app, ["simulate", "--bank-size", "50", "--examinees", "10", "--max-items", "5"])
    assert result.exit_code == 0, result.output
    assert "rmse" in result.stdout and "by true ability" in result.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--bank", "x.csv", "--bank-size", "10"], "bank"),
        (["--selector", "best"], "selector"),
        (["--estimator", "wle"], "estimator"),
        (["--stop", "se:nope"], "stop"),
        (["--exposure", "lottery"], "exposure"),
        (["--content", "area-1"], "content"),
    ],
)
def test_simulate_bad_options_are_input_errors(args: list[str], field: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "--bank-size", "30", "--examinees", "5", *args, "--json"])
    assert isinstance(result.exception, InputError), result.output
    assert result.exception.field == field


def test_simulate_balances_the_content_of_a_generated_bank() -> None:
    out = invoke("simulate", "--bank-size", "120", "--areas", "2", "--examinees", "20", "--max-items", "10",
                 "--content", "area-1=0.7,area-2=0.3", "--json")
    assert out["mean_length"] == 10
