"""The pipeline's steps run one process each (an Airflow task each), handing over through the lake.

``run_pipeline`` keeps the fitted models in memory between train, evaluate and publish. When each
step is its own process, what a step hands to the next is kept in the lake, in the run's folder::

    <lake>/runs/<run id>/
        extract.json  transform.json    what those steps did (ExtractReport, TransformResult)
        training.json                   tenant, mode, data window, each model's fit outcome
        train.parquet test.parquet      the learner split the models were fit and are scored on
        candidates/<model>/             each fitted model (KnowledgeModel.save), not registered yet
        evaluation.json                 held-out metrics per model, and scoring failures
        published.json                  registry version and promotion per model, written after each
        result.json                     the whole run, as ``knowtrace pipeline run --json`` prints it

Each ``step_*`` function calls the function of ``knowtrace.batch.pipeline`` that ``run_pipeline``
calls for that step. Every step can be run again: extract and transform are idempotent, train and
evaluate replace what they wrote, and publish never registers a model of the run twice. Once the
run is published, its candidates and split are deleted (the registry holds the models); the JSON
records stay.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from knowtrace.batch.extract import ExtractReport
from knowtrace.batch.pipeline import (
    Evaluated,
    PipelineResult,
    Published,
    TrainedModel,
    Training,
    TransformResult,
    evaluate,
    extract,
    open_engine,
    publish,
    train,
    transform,
)
from knowtrace.exceptions import InputError
from knowtrace.lake import Lake
from knowtrace.lake.layout import resolve_lake_path
from knowtrace.lake.manifest import write_json_atomic
from knowtrace.models import KnowledgeModel
from knowtrace.registry import ModelRegistry

__all__ = [
    "RUNS_DIR",
    "RunFolder",
    "step_evaluate",
    "step_extract",
    "step_publish",
    "step_train",
    "step_transform",
]

RUNS_DIR = "runs"
_MAX_NAME = 200  # a run id becomes one path segment; file systems allow 255 bytes


class RunFolder:
    """The folder of one run of the pipeline in a lake: ``<lake>/runs/<run id>/``."""

    def __init__(self, lake: Lake | str | os.PathLike[str] | None, run_id: str) -> None:
        root = lake.root if isinstance(lake, Lake) else resolve_lake_path(lake)
        if not isinstance(run_id, str) or not run_id.strip():
            raise InputError("the run id is empty: the steps of one run share a run id (e.g. the Airflow run id)",
                             field="run_id")
        segment = quote(run_id, safe="-_.")
        if segment.startswith("."):
            segment = "%2E" + segment[1:]
        if len(segment) > _MAX_NAME:
            raise InputError(f"the run id {run_id[:40]!r}... is too long ({len(segment)} characters as a folder "
                             f"name; at most {_MAX_NAME})", field="run_id")
        self.lake_root = Path(root).absolute()
        self.run_id = run_id
        self.path = self.lake_root / RUNS_DIR / segment

    # -- records -----------------------------------------------------------------------------------

    def write(self, name: str, data: dict[str, Any]) -> Path:
        """Write the record ``<name>.json`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / f"{name}.json"
        write_json_atomic(path, data)
        return path

    def read(self, name: str) -> dict[str, Any] | None:
        """The record ``<name>.json``, or None when that step has not run."""
        path = self.path / f"{name}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {path}: {exc}", file=path) from exc

    def need(self, name: str, step: str) -> dict[str, Any]:
        """The record ``<name>.json``; an error naming the step to run first when it is missing."""
        record = self.read(name)
        if record is None:
            raise InputError(f"run {self.run_id!r} has no {name} record in {self.path}: run `knowtrace pipeline "
                             f"step {step} --run-id {self.run_id}` first", field="run_id")
        return record

    # -- the models between train, evaluate and publish ---------------------------------------------

    def candidate_dir(self, model: str) -> Path:
        return self.path / "candidates" / quote(model, safe="-_.")

    def save_training(self, training: Training, *, mode: str, engine: str | None) -> None:
        """Keep the split, the fitted models and their outcomes (``training.json`` last: it marks them whole)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in ("training", "evaluation"):
            (self.path / f"{stale}.json").unlink(missing_ok=True)
        shutil.rmtree(self.path / "candidates", ignore_errors=True)
        pq.write_table(training.train, self.path / "train.parquet")
        pq.write_table(training.test, self.path / "test.parquet")
        for trained in training.models:
            if trained.model is not None:
                trained.model.save(self.candidate_dir(trained.name))
        self.write("training", {
            "tenant": training.tenant, "mode": mode, "engine": engine, "data_window": training.data_window,
            "models": [{"name": t.name, "fit_seconds": t.fit_seconds, "skipped": t.skipped, "error": t.error,
                        "candidate": t.model is not None} for t in training.models],
            "written_at": _now(),
        })

    def load_training(self, *, step: str) -> tuple[Training, dict[str, Any]]:
        """The training the train step kept (models loaded from their candidates), and its record."""
        record = self.need("training", "train")
        tables: list[pa.Table] = []
        for name in ("train", "test"):
            path = self.path / f"{name}.parquet"
            if not path.is_file():
                raise InputError(f"run {self.run_id!r} has no {path.name} in {self.path} (deleted once the run was "
                                 f"published); {step} needs the train step's output: run train again", field="run_id")
            tables.append(pq.read_table(path))
        models = []
        for entry in record["models"]:
            model = KnowledgeModel.load(self.candidate_dir(entry["name"])) if entry["candidate"] else None
            models.append(TrainedModel(entry["name"], model, fit_seconds=entry["fit_seconds"],
                                       skipped=entry["skipped"], error=entry["error"]))
        training = Training(tenant=record["tenant"], train=tables[0], test=tables[1],
                            data_window=record["data_window"], models=models)
        return training, record

    def discard_candidates(self) -> None:
        """Delete what only train/evaluate/publish of this run need."""
        shutil.rmtree(self.path / "candidates", ignore_errors=True)
        for name in ("train.parquet", "test.parquet"):
            (self.path / name).unlink(missing_ok=True)


# -- the steps -------------------------------------------------------------------------------------


def step_extract(
    lake: str | os.PathLike[str] | None,
    run_id: str,
    dsn: str,
    *,
    kind: str | None = None,
    tenant: str = "default",
    source_name: str | None = None,
    engine: str = "duckdb",
    batch_rows: int = 10_000,
    lag_s: float = 0.0,
) -> ExtractReport:
    """``pipeline.extract`` into the lake (opened with ``engine``, which builds silver/gold as the load
    commits), recorded as the run's ``extract.json``."""
    folder = RunFolder(lake, run_id)
    started = _now()
    opened = Lake(folder.lake_root) if engine == "duckdb" else Lake(folder.lake_root, engine=open_engine(engine))
    report = extract(opened, dsn, kind=kind, tenant=tenant, source_name=source_name, batch_rows=batch_rows,
                     lag_s=lag_s)
    folder.write("extract", {"started_at": started, "finished_at": _now(), "result": report.to_dict()})
    return report


