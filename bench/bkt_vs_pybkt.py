"""knowtrace BKT against pyBKT: fit time and test AUC on the DKVMN splits, both fitted in one run.

Data: ASSIST2009 (``assist2009_updated``; ids are skills, imported with ``ids_are="concepts"``)
and STATICS (question ids mapped to skills by ``Qmatrix.csv``), ``*_train1.csv`` to fit,
``*_test.csv`` to score (learner ids differ between the files: every test learner is new). Both
tools fit the same rows with the same number of random restarts (pyBKT ``num_fits``) and the same
``forgets`` setting; pyBKT runs serially (``parallel=False``: its per-iteration process pool was
slower on our 2-core machine), and its fit time includes its data preparation. Every test row is
scored once; AUC by ``knowtrace.evaluation.metrics.auc`` on both tools' predictions.

pyBKT 1.4.3 needs two shims to run at all with scikit-learn 1.9 and numpy 2 (see ``import_pybkt``);
they change no computation. pyBKT's own warnings (pandas deprecations, 0/0 in its E-step) are
silenced while it runs.

    python bench/bkt_vs_pybkt.py                       # both datasets, 5 restarts
    python bench/bkt_vs_pybkt.py --datasets assist2009 --skills 5 --fits 2   # a short run
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowtrace.evaluation.metrics import auc
from knowtrace.importers import DkvmnImporter
from knowtrace.lake import Lake
from knowtrace.models.bkt import BKT

SHARED_DATA = Path(os.environ.get("KNOWTRACE_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
DATASETS = {
    "assist2009": ("assist2009_updated", "assist2009_updated", {"ids_are": "concepts"}),
    "statics": ("STATICS", "STATICS", {"concept_map": "Qmatrix.csv"}),
}


def load_split(name: str, data: Path = SHARED_DATA) -> tuple[pa.Table, pa.Table]:
    """(train1, test) silver interactions of a DKVMN dataset, imported through a temporary lake."""
    folder, stem, options = DATASETS[name]
    base = data / folder
    options = {k: (base / v if k == "concept_map" else v) for k, v in options.items()}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp) / "lake")
        lake.load(DkvmnImporter(**options), base / f"{stem}_train1.csv")
        lake.load(DkvmnImporter(**options), base / f"{stem}_test.csv")
        table = lake.table("interactions")
    table = table.sort_by([("learner_id", "ascending"), ("position", "ascending")])
    test = pc.starts_with(table.column("learner_id"), f"{stem}_test:")
    return table.filter(pc.invert(test)), table.filter(test)


def largest_concepts(table: pa.Table, count: int, skip: int = 0) -> pa.Array:
    """The concepts ranked ``skip + 1 .. skip + count`` by number of answers in ``table`` (ties by id)."""
    counts = pc.value_counts(pc.list_flatten(table.column("concept_ids"))).to_pylist()
    counts.sort(key=lambda c: (-c["counts"], c["values"]))
    return pa.array([c["values"] for c in counts[skip:skip + count]], pa.string())


def only_concepts(table: pa.Table, concepts: pa.Array) -> pa.Table:
    """The rows whose (single) concept is one of ``concepts``."""
    return table.filter(pc.is_in(pc.list_element(table.column("concept_ids"), 0), concepts))


@functools.cache
def import_pybkt() -> type:
    """pyBKT's ``Model``, importable and runnable with scikit-learn 1.9 and numpy 2.

    1. At import pyBKT probes sklearn's ``*_loss/_score/_error`` functions with lists and only
       tolerates ``TypeError``; sklearn 1.9's ``_log_loss`` raises ``AttributeError``. During the
       import such errors are re-raised as ``TypeError`` (pyBKT then leaves that metric out).
    2. ``EM_fit`` stores a (1, 1) array into a scalar slot, which numpy 2 refuses; the E-step's
       total log-likelihood is handed back as a float.
    """
    import sklearn.metrics._classification as classification
    import sklearn.metrics._regression as regression

    def tolerant(f: Callable[..., Any]) -> Callable[..., Any]:
        def probe(*args: Any, **kwargs: Any) -> Any:
            try:
                return f(*args, **kwargs)
            except TypeError:
                raise
            except Exception as exc:
                raise TypeError(str(exc)) from exc
        return probe

    saved = [(m, n, getattr(m, n)) for m in (regression, classification) for n in dir(m)
             if re.search("_loss$|_score$|_error$", n)]
    try:
        for module, name, f in saved:
            setattr(module, name, tolerant(f))
        from pyBKT.fit import EM_fit
        from pyBKT.models import Model
    finally:
        for module, name, f in saved:
            setattr(module, name, f)
    e_step = EM_fit.run

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = e_step(*args, **kwargs)
        result["total_loglike"] = float(np.asarray(result["total_loglike"]).item())
        return result

    EM_fit.run = run
    return Model


def pybkt_frame(table: pa.Table) -> Any:
    """pyBKT's input: user_id, skill_name, correct, order_id (rows in history order per learner)."""
    import pandas as pd

    lengths = pc.list_value_length(table.column("concept_ids")).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != 1 or lengths.max() != 1):
        raise ValueError("the pyBKT comparison needs exactly one concept per answer")
    return pd.DataFrame({
        "user_id": table.column("learner_id").to_numpy(zero_copy_only=False),
        "skill_name": pc.list_flatten(table.column("concept_ids")).to_numpy(zero_copy_only=False),
        "correct": table.column("correct").to_numpy().astype(np.int64),
        "order_id": np.arange(table.num_rows),
    })


