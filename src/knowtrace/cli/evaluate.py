"""``knowtrace eval``: fit learner models and score them on held-out learners, by any registered name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, open_lake, print_json
from knowtrace.cli.importing import TenantOption
from knowtrace.exceptions import InputError

if TYPE_CHECKING:  # the models, the protocol and the lake are imported when a command runs: a fast --help
    import pyarrow as pa

    from knowtrace.evaluation.protocol import Evaluation, Step
    from knowtrace.events.concept_graph import ConceptGraph
    from knowtrace.lake import Lake

__all__ = ["eval_models", "model_names"]

SPLITS = ("kfold", "holdout", "dkvmn")
_SHOWN = (("auc", "auc"), ("acc", "acc"), ("rmse", "rmse"), ("logloss", "logloss"), ("ece", "ece"),
          ("fit_seconds", "fit s"), ("predict_seconds", "predict s"))


def model_names(models: str) -> list[str]:
    """The registered model names of a comma-separated list (``all``: every registered model)."""
    from knowtrace.models import available_models, get_model_class

    names = [m.strip() for m in models.split(",") if m.strip()]
    if names == ["all"]:
        return available_models()
    if not names:
        raise InputError("--models needs at least one model name (see `knowtrace models`)", field="models")
    for name in names:
        get_model_class(name)
    if len(set(names)) != len(names):
        raise InputError(f"a model is named twice in --models {models!r}", field="models")
    return names


def _lake_interactions(lake: Lake, tenant: str) -> tuple[pa.Table, ConceptGraph | None]:
    """The tenant's silver answers and its concept prerequisite graph (None without concepts)."""
    from knowtrace.events.catalog import Concept
    from knowtrace.events.concept_graph import ConceptGraph

    table = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
    if table.num_rows == 0:
        raise InputError(f"the lake {lake.root} has no answers for tenant {tenant!r}", field="tenant")
    rows = lake.query("SELECT concept_id, name, prerequisites FROM concepts WHERE tenant = ?", [tenant]).to_pylist()
    graph = ConceptGraph([Concept(concept_id=r["concept_id"], tenant=tenant, name=r["name"],
                                  prerequisites=r["prerequisites"] or ()) for r in rows], tenant=tenant) if rows else None
    return table, graph


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[Step], None] | None]:
    """A progress bar on stderr over ``total`` fits and predictions; yields its ``on_step`` callback."""
    if not enabled:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=False) as progress:
        task = progress.add_task("evaluating", total=total)

        def on_step(step: Step) -> None:
            where = f"fold {step.fold}/{step.folds} · " if step.folds > 1 else ""
            if step.stage == "fit":
                progress.update(task, description=f"{where}fitting {step.model}")
            elif step.stage == "predict":
                progress.update(task, advance=1, description=f"{where}scoring {step.model}")
            else:
                progress.update(task, advance=1, description="evaluated")

        yield on_step


