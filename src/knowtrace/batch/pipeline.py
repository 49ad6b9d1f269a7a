"""The batch pipeline: extract -> transform -> train -> evaluate -> publish, one plain function per step.

The command line (``knowtrace pipeline run``), a local scheduler and an Airflow DAG call the same
steps; ``run_pipeline`` chains them and returns a ``PipelineResult`` (``to_dict()`` is JSON-ready).

Two modes:

* daily (default): extract what changed since the watermark, rebuild silver/gold if the committed
  loads are not all in the current build, and refit each model from scratch — unless the tenant's
  answers are exactly those its newest registered version was trained on (then nothing new is
  registered for it);
* full (``full=True``, the monthly run): the same incremental extract, then silver/gold rebuilt
  from every bronze load whatever the current build, and every model refit and registered.

Models are fit on the train learners of a leakage-safe learner split (``learner_split``) and scored
on every answer of the held-out learners; the registered artifact is exactly the model scored.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from knowtrace.batch.dialect import dialect_for
from knowtrace.batch.extract import ExtractReport, SourceExtractor
from knowtrace.batch.watermarks import EXTRACT_FORMAT
from knowtrace.constants import ENGINE_NAMES, PIPELINE_MODELS
from knowtrace.evaluation.metrics import score_all
from knowtrace.evaluation.split import learner_split
from knowtrace.events.concept_graph import ConceptGraph
from knowtrace.exceptions import InputError, KnowtraceError, MissingExtraError
from knowtrace.lake import Engine, Lake, get_engine
from knowtrace.models import KnowledgeModel, get_model, get_model_class
from knowtrace.registry import ModelRegistry, ModelVersion, PromotionRefused

__all__ = [
    "DEFAULT_MODELS",
    "ENGINE_NAMES",
    "Evaluated",
    "PipelineResult",
    "PipelineStep",
    "Published",
    "TrainedModel",
    "Training",
    "TransformResult",
    "data_window",
    "evaluate",
    "extract",
    "open_engine",
    "publish",
    "run_pipeline",
    "train",
    "transform",
    "unchanged_models",
]

DEFAULT_MODELS = PIPELINE_MODELS


class PipelineStep(NamedTuple):
    """Where a run is: ``stage`` (extract, transform, train, evaluate, publish), a message, and
    progress within the stage when known."""

    stage: str
    message: str
    done: int | None = None
    total: int | None = None


OnStep = Callable[[PipelineStep], None]


@dataclass
class TransformResult:
    """What the transform step did: which engine built silver/gold, or why nothing was rebuilt."""

    engine: str
    rebuilt: bool
    reason: str
    rows: dict[str, int] = field(default_factory=dict)
    build_id: str | None = None
    seconds: float = 0.0


@dataclass
class TrainedModel:
    """One model fit on the train learners (``model`` None when it was skipped or failed)."""

    name: str
    model: KnowledgeModel | None = None
    fit_seconds: float = 0.0
    skipped: str | None = None
    error: str | None = None


@dataclass
class Training:
    """The fitted models, the split they were fit and scored on, and the window of data it covers."""

    tenant: str
    train: pa.Table
    test: pa.Table
    data_window: dict[str, Any]
    models: list[TrainedModel]


@dataclass
class Evaluated:
    """The held-out scores of one fitted model (the evaluation protocol's metrics)."""

    name: str
    metrics: dict[str, Any]


@dataclass
class Published:
    """One model after publishing: its registry version and whether it was promoted, and why."""

    model: str
    version: str | None = None
    promoted: bool = False
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _clean(dict(self.__dict__))


@dataclass
class PipelineResult:
    """Everything one run did; ``ok`` is False when a model failed to train or score."""

    lake: str
    tenant: str
    mode: str
    engine: str
    started_at: datetime
    finished_at: datetime | None = None
    extract: ExtractReport | None = None
    transform: TransformResult | None = None
    data_window: dict[str, Any] = field(default_factory=dict)
    models: list[Published] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(m.error is None for m in self.models)

    @property
    def seconds(self) -> float:
        end = self.finished_at or datetime.now(timezone.utc)
        return (end - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (for ``--json`` and Airflow's XCom)."""
        return _clean({
            "lake": self.lake, "tenant": self.tenant, "mode": self.mode, "engine": self.engine, "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "seconds": self.seconds,
            "extract": None if self.extract is None else self.extract.to_dict(),
            "transform": None if self.transform is None else dict(self.transform.__dict__),
            "data_window": self.data_window,
            "models": [m.to_dict() for m in self.models],
        })


# -- the steps -------------------------------------------------------------------------------------


def open_engine(engine: str | Engine) -> Engine:
    """The engine named ``engine`` ("duckdb" or "spark"; Spark is imported only when asked for)."""
    if isinstance(engine, Engine):
        return engine
    if engine not in ENGINE_NAMES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINE_NAMES)}", field="engine")
    if engine == "spark":
        try:
            importlib.import_module("knowtrace.lake.spark_engine")  # registers the engine
        except ModuleNotFoundError as exc:
            if exc.name == "knowtrace.lake.spark_engine":
                raise InputError("the spark engine is not available in this knowtrace (no "
                                 "knowtrace.lake.spark_engine); use --engine duckdb", field="engine") from None
            if exc.name == "pyspark" or (exc.name or "").startswith("pyspark."):
                raise MissingExtraError("pyspark", "spark") from None
            raise
    return get_engine(engine)


def _open_lake(lake: Lake | str | os.PathLike[str] | None, engine: str | Engine | None = None) -> Lake:
    """``lake`` opened (or kept) with ``engine`` (None: whatever it has, DuckDB for a new one)."""
    if engine is None:
        return lake if isinstance(lake, Lake) else Lake(lake)
    if isinstance(engine, str) and engine not in ENGINE_NAMES:
        open_engine(engine)  # raises, naming the engines there are
    name = engine if isinstance(engine, str) else engine.name
    if isinstance(lake, Lake) and (lake.engine is engine or (isinstance(engine, str) and lake.engine.name == name)):
        return lake
    root = lake.root if isinstance(lake, Lake) else lake
    return Lake(root) if engine == "duckdb" else Lake(root, engine=open_engine(engine))


def extract(
    lake: Lake | str | os.PathLike[str],
    dsn: str,
    *,
    kind: str | None = None,
    tenant: str = "default",
    source_name: str | None = None,
    batch_rows: int = 10_000,
    lag_s: float = 0.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ExtractReport:
    """Extract what changed in the source database ``dsn`` (``kind`` "postgres" or "sqlite", checked
    against the DSN) since the lake's watermark into ``tenant``. ``on_progress(done, total)``."""
    lake = _open_lake(lake)
    extractor = SourceExtractor(dialect_for(dsn, kind), lake, tenant=tenant, source_name=source_name,
                                batch_rows=batch_rows, lag_s=lag_s)
    plan = extractor.plan()
    if on_progress is not None:
        on_progress(0, plan.to_read)
    report = extractor.run(plan, on_progress=None if on_progress is None
                           else (lambda done: on_progress(done, plan.to_read)))
    if on_progress is not None:
        on_progress(report.rows_read, plan.to_read)
    return report


def transform(
    lake: Lake | str | os.PathLike[str],
    engine: str | Engine = "duckdb",
    *,
    full: bool = False,
    on_step: Callable[[str, int], None] | None = None,
) -> TransformResult:
    """Rebuild silver and gold from every committed bronze load with ``engine``.

    Without ``full`` nothing is rebuilt when the current build already covers every committed load
    and was made by the same engine (an extract's load rebuilds as it commits).
    """
    lake = _open_lake(lake, engine)
    engine_obj = lake.engine
    started = time.perf_counter()
    build = lake.current_build()
    committed = sorted(m.load_id for m in lake.manifests())
    if not committed:
        raise InputError(f"the lake {lake.root} has no loads yet: extract or import answers first", field="lake")
    if (not full and build is not None and sorted(build.get("loads", [])) == committed
            and build.get("engine") == engine_obj.name):
        return TransformResult(engine=engine_obj.name, rebuilt=False, build_id=build.get("build_id"),
                               rows=dict(build.get("rows", {})), seconds=time.perf_counter() - started,
                               reason=f"up to date: silver/gold already built by {engine_obj.name} from all "
                                      f"{len(committed)} loads")
    if full:
        why = "full rebuild"
    elif build is None:
        why = "first build"
    elif build.get("engine") != engine_obj.name:
        why = f"the current build was made by {build.get('engine')}"
    else:
        why = "the current build did not cover every load"
    rows = lake.rebuild(full=full, on_step=None if on_step is None
                        else (lambda step, n: on_step(f"{step.layer}.{step.table}", n)))
    build = lake.current_build() or {}
    kind = build.get("kind", "full")
    return TransformResult(engine=engine_obj.name, rebuilt=True,
                           reason=f"{kind} build from {len(committed)} loads ({why})",
                           rows=dict(rows), build_id=build.get("build_id"), seconds=time.perf_counter() - started)


def _tenant_answers(lake: Lake, tenant: str) -> tuple[pa.Table, ConceptGraph | None]:
    table = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
    if table.num_rows == 0:
        tenants = lake.query("SELECT DISTINCT tenant FROM interactions ORDER BY 1").column("tenant").to_pylist()
        raise InputError(f"the lake {lake.root} has no answers for tenant {tenant!r} (tenants with answers: "
                         f"{', '.join(tenants) or 'none'})", field="tenant")
    graph = lake.concept_graph(tenant)
    return table, graph if graph is not None and len(graph) else None


def data_window(lake: Lake | str | os.PathLike[str], table: pa.Table, tenant: str) -> dict[str, Any]:
    """What ``table`` (a tenant's silver answers) covers: time range, answers, learners, the loads
    and extract watermarks behind it, and a fingerprint that changes when any answer does."""
    lake = _open_lake(lake)
    con = duckdb.connect()
    try:
        con.register("answers", table)
        # through Arrow: DuckDB's Python values of time zone aware stamps need pytz
        first, last, answers, learners, loads, last_load, digest = con.sql(
            """SELECT min("timestamp"), max("timestamp"), count(*), count(DISTINCT learner_id),
                      count(DISTINCT load_id), max(load_id),
                      sum(hash(event_id, load_id, learner_id, item_id, concept_ids, correct, score, "timestamp",
                               seq))::VARCHAR
               FROM answers""").to_arrow_table().to_pylist()[0].values()
    finally:
        con.close()
    watermarks = {}
    for manifest in lake.manifests():
        options = manifest.options
        if manifest.format == EXTRACT_FORMAT and options.get("tenant") == tenant:
            watermarks[f"{options.get('dialect')}:{options.get('source')}"] = {
                "load_id": manifest.load_id, "watermark": options.get("watermark")}
    build = lake.current_build() or {}
    return {
        "first_timestamp": None if first is None else first.isoformat(),
        "last_timestamp": None if last is None else last.isoformat(),
        "answers": int(answers), "learners": int(learners), "loads": int(loads), "last_load_id": last_load,
        "extract_watermarks": watermarks, "build_id": build.get("build_id"),
        "fingerprint": f"{answers}:{digest}",
    }


def train(
    lake: Lake | str | os.PathLike[str],
    models: Sequence[str],
    tenant: str = "default",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_unchanged: ModelRegistry | None = None,
    on_model: Callable[[str, str], None] | None = None,
) -> Training:
    """Fit each model (registry names) on the train learners of the tenant's silver answers.

    The split is ``learner_split(test_fraction, seed)``: the held-out learners' answers are kept for
    ``evaluate`` and never seen by ``fit``. ``skip_unchanged``: a registry; a model whose newest
    version there was trained on exactly these answers (same split and hyperparameters) is not fit
    again. A model whose fit raises a knowtrace error is reported (``error``), the others still run.
    ``on_model(name, stage)``: stage "fit" or "skip".
    """
    names = _model_names(models)
    lake = _open_lake(lake)
    table, graph = _tenant_answers(lake, tenant)
    split = learner_split(table, test_fraction=test_fraction, seed=seed)
    if split.test.num_rows == 0 or split.train.num_rows == 0:
        raise InputError(f"tenant {tenant!r} has answers from only one learner: the pipeline holds learners out "
                         "to evaluate, so it needs at least two", field="tenant")
    window = data_window(lake, table, tenant)
    window |= {"train_answers": split.train.num_rows, "test_answers": split.test.num_rows,
               "train_learners": _count_learners(split.train), "test_learners": _count_learners(split.test),
               "test_fraction": test_fraction, "seed": seed}
    skip = {} if skip_unchanged is None else unchanged_models(skip_unchanged, tenant, names, window)
    trained = []
    for name in names:
        if name in skip:
            if on_model is not None:
                on_model(name, "skip")
            trained.append(TrainedModel(name, skipped=skip[name]))
            continue
        if on_model is not None:
            on_model(name, "fit")
        started = time.perf_counter()
        try:
            model = get_model(name).fit(split.train, graph=graph)
        except KnowtraceError as exc:
            trained.append(TrainedModel(name, fit_seconds=time.perf_counter() - started, error=f"fit failed: {exc}"))
            continue
        trained.append(TrainedModel(name, model, fit_seconds=time.perf_counter() - started))
    return Training(tenant=tenant, train=split.train, test=split.test, data_window=window, models=trained)


def evaluate(training: Training, *, on_model: Callable[[str, str], None] | None = None) -> list[Evaluated]:
    """Score each fitted model's prediction of every held-out answer: auc, acc, rmse, logloss, ece,
    ``n`` (answers scored), the sizes of the split and the fit/predict seconds."""
    test = training.test
    y = np.asarray(test.column("correct").to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.isnan(y).any():
        raise InputError("held-out answers without a 0/1 outcome", field="correct")
    results = []
    for trained in training.models:
        if trained.model is None:
            continue
        if on_model is not None:
            on_model(trained.name, "predict")
        started = time.perf_counter()
        try:
            p = np.asarray(trained.model.predict_proba(test), dtype=np.float64)
            metrics: dict[str, Any] = score_all(y, p)
        except KnowtraceError as exc:
            trained.error, trained.model = f"scoring failed: {exc}", None
            continue
        metrics |= {"n": int(test.num_rows), "n_train": int(training.train.num_rows), "n_test": int(test.num_rows),
                    "fit_seconds": trained.fit_seconds, "predict_seconds": time.perf_counter() - started}
        trained.model.metrics_ = dict(metrics)
        results.append(Evaluated(trained.name, metrics))
    return results


def publish(
    registry: ModelRegistry | str | os.PathLike[str],
    training: Training,
    evaluated: Sequence[Evaluated],
    *,
    promote: bool = True,
) -> list[Published]:
    """Register every evaluated model with its metrics and the data window, and promote it when it
    is not worse on AUC than the promoted version (the reason is kept either way)."""
    if not isinstance(registry, ModelRegistry):
        registry = ModelRegistry(registry)
    scores = {e.name: e.metrics for e in evaluated}
    out = []
    for trained in training.models:
        row = Published(trained.name, fit_seconds=trained.fit_seconds, error=trained.error)
        out.append(row)
        if trained.skipped is not None:
            row.reason = trained.skipped
            continue
        if trained.model is None or trained.name not in scores:
            row.reason = trained.error or "not evaluated"
            continue
        row.metrics = scores[trained.name]
        version = registry.register(trained.model, tenant=training.tenant, metrics=row.metrics,
                                    data_window=training.data_window)
        row.version = version.version
        if not promote:
            row.reason = "registered, not promoted (promotion off)"
            continue
        try:
            promotion = registry.promote(training.tenant, trained.name, version.version)
        except PromotionRefused as exc:
            row.reason = (f"kept {exc.current}: auc {_fmt(exc.auc)} is worse than {_fmt(exc.current_auc)}")
            continue
        row.promoted, row.reason = True, promotion.reason
    return out


def unchanged_models(registry: ModelRegistry, tenant: str, models: Sequence[str],
                     window: Mapping[str, Any]) -> dict[str, str]:
    """The models whose newest version was trained on exactly this data, split and hyperparameters."""
    out = {}
    for name in models:
        latest = registry.latest(tenant, name)
        if latest is not None and _same_training(latest, name, window):
            out[name] = f"no new answers since {latest.version} (same data; --full refits anyway)"
    return out


def _same_training(version: ModelVersion, name: str, window: Mapping[str, Any]) -> bool:
    old = version.data_window
    params = json.loads(json.dumps(get_model(name).get_params(), default=_json_default))
    same = all(old.get(key) == window.get(key) for key in ("fingerprint", "test_fraction", "seed"))
    return same and version.params == params


# -- the whole run -----------------------------------------------------------------------------


def run_pipeline(
    lake: Lake | str | os.PathLike[str] | None,
    *,
    source_dsn: str | None = None,
    source_kind: str | None = None,
    source_name: str | None = None,
    engine: str = "duckdb",
    models: Sequence[str] = DEFAULT_MODELS,
    tenant: str = "default",
    full: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    batch_rows: int = 10_000,
    lag_s: float = 0.0,
    on_step: OnStep | None = None,
) -> PipelineResult:
    """Extract (unless ``source_dsn`` is None) -> transform -> train -> evaluate -> publish.

    Inputs are checked before anything is read. ``lake`` None: ``$KNOWTRACE_LAKE`` or
    ``./knowtrace-lake``. The registry is the lake's (``<lake>/models``).
    """
    names = _model_names(models)
    if source_dsn is not None:
        dialect_for(source_dsn, source_kind)
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}", field="test_fraction")
    lake = _open_lake(lake, engine)
    engine_obj = lake.engine
    emit = on_step or (lambda step: None)
    result = PipelineResult(lake=str(lake.root), tenant=tenant, mode="full" if full else "daily",
                            engine=engine_obj.name, started_at=datetime.now(timezone.utc))
    if source_dsn is not None:
        emit(PipelineStep("extract", "planning"))
        result.extract = extract(
            lake, source_dsn, kind=source_kind, tenant=tenant, source_name=source_name, batch_rows=batch_rows,
            lag_s=lag_s, on_progress=lambda done, total: emit(PipelineStep("extract", "rows", done, total)))
        emit(PipelineStep("extract", "done", result.extract.rows_read, result.extract.rows_read))
    emit(PipelineStep("transform", f"building silver/gold with {engine_obj.name}"))
    result.transform = transform(lake, engine_obj.name, full=full,
                                 on_step=lambda table, rows: emit(PipelineStep("transform", table)))
    emit(PipelineStep("transform", "done"))
    registry = ModelRegistry(lake.root)
    progress = {"train": 0, "evaluate": 0}
    totals = {"train": len(names), "evaluate": len(names)}

    def on_model(name: str, stage: str) -> None:
        step = "evaluate" if stage == "predict" else "train"
        emit(PipelineStep(step, f"{name} (skipped)" if stage == "skip" else name, progress[step], totals[step]))
        progress[step] += 1

    training = train(lake, names, tenant, test_fraction=test_fraction, seed=seed,
                     skip_unchanged=None if full else registry, on_model=on_model)
    emit(PipelineStep("train", "done", len(names), len(names)))
    result.data_window = training.data_window
    totals["evaluate"] = sum(1 for t in training.models if t.model is not None)
    evaluated = evaluate(training, on_model=on_model)
    emit(PipelineStep("evaluate", "done", len(evaluated), len(evaluated)))
    emit(PipelineStep("publish", "registering"))
    result.models = publish(registry, training, evaluated)
    emit(PipelineStep("publish", "done"))
    result.finished_at = datetime.now(timezone.utc)
    return result


# -- helpers ---------------------------------------------------------------------------------------


def _model_names(models: Sequence[str] | str) -> list[str]:
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m).strip() for m in models]
    names = [n for n in names if n]
    if not names:
        raise InputError("name at least one model to train (e.g. elo,bkt,irt)", field="models")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"model {duplicated[0]!r} is named twice", field="models")
    for name in names:
        get_model_class(name)
    return names


def _count_learners(table: pa.Table) -> int:
    return len(set(table.column("learner_id").to_pylist()))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and datetimes as ISO text, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value
