from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from knowtrace.cli.app import app

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_simulate_status_rebuild_and_models(tmp_path: Path) -> None:
    lake = str(tmp_path / "L")
    report = json.loads(invoke("simulate", "--learners", "20", "--weeks", "1", "--lake", lake, "--json"))
    assert report["events"] == 20 * 3 * 12 and report["rejected"] == 0 and report["concepts"] == 8
    status = json.loads(invoke("lake", "status", "--lake", lake, "--json"))
    assert status["interactions"] == report["events"] and status["learners"] == 20 and status["loads"] == 1
    assert "gold.item_stats" in invoke("lake", "rebuild", "--lake", lake)
    models = json.loads(invoke("models", "--json"))
    assert {"elo", "item_rate", "pfa"} <= {m["model"] for m in models}
    scores = json.loads(invoke("eval", "--models", "item_rate,elo", "--tenant", "simulated", "--lake", lake, "--json"))
    assert [s["model"] for s in scores] == ["item_rate", "elo"] and all(0 < s["auc"] < 1 for s in scores)


def test_sql_prints_tables_and_limits(tmp_path: Path) -> None:
    lake = str(tmp_path / "L")
    invoke("simulate", "--learners", "5", "--weeks", "1", "--lake", lake)
    out = invoke("sql", "SELECT learner_id FROM interactions", "--lake", lake, "--limit", "3")
    assert "more rows" in out
