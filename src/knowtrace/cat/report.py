"""The diagnosis: overall level, level per concept from the items' concept tags, and the convergence
of the estimate item by item, as a pydantic result and as a self-contained HTML report."""

from __future__ import annotations

import base64
import bisect
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowtrace.cat.estimators import AbilityState, EAPEstimator

if TYPE_CHECKING:
    from knowtrace.cat.session import Session

__all__ = ["CatResult", "ConceptLevel", "LevelScale", "TraceStep", "diagnose", "render_html"]


class LevelScale(BaseModel):
    """Cut points on the ability scale and the labels of the levels between them (one more label than cuts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cuts: tuple[float, ...] = (-1.0, 0.0, 1.0)
    labels: tuple[str, ...] = ("beginning", "developing", "proficient", "advanced")

    @model_validator(mode="after")
    def _check(self) -> LevelScale:
        if len(self.labels) != len(self.cuts) + 1:
            raise ValueError(f"{len(self.cuts)} cut points need {len(self.cuts) + 1} labels, got {len(self.labels)}")
        if any(not math.isfinite(c) for c in self.cuts) or list(self.cuts) != sorted(set(self.cuts)):
            raise ValueError(f"cut points must be finite and strictly increasing, got {self.cuts}")
        return self

    def label(self, theta: float) -> str:
        """The level of ``theta`` (a cut point belongs to the level above it)."""
        return self.labels[bisect.bisect_right(self.cuts, theta)]


class ConceptLevel(BaseModel):
    """EAP of one concept from the answers to that concept's items only."""

    concept: str
    items: int
    correct: int
    theta: float
    se: float
    level: str


class TraceStep(BaseModel):
    """One answer and the estimate after it."""

    position: int
    item_id: str
    correct: int
    theta: float
    se: float | None
    concepts: list[str] = []


class CatResult(BaseModel):
    """The result of a session: ability, SE and level overall and per concept, classification, full trace."""

    session_id: str
    method: str
    theta: float
    se: float | None = Field(description="None where infinite (MLE before any information)")
    level: str
    n_items: int
    finished: bool
    stop_reason: str | None
    classification: Literal["above", "below"] | None = None
    classification_decided: bool = False
    cut: float | None = None
    concepts: list[ConceptLevel] = []
    trace: list[TraceStep] = []

    def to_html(self) -> str:
        """The HTML report."""
        return render_html(self)

    def write_html(self, path: str | Path) -> Path:
        """Write the HTML report to ``path``."""
        path = Path(path)
        path.write_text(render_html(self), encoding="utf-8")
        return path


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def diagnose(session: Session, *, levels: LevelScale | None = None) -> CatResult:
    """The diagnosis of a session (finished or not); concept levels use the EAP with the session's prior."""
    engine = session.engine
    bank = engine.bank
    scale = levels or engine.config.levels
    eap = EAPEstimator(engine.config.estimator)
    concepts: list[ConceptLevel] = []
    items, answers = session.ability.items, session.ability.answers
    by_concept: dict[str, list[int]] = {}
    for pos, item in enumerate(items):
        for concept in bank.concepts[item]:
            by_concept.setdefault(concept, []).append(pos)
    for concept in sorted(by_concept):
        state = AbilityState.empty(eap.nodes)
        for pos in by_concept[concept]:
            state.add(bank, items[pos], answers[pos])
        est = eap.estimate(state, bank)
        concepts.append(ConceptLevel(concept=concept, items=len(by_concept[concept]),
                                     correct=int(sum(answers[p] for p in by_concept[concept])),
                                     theta=est.theta, se=est.se, level=scale.label(est.theta)))
    trace = [TraceStep(position=k + 1, item_id=bank.item_ids[item], correct=answers[k], theta=session.thetas[k],
                       se=_finite(session.ses[k]), concepts=list(bank.concepts[item]))
             for k, item in enumerate(items)]
    side, decided = session.classification()
    return CatResult(
        session_id=session.session_id, method=engine.config.estimator.method, theta=session.theta,
        se=_finite(session.se), level=scale.label(session.theta), n_items=session.n_items,
        finished=session.finished, stop_reason=session.stop_reason, classification=side,
        classification_decided=decided, cut=engine.sprt.cut if engine.sprt is not None else None,
        concepts=concepts, trace=trace)


def _convergence_png(result: CatResult) -> str:
    """Base64 PNG: the estimate ± 1.96 SE after each answer, answers marked right/wrong."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if result.trace:
        pos = np.array([s.position for s in result.trace])
        theta = np.array([s.theta for s in result.trace])
        se = np.array([s.se if s.se is not None else np.nan for s in result.trace])
        ax.fill_between(pos, theta - 1.96 * se, theta + 1.96 * se, alpha=0.2, color="tab:blue", label="±1.96 SE")
        ax.plot(pos, theta, "-", color="tab:blue", label="estimate")
        right = np.array([s.correct == 1 for s in result.trace])
        ax.plot(pos[right], theta[right], "o", color="tab:green", ms=4, label="right")
        ax.plot(pos[~right], theta[~right], "x", color="tab:red", ms=5, label="wrong")
        if result.cut is not None:
            ax.axhline(result.cut, color="grey", ls="--", lw=1, label=f"cut {result.cut:g}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("items answered")
    ax.set_ylabel("ability estimate")
    ax.set_title(f"convergence of the {result.method.upper()} estimate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_html(result: CatResult) -> str:
    """A self-contained HTML page: summary, concept levels, convergence plot (embedded PNG), trace."""
    e = html.escape
    png = _convergence_png(result)
    concept_rows = "".join(
        f"<tr><td>{e(c.concept)}</td><td>{c.items}</td><td>{c.correct}</td><td>{c.theta:.3f}</td>"
        f"<td>{c.se:.3f}</td><td>{e(c.level)}</td></tr>" for c in result.concepts)
    trace_rows = "".join(
        f"<tr><td>{s.position}</td><td>{e(s.item_id)}</td><td>{'right' if s.correct else 'wrong'}</td>"
        f"<td>{s.theta:.3f}</td><td>{_fmt(s.se)}</td><td>{e(', '.join(s.concepts))}</td></tr>" for s in result.trace)
    classification = ""
    if result.classification is not None:
        how = "decided by the SPRT" if result.classification_decided else "from the estimate (SPRT undecided)"
        classification = (f"<p>Classification: <b>{e(result.classification)}</b> the cut {result.cut:g} "
                          f"({e(how)}).</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Diagnosis {e(result.session_id)}</title>
<style>body{{font-family:sans-serif;max-width:56em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{background:#eee}}</style></head>
<body>
<h1>Diagnosis</h1>
<p>Session <code>{e(result.session_id)}</code>: {result.n_items} items, {'finished' if result.finished else 'in progress'}
{('(' + e(result.stop_reason) + ')') if result.stop_reason else ''}.</p>
<p>Overall level: <b>{e(result.level)}</b> — ability {result.theta:.3f}, standard error {_fmt(result.se)}
({e(result.method.upper())}).</p>
{classification}
<h2>Per concept</h2>
<p>Each concept's ability is the EAP from the answers to that concept's items only.</p>
<table><tr><th>concept</th><th>items</th><th>right</th><th>ability</th><th>SE</th><th>level</th></tr>
{concept_rows}</table>
<h2>Convergence</h2>
<img alt="estimate after each answer" src="data:image/png;base64,{png}">
<h2>Trace</h2>
<table><tr><th>#</th><th>item</th><th>answer</th><th>ability</th><th>SE</th><th>concepts</th></tr>
{trace_rows}</table>
</body></html>
"""
