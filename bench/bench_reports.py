"""Report writing as a share of the demo run's wall time (target: at most 20%).

Each repeat runs ``kl-drift demo`` in a fresh process, exactly as a user would, with one
addition: the process times its own call of `write_reports` (report.md + report.html,
imports of the report modules included). The parent times the whole process. Prints every
run and the medians; the ratio is taken within each run, then its median reported.

    .venv/bin/python bench/bench_reports.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The child: `kl-drift demo --out DIR`, with write_reports wrapped by a timer.
CHILD = """
import json, sys, time
import pipeline.run as run
original = run.write_reports
spent = []
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return original(*args, **kwargs)
    finally:
        spent.append(time.perf_counter() - start)
run.write_reports = timed
from flows.cli import app
try:
    app(["demo", "--out", sys.argv[1]], standalone_mode=False)
finally:
    print("REPORTS " + json.dumps(spent), file=sys.stderr)
"""


def one_run(out: Path) -> tuple[float, float]:
    """Wall time of one demo process and the time it spent writing reports."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    line = next(x for x in done.stderr.splitlines() if x.startswith("REPORTS "))
    return wall, sum(json.loads(line.removeprefix("REPORTS ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    walls, reports, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="kl-drift-bench-reports-") as tmp:
        one_run(Path(tmp) / "warm-up")  # file cache, .pyc files
        for i in range(args.repeats):
            wall, report = one_run(Path(tmp) / f"run-{i}")
            walls.append(wall)
            reports.append(report)
            ratios.append(report / wall)
            print(f"run {i + 1}: demo {wall:.2f} s, reports {report:.3f} s "
                  f"({report / wall:.1%})")
        html = (Path(tmp) / "run-0" / "demo-flights" / "report.html").stat().st_size
    print(f"median of {args.repeats}: demo {statistics.median(walls):.2f} s, reports "
          f"{statistics.median(reports):.3f} s, share {statistics.median(ratios):.1%} "
          f"(target <= 20%); report.html {html / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
