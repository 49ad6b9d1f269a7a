"""Deep models: peak memory of a fit as the number of learners grows, streamed from the lake vs in memory.

Generator: ``ClassroomSimulator`` (synthetic learners, 216 answers each over 60 items and 8
concepts, seed 0, tenant ``sim``), loaded into one lake per size: ``--learners`` and ``--factor``
times as many (the smaller lake's learners are the first ones of the larger). For each size, model
and mode, a fresh child process opens the lake and fits the model with its default hyperparameters
for ``--epochs`` epochs; peak RSS is that child's ``ru_maxrss`` (from ``wait4``). Modes:

- ``streamed``: ``model.fit(lake)`` with ``remember_learners=False`` (gold ``learner_sequences`` read a
  chunk of learners at a time; no learner states kept);
- ``streamed+states``: the same, keeping every learner's online state (the default);
- ``in-memory``: ``model.fit(lake.table("interactions"))``, what ``fit(lake)`` did before streaming
  (the whole silver table, then the whole encoded data set).

The lakes are built with a DuckDB memory limit of ``--duckdb-memory`` (the gold build of 8.6 M
answers ran out of the lake's default 1 GB); ``--work DIR`` keeps them between runs (building the
40,000-learner lake takes about 20 minutes on 2 cores).

    python bench/deep_memory.py --learners 4000 --factor 10 --models dkt,sakt --epochs 1 --work /tmp/deep-memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("streamed", "streamed+states", "in-memory")


def child(lake_path: str, model_name: str, mode: str, epochs: int) -> None:
    """Fit one model on one lake in this process and print what it took, as JSON."""
    from knowtrace.lake import Lake
    from knowtrace.models.registry import get_model

    lake = Lake(lake_path)
    model = get_model(model_name, epochs=epochs, device="cpu", remember_learners=mode != "streamed")
    started = time.perf_counter()
    model.fit(lake.table("interactions") if mode == "in-memory" else lake)
    seconds = time.perf_counter() - started
    history = model.train_history_  # type: ignore[attr-defined]
    print(json.dumps({"fit_s": seconds, "s_per_epoch": float(history[:, 3].mean()),
                      "valid_auc": float(history[-1, 1]), "answers": model.n_train_,
                      "learners_kept": len(model.learners_)}))  # type: ignore[attr-defined]


def measure(lake: Path, model: str, mode: str, epochs: int) -> dict[str, Any]:
    """Run ``child`` in a fresh process; its result plus its peak RSS."""
    process = subprocess.Popen([sys.executable, __file__, "--child", str(lake), model, mode, str(epochs)],
                               stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{model} {mode} on {lake} failed with exit code {process.returncode}")
    return {**json.loads(out), "peak_rss_mib": usage.ru_maxrss / 1024}


def build_lake(path: Path, learners: int, duckdb_memory: str) -> tuple[int, float]:
    """A lake of ``learners`` simulated learners at ``path`` (kept if already built; rebuilt if its load
    is committed but its build is not); (answers, seconds)."""
    from knowtrace.lake import Lake
    from knowtrace.lake.settings import LakeSettings
    from knowtrace.simulate import ClassroomSimulator

    lake = Lake(path, settings=LakeSettings(duckdb_memory_limit=duckdb_memory))
    started = time.perf_counter()
    if lake.manifests() and lake.current_build() is None:
        lake.rebuild()
    elif lake.current_build() is None:
        lake.load(ClassroomSimulator(tenant="sim", learners=learners, seed=0), None)
    return int(lake.current_build()["rows"]["interactions"]), time.perf_counter() - started  # type: ignore[index]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=4000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--models", default="dkt", help="comma-separated registered sequence models")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, help="folder for the lakes, kept between runs (default: a temporary one)")
    parser.add_argument("--duckdb-memory", default="6GB",
                        help="DuckDB memory limit while building the lakes (the gold build of 8.6 M answers "
                             "ran out of the default 1 GB)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows = []
        for learners in (args.learners, args.learners * args.factor):
            answers, seconds = build_lake(work / f"lake-{learners}", learners, args.duckdb_memory)
            print(f"lake of {learners:,} learners, {answers:,} answers: {seconds:.0f} s", file=sys.stderr, flush=True)
            for model in args.models.split(","):
                for mode in modes:
                    result = measure(work / f"lake-{learners}", model, mode, args.epochs)
                    print(f"  {model} {mode}: {json.dumps(result)}", file=sys.stderr, flush=True)
                    rows.append({"learners": learners, "model": model, "mode": mode, **result})
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()}; {args.epochs} epoch(s), default hyperparameters, device cpu\n")
    print("| learners | answers | model | mode | peak RSS (MiB) | s/epoch | fit s | valid AUC |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['learners']:,} | {r['answers']:,} | {r['model']} | {r['mode']} | {r['peak_rss_mib']:.0f} | "
              f"{r['s_per_epoch']:.1f} | {r['fit_s']:.1f} | {r['valid_auc']:.4f} |")
    print(f"\n| model | mode | peak RSS 1x (MiB) | {args.factor}x (MiB) | {args.factor}x / 1x |")
    print("|---|---|---|---|---|")
    small = {(r["model"], r["mode"]): r for r in rows if r["learners"] == args.learners}
    for r in rows:
        if r["learners"] != args.learners:
            base = small[(r["model"], r["mode"])]
            print(f"| {r['model']} | {r['mode']} | {base['peak_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
                  f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f} |")


if __name__ == "__main__":
    main()
