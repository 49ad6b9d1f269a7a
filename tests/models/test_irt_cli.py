"""``knowtrace irt fit`` / ``knowtrace irt abilities`` on a response-matrix CSV and on a lake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from knowtrace.cli.irt import app
from knowtrace.exceptions import InputError
from knowtrace.importers.matrix import MatrixImporter
from knowtrace.lake import Lake

LTM_B = [-3.360, -1.370, -0.280, -1.866, -3.124]
LTM_A = [0.825, 0.723, 0.890, 0.689, 0.657]


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.output)


@pytest.fixture(scope="module")
def lsat_csv(shared_data: Path) -> Path:
    return shared_data / "lsat" / "LSAT.csv"


@pytest.mark.realdata
def test_fit_csv_json(lsat_csv: Path) -> None:
    out = run("fit", str(lsat_csv), "--model", "2pl", "--json")
    assert out["model"] == "2pl" and out["n_learners"] == 1000 and out["excluded_items"] == []
    assert out["loglik"] == pytest.approx(-2466.65, abs=0.02)
    items = out["items"]
    np.testing.assert_allclose([i["b"] for i in items], LTM_B, atol=0.02)
    np.testing.assert_allclose([i["a"] for i in items], LTM_A, atol=0.02)
    for item in items:
        assert {"item_id", "a", "b", "c", "se_a", "se_b", "n_answers", "sx2_p", "infit", "outfit"} <= set(item)
        assert item["se_b"] > 0 and item["se_c"] is None and item["c"] == 0.0


@pytest.mark.realdata
def test_fit_lake_and_table_output(lsat_csv: Path, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.load(MatrixImporter(), lsat_csv)
    out = run("fit", str(tmp_path / "lake"), "--json", "--quadrature", "21", "--max-iter", "300")
    np.testing.assert_allclose([i["b"] for i in out["items"]], LTM_B, atol=0.02)
    assert "lake" in out["source"] and out["quadrature"].startswith("21-point")
    text = CliRunner().invoke(app, ["fit", "--lake", str(tmp_path / "lake"), "--model", "3pl"])
    assert text.exit_code == 0 and "log-likelihood" in text.output and "c (se)" in text.output
    missing = CliRunner().invoke(app, ["fit", "--lake", str(tmp_path / "lake"), "--tenant", "other"])
    assert isinstance(missing.exception, InputError) and missing.exception.field == "tenant"


def test_fit_reports_excluded_items_and_rejects_bad_cells(tmp_path: Path) -> None:
    rng = np.random.default_rng(51)
    x = (rng.random((200, 4)) < 0.6).astype(int)
    lines = ["q1,q2,q3,q4,easy,unused"] + [",".join(map(str, row)) + ",1," for row in x]
    good = tmp_path / "good.csv"
    good.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run("fit", str(good), "--json", "--model", "1pl")
    assert {(e["item_id"], e["reason"]) for e in out["excluded_items"]} == {
        ("easy", "every answer is correct"), ("unused", "no answers")}
    assert [i["item_id"] for i in out["items"]] == ["q1", "q2", "q3", "q4"]
    bad = tmp_path / "bad.csv"
    bad.write_text("q1,q2\n1,0\n0,3\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["fit", str(bad), "--json"])
    assert isinstance(result.exception, InputError)
    assert result.exception.field == "q2" and result.exception.line == 3


@pytest.mark.realdata
def test_abilities_from_saved_parameters(lsat_csv: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps(run("fit", str(lsat_csv), "--json")), encoding="utf-8")
    out = run("abilities", str(lsat_csv), "--method", "mle", "--params", str(params), "--json")
    learners = out["learners"]
    assert len(learners) == 1000 and out["method"] == "mle"
    perfect = [r for r in learners if r["theta"] == 4.0]
    assert perfect and all(r["at_bound"] and r["se"] > 0 for r in perfect)
    eap = run("abilities", str(lsat_csv), "--method", "eap", "--params", str(params), "--json")["learners"]
    assert all(r["se"] is not None and 0 < r["se"] < 1 for r in eap)
