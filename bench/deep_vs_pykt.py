"""knowtrace DKT, SAKT and AKT against pyKT's on the DKVMN splits: test AUC and seconds per epoch, in one run.

Data: ASSIST2009 (``assist2009_updated``, ids are skills) and STATICS (question ids, ``Qmatrix.csv``
maps each to one of 98 skills), fold 1: ``*_train1.csv`` to train, ``*_valid1.csv`` for early
stopping, ``*_test.csv`` to score. Both libraries get the same answers: the files are read once with
knowtrace's reader (``read_dkvmn_split``) and written in pyKT's dataset format in a temporary folder
(pyKT's own ``id_mapping``, ``generate_sequences`` and ``generate_window_sequences``; train1 learners
are fold 0, valid1 learners fold 1, test learners fold -1; maxlen 200, min_seq_len 3 as pyKT).

What each side learns from and predicts:
- pyKT: its ``concepts`` column holds the file's ids, following pyKT's own data configs for the
  same data sets without question ids (``assist2015``; ``statics2011``, where the 1,223 steps are the
  ``concepts``): ASSIST2009 skill ids, STATICS question ids; ``num_q = 0``, so its AKT runs without
  the Rasch embedding. pyKT scores a test answer unless it is the first of a 200-answer chunk (or of
  a learner, for the window file), and drops chunks shorter than 3. ``test`` is pyKT's
  ``test_sequences.csv`` (non-overlapping chunks of 200, each predicted from its own start),
  ``window`` its ``test_window_sequences.csv`` (each answer after the 200th predicted from the 199
  before it).
- knowtrace: each model's defaults (``unit="auto"``: DKT and SAKT use the item ids, i.e. the same
  tokens as pyKT; AKT uses the skills, on STATICS with the Rasch item difficulty of the question);
  every test answer is predicted once (``predict_proba``: windows, see the models). Its AUC is
  reported on every test answer and on exactly the rows pyKT scores in each of its two files.

Training: the same epoch budget (``--epochs``) for both; early stopping on the validation AUC, pyKT
by its ``train_model`` (stops 10 epochs after the best, keeps the best checkpoint, then
``evaluate`` on test), knowtrace by ``fit(train, valid=valid)`` (its default patience). Seconds per
epoch include the validation pass on both sides (pyKT: measured between the ends of its per-epoch
validation ``evaluate`` calls; knowtrace: ``train_history_``). Both train on the GPU when torch sees
one (pyKT always does; knowtrace with ``device="auto"``), else on CPU with ``--threads`` torch
threads; knowtrace trains on CPU with one intra-op thread whatever that setting (its deterministic
mode), so ``--threads 1`` (the default) is the like-for-like setting there. knowtrace predicts on
CPU in both cases. ``CUDA_VISIBLE_DEVICES=`` forces both onto the CPU.

pyKT hyperparameters (``PYKT``): DKT and SAKT from pyKT's ``configs/kt_config.json`` (DKT: emb 200,
dropout 0.1, lr 1e-3; SAKT: emb 256, 8 heads, dropout 0.2, 1 block, lr 1e-3, = the defaults of
``examples/wandb_sakt_train.py``); AKT from ``examples/wandb_akt_train.py``, whose defaults are
pyKT's tuned ASSIST2009 setting (d_model 256, d_ff 512, 8 heads, 4 blocks, dropout 0.2, lr 1e-4;
kt_config.json's AKT entry has lr 1e-5, far too slow for an epoch budget of tens). Batch size and
sequence length as ``wandb_train.py``: 256 for DKT (kt_config's train_config), 64 for SAKT and AKT,
seq_len 200. Optimiser Adam; seed ``--seed`` (pyKT's ``set_seed``).

pyKT 0.0.38 needs a runtime shim on a machine without CUDA: its ``KTDataset`` builds tensors with
``torch.cuda.LongTensor``/``FloatTensor``, which a CPU build of torch refuses; they are replaced by the
CPU constructors (same values; pyKT moves batches to its device itself). Where Python has no tkinter,
pyKT's stray ``from turtle import forward`` (in ``qdkt.py``, never used) fails, and an empty ``turtle``
module stands in for it. wandb is not used.

    python bench/deep_vs_pykt.py                                    # everything, 20 epochs (GPU: minutes)
    python bench/deep_vs_pykt.py --datasets assist2009 --models dkt --epochs 20 --no-window   # CPU

On CPU pyKT's AKT (4 blocks of 256) took 23 minutes an epoch on ASSIST2009 on our 2-core machine, and
its window test file costs it more than many epochs: the full default run is for a GPU machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from knowtrace.evaluation.dkvmn_split import DkvmnSplit, read_dkvmn_split
from knowtrace.evaluation.metrics import auc
from knowtrace.models.deep import AKT, DKT, SAKT, SimpleKT

SHARED_DATA = Path(os.environ.get("KNOWTRACE_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
DATASETS = {"assist2009": "assist2009_updated", "statics": "STATICS"}
#: our models (``bench/deep_sweep.py`` trains any of them); those in ``PYKT`` are compared with pyKT here
OURS = {"dkt": DKT, "sakt": SAKT, "akt": AKT, "simplekt": SimpleKT}
#: pyKT's hyperparameters (see the module docstring for where they come from)
PYKT: dict[str, dict[str, Any]] = {
    "dkt": {"batch_size": 256, "lr": 1e-3, "model": {"emb_size": 200, "dropout": 0.1}},
    "sakt": {"batch_size": 64, "lr": 1e-3,
             "model": {"emb_size": 256, "num_attn_heads": 8, "dropout": 0.2, "num_en": 1, "seq_len": 200}},
    "akt": {"batch_size": 64, "lr": 1e-4,
            "model": {"d_model": 256, "d_ff": 512, "num_attn_heads": 8, "n_blocks": 4, "dropout": 0.2}},
}
MAXLEN, MIN_SEQ_LEN = 200, 3


def pykt_version() -> str:
    from importlib.metadata import version

    return version("pykt-toolkit")


@contextlib.contextmanager
def pykt_quiet(log: io.TextIOBase | None) -> Any:
    """pyKT prints every step; its output goes to ``log`` (None: to stderr)."""
    with contextlib.redirect_stdout(log if log is not None else sys.stderr):
        yield


def import_pykt() -> None:
    """Import pyKT with its CPU shim (see the module docstring)."""
    import torch

    try:
        import turtle  # noqa: F401
    except ImportError:  # pyKT's qdkt.py has a stray ``from turtle import forward``; turtle needs tkinter
        stub = types.ModuleType("turtle")
        stub.forward = None  # type: ignore[attr-defined]
        sys.modules["turtle"] = stub
    import pykt.datasets.data_loader as data_loader

    if not torch.cuda.is_available():
        data_loader.FloatTensor = torch.FloatTensor
        data_loader.LongTensor = torch.LongTensor


# data -----------------------------------------------------------------------------------------

def learner_rows(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(learner index per row, position in the learner's history, the learner's length) of a split table,
    rows in the table's order (``position`` is 0-based per learner)."""
    learners = table.column("learner_id").to_numpy(zero_copy_only=False)
    _, inverse = np.unique(learners, return_inverse=True)
    position = table.column("position").to_numpy().astype(np.int64)
    length = np.bincount(inverse)
    return inverse, position, length[inverse]


