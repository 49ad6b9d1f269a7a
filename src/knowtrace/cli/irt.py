"""``knowtrace irt fit`` and ``knowtrace irt abilities``: calibrate items and score learners from a
wide response-matrix CSV or from a lake's answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from knowtrace.cli.common import JsonOption, LakeOption, console, err_console, open_lake, print_json
from knowtrace.cli.importing import TenantOption
from knowtrace.constants import ABILITY_METHODS as METHODS
from knowtrace.constants import IRT_MODELS as MODELS
from knowtrace.exceptions import InputError

if TYPE_CHECKING:  # the IRT models (numpy, scipy) are imported when a command runs: a fast --help
    from knowtrace.models.irt.mml import Calibration
    from knowtrace.models.irt.params import ItemParameters
    from knowtrace.models.irt.response_matrix import ResponseMatrix

__all__ = ["app", "fit", "abilities"]

app = typer.Typer(help="Item response theory: calibrate items (MML or joint) and estimate learner abilities.",
                  no_args_is_help=True)

SourceArgument = Annotated[
    Path | None,
    typer.Argument(help="A wide response-matrix CSV (header = item ids, one row per learner, 0/1/empty) or a lake "
                        "folder; without it, the lake of --lake.", show_default=False),
]
ModelOption = Annotated[str, typer.Option("--model", help=f"IRT model: {', '.join(MODELS)}.")]
LearnerColumnOption = Annotated[
    str | None, typer.Option("--learner-column", help="CSV column holding learner ids (default: none, rows are "
                                                      "learners <file>:<n>).", show_default=False)]


def _is_lake(path: Path) -> bool:
    return (path / "_meta" / "lake.json").is_file()


def read_responses(source: Path | None, lake: Path | None, tenant: str,
                   learner_column: str | None = None) -> tuple[ResponseMatrix, str]:
    """The response matrix of a CSV or of a lake's answers (each learner's first answer to an item),
    and a description of where it came from."""
    from knowtrace.models.irt.response_matrix import ResponseMatrix

    if source is not None and not source.is_dir():
        return ResponseMatrix.from_csv(source, learner_column=learner_column), str(source)
    if source is not None and not _is_lake(source):
        raise InputError("is a folder but not a knowtrace lake (no _meta/lake.json) and not a CSV file", file=source)
    store = open_lake(source if source is not None else lake)
    table = store.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
    if table.num_rows == 0:
        raise InputError(f"the lake {store.root} has no answers for tenant {tenant!r}", field="tenant")
    return ResponseMatrix.from_table(table), f"lake {store.root} (tenant {tenant!r}, first answer per learner and item)"


def _calibrate(responses: ResponseMatrix, model: str, estimator: str, quadrature: int, max_iter: int, tol: float,
               prior_b_sd: float | None, prior_a_sdlog: float | None, show_progress: bool) -> Calibration:
    from knowtrace.models.irt.jml import JMLEstimator
    from knowtrace.models.irt.mml import MMLEstimator
    from knowtrace.models.irt.params import LogNormalPrior, NormalPrior

    if estimator == "mml":
        engine: MMLEstimator | JMLEstimator = MMLEstimator(
            model, n_quadrature=quadrature, max_iter=max_iter, tol=tol,
            prior_b=NormalPrior(0.0, prior_b_sd) if prior_b_sd is not None else None,
            prior_a=LogNormalPrior(0.0, prior_a_sdlog) if prior_a_sdlog is not None else None)
        unit = "EM cycles"
    elif estimator == "jml":
        engine = JMLEstimator(model, n_quadrature=quadrature, max_iter=max_iter,
                              **({"prior_b_sd": prior_b_sd} if prior_b_sd is not None else {}),
                              **({"prior_a_sdlog": prior_a_sdlog} if prior_a_sdlog is not None else {}))
        unit = "evaluations"
    else:
        raise InputError(f"unknown estimator {estimator!r}; use mml or jml", field="estimator")
    if not show_progress:
        return engine.fit(responses)
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                  TextColumn("{task.completed:,.0f} " + unit), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task(f"calibrating {model} ({estimator}) on {responses.n_learners:,} learners x "
                                 f"{responses.n_items:,} items", total=None, info="")

        def update(step: int, loglik: float, change: float) -> None:
            progress.update(task, completed=step, info=f"log-lik {loglik:,.2f}")

        return engine.fit(responses, progress=update)


def fit(
    source: SourceArgument = None,
    model: ModelOption = "2pl",
    estimator: Annotated[str, typer.Option("--estimator", help="mml (Bock–Aitkin EM) or jml (joint variational, "
                                                               "for very large logs).")] = "mml",
    lake: LakeOption = None,
    tenant: TenantOption = "default",
    quadrature: Annotated[int, typer.Option("--quadrature", help="Quadrature points on the ability scale.")] = 61,
    max_iter: Annotated[int, typer.Option("--max-iter", help="Most EM cycles (jml: L-BFGS iterations).")] = 500,
    tol: Annotated[float, typer.Option("--tol", help="Stop when no parameter moves more than this in a cycle.")] = 1e-5,
    prior_b_sd: Annotated[float | None, typer.Option("--prior-b-sd", help="SD of a N(0, sd²) prior on difficulties "
                                                                          "(default none).", show_default=False)] = None,
    prior_a_sdlog: Annotated[float | None, typer.Option("--prior-a-sdlog", help="sdlog of a lognormal(0, sdlog²) prior "
                                                        "on discriminations (default none).", show_default=False)] = None,
    learner_column: LearnerColumnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Calibrate item parameters (with standard errors and item fit) from a response-matrix CSV or a lake."""
    from knowtrace.models.irt.fit_stats import item_fit

    responses, where = read_responses(source, lake, tenant, learner_column)
    calibration = _calibrate(responses, model, estimator, quadrature, max_iter, tol, prior_b_sd, prior_a_sdlog,
                             show_progress=not as_json)
    answers, correct = responses.item_counts()
    counts = {item: (int(n), int(c)) for item, n, c in zip(responses.item_ids.tolist(), answers.tolist(),
                                                             correct.tolist())}
    stats = item_fit(responses, calibration.params, model=calibration.model).by_item()
    result = calibration.to_dict()
    result["source"] = where
    for row in result["items"]:
        n, c = counts[row["item_id"]]
        row.update({"n_answers": n, "p_correct": c / n if n else None, **stats[row["item_id"]]})
    if as_json:
        print_json(result)
        return
    _print_calibration(result)


