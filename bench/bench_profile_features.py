"""Profiling cost against the number of features: ``kl-drift profile`` of the same rows with
500 and with 5,000 features (four numeric columns to one text column), whole processes.

Run: ``.venv/bin/python bench/bench_profile_features.py [--rows 2000] [--repeats 3]``.
Target (issue 11): 5,000 features in at most 10x the time of 500 (linear cost). Each round
runs both sizes once, in turn, so load on a shared machine hits them alike; the best of the
rounds is reported, wall and CPU (this process's children).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def make_raw(path: Path, rows: int, features: int, seed: int = 0) -> None:
    """``features`` columns of ``rows`` rows: every fifth one text with 20 categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for j in range(features):
        if j % 5 == 4:
            columns[f"c{j}"] = rng.integers(0, 20, rows).astype(str)
        else:
            columns[f"x{j}"] = rng.normal(size=rows)
    pl.DataFrame(columns).write_parquet(path)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("kl-drift"))
    sizes = (500, 5000)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for n in sizes:
            make_raw(root / f"raw{n}.parquet", args.rows, n)
        best = {n: (float("inf"), float("inf")) for n in sizes}
        for _ in range(args.repeats):
            for n in sizes:
                wall, cpu = time.perf_counter(), children_cpu()
                subprocess.run([cli, "profile", str(root / f"raw{n}.parquet"),
                                "--out", str(root / f"profile{n}.parquet")],
                               check=True, capture_output=True, env=os.environ)
                wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
                best[n] = (min(best[n][0], wall), min(best[n][1], cpu))
    for n in sizes:
        print(f"{n:>5} features x {args.rows} rows: {best[n][0]:6.2f} s wall, "
              f"{best[n][1]:6.2f} s CPU")
    small, large = best[sizes[0]], best[sizes[1]]
    print(f"5,000 / 500 features: {large[0] / small[0]:.1f}x wall, "
          f"{large[1] / small[1]:.1f}x CPU (target <= 10x)")


if __name__ == "__main__":
    main()
