"""Import throughput and peak memory at 1x and 10x input size (bounded-memory check).

Generator: synthetic DKVMN three-line files, ``learners`` learners with 20-400 answers each over
200 item ids, drawn with numpy's PCG64 seeded by ``--seed`` (simulated, for speed only).
Each size is imported by a fresh ``knowtrace import dkvmn`` process into a fresh lake; peak RSS is
that process's ``ru_maxrss``.

    python bench/import_scaling.py --learners 2000 --factor 10
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_dkvmn(path: Path, learners: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    answers = 0
    with path.open("w") as out:
        for _ in range(learners):
            n = int(rng.integers(20, 400))
            items = rng.integers(1, 201, n)
            correct = (rng.random(n) < 0.65).astype(int)
            out.write(f"{n}\n{','.join(map(str, items))}\n{','.join(map(str, correct))}\n")
            answers += n
    return answers


def run_import(path: Path, lake: Path) -> dict[str, float]:
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-m", "knowtrace", "import", "dkvmn", str(path), "--lake", str(lake),
                             "--json"], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(result.stdout)
    return {"events": report["events"], "seconds": round(seconds, 2),
            "events_per_s": round(report["events"] / seconds), "peak_rss_mib": round(max(peak_kib, before) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=2000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, args.factor):
            source = Path(tmp) / f"bench{scale}_train.csv"
            write_dkvmn(source, args.learners * scale, args.seed)
            # each size in its own child so ru_maxrss (a high-water mark) belongs to that size alone
            code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import import_scaling as b; "
                    f"from pathlib import Path; print(json.dumps(b.run_import(Path({str(source)!r}), "
                    f"Path({str(Path(tmp) / f'lake{scale}')!r}))))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            rows.append({"scale": f"{scale}x", "learners": args.learners * scale, **json.loads(out)})
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    print("| scale | learners | events | seconds | events/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']} | {r['learners']:,} | {r['events']:,} | {r['seconds']} | {r['events_per_s']:,} | "
              f"{r['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
