"""Database sources: push-down binning equals binning the rows in polars, only counts leave
the database, and every failure is one line naming the source without its password."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.bins.binning import bin_raw, bin_windows
from pipeline.bins.layout import feature_bins
from pipeline.bins.profile import Profile, build_profile
from pipeline.bins.pushdown import bin_in_database, profile_in_database
from pipeline.errors import InputError
from pipeline.read import sql
from pipeline.read.location import parse_location
from pipeline.read.sources import detect_format, scan_source
from tests.servers import PG_PASSWORD
from tests.sources_data import to_duckdb, to_postgres


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    """Numeric, integer, text and boolean features with NaN, nulls, infinities, values
    outside the baseline range and unseen categories; a timestamp with nulls; segments."""
    rng = np.random.default_rng(7)
    n = 3000
    x = rng.normal(size=n)
    x[::50], x[1::70], x[2::90], x[3::110] = np.nan, np.inf, -np.inf, 40.0
    return pl.DataFrame({
        "x": x, "k": rng.integers(-3, 9, n),
        "c": rng.choice(["a", "b", "c", "new"], n), "flag": rng.random(n) < 0.3,
        "region": rng.choice(["EU", "US"], n), "tier": rng.integers(1, 3, n),
        "ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 3, 1),
                                interval="28m", eager=True).head(n),
    }).with_columns(c=pl.when(pl.int_range(n) % 13 == 0).then(None).otherwise("c"),
                    ts=pl.when(pl.int_range(n) % 101 == 0).then(None).otherwise("ts"))


@pytest.fixture(scope="module")
def profile(rows: pl.DataFrame) -> Profile:
    baseline = rows.head(1000).filter(pl.col("c") != "new")
    return build_profile(baseline.lazy(), features=["x", "k", "c", "flag"], bins=8,
                         max_categories=2)


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory, rows: pl.DataFrame) -> str:
    return to_duckdb(rows, tmp_path_factory.mktemp("duck") / "wh.duckdb", "rows")


SETTINGS = [
    {},
    {"segments": ["region", "tier"]},
    {"timestamp": "ts", "period": "1w", "segments": ["region"]},
    {"timestamp": "ts", "period": "1mo"},
    {"timestamp": "ts", "period": "2d12h"},
    {"timestamp": "ts"},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_duckdb_push_down_equals_binning_in_polars(
        duck: str, rows: pl.DataFrame, profile: Profile, settings: dict) -> None:
    expected = bin_windows(rows.lazy(), profile, **settings)
    got = bin_in_database(parse_location(duck), profile, **settings)
    assert_frame_equal(got.histograms, expected.histograms)
    assert got.span == expected.span  # the time range, for window coverage


def test_only_counts_leave_the_database(duck: str, profile: Profile,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The aggregate returns one row per (segment, window) group, whatever the row count."""
    fetched: list[pl.DataFrame] = []
    run_query = sql.run_query

    def spy(*args: object) -> pl.DataFrame:
        fetched.append(run_query(*args))  # type: ignore[arg-type]
        return fetched[-1]

    monkeypatch.setattr("pipeline.bins.pushdown.run_query", spy)
    bin_in_database(parse_location(duck), profile, timestamp="ts", period="1w",
                    segments=["region"])
    result, *span = fetched
    assert [part.shape for part in span] == [(1, 2), (1, 1)]  # first/last, then previous
    weeks = 10  # 2024-01-01 .. 2024-03-01, plus the null window
    assert result.height <= 2 * weeks
    # region, window, the row count, then per feature its non-missing values and one count
    # per edge or category: never a row of data
    assert result.width == 3 + sum(f.n_bins - 1 for f in feature_bins(profile.layout))


def test_a_postgresql_query_source_bins_in_the_database(
        postgres_url: str, rows: pl.DataFrame, profile: Profile) -> None:
    source = to_postgres(rows, postgres_url, "rows").replace(
        "#rows", "#SELECT * FROM rows WHERE region = 'EU'")
    settings = {"timestamp": "ts", "period": "1w", "segments": ["tier"]}
    expected = bin_raw(rows.lazy().filter(pl.col("region") == "EU"), profile, **settings)
    assert_frame_equal(bin_in_database(parse_location(source), profile, **settings)
                       .histograms, expected)
    assert detect_format(source) == "raw"


@pytest.mark.parametrize("query", [
    "DELETE FROM rows", "SELECT 1; DROP TABLE rows", "CREATE TABLE t AS SELECT 1",
    "WITH d AS (DELETE FROM rows RETURNING *) SELECT * FROM d",
])
def test_a_query_that_is_not_one_select_is_refused(duck: str, query: str) -> None:
    source = duck.replace("#rows", f"#{query}")
    with pytest.raises(InputError, match="must be one SELECT") as info:
        scan_source(source)
    assert "\n" not in str(info.value)


def test_missing_table_and_column_are_one_line_errors(duck: str, profile: Profile) -> None:
    with pytest.raises(InputError, match=r"#nope': table or column not found"):
        scan_source(duck.replace("#rows", "#nope"))
    with pytest.raises(InputError, match=r"column 'nope': column not found"):
        bin_in_database(parse_location(duck), profile, segments=["nope"])


def test_bad_password_and_unreachable_server_name_the_source_not_the_secret(
        postgres_url: str) -> None:
    wrong = postgres_url.replace(PG_PASSWORD, "wrong-secret") + "#rows"
    with pytest.raises(InputError, match=r"postgres:\*\*\*@.*access denied") as info:
        scan_source(wrong)
    assert "wrong-secret" not in str(info.value)
    closed = "postgresql+psycopg://postgres:pw@127.0.0.1:1/postgres#rows"
    with pytest.raises(InputError, match=r"cannot reach the database"):
        scan_source(closed)


def test_a_database_source_needs_a_table_or_query() -> None:
    with pytest.raises(InputError, match=r"needs a table or a query after '#'"):
        parse_location("duckdb:///wh.duckdb")
    with pytest.raises(InputError, match=r"no database driver"):
        scan_source("nosuchdb://host/db#t")


def test_text_timestamps_must_be_cast_in_the_query(tmp_path: Path, profile: Profile) -> None:
    source = to_duckdb(pl.DataFrame({"x": [1.0], "ts": ["2024-01-01"]}),
                       tmp_path / "t.duckdb", "t")
    with pytest.raises(InputError, match="CAST it in a query source"):
        bin_in_database(parse_location(source), profile, timestamp="ts", period="1d",
                        features=["x"])


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_a_profile_built_in_duckdb_equals_the_polars_profile(
        duck: str, rows: pl.DataFrame, strategy: str) -> None:
    options = {"features": ["x", "k", "c", "flag"], "segments": ["region"], "bins": 7,
               "max_categories": 2, "strategy": strategy}
    expected = build_profile(rows.lazy(), **options)
    got = profile_in_database(parse_location(duck), **options)
    assert_frame_equal(got.table, expected.table)
    drop = {"created_at", "source"}
    assert {k: v for k, v in got.metadata.items() if k not in drop} == {
        k: v for k, v in expected.metadata.items() if k not in drop}


def test_a_profile_built_in_postgresql_equals_the_polars_profile(
        postgres_url: str, rows: pl.DataFrame) -> None:
    source = to_postgres(rows, postgres_url, "rows")
    options = {"features": ["x", "k", "c", "flag"], "bins": 9, "max_categories": 3}
    expected = build_profile(rows.lazy(), **options)
    assert_frame_equal(profile_in_database(parse_location(source), **options).table,
                       expected.table)
