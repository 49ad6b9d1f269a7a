"""``knowtrace registry list|show|promote``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowtrace.cli.app import app
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.models import get_model
from knowtrace.registry import ModelRegistry, PromotionRefused

runner = CliRunner()
ANSWERS = [(f"l{n}", f"i{k}", (f"c{k % 3}",), int((n * k) % 4 != 0)) for n in range(5) for k in range(6)]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture
def registry(lake: Lake, make_table) -> ModelRegistry:
    registry = ModelRegistry(lake.root)
    table = make_table(ANSWERS)
    window = {"first_timestamp": "2026-03-01T08:00:00+00:00", "last_timestamp": "2026-03-09T17:00:00+00:00",
              "answers": len(ANSWERS)}
    for tenant, name, auc in (("s1", "elo", 0.71), ("s1", "elo", 0.69), ("s1", "irt", 0.66), ("s2", "elo", 0.5)):
        registry.register(get_model(name).fit(table), tenant=tenant, data_window=window,
                          metrics={"auc": auc, "acc": 0.7, "n": 12})
    registry.promote("s1", "elo", 1)
    return registry


def test_list_and_show(registry: ModelRegistry) -> None:
    lake = str(registry.lake_root)
    rows = json.loads(invoke("registry", "list", "--lake", lake, "--json"))
    assert [(r["tenant"], r["model"], r["version"], r["promoted"]) for r in rows] == [
        ("s1", "elo", "v0001", True), ("s1", "elo", "v0002", False), ("s1", "irt", "v0001", False),
        ("s2", "elo", "v0001", False)]
    assert rows[0]["metrics"]["auc"] == 0.71 and rows[0]["data_window"]["answers"] == len(ANSWERS)
    out = invoke("registry", "list", "--lake", lake, "--tenant", "s1", "--model", "elo")
    assert "v0002" in out and "* promoted" in out and "0.7100" in out and "2026-03-01 .. 2026-03-09" in out
    assert "irt" not in out and "s2" not in out
    shown = json.loads(invoke("registry", "show", "elo", "--tenant", "s1", "--lake", lake, "--json"))
    assert shown["version"] == "v0001" and shown["promoted"] and Path(shown["path"], "model.json").is_file()
    out = invoke("registry", "show", "elo", "2", "--tenant", "s1", "--lake", lake)
    assert "elo v0002" in out and "auc: 0.69" in out and "promoted" not in out.splitlines()[0]
    result = runner.invoke(app, ["registry", "show", "irt", "--tenant", "s1", "--lake", lake])
    assert isinstance(result.exception, InputError) and "has no promoted version" in str(result.exception)


def test_promote_refuses_worse_and_forces(registry: ModelRegistry) -> None:
    lake = str(registry.lake_root)
    result = runner.invoke(app, ["registry", "promote", "elo", "v0002", "--tenant", "s1", "--lake", lake])
    assert isinstance(result.exception, PromotionRefused)
    assert "0.6900 is worse than 0.7100 of the promoted v0001" in str(result.exception)
    out = invoke("registry", "promote", "elo", "v0002", "--tenant", "s1", "--lake", lake, "--force")
    assert "promoted elo v0002" in out and "replaces v0001" in out and "forced" in out
    assert registry.promoted("s1", "elo").version == "v0002"  # type: ignore[union-attr]
    assert "unchanged" in invoke("registry", "promote", "elo", "2", "--tenant", "s1", "--lake", lake)
    data = json.loads(invoke("registry", "promote", "irt", "1", "--tenant", "s1", "--lake", lake, "--json"))
    assert (data["version"], data["previous"], data["reason"]) == ("v0001", None, "first promoted version")
    result = runner.invoke(app, ["registry", "promote", "elo", "9", "--tenant", "s1", "--lake", lake])
    assert isinstance(result.exception, InputError) and "no version v0009" in str(result.exception)


def test_not_a_lake(tmp_path: Path) -> None:
    result = runner.invoke(app, ["registry", "list", "--lake", str(tmp_path / "none")])
    assert isinstance(result.exception, InputError) and "is not a knowtrace lake" in str(result.exception)
    lake = Lake(tmp_path / "empty")
    assert "no model registered" in invoke("registry", "list", "--lake", str(lake.root))
