"""Hyperparameter settings of knowtrace's DKT, SAKT or AKT on a DKVMN split, chosen by validation AUC.

Each setting is fit on ``train1`` with ``valid1`` for early stopping (``--epochs`` budget) and scores
``test``; the settings are ranked by their best validation AUC, never by the test AUC (which is
printed for the record, on every test answer and on the answers pyKT scores, as in
``bench/deep_vs_pykt.py``). Settings run one after another, or ``--jobs`` at a time in separate
processes.

    python bench/deep_sweep.py --dataset assist2009 --model dkt \\
        --settings '{}' '{"hidden": 200, "lr": 1e-3, "dropout": 0.1}' --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_vs_pykt import DATASETS, OURS, SHARED_DATA, pykt_scored  # noqa: E402

from knowtrace.evaluation.dkvmn_split import read_dkvmn_split  # noqa: E402
from knowtrace.evaluation.metrics import auc  # noqa: E402


def run(dataset: str, model_name: str, setting: dict[str, Any], epochs: int, seed: int, data: Path) -> dict[str, Any]:
    """Fit one setting; its validation AUC, test AUCs, epochs and seconds."""
    split = read_dkvmn_split(data / DATASETS[dataset])
    started = time.perf_counter()
    model = OURS[model_name](**{"epochs": epochs, "seed": seed, **setting}).fit(split.train, valid=split.valid)
    fit_s = time.perf_counter() - started
    p = model.predict_proba(split.test)
    y = split.test.column("correct").to_numpy().astype(np.int64)
    rows = pykt_scored(split.test)["test"]
    history = model.train_history_
    return {"setting": setting, "valid_auc": float(np.nanmax(history[:, 1])), "epochs": len(history),
            "best_epoch": int(model.best_epoch_), "epoch_s": float(history[:, 3].mean()), "fit_s": fit_s,
            "device": model.device_, "auc_all": auc(y, p), "auc_pykt_rows": auc(y[rows], p[rows])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=list(DATASETS))
    parser.add_argument("--model", required=True, choices=list(OURS))
    parser.add_argument("--settings", nargs="+", required=True, help="JSON objects of hyperparameters")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = [json.loads(s) for s in args.settings]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run, args.dataset, args.model, s, args.epochs, args.seed, args.data)
                       for s in settings]
            results = [f.result() for f in futures]
    else:
        results = [run(args.dataset, args.model, s, args.epochs, args.seed, args.data) for s in settings]
    results.sort(key=lambda r: -r["valid_auc"])
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{args.dataset} {args.model}, epoch budget {args.epochs}, seed {args.seed}; ranked by validation AUC\n")
    print("| setting | valid AUC | test AUC (pyKT's rows) | test AUC (all) | epochs (best) | s/epoch | device |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {json.dumps(r['setting'])} | {r['valid_auc']:.4f} | {r['auc_pykt_rows']:.4f} | {r['auc_all']:.4f} "
              f"| {r['epochs']} ({r['best_epoch']}) | {r['epoch_s']:.2f} | {r['device']} |")
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1))


if __name__ == "__main__":
    main()
