"""``knowtrace source init`` and ``knowtrace extract postgres|sqlite`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from knowtrace.cli.batch import extract_app, source_app
from knowtrace.exceptions import InputError

# registered in knowtrace.cli.app the same way
app = typer.Typer()
app.add_typer(source_app, name="source")
app.add_typer(extract_app, name="extract")
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_sqlite_source_init_and_extract(tmp_path: Path) -> None:
    dsn, lake = f"sqlite:///{tmp_path / 'service.db'}", str(tmp_path / "lake")
    init = json.loads(invoke("source", "init", "--dsn", dsn, "--simulate", "2", "--json"))
    assert init["attempts"] == 2 * 6 * 3 * 12 and init["dialect"] == "sqlite"
    report = json.loads(invoke("extract", "sqlite", "--dsn", dsn, "--lake", lake, "--tenant", "s1",
                               "--batch-rows", "100", "--json"))
    assert (report["rows_read"], report["added"], report["tenant"]) == (init["attempts"], init["attempts"], "s1")
    out = invoke("extract", "sqlite", "--dsn", dsn, "--lake", lake, "--tenant", "s1")
    assert "up to date" in out and report["watermark"] in out
    # a second lake, filled through the text summary
    out = invoke("extract", "sqlite", "--dsn", dsn, "--lake", str(tmp_path / "lake2"))
    assert f"{init['attempts']:,} rows read" in out and "watermark: start ->" in out


def test_postgres_extract_summary_reports_rejections(pg_dsn: str, pg_exec, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    assert "648 attempts" in invoke("source", "init", "--dsn", pg_dsn, "--simulate", "3")
    pg_exec("ALTER TABLE attempts DROP CONSTRAINT attempts_item_id_fkey")
    pg_exec("INSERT INTO attempts (learner_id, item_id, correct, answered_at) "
            "VALUES ('sim-learner-0001', 'gone', true, now())")
    out = invoke("extract", "postgres", "--dsn", pg_dsn, "--lake", lake, "--batch-rows", "500")
    assert "649 rows read" in out and "1 rejected" in out and "unknown item" in out
    assert "quarantine" in out


def test_source_init_from_a_lake_and_usage_errors(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    dsn = f"sqlite:///{tmp_path / 'copy.db'}"
    invoke("source", "init", "--dsn", f"sqlite:///{tmp_path / 'a.db'}", "--simulate", "1")
    invoke("extract", "sqlite", "--dsn", f"sqlite:///{tmp_path / 'a.db'}", "--lake", str(lake))
    assert "filled it from lake" in invoke("source", "init", "--dsn", dsn, "--from-lake", str(lake))
    result = runner.invoke(app, ["source", "init", "--dsn", dsn, "--simulate", "1", "--from-lake", str(lake)])
    assert result.exit_code != 0 and "exactly one of" in result.output
    result = runner.invoke(app, ["extract", "postgres", "--dsn", dsn, "--lake", str(lake)])
    assert isinstance(result.exception, InputError) and "postgres extractor" in str(result.exception)


@pytest.mark.parametrize("args", [["--batch-rows", "0"], ["--lag", "-1"]])
def test_extract_option_bounds(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["extract", "sqlite", "--dsn", f"sqlite:///{tmp_path / 'x.db'}", *args])
    assert result.exit_code == 2