#: knowtrace BKT settings compared: its defaults, and pyBKT's model (no bounds, maximum likelihood)
SETTINGS = {
    "knowtrace bkt (defaults: guess, slip < 0.5; smoothing 10)": {},
    "knowtrace bkt (as pyBKT: no bounds, smoothing 0)": {"max_guess": 1.0, "max_slip": 1.0, "smoothing": 0.0},
}


def run_ours(train: pa.Table, test: pa.Table, *, fits: int, forgets: bool, seed: int,
             **settings: Any) -> dict[str, float]:
    """Fit seconds and test AUC of knowtrace's BKT (``settings``: other hyperparameters)."""
    start = time.perf_counter()
    model = BKT(restarts=fits, forgets=forgets, seed=seed, **settings).fit(train)
    seconds = time.perf_counter() - start
    p = model.predict_proba(test)
    return {"fit_s": seconds, "auc": auc(test.column("correct").to_numpy(), p), "scored": len(p)}


def run_pybkt(train: pa.Table, test: pa.Table, *, fits: int, forgets: bool, seed: int) -> dict[str, float]:
    """Fit seconds (data preparation included) and test AUC of pyBKT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_cls = import_pybkt()
        start = time.perf_counter()
        model = model_cls(seed=seed, num_fits=fits, parallel=False)
        model.fit(data=pybkt_frame(train), forgets=forgets)
        seconds = time.perf_counter() - start
        predicted = model.predict(data=pybkt_frame(test))
    if len(predicted) != test.num_rows:
        raise RuntimeError(f"pyBKT scored {len(predicted)} of {test.num_rows} test rows")
    return {"fit_s": seconds, "auc": auc(predicted["correct"].to_numpy(), predicted["correct_predictions"].to_numpy()),
            "scored": len(predicted)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="assist2009,statics", help="comma-separated: assist2009, statics")
    parser.add_argument("--fits", type=int, default=5, help="random restarts (pyBKT num_fits) of both tools")
    parser.add_argument("--forgets", action="store_true", help="fit a forget probability (both tools)")
    parser.add_argument("--skills", type=int, default=0, help="keep only the N largest concepts (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets.split(","):
        train, test = load_split(name, args.data)
        if args.skills:
            keep = largest_concepts(train, args.skills)
            train, test = only_concepts(train, keep), only_concepts(test, keep)
        options = {"fits": args.fits, "forgets": args.forgets, "seed": args.seed}
        results = {label: run_ours(train, test, **options, **settings) for label, settings in SETTINGS.items()}
        results["pyBKT 1.4.3 (pure Python, parallel=False)"] = run_pybkt(train, test, **options)
        rows.append((name, train.num_rows, test.num_rows, results))
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"restarts/num_fits={args.fits}, forgets={args.forgets}, seed={args.seed}"
          + (f", {args.skills} largest concepts" if args.skills else ""))
    print()
    print("| dataset | train answers | test answers | model | fit (s) | test AUC | pyBKT fit time / this |")
    print("|---|---|---|---|---|---|---|")
    for name, n_train, n_test, results in rows:
        reference = results["pyBKT 1.4.3 (pure Python, parallel=False)"]["fit_s"]
        for label, r in results.items():
            print(f"| {name} | {n_train:,} | {n_test:,} | {label} | {r['fit_s']:.2f} | {r['auc']:.4f} | "
                  f"{reference / r['fit_s']:.0f}x |")


if __name__ == "__main__":
    main()
