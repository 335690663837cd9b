"""Push-down binning benchmark: a profile binned inside DuckDB vs a polars scan of Parquet.

Run: ``.venv/bin/python bench/bench_sources.py [--rows 5000000] [--columns 20]``.
DESIGN target: push-down binning of 5M rows x 20 numeric columns in DuckDB <= 2x the time
of a polars scan summing the same columns from Parquet, moving only counts. The same seeded
data (bench_pipeline.write_data) is written to Parquet and loaded into a DuckDB database
file (not timed); the profile (20 quantile bins per column) is built once beforehand. Each
round times every contender once, in turn; the best of ``--repeats`` rounds is printed,
wall and CPU time of this process (DuckDB and polars threads alike). The push-down result
is checked to equal ``bin_raw`` of the Parquet file, and the rows it fetched are counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import best_of, write_data

import pipeline.bins.pushdown as pushdown
from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import build_profile
from pipeline.read.location import parse_location
from pipeline.read.sources import scan_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.parquet"
        columns = write_data(path, args.rows, args.columns)
        database = Path(tmp) / "raw.duckdb"
        with duckdb.connect(str(database)) as con:
            con.execute(f"CREATE TABLE raw AS SELECT * FROM read_parquet('{path}')")
        source = parse_location(f"duckdb:///{database}#raw")
        raw = scan_raw(path)
        profile = build_profile(raw, features=columns, bins=20, source=str(path))

        fetched: list[int] = []
        run_query = pushdown.run_query

        def counting(*query: object) -> pl.DataFrame:
            result = run_query(*query)  # type: ignore[arg-type]
            fetched.append(result.height * result.width)
            return result

        pushdown.run_query = counting
        assert_frame_equal(pushdown.bin_in_database(source, profile).histograms,
                           bin_raw(raw, profile))
        assert_frame_equal(
            pushdown.bin_in_database(source, profile, timestamp="ts", period="1d").histograms,
            bin_raw(raw, profile, timestamp="ts", period="1d"))
        print(f"push-down result equals bin_raw; values fetched from DuckDB: {fetched[0]:,} "
              f"(one window), {fetched[1]:,} (1-day windows) for {args.rows:,} rows x "
              f"{args.columns} columns")

        best = best_of(args.repeats, {
            "scan": lambda: raw.select(pl.col(columns).sum()).collect(),
            "pushdown": lambda: pushdown.bin_in_database(source, profile),
            "windowed": lambda: pushdown.bin_in_database(source, profile, timestamp="ts",
                                                         period="1d"),
            "bin_raw": lambda: bin_raw(raw, profile),
        })
        scan, scan_cpu = best.pop("scan")
        print(f"rows={args.rows:,} columns={args.columns} (best of {args.repeats}; target: "
              f"push-down wall ratio <= 2x)")
        print(f"{'polars sum-scan':<28} wall {scan:.3f} s            cpu {scan_cpu:.3f} s")
        labels = {"pushdown": "DuckDB push-down", "windowed": "DuckDB push-down, 1d windows",
                  "bin_raw": "bin_raw of the Parquet file"}
        for name, (wall, cpu) in best.items():
            print(f"{labels[name]:<28} wall {wall:.3f} s ({wall / scan:.2f}x)  "
                  f"cpu {cpu:.3f} s ({cpu / scan_cpu:.2f}x)")


if __name__ == "__main__":
    main()
