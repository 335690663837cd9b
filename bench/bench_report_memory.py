"""Report memory against history size: re-rendering after 60 past runs within 1.2x the first.

Builds one synthetic run folder (`make_large_run`, default 500 features x 50 windows x 5
segments = 125,000 rows, like a daily run of a mid-sized model), then a history dataset
holding only that run (the first run) and the same with 60 earlier runs of the same shape
(values perturbed per run). Each `write_reports` runs in a fresh process; its peak RSS
(``VmHWM``) and wall time are printed, and, for comparison, the peak RSS of loading the
whole history (`read_history`, what the reports did before).

    .venv/bin/python bench/bench_report_memory.py [--features 500] [--runs 60]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.formats import DRIFT_FILE
from pipeline.write.history import append_history

CHILD = """
import sys, time
start = time.perf_counter()
if sys.argv[1] == "reports":
    from pipeline.write.reports import write_reports
    write_reports(sys.argv[2], history_dir=sys.argv[3])
else:
    from pipeline.write.history import read_history
    read_history(sys.argv[3])
print(time.perf_counter() - start, peak_mib())
"""


def measure(what: str, run_dir: Path, history: Path, peak_rss: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one fresh process doing ``what``."""
    out = subprocess.run([sys.executable, "-c", peak_rss + CHILD, what, str(run_dir),
                          str(history)], capture_output=True, text=True, check=True
                         ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the generator, next to this file
    generator = importlib.import_module("make_large_run")
    with tempfile.TemporaryDirectory(prefix="kl-drift-bench-memory-") as tmp:
        out = Path(tmp)
        now = datetime(2024, 6, 1, tzinfo=UTC)
        run_dir = generator.make_run(out, n_features=args.features, run_id="today", created_at=now)
        drift = pl.read_parquet(run_dir / DRIFT_FILE).drop("bins")
        history = out / "history"
        append_history(history, drift, "today", now)
        first = measure("reports", run_dir, history, generator.PEAK_RSS)
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for day in range(1, args.runs + 1):
            factor = pl.Series(rng.uniform(0.5, 1.5, drift.height))
            append_history(history, drift.with_columns(value=pl.col("value") * factor),
                           f"day-{day}", now - timedelta(days=day))
        size = sum(f.stat().st_size for f in history.rglob("*.parquet"))
        print(f"history: {args.runs + 1} runs x {drift.height:,} rows, {size / 2**20:.0f} MiB "
              f"on disk (written in {time.perf_counter() - start:.0f} s)")
        later = measure("reports", run_dir, history, generator.PEAK_RSS)
        whole = measure("history", run_dir, history, generator.PEAK_RSS)
        print(f"write_reports, first run only: {first[0]:.2f} s, peak RSS {first[1]:.0f} MiB")
        print(f"write_reports, {args.runs} past runs: {later[0]:.2f} s, peak RSS "
              f"{later[1]:.0f} MiB = {later[1] / first[1]:.2f}x the first (target <= 1.2x)")
        print(f"for comparison, read_history (every row of every run): {whole[0]:.2f} s, "
              f"peak RSS {whole[1]:.0f} MiB")


if __name__ == "__main__":
    main()
