"""The same flights as local Parquet, an S3 object, CSV, a Delta table, an Iceberg table, a
DuckDB table or query and a PostgreSQL table give identical drift tables (bins, counts,
metrics, statuses)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.bins.profile import write_profile
from pipeline.config import load_config
from pipeline.run import RunResult, build_baseline_profile, run_drift
from tests.servers import S3
from tests.sources_data import FLIGHTS_BASELINE, FLIGHTS_CURRENT, to_duckdb, to_postgres

FEATURES = ["dep_delay", "dest", "distance", "carrier", "hour"]


def run(tmp: Path, name: str, baseline: str, current: str,
        options: dict[str, str] | None = None) -> RunResult:
    return run_drift(load_config(None, {
        "input.baseline": baseline, "input.current": current,
        "input.timestamp": "scheduled_departure", "input.period": "1w",
        "input.segments": ["origin"], "input.features": FEATURES,
        "input.storage_options": options, "output.dir": str(tmp / name),
        "output.run_id": "r", "alerts.null_draws": 200}))


@pytest.fixture(scope="module")
def current() -> pl.DataFrame:
    # a few NaN and null values, so __missing__ is exercised on every path
    frame = pl.read_parquet(FLIGHTS_CURRENT)
    return frame.with_columns(
        dep_delay=pl.when(pl.col("flight_id") % 97 == 0).then(float("nan"))
        .otherwise(pl.col("dep_delay")),
        dest=pl.when(pl.col("flight_id") % 89 == 0).then(None).otherwise(pl.col("dest")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory,
              current: pl.DataFrame) -> tuple[Path, str, RunResult]:
    tmp = tmp_path_factory.mktemp("equivalence")
    config = load_config(None, {"input.segments": ["origin"], "input.features": FEATURES})
    profile = str(tmp / "baseline.parquet")
    write_profile(build_baseline_profile(config, str(FLIGHTS_BASELINE)), profile)
    current.write_parquet(tmp / "current.parquet")
    return tmp, profile, run(tmp, "parquet", profile, str(tmp / "current.parquet"))


def _same(result: RunResult, expected: RunResult) -> None:
    assert result.drift is not None and expected.drift is not None
    assert_frame_equal(result.drift, expected.drift)
    assert result.alerts["summary"] == expected.alerts["summary"]


def _csv(tmp: Path, frame: pl.DataFrame) -> str:
    frame.write_csv(tmp / "current.csv")
    return str(tmp / "current.csv")


def _delta(tmp: Path, frame: pl.DataFrame) -> str:
    frame.write_delta(tmp / "delta")
    return str(tmp / "delta")  # a folder holding _delta_log/: detected as Delta


def _iceberg(tmp: Path, frame: pl.DataFrame) -> str:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("local", uri=f"sqlite:///{tmp}/catalog.db",
                         warehouse=f"file://{tmp}/warehouse")
    catalog.create_namespace("kl")
    arrow = frame.with_columns(pl.col("flight_id").cast(pl.Int64)).to_arrow()  # no uint32
    table = catalog.create_table("kl.current", schema=arrow.schema)
    table.append(arrow)
    return f"iceberg:{table.metadata_location}"


def _duckdb(tmp: Path, frame: pl.DataFrame) -> str:
    return to_duckdb(frame, tmp / "warehouse.duckdb", "current")


def _duckdb_query(tmp: Path, frame: pl.DataFrame) -> str:
    table = to_duckdb(frame, tmp / "query.duckdb", "flights")
    return table.replace("#flights", "#SELECT * FROM flights WHERE distance > 0")


LOCAL: dict[str, Callable[[Path, pl.DataFrame], str]] = {
    "csv": _csv, "delta": _delta, "iceberg": _iceberg, "duckdb": _duckdb,
    "duckdb-query": _duckdb_query}


@pytest.mark.parametrize("kind", sorted(LOCAL))
def test_local_sources_give_the_parquet_drift_table(
        kind: str, reference: tuple[Path, str, RunResult], current: pl.DataFrame) -> None:
    tmp, profile, expected = reference
    _same(run(tmp, kind, profile, LOCAL[kind](tmp, current)), expected)


def test_an_s3_object_gives_the_parquet_drift_table(
        s3: S3, reference: tuple[Path, str, RunResult]) -> None:
    tmp, profile, expected = reference
    url = s3.upload(str(tmp / "current.parquet"), "equivalence/current.parquet")
    result = run(tmp, "s3", profile, url, s3.options)
    _same(result, expected)
    # credentials never reach an output
    text = (result.run_dir / "alerts.json").read_text()
    assert s3.options["aws_secret_access_key"] not in text
    assert result.alerts["run"]["config"]["input"]["storage_options"][
        "aws_secret_access_key"] == "***"


def test_a_postgresql_table_gives_the_parquet_drift_table(
        postgres_url: str, reference: tuple[Path, str, RunResult],
        current: pl.DataFrame) -> None:
    tmp, profile, expected = reference
    result = run(tmp, "postgres", profile, to_postgres(current, postgres_url, "current"))
    _same(result, expected)
    text = (result.run_dir / "alerts.json").read_text()
    assert "kl-drift-test-secret" not in text and "postgres:***@" in text


def test_a_raw_baseline_in_duckdb_is_profiled_in_the_database(
        reference: tuple[Path, str, RunResult]) -> None:
    """Profiling a database baseline (quantiles and top categories computed in DuckDB)
    gives the profile, and so the run, that the same rows as Parquet give."""
    tmp = reference[0]
    baseline = pl.read_parquet(FLIGHTS_BASELINE)
    in_duckdb = to_duckdb(baseline, tmp / "baseline.duckdb", "baseline")
    current = str(tmp / "current.parquet")
    from_parquet = run(tmp, "raw-parquet", str(FLIGHTS_BASELINE), current)
    from_duckdb = run(tmp, "raw-duckdb", in_duckdb, current)
    _same(from_duckdb, from_parquet)
    assert_frame_equal(pl.read_parquet(from_duckdb.run_dir / "baseline_profile.parquet"),
                       pl.read_parquet(from_parquet.run_dir / "baseline_profile.parquet"))