def sequences(table: pa.Table, fold: int) -> Any:
    """One row per learner, in pyKT's ``train_valid.csv`` shape: fold, uid, concepts (the item ids), responses."""
    import pandas as pd

    frame = pd.DataFrame({
        "uid": table.column("learner_id").to_numpy(zero_copy_only=False),
        "pos": table.column("position").to_numpy(),
        "item": table.column("item_id").to_numpy(zero_copy_only=False),
        "correct": table.column("correct").to_numpy().astype(np.int64).astype(str),
    }).sort_values(["uid", "pos"], kind="stable")
    grouped = frame.groupby("uid", sort=False)
    out = pd.DataFrame({"concepts": grouped["item"].agg(",".join), "responses": grouped["correct"].agg(",".join)})
    out = out.reset_index()
    out.insert(0, "fold", fold)
    return out[["fold", "uid", "concepts", "responses"]]


def write_pykt_dataset(split: DkvmnSplit, folder: Path, name: str) -> dict[str, Any]:
    """The split in pyKT's format under ``folder``; returns its data_config entry."""
    import pandas as pd

    from pykt.preprocess.split_datasets import generate_sequences, generate_window_sequences, id_mapping

    folder.mkdir(parents=True, exist_ok=True)
    parts = [sequences(split.train, 0), sequences(split.valid, 1), sequences(split.test, -1)]
    total = pd.concat(parts, ignore_index=True)
    with contextlib.redirect_stdout(io.StringIO()):
        mapped, keyid2idx = id_mapping(total)
    keyid2idx["max_concepts"] = 1
    (folder / "keyid2idx.json").write_text(json.dumps(keyid2idx))
    keys = {"fold", "uid", "concepts", "responses"}
    train_valid = mapped[mapped["fold"] >= 0]
    test = mapped[mapped["fold"] == -1]
    with contextlib.redirect_stdout(io.StringIO()):
        generate_sequences(train_valid, keys, MIN_SEQ_LEN, MAXLEN).to_csv(folder / "train_valid_sequences.csv",
                                                                          index=None)
        generate_sequences(test, keys, MIN_SEQ_LEN, MAXLEN).to_csv(folder / "test_sequences.csv", index=None)
        generate_window_sequences(test, keys, MAXLEN).to_csv(folder / "test_window_sequences.csv", index=None)
    train_valid.to_csv(folder / "train_valid.csv", index=None)
    test.to_csv(folder / "test.csv", index=None)
    return {name: {
        "dpath": str(folder), "num_q": 0, "num_c": len(keyid2idx["concepts"]), "input_type": ["concepts"],
        "max_concepts": 1, "min_seq_len": MIN_SEQ_LEN, "maxlen": MAXLEN, "emb_path": "",
        "train_valid_original_file": "train_valid.csv", "train_valid_file": "train_valid_sequences.csv",
        "folds": [0, 1], "test_original_file": "test.csv", "test_file": "test_sequences.csv",
        "test_window_file": "test_window_sequences.csv",
    }}


