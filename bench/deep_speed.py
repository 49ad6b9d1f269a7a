"""Speed of the deep knowledge-tracing models (DKT, SAKT, AKT) on the ASSIST2009 DKVMN split.

Each model is fit on ``assist2009_updated_train1.csv`` with ``valid1`` for early stopping, for at
most ``--epochs`` epochs, then scores ``test.csv``. Reported: seconds per training epoch (the
mean over the epochs run, validation included), the whole fit (with the final learner states),
``predict_proba`` on the test file, one online step (``predict_one`` then ``learn_one``, mean over
the first 500 test answers) and one ``mastery`` call, plus the test AUC after those epochs (a
speed benchmark: few epochs, not the accuracy the models reach with more). Hyperparameters: the
small settings of ``tests/models/test_deep_realdata.py``, or each model's defaults with
``--defaults``. Runs on CPU unless ``--device cuda``.

    python bench/deep_speed.py                     # all three models, 3 epochs
    python bench/deep_speed.py --models dkt --epochs 5 --defaults
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


from knowtrace.evaluation.dkvmn_split import read_dkvmn_split
from knowtrace.evaluation.metrics import auc
from knowtrace.models.deep import AKT, DKT, SAKT

SMALL: dict[str, tuple[type, dict[str, Any]]] = {
    "dkt": (DKT, {"hidden": 64, "window": 100}),
    "sakt": (SAKT, {"dim": 64, "heads": 4, "window": 100, "lr": 3e-3, "batch_size": 32, "dropout": 0.1}),
    "akt": (AKT, {"dim": 32, "heads": 2, "d_ff": 64, "window": 100, "lr": 3e-3, "batch_size": 32}),
}
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assist2009_updated"


def run(name: str, split: Any, epochs: int, defaults: bool, device: str) -> dict[str, Any]:
    cls, small = SMALL[name]
    params = {"epochs": epochs, "device": device, **({} if defaults else small)}
    started = time.perf_counter()
    model = cls(**params).fit(split.train, valid=split.valid)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    p = model.predict_proba(split.test)
    predict_s = time.perf_counter() - started
    rows = split.test.slice(0, 500).to_pylist()
    started = time.perf_counter()
    for r in rows:
        model.predict_one(r["learner_id"], r["item_id"], tuple(r["concept_ids"]))
        model.learn_one({k: r[k] for k in ("learner_id", "item_id", "concept_ids", "correct")})
    step_ms = (time.perf_counter() - started) / len(rows) * 1000
    started = time.perf_counter()
    model.mastery(rows[0]["learner_id"])
    mastery_ms = (time.perf_counter() - started) * 1000
    shown = {k: v for k, v in model.get_params().items() if k in small or k in ("epochs", "window")}
    return {"model": name, "params": shown, "epochs": len(model.train_history_),
            "epoch_s": float(model.train_history_[:, 3].mean()), "fit_s": fit_s, "predict_s": predict_s,
            "step_ms": step_ms, "mastery_ms": mastery_ms,
            "auc": auc(split.test.column("correct").to_numpy(), p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SMALL), choices=list(SMALL))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--defaults", action="store_true", help="each model's default hyperparameters")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    started = time.perf_counter()
    split = read_dkvmn_split(args.data, ids_are="concepts")
    read_s = time.perf_counter() - started
    results = [run(name, split, args.epochs, args.defaults, args.device) for name in args.models]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()}")
    print(f"command: python bench/deep_speed.py {' '.join(sys.argv[1:])}")
    print(f"data: {args.data.name} fold 1: {split.train.num_rows} train, {split.valid.num_rows} valid, "
          f"{split.test.num_rows} test answers (read in {read_s:.1f} s)\n")
    print("| model | hyperparameters | epochs | s / epoch | fit s | predict s | online step ms | mastery ms "
          "| test AUC |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        print(f"| {r['model']} | {params} | {r['epochs']} | {r['epoch_s']:.1f} | {r['fit_s']:.1f} | "
              f"{r['predict_s']:.1f} | {r['step_ms']:.2f} | {r['mastery_ms']:.1f} | {r['auc']:.4f} |")


if __name__ == "__main__":
    main()