def _clean(value: Any) -> Any:
    """``value`` with NaN floats as None, so that the JSON is valid."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _cell(result: dict[str, Any], key: str) -> str:
    digits = 2 if key.endswith("seconds") else 4
    value = result.get(key)
    text = "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"
    std = result.get(f"{key}_std")
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _print_results(results: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for _, header in (("model", "model"), *_SHOWN):
        table.add_column(header, justify="left" if header == "model" else "right")
    for result in results:
        table.add_row(str(result["model"]), *(_cell(result, key) for key, _ in _SHOWN))
    console.print(table)


def eval_models(
    models: Annotated[str, typer.Option("--models", help="Comma-separated model names (see `knowtrace models`), "
                                                           "or `all`.")],
    directory: Annotated[Path | None, typer.Argument(metavar="[DIR]", show_default=False,
                                                     help="With --split dkvmn: the folder of DKVMN split files.")] = None,
    split: Annotated[str, typer.Option("--split", help="kfold: 20% of learners held out, k-fold cross-validation "
                                                        "on the rest (pyKT); holdout: one 80/20 learner split; "
                                                        "dkvmn DIR: the fixed DKVMN train/valid/test files in DIR.")
                     ] = "kfold",
    lake: LakeOption = None,
    tenant: TenantOption = "default",
    fold: Annotated[int, typer.Option("--fold", help="dkvmn: train on *_train K, validate on *_valid K.")] = 1,
    folds: Annotated[int, typer.Option("--folds", help="kfold: number of cross-validation folds.")] = 5,
    test_fraction: Annotated[float, typer.Option(help="kfold/holdout: share of learners held out as test.")] = 0.2,
    seed: Annotated[int, typer.Option(help="kfold/holdout: seed of the learner split.")] = 0,
    ids_are: Annotated[str | None, typer.Option(
        "--ids-are", show_default=False,
        help="dkvmn: whether the ids are items or concepts (default: concepts for a folder named assist2009*, "
             "else items).")] = None,
    concept_map: Annotated[Path | None, typer.Option(
        "--concept-map", show_default=False,
        help="dkvmn: item-to-concept map (default: DIR/Qmatrix.csv when present, as in STATICS).")] = None,
    report: Annotated[Path | None, typer.Option("--report", show_default=False,
                                                help="Also write an HTML report (ROC, calibration, item curves, "
                                                     "mastery) to DIR/report.html.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fit models on training learners and score every answer of the held-out learners once."""
    names = model_names(models)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; known: {', '.join(SPLITS)}", field="split")
    if split == "dkvmn" and directory is None:
        raise InputError("--split dkvmn needs the folder of the split files: knowtrace eval --split dkvmn DIR",
                         field="split")
    if split != "dkvmn" and directory is not None:
        raise InputError(f"a folder ({directory}) is only read with --split dkvmn", field="split")
    if split != "dkvmn" and (ids_are is not None or concept_map is not None):
        raise InputError("--ids-are and --concept-map only apply to --split dkvmn", field="split")
    if ids_are not in (None, "items", "concepts"):
        raise InputError(f"--ids-are must be items or concepts, got {ids_are!r}", field="ids_are")
    mode: Literal["items", "concepts"] | None = ids_are  # type: ignore[assignment]
    show = not as_json
    from knowtrace.evaluation.dkvmn_split import read_dkvmn_split
    from knowtrace.evaluation.protocol import evaluate_dkvmn, evaluate_holdout, evaluate_kfold

    evaluation: Evaluation
    if split == "dkvmn":
        assert directory is not None
        if show:
            with err_console.status(f"reading the DKVMN split in {directory}"):
                data = read_dkvmn_split(directory, fold=fold, ids_are=mode, concept_map=concept_map, tenant=tenant)
        else:
            data = read_dkvmn_split(directory, fold=fold, ids_are=mode, concept_map=concept_map, tenant=tenant)
        title = (f"{data.describe()}: train {data.train.num_rows:,}, valid {data.valid.num_rows:,}, "
                 f"test {data.test.num_rows:,} answers")
        with _progress(2 * len(names), show) as on_step:
            evaluation = evaluate_dkvmn(names, data, on_step=on_step)
    else:
        table, graph = _lake_interactions(open_lake(lake), tenant)
        if split == "kfold":
            title = (f"{tenant}: {table.num_rows:,} answers; {test_fraction:.0%} of learners held out, "
                     f"mean ± std over {folds} folds")
            with _progress(2 * len(names) * folds, show) as on_step:
                evaluation = evaluate_kfold(names, table, folds=folds, test_fraction=test_fraction, seed=seed,
                                            graph=graph, on_step=on_step)
        else:
            title = f"{tenant}: {table.num_rows:,} answers, {test_fraction:.0%} of learners held out"
            with _progress(2 * len(names), show) as on_step:
                evaluation = evaluate_holdout(names, table, test_fraction=test_fraction, seed=seed, graph=graph,
                                              on_step=on_step)

    written = None
    if report is not None:
        from knowtrace.evaluation.report import write_report

        written = write_report(evaluation.results, evaluation.predictions, report, title=f"knowtrace eval — {title}")
    if as_json:
        print_json(_clean(evaluation.results))
        return
    _print_results(evaluation.results, title)
    if written is not None:
        console.print(f"report: {written}")
