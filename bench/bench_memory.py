"""Peak memory of binning raw Parquet much larger than RAM budget: 50M rows x 20 columns.

Run: ``.venv/bin/python bench/bench_memory.py [--rows 50000000] [--files 10] [--strings 0]``.

Writes ``--files`` seeded Parquet files to a temp folder, one at a time: ``--columns`` float64
columns, of which the last ``--strings`` are text instead (categories ``c000``..``c199`` with
Zipf-like frequencies, 1% null, and a few values the profile never saw). Then bins the whole
folder against a profile of the first file (20 quantile bins, the default categories) in a
child process and reports that process's peak RSS (``ru_maxrss``) next to the in-memory
size of the data. DESIGN target: peak RSS <= 2 GiB for 50M rows x 20 columns (7.5 GiB as
float64); issue 12: 5M rows x 25 columns with text features in <= 1 GiB
(``--rows 5000000 --columns 25 --strings 5``).
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


def _part(rng: np.random.Generator, rows: int, names: list[str], strings: int) -> pl.DataFrame:
    """One file's rows: normal floats, the last ``strings`` columns as Zipf-like text."""
    numeric = len(names) - strings
    frame = pl.DataFrame(rng.normal(size=(rows, numeric)), schema=names[:numeric])
    vocabulary = np.array([f"c{i:03d}" for i in range(200)] + ["unseen-a", "unseen-b"])
    weights = np.append(1 / np.arange(1, 201), [1e-4, 1e-4])
    for name in names[numeric:]:
        text = pl.Series(name, vocabulary[rng.choice(len(vocabulary), size=rows,
                                                     p=weights / weights.sum())])
        frame = frame.with_columns(
            pl.when(pl.Series(rng.random(rows) < 0.01)).then(None).otherwise(text).alias(name))
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--strings", type=int, default=0, help="text columns among them")
    args = parser.parse_args()
    from pipeline.bins.profile import build_profile, write_profile

    rng = np.random.default_rng(20261124)
    names = [f"f{i:02d}" for i in range(args.columns)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raw"
        folder.mkdir()
        per_file = args.rows // args.files
        for i in range(args.files):
            _part(rng, per_file, names, args.strings).write_parquet(
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
          f"strings={args.strings}: data {data_mib:,.0f} MiB as 8-byte values, "
          f"child peak RSS {peak_mib:,.0f} MiB "
          f"({elapsed:.1f} s with start-up); targets <= 2048 MiB at 50M x 20 floats, "
          f"<= 1024 MiB at 5M x 25 with text")


if __name__ == "__main__":
    main()