def step_transform(lake: str | os.PathLike[str] | None, run_id: str, engine: str = "duckdb", *,
                   full: bool = False) -> TransformResult:
    """``pipeline.transform``, recorded as the run's ``transform.json``."""
    folder = RunFolder(lake, run_id)
    started = _now()
    result = transform(folder.lake_root, engine, full=full)
    folder.write("transform", {"started_at": started, "finished_at": _now(), "result": dict(result.__dict__)})
    return result


def step_train(
    lake: str | os.PathLike[str] | None,
    run_id: str,
    models: list[str],
    tenant: str = "default",
    *,
    full: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Training:
    """``pipeline.train`` (daily: skipping the models whose newest version saw exactly these answers;
    ``full``: refitting every one), the fitted models kept in the run's folder as candidates."""
    folder = RunFolder(lake, run_id)
    published = folder.read("published")
    if published is not None:
        raise InputError(f"run {run_id!r} was published already ({', '.join(published['models']) or 'no model'}): "
                         "train with a new run id", field="run_id")
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction}", field="test_fraction")
    registry = ModelRegistry(folder.lake_root)
    training = train(folder.lake_root, models, tenant, test_fraction=test_fraction, seed=seed,
                     skip_unchanged=None if full else registry)
    transformed = folder.read("transform")
    engine = None if transformed is None else transformed["result"]["engine"]
    folder.save_training(training, mode="full" if full else "daily", engine=engine)
    return training


def step_evaluate(lake: str | os.PathLike[str] | None, run_id: str) -> list[Evaluated]:
    """``pipeline.evaluate`` of the run's candidates; each scored one is saved again with its metrics."""
    folder = RunFolder(lake, run_id)
    training, _ = folder.load_training(step="evaluate")
    fit_errors = {t.name: t.error for t in training.models}
    scores = evaluate(training)
    failed = {}
    for trained in training.models:
        if trained.model is not None:
            trained.model.save(folder.candidate_dir(trained.name))  # now with its metrics_
        elif trained.error != fit_errors[trained.name]:
            failed[trained.name] = trained.error
            shutil.rmtree(folder.candidate_dir(trained.name), ignore_errors=True)
    folder.write("evaluation", {"scores": [{"name": s.name, "metrics": s.metrics} for s in scores],
                                "failed": failed, "written_at": _now()})
    return scores


def step_publish(lake: str | os.PathLike[str] | None, run_id: str, *, promote: bool = True) -> PipelineResult:
    """``pipeline.publish`` of the run's evaluated candidates, one model at a time and recorded after
    each (a re-run does not register a model twice); returns the whole run, also kept as ``result.json``."""
    folder = RunFolder(lake, run_id)
    done = folder.read("published") or {"models": {}}
    record = folder.need("training", "train")
    pending = [m["name"] for m in record["models"] if m["name"] not in done["models"]]
    if pending:
        training, record = folder.load_training(step="publish")
        evaluation = folder.need("evaluation", "evaluate")
        for trained in training.models:
            if trained.name in evaluation["failed"]:  # as evaluate left it in the evaluate step's process
                trained.error, trained.model = evaluation["failed"][trained.name], None
        scores = [Evaluated(s["name"], s["metrics"]) for s in evaluation["scores"]]
        registry = ModelRegistry(folder.lake_root)
        for trained in training.models:
            if trained.name in done["models"]:
                continue
            [row] = publish(registry, replace(training, models=[trained]), scores, promote=promote)
            done["models"][trained.name] = row.to_dict()
            folder.write("published", done)
    result = _result(folder, record, [Published(**done["models"][m["name"]]) for m in record["models"]])
    folder.write("result", result.to_dict())
    folder.discard_candidates()
    return result


def _result(folder: RunFolder, training: dict[str, Any], published: list[Published]) -> PipelineResult:
    extracted, transformed = folder.read("extract"), folder.read("transform")
    starts = [r["started_at"] for r in (extracted, transformed) if r is not None]
    started = min(starts) if starts else training["written_at"]
    engine = training.get("engine") or (transformed["result"]["engine"] if transformed else "duckdb")
    return PipelineResult(
        lake=str(folder.lake_root), tenant=training["tenant"], mode=training["mode"], engine=engine,
        started_at=datetime.fromisoformat(started), finished_at=datetime.now(timezone.utc),
        extract=None if extracted is None else ExtractReport(**extracted["result"]),
        transform=None if transformed is None else TransformResult(**transformed["result"]),
        data_window=training["data_window"], models=published)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
