"""Time and peak memory of building a profile, against a polars streaming scan.

Run: ``.venv/bin/python bench/bench_profile.py [--rows 10000000] [--columns 20] [--files 10]
[--data DIR] [--repeat 3]``.

Writes ``--files`` seeded Parquet files of float64 columns to ``--data`` (reused when it
holds the same size), then runs, alternately and each in a fresh process: a polars streaming
scan computing per column what a profile needs and a scan can stream (finite min and max,
whether every value is whole, null count, row count), and ``build_profile`` + ``write_profile``
on the same folder (a sketch pass reading the numeric features from spread slices of about
as many rows as the sample holds, then a counting pass over every row that also takes the
exact extremes, :mod:`pipeline.bins.sketch`).
Prints the median wall and CPU time and the peak RSS (``ru_maxrss``) of each, their ratio,
and the largest rank error recorded for the edges. Issue 12 target: 50M x 20 in at most
2 GiB and at most 2x the time of the polars scan.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

POLARS = r"""
import sys
import polars as pl
frame = pl.scan_parquet(sys.argv[1] + "/*.parquet")
exprs = [pl.len()]
for name in frame.collect_schema().names():
    x = pl.col(name)
    finite = x.filter(x.is_finite())
    exprs += [finite.min().alias(name + "min"), finite.max().alias(name + "max"),
              (finite == finite.floor()).all().alias(name + "whole"),
              x.null_count().alias(name + "nulls")]
frame.select(exprs).collect(engine="streaming")
"""

KL_DRIFT = r"""
import json, sys
from pipeline.bins.profile import build_profile, write_profile
from pipeline.read.sources import scan_raw
profile = build_profile(scan_raw(sys.argv[1]))
write_profile(profile, sys.argv[2])
errors = [f.get("rank_error", 0.0) for f in profile.metadata["features"].values()]
print(json.dumps({"rows": profile.metadata["row_count"], "rank_error": max(errors)}))
"""


def _child(code: str, *args: str) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS MiB and stdout of ``code`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run each under its own
    # wrapper process so that each measurement is its own
    wrapper = (f"import resource, subprocess, sys; out = subprocess.run([sys.executable, "
               f"'-c', {code!r}, *sys.argv[1:]], check=True, capture_output=True, text=True)"
               f"; print(out.stdout.strip()); print(resource.getrusage("
               f"resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *args], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(out[-1]) / 1024, "\n".join(out[:-1])


def _write_data(folder: Path, rows: int, columns: int, files: int) -> None:
    stamp = folder / "size.json"
    size = {"rows": rows, "columns": columns, "files": files}
    if stamp.exists() and json.loads(stamp.read_text()) == size:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(20261130)
    names = [f"f{i:02d}" for i in range(columns)]
    for i in range(files):
        frame = pl.DataFrame(rng.normal(size=(rows // files, columns)), schema=names)
        # a whole-number column and a skewed one, as in real baselines
        frame = frame.with_columns(pl.col(names[0]).round(0), pl.col(names[1]).exp())
        frame.write_parquet(folder / f"part-{i:03d}.parquet")
    stamp.write_text(json.dumps(size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--data", type=Path, help="folder for the data (default: temporary)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp) / "raw"
        _write_data(folder, args.rows, args.columns, args.files)
        runs: dict[str, list[tuple[float, float, float]]] = {"polars": [], "kl-drift": []}
        result = ""
        for _ in range(args.repeat):
            wall, cpu, rss, _ = _child(POLARS, str(folder))
            runs["polars"].append((wall, cpu, rss))
            wall, cpu, rss, result = _child(KL_DRIFT, str(folder), str(Path(tmp) / "p.parquet"))
            runs["kl-drift"].append((wall, cpu, rss))
    medians = {name: [statistics.median(r[i] for r in values) for i in range(3)]
               for name, values in runs.items()}
    print(f"rows={args.rows:,} columns={args.columns} files={args.files}, median of "
          f"{args.repeat} alternating fresh processes: {result}")
    for name, (wall, cpu, rss) in medians.items():
        print(f"  {name:9s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  peak RSS {rss:6,.0f} MiB")
    (pw, pc, _), (kw, kc, kr) = medians["polars"], medians["kl-drift"]
    print(f"  ratio kl-drift / polars: wall {kw / pw:.2f}x, cpu {kc / pc:.2f}x; "
          f"target <= 2x and <= 2048 MiB at 50M x 20 (peak here {kr:,.0f} MiB)")


if __name__ == "__main__":
    main()
