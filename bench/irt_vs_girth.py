"""2PL calibration by marginal maximum likelihood: knowtrace's MML against girth's ``twopl_mml``.

Generator (simulated, for speed and accuracy only): theta ~ N(0, 1), a ~ lognormal(0, 0.25),
b ~ N(0, 1), answers ~ Bernoulli(sigmoid(a (theta - b))), every cell answered, numpy PCG64
seeded by ``--seed``. Sizes are learners x items (default 20000x200 and 100000x500).

Each estimator runs in its own child process on the same saved matrix, so that its peak RSS
(``ru_maxrss``, a high-water mark) is its own; "RSS before fit" is the child's after importing the
estimator and loading the matrix, so "fit RSS" (peak minus that) is what fitting added. Time is wall-clock from the 0/1 int8 matrix to the item parameters
(knowtrace includes building its response matrix; "with SEs" also computes the standard errors,
which girth does not). RMSE is against the generating a and b. Both use their defaults: knowtrace
61 uniform nodes on ±6, SQUAREM-accelerated EM to tol 1e-5, one BLAS thread; girth 41 nodes,
at most 25 iterations.

    python bench/irt_vs_girth.py                       # both sizes
    python bench/irt_vs_girth.py --sizes 20000x200     # only the small one
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ESTIMATORS = ("knowtrace", "knowtrace-no-se", "girth")
LABELS = {"knowtrace": "knowtrace MML (with SEs)", "knowtrace-no-se": "knowtrace MML (no SEs)",
          "girth": "girth 0.8.0 twopl_mml"}


def simulate(learners: int, items: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answers as int8 learners x items, a, b)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=learners)
    a = rng.lognormal(0.0, 0.25, items)
    b = rng.normal(size=items)
    answers = np.empty((learners, items), dtype=np.int8)
    for start in range(0, learners, 10_000):  # in blocks, to keep the generator's memory small
        t = theta[start:start + 10_000, None]
        answers[start:start + 10_000] = rng.random((len(t), items)) < 1.0 / (1.0 + np.exp(-a * (t - b)))
    return answers, a, b


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(estimator: str, data: Path) -> dict[str, float]:
    """Fit one estimator on the saved matrix; report seconds, RMSEs and RSS before and after fitting."""
    if estimator.startswith("knowtrace"):
        from knowtrace.models.irt import MMLEstimator, ResponseMatrix
    else:
        from girth import twopl_mml
    with np.load(data) as npz:
        answers, a_true, b_true = npz["answers"], npz["a"], npz["b"]
    base_rss = rss_mib()  # the interpreter, the estimator's imports and the int8 matrix
    start = time.perf_counter()
    if estimator.startswith("knowtrace"):
        fit = MMLEstimator("2pl", standard_errors=estimator == "knowtrace").fit(ResponseMatrix.from_array(answers))
        a, b, iterations = fit.params.a, fit.params.b, fit.n_iter
    else:
        result = twopl_mml(answers.T.astype(int))
        a, b, iterations = np.asarray(result["Discrimination"]), np.asarray(result["Difficulty"]), -1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rmse_a": float(np.sqrt(np.mean((a - a_true) ** 2))),
            "rmse_b": float(np.sqrt(np.mean((b - b_true) ** 2))), "iterations": iterations,
            "base_rss_mib": base_rss, "peak_rss_mib": rss_mib()}


def run_child(estimator: str, data: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--worker", estimator, "--data", str(data)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{estimator} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000x200,100000x500", help="comma-separated LEARNERSxITEMS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.data))))
        return
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",") if size]
    estimators = [e for e in args.estimators.split(",") if e]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for learners, items in sizes:
            answers, a, b = simulate(learners, items, args.seed)
            path = Path(tmp) / f"irt_{learners}x{items}.npz"
            np.savez(path, answers=answers, a=a, b=b)
            del answers
            for estimator in estimators:
                result = run_child(estimator, path)
                rows.append({"size": f"{learners:,} x {items}", "estimator": estimator, **result})
                print(f"{estimator} {learners}x{items}: {result}", file=sys.stderr)
    command = "python bench/irt_vs_girth.py " + " ".join(sys.argv[1:])
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"command: {command.strip()}")
    print(f"data: simulated 2PL, theta ~ N(0,1), a ~ lognormal(0,0.25), b ~ N(0,1), seed {args.seed}\n")
    print("| learners x items | estimator | seconds | EM iterations | RMSE a | RMSE b | RSS before fit (MiB) | "
          "peak RSS (MiB) | fit RSS (MiB) | speed-up vs girth |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    girth = {r["size"]: r["seconds"] for r in rows if r["estimator"] == "girth"}
    for r in rows:
        speed = f"{girth[r['size']] / r['seconds']:.1f}x" if r["size"] in girth else "-"
        iterations = str(r["iterations"]) if r["iterations"] >= 0 else "-"
        print(f"| {r['size']} | {LABELS[r['estimator']]} | {r['seconds']:.2f} | {iterations} | {r['rmse_a']:.4f} | "
              f"{r['rmse_b']:.4f} | {r['base_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
              f"{r['peak_rss_mib'] - r['base_rss_mib']:.0f} | {speed} |")


if __name__ == "__main__":
    main()
