"""The quickstart: simulate a class, load it into the lake, evaluate every registered model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowtrace.evaluation.protocol import evaluate_holdout
from knowtrace.evaluation.report import write_report
from knowtrace.lake import Lake, LoadReport
from knowtrace.models import available_models
from knowtrace.simulate import ClassroomSimulator

__all__ = ["QUICKSTART_TENANT", "QuickstartResult", "run_quickstart"]

#: the simulated class lives in its own tenant, so it never mixes with real data in the same lake
QUICKSTART_TENANT = "quickstart-simulated"


@dataclass
class QuickstartResult:
    """What the quickstart loaded and how each model scored on held-out learners."""

    load: LoadReport
    answers: int
    learners: int
    items: int
    concepts: int
    results: list[dict[str, Any]]
    report: Path | None = None


def run_quickstart(
    lake: Lake,
    *,
    learners: int = 300,
    weeks: int = 6,
    seed: int = 0,
    models: list[str] | None = None,
    on_load_progress: Callable[[int], None] | None = None,
    on_model: Callable[[str, str], None] | None = None,
    report_dir: str | Path | None = None,
) -> QuickstartResult:
    """Load a simulated class into ``lake`` (tenant ``quickstart-simulated``) and evaluate ``models``
    (default: every registered model) with a learner split: 20% of learners held out, each of
    their answers predicted from their earlier answers only."""
    simulator = ClassroomSimulator(tenant=QUICKSTART_TENANT, learners=learners, weeks=weeks, seed=seed)
    report = lake.load(simulator, None, on_progress=on_load_progress)
    table = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position",
                       [QUICKSTART_TENANT])
    sizes = lake.query(
        "SELECT (SELECT count(DISTINCT learner_id) FROM interactions WHERE tenant = $1) AS learners, "
        "(SELECT count(*) FROM items WHERE tenant = $1) AS items, "
        "(SELECT count(*) FROM concepts WHERE tenant = $1) AS concepts", [QUICKSTART_TENANT]
    ).to_pylist()[0]
    evaluation = evaluate_holdout(models or available_models(), table, seed=seed,
                                  graph=lake.concept_graph(QUICKSTART_TENANT),
                                  on_step=(lambda step: on_model(step.model, step.stage)) if on_model else None)
    results = sorted(evaluation.results, key=lambda r: -r["auc"])
    report_path = None
    if report_dir is not None:
        report_path = write_report(results, evaluation.predictions, report_dir,
                                   title="knowtrace quickstart — SIMULATED class, held-out learners")
    return QuickstartResult(load=report, answers=table.num_rows, learners=sizes["learners"], items=sizes["items"],
                            concepts=sizes["concepts"], results=results, report=report_path)