def pykt_scored(table: pa.Table) -> dict[str, np.ndarray]:
    """Boolean masks over the test rows that pyKT scores: ``test`` (chunks of 200 from each learner's
    start, the first of a chunk not scored, a last chunk under 3 answers dropped) and ``window``
    (every answer but a learner's first)."""
    _, position, length = learner_rows(table)
    offset = position % MAXLEN
    chunk_start = position - offset
    kept = length - chunk_start >= MIN_SEQ_LEN  # a full chunk, or a last one of at least 3
    return {"test": (offset >= 1) & kept, "window": position >= 1}


# pyKT ------------------------------------------------------------------------------------------

def run_pykt(model_name: str, data_config: dict[str, Any], dataset: str, *, epochs: int, seed: int,
             workdir: Path, log: io.TextIOBase | None, window: bool = True) -> dict[str, Any]:
    """Train pyKT's model with its ``train_model`` and score the best checkpoint on its test file (and
    its window file, with ``window``)."""
    import torch
    from torch.utils.data import DataLoader

    from pykt.datasets import init_dataset4train
    from pykt.datasets.data_loader import KTDataset
    from pykt.models import evaluate, init_model, train_model
    from pykt.utils import set_seed

    train_module = sys.modules["pykt.models.train_model"]
    setting = PYKT[model_name]
    config = data_config[dataset]
    ckpt = workdir / f"{dataset}_{model_name}"
    ckpt.mkdir(parents=True, exist_ok=True)
    marks: list[tuple[float, float]] = []
    original = train_module.evaluate

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = original(*args, **kwargs)
        marks.append((started, time.perf_counter()))
        since = marks[-2][1] if len(marks) > 1 else begun
        print(f"  pyKT {model_name} epoch {len(marks)}: {marks[-1][1] - since:.1f} s, valid AUC {result[0]:.4f}",
              file=sys.stderr, flush=True)
        return result

    with pykt_quiet(log):
        set_seed(seed)
        train_loader, valid_loader, *_ = init_dataset4train(dataset, model_name, data_config, 1,
                                                            setting["batch_size"])
        model = init_model(model_name, dict(setting["model"]), config, "qid")
        opt = torch.optim.Adam(model.parameters(), setting["lr"])
        train_module.evaluate = timed_evaluate
        begun = time.perf_counter()
        try:
            *_, valid_auc, _valid_acc, best_epoch = train_model(model, train_loader, valid_loader, epochs, opt,
                                                                str(ckpt), None, None, True)
        finally:
            train_module.evaluate = original
        best = init_model(model_name, dict(setting["model"]), config, "qid")
        best.load_state_dict(torch.load(ckpt / "qid_model.ckpt"))
        scores = {}
        counts = {}
        for which in ("test", "window") if window else ("test",):
            file = config["test_file" if which == "test" else "test_window_file"]
            data = KTDataset(str(Path(config["dpath"]) / file), config["input_type"], {-1})
            counts[which] = int(data.dori["smasks"].sum())
            loader = DataLoader(data, batch_size=setting["batch_size"], shuffle=False)
            scores[which] = float(evaluate(best, loader, model_name)[0])
    ends = np.array([begun] + [end for _, end in marks])
    epoch_s = np.diff(ends)
    return {"epochs": len(marks), "best_epoch": int(best_epoch), "valid_auc": float(valid_auc),
            "epoch_s": epoch_s.tolist(), "valid_s": [end - start for start, end in marks],
            "auc_test": scores["test"], "auc_window": scores.get("window", float("nan")), "scored": counts}


