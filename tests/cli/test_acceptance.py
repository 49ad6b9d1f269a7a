"""The foundation's acceptance checks, run through the command line as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.realdata


def knowtrace(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "knowtrace", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"knowtrace {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def counts(lake: Path) -> dict:
    out = knowtrace("sql", "SELECT count(*) AS n, count(DISTINCT learner_id) AS learners FROM interactions",
                    "--lake", str(lake), "--json").stdout
    return json.loads(out)[0]


def test_assist2009_import_counts_and_idempotence(shared_data: Path, tmp_path: Path) -> None:
    lake = tmp_path / "L"
    folder = shared_data / "assist2009_updated"
    knowtrace("import", "dkvmn", str(folder / "assist2009_updated_train.csv"), "--lake", str(lake))
    assert counts(lake) == {"n": 224218, "learners": 2921}
    again = knowtrace("import", "dkvmn", str(folder / "assist2009_updated_train.csv"), "--lake", str(lake))
    assert "0 rows added" in again.stdout
    assert counts(lake) == {"n": 224218, "learners": 2921}
    knowtrace("import", "dkvmn", str(folder / "assist2009_updated_test.csv"), "--lake", str(lake))
    assert counts(lake) == {"n": 325637, "learners": 4151}


def test_corrupted_answer_line_quarantines_one_learner(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "assist2009_updated" / "assist2009_updated_test.csv").read_text().splitlines()
    lines[5] = lines[5].replace("1", "x", 1) if "1" in lines[5] else "x" + lines[5][1:]  # learner 2's answers
    broken = tmp_path / "broken_test.csv"
    broken.write_text("\n".join(lines) + "\n")
    lake = tmp_path / "L"
    result = knowtrace("import", "dkvmn", str(broken), "--lake", str(lake), "--json")
    report = json.loads(result.stdout)
    assert report["rejected"] == 1
    assert counts(lake)["learners"] == 1229
    bad = json.loads(knowtrace("sql", "SELECT line, field, reason FROM quarantine", "--lake", str(lake),
                               "--json").stdout)
    assert bad == [{"line": 6, "field": "answers", "reason": bad[0]["reason"]}]
    assert "expected 0 or 1" in bad[0]["reason"] and "broken_test:2" in bad[0]["reason"]


def test_env_variable_names_the_lake(shared_data: Path, tmp_path: Path) -> None:
    lake = tmp_path / "from-env"
    env_run = subprocess.run(
        [sys.executable, "-m", "knowtrace", "import", "dkvmn",
         str(shared_data / "STATICS" / "STATICS_test.csv"), "--json"],
        capture_output=True, text=True, env={**__import__("os").environ, "KNOWTRACE_LAKE": str(lake)}, timeout=600,
    )
    assert env_run.returncode == 0, env_run.stderr
    assert json.loads(env_run.stdout)["lake"] == str(lake.absolute())
    assert counts(lake) == {"n": 59113, "learners": 104}


def test_errors_are_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    missing = knowtrace("import", "dkvmn", str(tmp_path / "nope.csv"), "--lake", str(tmp_path / "L"), check=False)
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_sql = knowtrace("sql", "SELECT * FROM nowhere", "--lake", str(tmp_path / "L"), check=False)
    assert bad_sql.returncode == 2 and "nowhere" in bad_sql.stderr


def test_every_command_has_help() -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from knowtrace.cli.app import app

    root = get_command(app)
    paths = [[]]
    stack = [([], root)]
    while stack:
        prefix, command = stack.pop()
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            stack.append(([*prefix, name], sub))
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path
    assert len(paths) >= 15


def test_lsat_matrix_import(shared_data: Path, tmp_path: Path) -> None:
    lake = tmp_path / "L"
    knowtrace("import", "matrix", str(shared_data / "lsat" / "LSAT.csv"), "--lake", str(lake))
    out = knowtrace("sql", "SELECT count(*) AS n, count(DISTINCT learner_id) AS learners, "
                    "count(DISTINCT item_id) AS items FROM interactions", "--lake", str(lake), "--json").stdout
    assert json.loads(out) == [{"n": 5000, "learners": 1000, "items": 5}]


def test_quickstart_runs_and_reports_every_model(tmp_path: Path) -> None:
    lake = tmp_path / "Q"
    registered = [m["model"] for m in json.loads(knowtrace("models", "--json").stdout)]
    report = tmp_path / "report"
    result = json.loads(knowtrace("quickstart", "--lake", str(lake), "--learners", "120", "--report", str(report),
                                  "--json").stdout)
    html = (report / "report.html").read_text()
    assert result["report"] == str(report / "report.html")
    assert "ROC curves" in html and "Mastery" in html and html.count("data:image/png;base64,") >= 4
    assert result["answers"] == 120 * 6 * 3 * 12 and result["learners"] == 120
    assert sorted(r["model"] for r in result["results"]) == sorted(registered)
    by_model = {r["model"]: r for r in result["results"]}
    assert by_model["elo"]["auc"] > by_model["item_rate"]["auc"] > by_model["global_rate"]["auc"]
    again = json.loads(knowtrace("quickstart", "--lake", str(lake), "--learners", "120", "--report", str(report),
                                 "--json").stdout)
    assert again["answers"] == result["answers"]  # the simulated class is not loaded twice
    table = knowtrace("quickstart", "--lake", str(lake), "--learners", "120", "--report", str(report)).stdout
    assert "SIMULATED" in table and "elo" in table and "auc" in table


def test_csv_import_with_column_options(tmp_path: Path) -> None:
    source = tmp_path / "answers.csv"
    source.write_text("user,question,ok,ts\nu1,q1,1,1700000000\nu1,q2,x,1700000100\n")
    lake = tmp_path / "L"
    report = json.loads(knowtrace("import", "csv", str(source), "--column", "learner_id=user", "--column",
                                  "item_id=question", "--column", "correct=ok", "--column", "timestamp=ts",
                                  "--timestamp-unit", "s", "--lake", str(lake), "--json").stdout)
    assert (report["events"], report["rejected"]) == (1, 1)
    bad = knowtrace("import", "csv", str(source), "--column", "learner", "--lake", str(lake), check=False)
    assert bad.returncode == 2 and "FIELD=COLUMN" in bad.stderr