def _fmt(value: Any, se: Any = None, digits: int = 3) -> str:
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    return f"{text} ({se:.{digits}f})" if se is not None else text


def _print_calibration(result: dict[str, Any]) -> None:
    model = result["model"]
    table = Table(title=f"{model} item parameters ({result['estimator']}), standard errors in parentheses")
    columns = ["item", "n", "p", "b (se)", "a (se)"]
    if model in ("3pl", "4pl"):
        columns.append("c (se)")
    if model == "4pl":
        columns.append("d (se)")
    columns += ["S-X² p", "infit", "outfit", "note"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("item", "note") else "right")
    for row in result["items"]:
        cells = [row["item_id"], f"{row['n_answers']:,}", _fmt(row["p_correct"]), _fmt(row["b"], row["se_b"]),
                 _fmt(row["a"], row["se_a"])]
        if model in ("3pl", "4pl"):
            cells.append(_fmt(row["c"], row["se_c"]))
        if model == "4pl":
            cells.append(_fmt(row["d"], row["se_d"]))
        cells += [_fmt(row["sx2_p"]), _fmt(row["infit"], digits=2), _fmt(row["outfit"], digits=2), row["flag"] or ""]
        table.add_row(*cells)
    console.print(table)
    console.print(f"log-likelihood {result['loglik']:,.3f} · {result['n_learners']:,} learners · "
                  f"{result['n_answers']:,} answers · {result['n_iter']} iterations "
                  f"({'converged' if result['converged'] else 'NOT converged'}) · {result['quadrature']} · "
                  f"SE: {result['se_method']} · {result['seconds']:.2f} s", highlight=False)
    if result["excluded_items"]:
        console.print("excluded items: " + ", ".join(f"{e['item_id']} ({e['reason']})"
                                                     for e in result["excluded_items"]), highlight=False)
    if result["excluded_learners"]:
        console.print(f"{result['excluded_learners']:,} learner(s) without answers on the calibrated items left out")
    console.print(f"source: {result['source']}", highlight=False)


def _read_params(path: Path) -> tuple[ItemParameters, str]:
    """Item parameters from the JSON that ``knowtrace irt fit --json`` prints."""
    from knowtrace.models.irt.params import ItemParameters

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        items = data["items"]
        params = ItemParameters.of([r["item_id"] for r in items], [r["a"] for r in items], [r["b"] for r in items],
                                   [r.get("c", 0.0) for r in items], [r.get("d", 1.0) for r in items])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not the JSON of `knowtrace irt fit --json`: {exc}", file=path) from None
    return params, str(data.get("model", "?"))


def abilities(
    source: SourceArgument = None,
    method: Annotated[str, typer.Option("--method", help=f"Ability estimator: {', '.join(METHODS)}.")] = "eap",
    model: ModelOption = "2pl",
    params: Annotated[Path | None, typer.Option("--params", help="Item parameters saved from `irt fit --json` "
                                                                 "(default: calibrate first).", show_default=False)] = None,
    lake: LakeOption = None,
    tenant: TenantOption = "default",
    bound: Annotated[float, typer.Option("--bound", help="MLE: estimates are kept within ±bound.")] = 4.0,
    learner_column: LearnerColumnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Estimate every learner's ability (EAP, MAP or MLE) with its standard error."""
    from knowtrace.models.irt.ability import estimate_abilities

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", field="method")
    responses, where = read_responses(source, lake, tenant, learner_column)
    if params is not None:
        items, model = _read_params(params)
    else:
        items = _calibrate(responses, model, "mml", 61, 500, 1e-5, None, None, show_progress=not as_json).params
    options = {"bounds": (-bound, bound)} if method == "mle" else {}
    estimates = estimate_abilities(responses, items, method, **options)
    rows = estimates.to_rows()
    if as_json:
        print_json({"model": model, "method": method, "source": where, "learners": rows})
        return
    table = Table(title=f"{method.upper()} abilities ({model})")
    for column in ("learner", "answers", "theta", "se", "note"):
        table.add_column(column, justify="left" if column in ("learner", "note") else "right")
    for row in rows:
        table.add_row(row["learner_id"], str(row["n_answers"]), _fmt(row["theta"]), _fmt(row["se"]),
                      "at bound" if row["at_bound"] else "")
    console.print(table)
    console.print(f"source: {where}", highlight=False)


app.command("fit")(fit)
app.command("abilities")(abilities)