# knowtrace -------------------------------------------------------------------------------------

def run_ours(model_name: str, split: DkvmnSplit, scored: dict[str, np.ndarray], *, epochs: int,
             seed: int, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train knowtrace's model (its defaults, changed by ``settings``) and score every test answer."""
    params = {"device": "auto", **(settings or {}), "epochs": epochs, "seed": seed}
    model = OURS[model_name](**params).fit(split.train, valid=split.valid)
    p = model.predict_proba(split.test)
    y = split.test.column("correct").to_numpy().astype(np.int64)
    history = model.train_history_
    return {"epochs": len(history), "best_epoch": int(model.best_epoch_),
            "valid_auc": float(np.nanmax(history[:, 1])), "epoch_s": history[:, 3].tolist(),
            "auc_all": auc(y, p), "auc_test": auc(y[scored["test"]], p[scored["test"]]),
            "auc_window": auc(y[scored["window"]], p[scored["window"]]),
            "params": {k: v for k, v in model.get_params().items() if k not in ("verbose", "device")},
            "unit": model.vocab_.unit, "device": model.device_}


# main ------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="assist2009,statics", help="comma-separated: assist2009, statics")
    parser.add_argument("--models", default="dkt,sakt,akt", help="comma-separated: dkt, sakt, akt")
    parser.add_argument("--epochs", type=int, default=20, help="epoch budget of both libraries")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ours", type=json.loads, default={},
                        help='hyperparameters of ours other than the defaults, as JSON per model, e.g. '
                             '\'{"dkt": {"hidden": 200}}\'')
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--pykt-log", type=Path, help="pyKT's own output goes here (default: discarded)")
    parser.add_argument("--no-window", action="store_true",
                        help="skip pyKT's window test file (one 200-answer sequence per answer after the 200th "
                             "of a learner: on CPU it costs AKT more than many epochs)")
    args = parser.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for d in datasets:
        if d not in DATASETS:
            parser.error(f"unknown dataset {d!r} (choose from {', '.join(DATASETS)})")
    for m in models:
        if m not in PYKT:
            parser.error(f"unknown model {m!r} (choose from {', '.join(PYKT)}; pyKT 0.0.38 has no simplekt: "
                         "bench/deep_sweep.py trains ours alone)")

    import torch

    torch.set_num_threads(args.threads)
    import_pykt()
    log: Any = args.pykt_log.open("a") if args.pykt_log else io.StringIO()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deep_vs_pykt_") as tmp:
        for dataset in datasets:
            split = read_dkvmn_split(args.data / DATASETS[dataset])
            data_config = write_pykt_dataset(split, Path(tmp) / dataset, dataset)
            scored = pykt_scored(split.test)
            for model_name in models:
                ours = run_ours(model_name, split, scored, epochs=args.epochs, seed=args.seed,
                                settings=args.ours.get(model_name))
                theirs = run_pykt(model_name, data_config, dataset, epochs=args.epochs, seed=args.seed,
                                  workdir=Path(tmp) / "ckpt", log=log, window=not args.no_window)
                for which in theirs["scored"]:
                    if theirs["scored"][which] != int(scored[which].sum()):
                        raise RuntimeError(f"{dataset} {which}: pyKT scores {theirs['scored'][which]} answers, "
                                           f"the mask has {int(scored[which].sum())}")
                row = {"dataset": dataset, "model": model_name, "n_test": split.test.num_rows,
                       "scored": theirs["scored"], "ours": ours, "pykt": theirs}
                results.append(row)
                if args.json:  # after every model, so that an interrupted run keeps what it measured
                    args.json.write_text(json.dumps({"argv": sys.argv, "epochs": args.epochs, "threads": args.threads,
                                                     "seed": args.seed, "results": results}, indent=1, default=float))
                print(f"# {dataset} {model_name}: ours {ours['auc_test']:.4f} ({ours['epochs']} ep, "
                      f"{np.mean(ours['epoch_s']):.1f} s/ep), pyKT {theirs['auc_test']:.4f} "
                      f"({theirs['epochs']} ep, {np.mean(theirs['epoch_s']):.1f} s/ep)", file=sys.stderr, flush=True)
    if args.pykt_log:
        log.close()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (both train on CPU)"
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores, GPU {gpu}, "
          f"python {platform.python_version()}, torch {torch.__version__}, pykt-toolkit {pykt_version()}, "
          f"torch threads {args.threads} (knowtrace trains on CPU with 1)")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"epoch budget {args.epochs}, seed {args.seed}; AUC on the test answers pyKT scores "
          f"(test: its test_sequences; window: its test_window_sequences); s/epoch with validation, mean over "
          f"the epochs run\n")
    print("| dataset | model | ours AUC test / window / all | pyKT AUC test / window | epochs run (best) ours / pyKT "
          "| s/epoch ours | s/epoch pyKT | pyKT s/epoch ÷ ours |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        o, t = r["ours"], r["pykt"]
        ratio = np.mean(t["epoch_s"]) / np.mean(o["epoch_s"])
        print(f"| {r['dataset']} | {r['model']} | {o['auc_test']:.4f} / {o['auc_window']:.4f} / {o['auc_all']:.4f} "
              f"| {t['auc_test']:.4f} / {t['auc_window']:.4f} | {o['epochs']} ({o['best_epoch']}) / "
              f"{t['epochs']} ({t['best_epoch']}) | {np.mean(o['epoch_s']):.2f} | {np.mean(t['epoch_s']):.2f} "
              f"| {ratio:.1f}x |")


if __name__ == "__main__":
    main()
