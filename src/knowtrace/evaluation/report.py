"""A self-contained HTML report of an evaluation: the metrics table and the figures, as one file."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from knowtrace import __version__
from knowtrace.evaluation import plots
from knowtrace.evaluation.metrics import auc
from knowtrace.evaluation.protocol import Scored

__all__ = ["REPORT_FILE", "write_report"]

REPORT_FILE = "report.html"

#: (result key, column header, lower is better)
_COLUMNS = (("auc", "AUC", False), ("acc", "accuracy", False), ("rmse", "RMSE", True), ("logloss", "log-loss", True),
            ("ece", "ECE", True), ("fit_seconds", "fit s", True), ("predict_seconds", "predict s", True))

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.92em; margin: 0.8em 0; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f5f5f5; } td.best { font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; max-width: 800px; }
.note { color: #555; font-size: 0.9em; }
"""


def _number(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _figure(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="note">No figure: {html.escape(alt)} has nothing to draw for this evaluation.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _split_summary(results: Sequence[dict[str, Any]]) -> str:
    if not results:
        return "no results"
    first = results[0]
    split = first.get("split", "holdout")
    sizes = f"{first.get('n_train', 0):,} train, {first.get('n_valid', 0):,} validation, {first.get('n_test', 0):,} test answers"
    if split == "kfold":
        return (f"k-fold (pyKT protocol): {first.get('test_fraction', 0.2):.0%} of learners held out as test, "
                f"{first.get('folds')}-fold cross-validation on the others (seed {first.get('seed')}); "
                f"metrics are the mean ± sample standard deviation over folds of each fold model's test scores; "
                f"per fold {sizes}")
    if split == "dkvmn":
        return f"fixed DKVMN split {first.get('dataset', '')} fold {first.get('fold', 1)}: {sizes}"
    return f"holdout by learner: {sizes}"


def _metrics_table(results: Sequence[dict[str, Any]]) -> str:
    best = {}
    for key, _, lower in _COLUMNS:
        if key.endswith("seconds"):
            continue
        values = [r[key] for r in results if isinstance(r.get(key), float) and not math.isnan(r[key])]
        if values:
            best[key] = min(values) if lower else max(values)
    head = "".join(f"<th>{label}</th>" for _, label, _ in _COLUMNS)
    body = []
    for result in results:
        cells = [f"<td>{html.escape(str(result['model']))}</td>"]
        for key, _, _ in _COLUMNS:
            value = result.get(key)
            text = _number(value, 2 if key.endswith("seconds") else 4)
            if f"{key}_std" in result:
                text += f" ± {_number(result[f'{key}_std'], 2 if key.endswith('seconds') else 4)}"
            cls = ' class="best"' if key in best and value == best[key] else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><tr><th>model</th>{head}</tr>{"".join(body)}</table>'


def _concept_table(results: Sequence[dict[str, Any]], concepts: int = 15) -> str:
    rows = [r for r in results if r.get("per_concept")]
    if not rows:
        return '<p class="note">The test answers carry no concepts, so there is no per-concept breakdown.</p>'
    first = sorted(rows[0]["per_concept"], key=lambda c: -c["n"])[:concepts]
    head = "".join(f"<th>{html.escape(str(r['model']))} AUC</th>" for r in rows)
    body = []
    for concept in first:
        cells = [f"<td>{html.escape(concept['concept_id'])}</td><td>{concept['n']:,}</td>"
                 f"<td>{_number(concept['correct_rate'], 3)}</td>"]
        for result in rows:
            by_id = {c["concept_id"]: c for c in result["per_concept"]}
            cells.append(f"<td>{_number(by_id.get(concept['concept_id'], {}).get('auc'))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><tr><th>concept</th><th>answers</th><th>correct rate</th>{head}</tr>{''.join(body)}</table>")


def _best(predictions: Sequence[Scored], aucs: dict[str, float]) -> Scored | None:
    ranked = [s for s in predictions if not math.isnan(aucs.get(s.name, float("nan")))]
    return max(ranked, key=lambda s: aucs[s.name]) if ranked else (predictions[0] if predictions else None)


def _model_aucs(results: Sequence[dict[str, Any]], predictions: Sequence[Scored]) -> dict[str, float]:
    """AUC of each kept prediction (the fold-1 model's in k-fold), by model name."""
    out = {}
    for run in predictions:
        out[run.name] = auc(run.y, run.p) if len(set(run.y.tolist())) > 1 else float("nan")
    for result in results:
        out.setdefault(result["model"], result.get("auc", float("nan")))
    return out


def write_report(results: Sequence[dict[str, Any]], predictions: Sequence[Scored], out_dir: str | Path, *,
                 title: str = "knowtrace evaluation") -> Path:
    """Write ``out_dir/report.html``: metrics table, ROC and calibration curves, item characteristic
    curves, a learner × concept mastery heatmap and per-concept AUC, images embedded. Returns its path.

    ``results`` and ``predictions`` are those of an ``Evaluation``. Models with a method
    ``item_characteristic(item_id, thetas) -> P(correct)`` also get their own curves drawn.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aucs = _model_aucs(results, predictions)
    best = _best(predictions, aucs)
    kfold = bool(results) and results[0].get("split") == "kfold"
    which = " of the fold-1 models" if kfold else ""

    sections = [f"<h1>{html.escape(title)}</h1>",
                f'<p class="meta">knowtrace {__version__} · generated '
                f'{datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} · {html.escape(_split_summary(results))}</p>',
                "<h2>Metrics on the test answers</h2>",
                _metrics_table(results) if results else '<p class="note">No results.</p>',
                '<p class="note">Every test answer is scored once, predicted from the training data and the '
                "learner's earlier answers only. AUC, accuracy (threshold 0.5), RMSE and log-loss of the "
                "probabilities; ECE: expected calibration error over 10 equal-width bins. Best value of each metric in bold.</p>"]

    sections += ["<h2>ROC curves</h2>",
                 _figure(plots.roc_plot(predictions, aucs), "ROC curves",
                         f"How well each model{which} ranks right answers above wrong ones; the area under each "
                         "curve is its AUC.")]
    sections += ["<h2>Calibration</h2>",
                 _figure(plots.calibration_plot(predictions), "calibration curves",
                         "When a model says 70%, are 70% of those answers right? Points on the diagonal are "
                         "well calibrated; below it the model is over-confident in success (bins with fewer than "
                         "20 answers are left out). Bottom: where each model's predictions fall.")]

    sections.append("<h2>Item characteristic curves</h2>")
    if best is not None:
        items = plots.top_items(best)
        sections.append(_figure(plots.empirical_icc_plot(best, items), "empirical item characteristic curves",
                                f"The {len(items)} most answered test items. Learners are binned by their ability "
                                f"as {html.escape(best.name)} (the best model by AUC) sees it; dots are the observed "
                                "correct rate on the item in each bin, the line the model's mean prediction."))
        for run in predictions:
            curve = getattr(run.model, "item_characteristic", None)
            if callable(curve):
                sections.append(_figure(plots.model_icc_plot(run, items, curve), f"{run.name} item curves",
                                        f"{html.escape(run.name)}'s own P(correct | ability) for the same items."))
    else:
        sections.append('<p class="note">No predictions to draw.</p>')

    sections.append("<h2>Mastery</h2>")
    if best is not None:
        sections.append(_figure(plots.mastery_heatmap(best), "mastery heatmap",
                                f"What {html.escape(best.name)} believes a sample of training learners know of "
                                "each concept (its <code>mastery(learner)</code>); grey: no estimate."))
    else:
        sections.append('<p class="note">No predictions to draw.</p>')
    sections += ["<h2>Per concept</h2>",
                 _figure(plots.concept_auc_plot(results), "per-concept AUC",
                         "AUC over the answers tagged with each concept. An answer with two concepts counts in "
                         "both rows: this is a breakdown, not the headline."),
                 _concept_table(results)]

    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
                + "\n".join(sections) + "</body></html>\n")
    path = out / REPORT_FILE
    path.write_text(document, encoding="utf-8")
    return path
