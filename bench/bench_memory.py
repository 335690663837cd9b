"""Peak memory of binning raw Parquet much larger than RAM budget: 50M rows x 20 columns.

Run: ``.venv/bin/python bench/bench_memory.py [--rows 50000000] [--files 10]``.

Writes ``--files`` seeded Parquet files (float64 columns) to a temp folder, one at a time,
then bins the whole folder against a 20-quantile-bin profile in a child process and reports
that process's peak RSS (``ru_maxrss``) next to the in-memory size of the data. DESIGN
target: peak RSS <= 2 GiB for 50M rows x 20 columns (7.5 GiB as float64).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

CHILD = r"""
import sys, time
from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import read_profile
from pipeline.read.sources import scan_raw

start = time.perf_counter()
histograms = bin_raw(scan_raw(sys.argv[1]), read_profile(sys.argv[2]))
print(f"binned {histograms['count'].sum() / histograms['feature'].n_unique():,.0f} rows "
      f"in {time.perf_counter() - start:.1f} s")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args()
    from pipeline.bins.profile import build_profile, write_profile

    rng = np.random.default_rng(20261124)
    names = [f"f{i:02d}" for i in range(args.columns)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raw"
        folder.mkdir()
        per_file = args.rows // args.files
        for i in range(args.files):
            pl.DataFrame(rng.normal(size=(per_file, args.columns)), schema=names).write_parquet(
                folder / f"part-{i:03d}.parquet")
        profile = Path(tmp) / "profile.parquet"
        write_profile(build_profile(pl.scan_parquet(folder / "part-000.parquet")), profile)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(profile)],
                             capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    data_mib = per_file * args.files * args.columns * 8 / 2**20
    print(out.stdout.strip())
    print(f"rows={per_file * args.files:,} columns={args.columns} files={args.files}: "
          f"data {data_mib:,.0f} MiB as float64, child peak RSS {peak_mib:,.0f} MiB "
          f"({elapsed:.1f} s with start-up); target <= 2048 MiB")


if __name__ == "__main__":
    main()
