"""The batch path at scale: incremental vs full silver/gold builds, and PostgreSQL -> DuckDB (and Spark) at N events.

(1) ``--part incremental``: a lake of ``--lake-events`` simulated answers (``ClassroomSimulator``, 216
answers per learner, seed 0; synthetic data), then, day after day, ``--daily-share`` new answers
committed to bronze and built incrementally (``Lake.refresh``: an append build when the day only adds
answers, else a rebuild of the parts it touches). The lake keeps its incremental builds from day to
day, as a daily pipeline does; each day the same loads are also built in full into a folder of their
own, partitioned (``PartitionedBuilder``, what ``knowtrace lake rebuild`` does) and as one file per
table (the plain ``DuckDBEngine.build``), and the full build's tables are checked equal to the
incremental ones. Days say who answers: new learners only; new learners and a cohort of existing
learners with adjacent ids; new learners and existing learners drawn at random; then
``--spread-days`` days of existing learners only, one 12-answer session each (a day that touches
most parts).

(2) ``--part postgres``: a temporary PostgreSQL cluster (as the batch tests make it), filled by
``knowtrace source init --simulate`` with ``--events`` answers, extracted into a fresh lake by
``knowtrace extract postgres`` (extract + DuckDB transform to gold, one process: wall time, peak RSS,
events/s), rebuilt by ``knowtrace lake rebuild`` with DuckDB, then with Spark (local[*]); ratio.
Peak RSS is the child process's ``ru_maxrss`` (the Spark row: its Python driver; the JVM is its child).

    python bench/batch_scale.py --part incremental --lake-events 2000000
    python bench/batch_scale.py --part postgres --events 10000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from knowtrace.importers import Importer, RawEvent, Record
from knowtrace.lake import SILVER_AND_GOLD, DuckDBEngine, Lake
from knowtrace.lake.incremental import PartitionedBuilder
from knowtrace.lake.lake import _BRONZE_SCHEMAS
from knowtrace.simulate import ClassroomSimulator

ROOT = Path(__file__).resolve().parents[1]
#: answers per simulated learner with ClassroomSimulator's defaults (6 weeks x 3 sessions x 12 answers)
ANSWERS_PER_LEARNER = 6 * 3 * 12
SESSION = 12


class DayOfAnswers(Importer):
    """One more day of answers: each learner answers ``per_learner[i]`` items after the simulated term
    (synthetic; items and their concepts from the lake's catalog)."""

    format = "bench-day"

    def __init__(self, learners: list[str], per_learner: list[int], items: list[tuple[str, list[str]]],
                 day: int, seed: int) -> None:
        super().__init__()
        self.learners, self.per_learner, self.items, self.day, self.seed = learners, per_learner, items, day, seed

    def options(self) -> dict[str, Any]:
        return {"day": self.day, "seed": self.seed, "learners": len(self.learners), "answers": sum(self.per_learner)}

    def read(self, path: Path | None = None) -> Iterator[Record]:
        rng = np.random.default_rng(self.seed)
        start = datetime(2026, 11, 2, 8, tzinfo=timezone.utc) + timedelta(days=self.day)
        for learner, n in zip(self.learners, self.per_learner):
            for j in range(n):
                item, concepts = self.items[int(rng.integers(len(self.items)))]
                self.rows_read += 1
                yield RawEvent({"learner_id": learner, "item_id": item, "concept_ids": concepts,
                                "correct": int(rng.random() < 0.6), "timestamp": start + timedelta(seconds=40 * j),
                                "seq": 10_000 + j, "elapsed_ms": int(rng.integers(2_000, 60_000)),
                                "attempt": 1, "source": "import", "tenant": "sim"}, "bench-day", self.rows_read)


DIGEST_TABLES = ("interactions", "items", "concepts", "learner_sequences")


def digests(lake: Lake) -> dict[str, Any]:
    """Row count and an order-free hash of every table but the float averages' (equal up to rounding)."""
    return {t: lake.query(f"SELECT count(*) AS n, sum(hash(r))::VARCHAR AS h FROM {t} AS r").to_pylist()[0]
            for t in DIGEST_TABLES}


def folder_digests(folder: Path) -> dict[str, Any]:
    """``digests`` of the tables of a full build folder (part files only)."""
    layers = {step.table: step.layer for step in SILVER_AND_GOLD}
    con = duckdb.connect()
    try:
        return {t: dict(zip(("n", "h"), con.execute(
            f"SELECT count(*) AS n, sum(hash(r))::VARCHAR AS h FROM read_parquet('{folder / layers[t] / t}/*.parquet') "
            "AS r").fetchall()[0])) for t in DIGEST_TABLES}
    finally:
        con.close()


def _timed(run: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def incremental_part(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    learners = max(1, args.lake_events // ANSWERS_PER_LEARNER)
    lake = Lake(work / "lake")
    print(f"simulating {learners:,} learners ({learners * ANSWERS_PER_LEARNER:,} answers) ...", file=sys.stderr)
    lake.load(ClassroomSimulator(tenant="sim", learners=learners, seed=0), None, build=False)
    _, seconds = _timed(lake.rebuild)
    print(f"first full build: {seconds:.1f} s", file=sys.stderr)
    items = [(r["item_id"], list(r["concept_ids"])) for r in
             lake.query("SELECT item_id, concept_ids FROM items ORDER BY item_id").to_pylist()]
    width = max(4, len(str(learners)))
    rng = np.random.default_rng(args.seed)
    known = learners
    rows = []
    spread = "existing learners only, one session each"
    scenarios = [
        ("new learners only", 0, "none"),
        (f"new learners + a cohort of {args.active} learners", args.active, "cohort"),
        (f"new learners + {args.active} random learners", args.active, "random"),
        *[(f"{spread} (day {d})", None, "random") for d in range(1, args.spread_days + 1)],
    ]
    builder = PartitionedBuilder(lake.engine, SILVER_AND_GOLD, empty_bronze=_BRONZE_SCHEMAS)  # type: ignore[arg-type]
    for day, (name, active, pick) in enumerate(scenarios):
        daily = int(round(args.daily_share * lake.current_build()["rows"]["interactions"]))  # type: ignore[index]
        if active is None:
            active = min(known, daily // SESSION)
        if pick == "cohort":
            start = int(rng.integers(0, max(1, learners - active)))
            existing = list(range(start + 1, start + active + 1))
        elif pick == "random":
            existing = sorted(int(i) + 1 for i in rng.choice(learners, size=active, replace=False))
        else:
            existing = []
        newcomers = max(0, daily - SESSION * len(existing)) // (3 * SESSION)
        names = [f"sim-learner-{i:0{width}d}" for i in existing]
        names += [f"sim-learner-{known + i + 1:0{width}d}" for i in range(newcomers)]
        known += newcomers
        per = [SESSION] * len(existing) + [3 * SESSION] * newcomers
        report = lake.load(DayOfAnswers(names, per, items, day, args.seed + day), None, build=False)
        _, incremental = _timed(lake.refresh)
        build = lake.current_build() or {}
        counts = dict(build.get("rows", {}))
        built_incrementally = digests(lake)
        # the full builds go to folders of their own: the lake keeps its incremental build (and its appended
        # rows) for the next day, as a daily pipeline would
        loads = sorted(m.load_id for m in lake.manifests())
        with tempfile.TemporaryDirectory(dir=work) as full_dir:
            _, full = _timed(lambda: builder.build(lake._bronze_files(loads), loads, Path(full_dir) / "b", full=True))
            assert folder_digests(Path(full_dir) / "b") == built_incrementally, "the incremental and the full build differ"
        with tempfile.TemporaryDirectory(dir=work) as plain_dir:
            sources = lake._bronze_sources(loads)
            _, plain = _timed(lambda: DuckDBEngine(memory_limit=lake.engine.memory_limit,  # type: ignore[attr-defined]
                                                   temp_dir=work / "tmp").build(sources, SILVER_AND_GOLD,
                                                                                Path(plain_dir)))
        info = build.get("incremental") or {}
        kind = build.get("kind")
        if kind == "incremental":
            kind = "append" if info.get("mode") == "append" else "parts"
        rows.append({
            "scenario": name, "lake_answers": counts.get("interactions", 0), "new_answers": report.events,
            "learners_active": len(names), "kind": kind,
            "parts": f"{info.get('parts_rebuilt', '-')}/{len(build.get('layout', {}).get('parts', [])) or '-'}",
            "incremental_s": round(incremental, 2), "full_s": round(full, 2), "plain_full_s": round(plain, 2),
            "ratio_full": round(full / incremental, 1), "ratio_plain": round(plain / incremental, 1),
        })
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


# -- (2) PostgreSQL -> lake -----------------------------------------------------------------------

_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out).returncode
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - started,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(command: list[str], stdout: Path, env: dict[str, str], *, may_fail: bool = False) -> dict[str, Any]:
    """Run ``command`` in a child of a fresh process, so that ``ru_maxrss`` is that command's alone; print the
    measurement at once (a later step may take long or fail). Its stderr goes to ``stdout`` + ``.err``."""
    err = stdout.with_name(stdout.name + ".err")
    with err.open("w") as stderr:
        result = subprocess.run([sys.executable, "-c", _MEASURE, str(stdout), *command], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=env, check=True)
    info = json.loads(result.stdout)
    print(f"  measured {' '.join(command[2:5])}: {json.dumps(info)}", file=sys.stderr, flush=True)
    if info["rc"] != 0:
        tail = err.read_text(errors="replace")
        causes = [line for line in tail.splitlines() if "Caused by" in line or "Error" in line][:5]
        message = f"{' '.join(command)} failed ({info['rc']}):\n" + "\n".join(causes) + "\n" + tail[-2000:]
        if not may_fail:
            raise SystemExit(message)
        print(message, file=sys.stderr, flush=True)
    return info


def _postgres_cluster() -> Any:
    """The batch tests' throwaway cluster (initdb as the postgres user, free loopback port)."""
    spec = importlib.util.spec_from_file_location("batch_conftest", ROOT / "tests" / "batch" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._Cluster()


def postgres_part(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    learners = max(1, args.events // ANSWERS_PER_LEARNER)
    cluster = _postgres_cluster()
    try:
        import psycopg

        with psycopg.connect(cluster.admin_dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        dsn = cluster.admin_dsn.rsplit("/", 1)[0] + "/bench"
        env = dict(os.environ)
        knowtrace = [sys.executable, "-m", "knowtrace"]
        lake = work / "pg-lake"
        print(f"filling PostgreSQL with {learners:,} simulated learners ...", file=sys.stderr)
        filled = measure([*knowtrace, "source", "init", "--dsn", dsn, "--simulate", str(learners), "--json"],
                         work / "init.json", env)
        attempts = json.loads((work / "init.json").read_text())["attempts"]
        print(f"  {attempts:,} attempts in {filled['seconds']:.0f} s; extracting ...", file=sys.stderr)
        extract = measure([*knowtrace, "extract", "postgres", "--dsn", dsn, "--lake", str(lake), "--json"],
                          work / "extract.json", env)
        report = json.loads((work / "extract.json").read_text())
        events = int(report["events"])
        duck = measure([*knowtrace, "lake", "rebuild", "--lake", str(lake), "--engine", "duckdb"],
                       work / "duck.txt", env)
        print(f"  extract+transform {extract['seconds']:.0f} s, DuckDB rebuild {duck['seconds']:.0f} s", file=sys.stderr)
        spark = None
        if not args.skip_spark:
            spark = measure([*knowtrace, "lake", "rebuild", "--lake", str(lake), "--engine", "spark"],
                            work / "spark.txt", env, may_fail=True)
    finally:
        cluster.stop()
    mib = 1024.0
    rows = [
        {"step": "PostgreSQL -> bronze -> silver/gold (knowtrace extract postgres, DuckDB)", "events": events,
         "seconds": round(extract["seconds"], 1), "events_per_s": round(events / extract["seconds"]),
         "peak_rss_mib": round(extract["peak_rss_kib"] / mib)},
        {"step": "silver/gold rebuild, DuckDB (knowtrace lake rebuild)", "events": events,
         "seconds": round(duck["seconds"], 1), "events_per_s": round(events / duck["seconds"]),
         "peak_rss_mib": round(duck["peak_rss_kib"] / mib)},
    ]
    if spark is not None and spark["rc"] != 0:
        rows.append({"step": f"silver/gold rebuild, Spark local[*]: failed (exit {spark['rc']}) after "
                             f"{spark['seconds']:.0f} s", "events": events, "seconds": None, "events_per_s": None,
                     "peak_rss_mib": round(spark["peak_rss_kib"] / mib)})
    elif spark is not None:
        rows += [
            {"step": "silver/gold rebuild, Spark local[*] (knowtrace lake rebuild --engine spark)", "events": events,
             "seconds": round(spark["seconds"], 1), "events_per_s": round(events / spark["seconds"]),
             "peak_rss_mib": round(spark["peak_rss_kib"] / mib)},
            {"step": f"Spark / DuckDB rebuild time: {spark['seconds'] / duck['seconds']:.1f}x", "events": None,
             "seconds": None, "events_per_s": None, "peak_rss_mib": None},
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=("incremental", "postgres", "all"), default="all")
    parser.add_argument("--lake-events", type=int, default=2_000_000, help="answers in the lake of part 1")
    parser.add_argument("--daily-share", type=float, default=0.01, help="new answers of a day, as a share of the lake")
    parser.add_argument("--active", type=int, default=100, help="existing learners answering in the mixed scenarios")
    parser.add_argument("--spread-days", type=int, default=3,
                        help="days on which existing learners only answer (one after the other, appended rows kept)")
    parser.add_argument("--events", type=int, default=10_000_000, help="answers in the PostgreSQL source of part 2")
    parser.add_argument("--skip-spark", action="store_true", help="part 2 without the Spark rebuild")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the lakes go (default: a temporary folder)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"KNOWTRACE_DUCKDB_MEMORY_LIMIT={os.environ.get('KNOWTRACE_DUCKDB_MEMORY_LIMIT', '1GB (default)')}")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="knowtrace-batch-") as tmp:
        work = Path(tmp)
        if args.part in ("incremental", "all"):
            rows = incremental_part(args, work)
            print("\n| day's answers come from | lake answers | new answers | learners | build | parts rebuilt "
                  "| incremental (s) | full, parts (s) | full, one file (s) | speed-up vs parts | vs one file |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r['scenario']} | {r['lake_answers']:,} | {r['new_answers']:,} | {r['learners_active']:,} "
                      f"| {r['kind']} | {r['parts']} | {r['incremental_s']} | {r['full_s']} | {r['plain_full_s']} "
                      f"| {r['ratio_full']}x | {r['ratio_plain']}x |")
        if args.part in ("postgres", "all"):
            rows = postgres_part(args, work)
            print("\n| step | events | seconds | events/s | peak RSS (MiB) |")
            print("|---|---|---|---|---|")
            for r in rows:
                print("| " + " | ".join("" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
                                        for v in r.values()) + " |")


if __name__ == "__main__":
    main()
