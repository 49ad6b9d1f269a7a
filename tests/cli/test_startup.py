"""``knowtrace --help`` and every sub-command's ``--help`` start fast: they import no heavy package.

The command modules import the numerical, storage and server packages inside the commands that use
them; these tests check what a fresh interpreter has imported, not how long it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: packages (and their sub-modules) that showing help must not import
HEAVY = (
    "scipy", "numpy", "pyarrow", "duckdb", "torch", "sklearn", "psycopg", "pyspark", "fastapi",
    "knowtrace.models",  # includes knowtrace.models.irt (scipy.stats)
    "knowtrace.evaluation", "knowtrace.lake", "knowtrace.batch", "knowtrace.cat",
)

_EVERY_HELP = """
import json, sys
import typer
from typer.testing import CliRunner
from knowtrace.cli.app import app

SAMPLE = set(json.loads(sys.argv[1]))
runner = CliRunner()
commands, shown, failed = [], [], []

def walk(command, path):
    commands.append(" ".join(path))
    group = hasattr(command, "commands")
    if group or " ".join(path) in SAMPLE:  # rendering more leaves imports nothing new, it only takes time
        result = runner.invoke(app, [*path, "--help"])
        (shown if result.exit_code == 0 and "Usage" in result.output else failed).append(" ".join(path))
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        walk(sub, [*path, name])

walk(typer.main.get_command(app), [])  # builds every command: typer reads each signature's annotations
print(json.dumps({"commands": commands, "shown": shown, "failed": failed, "modules": sorted(sys.modules)}))
"""


def _heavy(modules: set[str] | list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_knowtrace_help_imports_no_heavy_package(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "knowtrace", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage" in done.stdout and "irt" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"knowtrace.cli.app", "knowtrace.cli.irt", "typer"} <= imported  # the lines were read
    assert _heavy(imported) == []


def test_every_subcommand_help_imports_no_heavy_package(tmp_path: Path) -> None:
    leaves = {"irt fit", "irt abilities", "cat simulate", "import csv", "extract postgres", "source init",
              "pipeline run", "pipeline step train", "registry promote", "keys create", "lake rebuild", "eval",
              "models", "quickstart", "serve", "sql"}
    done = subprocess.run([sys.executable, "-c", _EVERY_HELP, json.dumps(sorted(leaves))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failed"] == []
    assert leaves | {"", "irt", "cat", "pipeline", "pipeline step"} <= set(report["shown"])
    assert len(report["commands"]) > 40
    assert _heavy(report["modules"]) == []
