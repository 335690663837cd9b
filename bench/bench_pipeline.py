"""Binning benchmark: raw Parquet -> histograms vs a polars scan summing the same columns.

Run: ``.venv/bin/python bench/bench_pipeline.py [--rows 5000000] [--columns 20]``.
DESIGN target: binning <= 2x the sum-scan, both timed (best of 3) in the same run on the
same file. The profile (20 quantile bins per column) is built once beforehand, not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.binning import bin_raw
from pipeline.profile import build_profile
from pipeline.readers import scan_raw


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """Shortest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def write_data(path: Path, rows: int, columns: int, seed: int = 0) -> list[str]:
    """Seeded synthetic numeric columns of varied shapes, plus an hourly timestamp."""
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(columns):
        shape = i % 4
        if shape == 0:
            data[f"x{i}"] = rng.normal(i, 1 + i / 10, rows)
        elif shape == 1:
            data[f"x{i}"] = rng.lognormal(0, 1, rows)
        elif shape == 2:
            data[f"x{i}"] = rng.uniform(-5, 5, rows)
        else:
            data[f"x{i}"] = rng.exponential(2, rows)
    week = 7 * 24 * 3600
    frame = pl.DataFrame(data).with_columns(  # one week of rows in time order
        ts=pl.lit(datetime(2024, 1, 1)) + pl.duration(seconds=pl.int_range(rows) * week // rows))
    frame.write_parquet(path)
    return list(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windowed", action="store_true",
                        help="also time binning into 1-day windows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.parquet"
        columns = write_data(path, args.rows, args.columns)
        raw = scan_raw(path)
        start = time.perf_counter()
        profile = build_profile(raw, features=columns, bins=20, source=str(path))
        built = time.perf_counter() - start

        def sum_scan() -> object:
            return raw.select(pl.col(columns).sum()).collect()

        scan = best_of(args.repeats, sum_scan)
        binning = best_of(args.repeats, lambda: bin_raw(raw, profile))
        print(f"rows={args.rows:,} columns={args.columns} (profile built once in {built:.1f} s)")
        print(f"polars sum-scan : {scan:.3f} s")
        print(f"bin_raw         : {binning:.3f} s  ratio {binning / scan:.2f}x (target <= 2x)")
        if args.windowed:
            windowed = best_of(args.repeats, lambda: bin_raw(raw, profile, timestamp="ts",
                                                             period="1d"))
            print(f"bin_raw 1d windows: {windowed:.3f} s  ratio {windowed / scan:.2f}x")


if __name__ == "__main__":
    main()
