"""The flights data loaded into each kind of source, for the source tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sqlalchemy as sa

DATA = Path(__file__).parents[1] / "data"
FLIGHTS_BASELINE = DATA / "flights_baseline.parquet"
FLIGHTS_CURRENT = DATA / "flights_current.parquet"

_SQL_TYPES: dict[Any, Any] = {
    pl.String: sa.Text(), pl.Float64: sa.Double(), pl.Int64: sa.BigInteger(),
    pl.UInt32: sa.BigInteger(), pl.Boolean: sa.Boolean(), pl.Date: sa.Date(),
    pl.Datetime("us"): sa.DateTime()}


def to_duckdb(frame: pl.DataFrame, path: Path, table: str) -> str:
    """``frame`` as a DuckDB table in the database file ``path``; its source string."""
    with duckdb.connect(str(path)) as con:
        con.register("frame", frame.to_arrow())
        con.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM frame')
    return f"duckdb:///{path}#{table}"


def to_postgres(frame: pl.DataFrame, url: str, table: str) -> str:
    """``frame`` as a PostgreSQL table (dropped first); its source string."""
    metadata = sa.MetaData()
    target = sa.Table(table, metadata, *(sa.Column(name, _SQL_TYPES[dtype])
                                         for name, dtype in frame.schema.items()))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            metadata.drop_all(connection)
            metadata.create_all(connection)
            if frame.height:
                connection.execute(target.insert(), frame.to_dicts())
    finally:
        engine.dispose()
    return f"{url}#{table}"
