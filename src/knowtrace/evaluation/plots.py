"""The figures of the evaluation report, rendered to PNG bytes with matplotlib's Agg canvas.

matplotlib is imported inside the functions (importing knowtrace stays fast) and never through
pyplot, so no global backend is set or changed. Every function returns None when its data gives
nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from knowtrace.evaluation.metrics import reliability, roc_curve
from knowtrace.evaluation.per_concept import concept_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from knowtrace.evaluation.protocol import Scored

__all__ = [
    "calibration_plot",
    "concept_auc_plot",
    "empirical_icc_plot",
    "learner_ability",
    "mastery_heatmap",
    "model_icc_plot",
    "roc_plot",
    "top_items",
]

_CURVE_POINTS = 2000


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _colour(index: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab10"](index % 10)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ``_CURVE_POINTS`` points of a curve, ends kept."""
    if len(x) <= _CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, _CURVE_POINTS).round().astype(np.int64))
    return x[keep], y[keep]


def roc_plot(scored: Sequence[Scored], aucs: dict[str, float]) -> bytes | None:
    """ROC curves of every model on the same axes, labelled with their AUC."""
    if not scored or len(np.unique(scored[0].y)) < 2:
        return None
    figure = _figure(6.4, 5.6)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    for index, run in enumerate(scored):
        fpr, tpr = _thin(*roc_curve(run.y, run.p))
        axes.plot(fpr, tpr, color=_colour(index), linewidth=1.8,
                  label=f"{run.name} (AUC {aucs.get(run.name, float('nan')):.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1.005), xlabel="false positive rate (wrong answers predicted right)",
             ylabel="true positive rate (right answers predicted right)", title="ROC curves, test answers")
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def calibration_plot(scored: Sequence[Scored], bins: int = 10, min_answers: int = 20) -> bytes | None:
    """Reliability diagram (observed correct rate against mean prediction in each probability bin
    with at least ``min_answers`` answers) and the distribution of each model's predictions below it."""
    if not scored:
        return None
    figure = _figure(6.4, 7.2)
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1.2], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for index, run in enumerate(scored):
        count, observed, predicted = reliability(run.y, run.p, bins)
        filled = count >= max(min_answers, 1)
        top.plot(predicted[filled], observed[filled], marker="o", color=_colour(index), linewidth=1.5,
                 markersize=4, label=run.name)
        bottom.stairs(count / count.sum(), edges, color=_colour(index), linewidth=1.5)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed correct rate",
            title=f"Calibration ({bins} equal-width bins of the prediction)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="predicted P(correct)", ylabel="share of answers")
    bottom.grid(alpha=0.3)
    return _png(figure)


def top_items(run: Scored, count: int = 6) -> list[str]:
    """The ``count`` items with the most test answers (ties by id)."""
    items = np.asarray(run.test.column("item_id").to_numpy(zero_copy_only=False), dtype=str)
    ids, counts = np.unique(items, return_counts=True)
    order = np.lexsort((ids, -counts))[:count]
    return ids[order].tolist()


def learner_ability(run: Scored) -> np.ndarray:
    """For every test answer, its learner's mean predicted P(correct) over all their test answers:
    the model's estimate of the learner's overall ability, on the probability scale."""
    learners = np.asarray(run.test.column("learner_id").to_numpy(zero_copy_only=False), dtype=str)
    _, code = np.unique(learners, return_inverse=True)
    mean = np.bincount(code, weights=run.p) / np.bincount(code)
    return mean[code]


def empirical_icc_plot(run: Scored, items: Sequence[str], bins: int = 6, min_answers: int = 5) -> bytes | None:
    """Empirical item characteristic curves: for each item, the observed correct rate (dots, sized
    by answers) and the model's mean prediction (line) in quantile bins of the learners' ability."""
    if not items:
        return None
    ability = learner_ability(run)
    item_of = np.asarray(run.test.column("item_id").to_numpy(zero_copy_only=False), dtype=str)
    edges = np.unique(np.quantile(ability, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return None
    columns = min(3, len(items))
    rows = -(-len(items) // columns)
    figure = _figure(3.3 * columns, 2.9 * rows + 0.4)
    grid = np.atleast_1d(figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
    drawn = 0
    for axes, item in zip(grid, items):
        mask = item_of == item
        which = np.clip(np.searchsorted(edges, ability[mask], side="right") - 1, 0, len(edges) - 2)
        n = np.bincount(which, minlength=len(edges) - 1)
        ok = n >= min_answers
        if not ok.any():
            axes.set_visible(False)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.bincount(which, weights=ability[mask], minlength=len(n)) / n
            observed = np.bincount(which, weights=run.y[mask], minlength=len(n)) / n
            predicted = np.bincount(which, weights=run.p[mask], minlength=len(n)) / n
        axes.scatter(x[ok], observed[ok], s=12 + 60 * n[ok] / n.max(), color="black", zorder=3, label="observed")
        axes.plot(x[ok], predicted[ok], color=_colour(0), linewidth=1.8, label=f"{run.name} mean prediction")
        axes.set_title(f"item {item} ({int(mask.sum())} answers)", fontsize=9)
        axes.set(ylim=(0, 1.02))
        axes.grid(alpha=0.3)
        drawn += 1
    for axes in grid[len(items):]:
        axes.set_visible(False)
    if drawn == 0:
        return None
    figure.supxlabel(f"learner ability: mean predicted P(correct) over the learner's test answers ({run.name})",
                     fontsize=9)
    figure.supylabel("P(correct) on the item", fontsize=9)
    handles, labels = next(a for a in grid if a.get_visible()).get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=2, fontsize=8)
    return _png(figure)


def model_icc_plot(run: Scored, items: Sequence[str], curve: Callable[[str, np.ndarray], Any]) -> bytes | None:
    """The model's own item characteristic curves ``curve(item_id, thetas)`` over ability -4..4."""
    thetas = np.linspace(-4.0, 4.0, 161)
    figure = _figure(6.4, 4.6)
    axes = figure.add_subplot()
    drawn = 0
    for index, item in enumerate(items):
        try:
            p = np.asarray(curve(item, thetas), dtype=np.float64)
        except (KeyError, ValueError):  # an item the model has no parameters for
            continue
        if p.shape != thetas.shape or not np.all(np.isfinite(p)):
            continue
        axes.plot(thetas, p, color=_colour(index), linewidth=1.8, label=f"item {item}")
        drawn += 1
    if drawn == 0:
        return None
    axes.set(xlim=(-4, 4), ylim=(0, 1), xlabel="ability θ", ylabel="P(correct)",
             title=f"{run.name}: item characteristic curves")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return _png(figure)


def mastery_heatmap(run: Scored, learners: int = 25, concepts: int = 20, seed: int = 0) -> bytes | None:
    """Learner × concept mastery, ``run.model.mastery(learner)``, for a seeded sample of the training
    learners and the concepts with the most test answers."""
    if not run.train_learners:
        return None
    pool = np.asarray(run.train_learners, dtype=str)
    chosen = sorted(np.random.default_rng(seed).choice(pool, size=min(learners, len(pool)), replace=False).tolist())
    mastery = {learner: run.model.mastery(learner) for learner in chosen}
    known = sorted({c for m in mastery.values() for c in m})
    if not known:
        return None
    _, tagged = concept_rows(run.test)
    ids, counts = np.unique(tagged, return_counts=True)
    ranked = [str(c) for c in ids[np.lexsort((ids, -counts))] if str(c) in set(known)]
    columns = (ranked or known)[:concepts]
    values = np.array([[mastery[lr].get(c, (np.nan, None))[0] for c in columns] for lr in chosen], dtype=np.float64)
    figure = _figure(1.6 + 0.38 * len(columns) + 2.2, 1.4 + 0.26 * len(chosen))
    axes = figure.add_subplot()
    from matplotlib import colormaps

    image = axes.imshow(np.ma.masked_invalid(values), cmap=colormaps["viridis"].with_extremes(bad="0.85"), vmin=0, vmax=1, aspect="auto",
                        interpolation="nearest")
    axes.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
    axes.set_yticks(range(len(chosen)), chosen, fontsize=7)
    axes.set(xlabel="concept (most answered first)", ylabel="learner (training sample)",
             title=f"{run.name}: mastery of {len(chosen)} learners")
    figure.colorbar(image, ax=axes, label="P(correct) on a typical item of the concept", shrink=0.8)
    return _png(figure)


def concept_auc_plot(results: Sequence[dict[str, Any]], concepts: int = 20) -> bytes | None:
    """Per-concept AUC of every model for the concepts with the most test answers."""
    rows = [r for r in results if r.get("per_concept")]
    if not rows:
        return None
    first = sorted(rows[0]["per_concept"], key=lambda c: -c["n"])[:concepts]
    names = [c["concept_id"] for c in first]
    figure = _figure(7.6, 1.4 + 0.28 * len(names))
    axes = figure.add_subplot()
    y = np.arange(len(names))
    for index, result in enumerate(rows):
        by_id = {c["concept_id"]: c["auc"] for c in result["per_concept"]}
        x = np.array([by_id.get(name, np.nan) for name in names], dtype=np.float64)
        axes.scatter(x, y, color=_colour(index), s=22, label=result["model"], zorder=3)
    axes.axvline(0.5, color="0.6", linestyle="--", linewidth=1)
    axes.set_yticks(y, [f"{c['concept_id']} (n={c['n']})" for c in first], fontsize=7)
    axes.invert_yaxis()
    axes.set(xlabel="AUC over the answers tagged with the concept", title="Per-concept AUC (most answered concepts)")
    axes.grid(alpha=0.3, axis="x")
    figure.legend(fontsize=8, loc="outside right upper")
    return _png(figure)
