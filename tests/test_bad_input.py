"""Bad input end to end: a one-line error naming what to fix, or a per-row status while the
rest of the run completes. Reader-level cases live in the readers/profile tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError, KLDriftError
from pipeline.run import run_drift
from tests.conftest import categorical_histogram, numeric_histogram

GOOD = {"a": 300.0, "b": 300.0, "c": 400.0}


def one_line(error: pytest.ExceptionInfo[KLDriftError]) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def run(tmp_path: Path, baseline: pl.DataFrame | Path, current: pl.DataFrame | Path,
        **overrides: object):
    """run_drift on tables written to tmp_path (or on given paths)."""
    paths = []
    for name, table in (("baseline", baseline), ("current", current)):
        if isinstance(table, pl.DataFrame):
            table.write_parquet(tmp_path / f"{name}.parquet")
            table = tmp_path / f"{name}.parquet"
        paths.append(str(table))
    config = load_config(None, {"input.baseline": paths[0], "input.current": paths[1],
                                "output.dir": str(tmp_path / "runs"), **overrides})
    return run_drift(config)


def statuses(result) -> dict[str, tuple[str, str | None]]:
    return {r["feature"]: (r["status"], r["reason"]) for r in result.drift.iter_rows(named=True)}


def good_pair() -> tuple[pl.DataFrame, pl.DataFrame]:
    return (categorical_histogram("good", GOOD),
            categorical_histogram("good", {"a": 310.0, "b": 290.0, "c": 400.0}))


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "expected"), [
    ("[alerts]\nwran = 0.1\n", "unknown key 'alerts.wran' (did you mean 'alerts.warn'?)"),
    ("[alerts]\nfdr_q = 2\n", "alerts.fdr_q: Input should be less than or equal to 1"),
    ("[alerts]\nwarn = 0.3\ncritical = 0.2\n", "alerts.warn: must be < alerts.critical"),
    ("[drift]\nmetric = \"jsd\"\n", "drift.metric: unknown metric 'jsd'"),
    ("[alerts.features.\"dep_[\"]\nwarn = 0.05\n", "not a valid glob pattern"),
    ("[input]\nperiod = \"1d\"\n", "input.period: needs timestamp"),
])
def test_bad_config_files(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert one_line(error).startswith(f"config '{path}': ")
    assert expected in str(error.value)


def test_missing_input_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        run_drift(load_config(None, {"input.baseline": "b.parquet"}))
    assert one_line(error) == ("input.current: required for feature drift (a file, folder, "
                               "URL or database source)")


def test_feature_listed_in_config_but_absent_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        run(tmp_path, *good_pair(), **{"input.features": ["good", "godo"]})
    assert "input.features: 'godo' is in neither" in one_line(error)


def test_window_settings_with_histogram_current(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        run(tmp_path, *good_pair(), **{"input.timestamp": "ts"})
    assert one_line(error).startswith("input.timestamp: windows apply to raw current data")


# --- files --------------------------------------------------------------------------------

def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        run(tmp_path, tmp_path / "nope.parquet", good_pair()[1])
    assert f"file '{tmp_path / 'nope.parquet'}'" in one_line(error)


def test_current_file_that_is_not_parquet(tmp_path: Path) -> None:
    (tmp_path / "current.parquet").write_text("feature,bin,count\nx,a,1\n")
    with pytest.raises(InputError) as error:
        run(tmp_path, good_pair()[0], tmp_path / "current.parquet")
    assert "current.parquet" in one_line(error)


def test_negative_count_names_the_column(tmp_path: Path) -> None:
    baseline, current = good_pair()
    with pytest.raises(InputError) as error:
        run(tmp_path, baseline, current.with_columns(pl.col("count") - 305))
    assert "column 'count'" in one_line(error) and "current" in str(error.value)


def test_duplicate_bins_error_or_sum(tmp_path: Path) -> None:
    baseline, current = good_pair()
    doubled = pl.concat([current, current])
    with pytest.raises(InputError) as error:
        run(tmp_path, baseline, doubled)
    assert "duplicates='sum'" in one_line(error)
    summed = run(tmp_path, baseline, doubled, **{"input.duplicates": "sum"})
    assert summed.drift["n_current"].to_list() == [2000.0]


def test_raw_current_without_rows(tmp_path: Path) -> None:
    raw = pl.DataFrame({"x": np.arange(100.0), "ts": [dt.datetime(2024, 1, 1)] * 100})
    raw.write_parquet(tmp_path / "base.parquet")
    raw.clear().write_parquet(tmp_path / "cur.parquet")
    with pytest.raises(InputError) as error:
        run(tmp_path, tmp_path / "base.parquet", tmp_path / "cur.parquet",
            **{"input.timestamp": "ts", "input.period": "1d"})
    assert "no rows to compare" in one_line(error) and "cur.parquet" in str(error.value)


def test_raw_current_with_histogram_baseline(tmp_path: Path) -> None:
    pl.DataFrame({"good": ["a", "b"]}).write_parquet(tmp_path / "raw.parquet")
    with pytest.raises(InputError) as error:
        run(tmp_path, good_pair()[0], tmp_path / "raw.parquet")
    assert "must be a profile or raw data" in one_line(error)


def test_timestamp_column_missing_from_raw_current(tmp_path: Path) -> None:
    pl.DataFrame({"x": np.arange(50.0)}).write_parquet(tmp_path / "raw.parquet")
    with pytest.raises(InputError) as error:
        run(tmp_path, tmp_path / "raw.parquet", tmp_path / "raw.parquet",
            **{"input.timestamp": "when", "input.period": "1d"})
    assert "column 'when'" in one_line(error)


def test_mismatched_segment_columns(tmp_path: Path) -> None:
    baseline, current = good_pair()
    with pytest.raises(ConfigError) as error:
        run(tmp_path, baseline.with_columns(model_version=pl.lit("2")),
            current.with_columns(region=pl.lit("EU")))
    assert "segmented by ['model_version'] but this run by ['region']" in one_line(error)


# --- per-row problems: the rest of the run completes --------------------------------------

def test_feature_problems_become_rows_and_the_good_feature_is_decided(tmp_path: Path) -> None:
    baseline = pl.concat([
        categorical_histogram("good", GOOD),
        categorical_histogram("zero_current", GOOD),
        categorical_histogram("zero_baseline", {"a": 0.0, "b": 0.0}),
        categorical_histogram("only_baseline", GOOD),
        categorical_histogram("new_category", GOOD),
        categorical_histogram("tiny", GOOD),
    ])
    current = pl.concat([
        categorical_histogram("good", {"a": 310.0, "b": 290.0, "c": 400.0}),
        categorical_histogram("zero_current", {"a": 0.0, "b": 0.0, "c": 0.0}),
        categorical_histogram("zero_baseline", {"a": 40.0, "b": 60.0}),
        categorical_histogram("only_current", GOOD),
        categorical_histogram("new_category", {"a": 300.0, "b": 300.0, "c": 350.0,
                                                "zzz": 50.0}),
        categorical_histogram("tiny", {"a": 3.0, "b": 4.0}),
    ])
    result = run(tmp_path, baseline, current)
    got = statuses(result)
    assert got["good"] == ("ok", None)
    assert got["zero_current"] == ("insufficient_data",
                                   "no current data for this segment and window")
    assert got["zero_baseline"] == ("error", "baseline histogram is empty (total count 0)")
    assert got["only_baseline"] == ("error", "feature 'only_baseline' not in the current data")
    assert got["only_current"] == ("error", "feature 'only_current' not in the baseline")
    assert got["tiny"] == ("insufficient_data", "n_current=7.0 < min_count=30")
    # A category never seen in the baseline is drift, not an error: it leads the top bins.
    assert got["new_category"][0] in ("warn", "critical")
    top = result.drift.filter(feature="new_category")["top_bins"][0]
    assert top[0]["bin"] == "zzz" and top[0]["baseline_share"] == 0
    problems = {p["feature"] for p in result.alerts["problems"]}
    assert problems == {"zero_current", "zero_baseline", "only_baseline", "only_current",
                        "tiny"}


def test_empty_window_is_insufficient_while_other_windows_are_decided(tmp_path: Path) -> None:
    baseline = numeric_histogram("x", [0, 1], [300, 400, 300])
    current = pl.concat([
        numeric_histogram("x", [0, 1], counts, window=w)
        for w, counts in (("w1", [310, 380, 310]), ("w2", [0, 0, 0]), ("w3", [900, 50, 50]))])
    result = run(tmp_path, baseline, current, **{"alerts.calibrated": False})
    assert result.drift.select("window", "status").rows() == [
        ("w1", "ok"), ("w2", "insufficient_data"), ("w3", "critical")]


def test_all_null_and_constant_raw_columns_are_handled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    baseline = pl.DataFrame({"normal": rng.normal(size=2000), "constant": np.full(2000, 7.0),
                             "all_null": pl.Series([None] * 2000, dtype=pl.Float64)})
    current = pl.DataFrame({"normal": rng.normal(size=500), "constant": np.full(500, 7.0),
                            "all_null": pl.Series([None] * 500, dtype=pl.Float64)})
    baseline.write_parquet(tmp_path / "b.parquet")
    current.write_parquet(tmp_path / "c.parquet")
    result = run(tmp_path, tmp_path / "b.parquet", tmp_path / "c.parquet")
    got = statuses(result)
    # Same distribution on every column, including the degenerate ones: nothing alerts.
    assert got == {"all_null": ("ok", None), "constant": ("ok", None), "normal": ("ok", None)}
    assert result.drift.filter(feature="constant")["js_distance"].item() == pytest.approx(0)


def test_all_null_current_column_is_drift_into_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pl.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)}).write_parquet(
        tmp_path / "b.parquet")
    pl.DataFrame({"x": pl.Series([None] * 400, dtype=pl.Float64),
                  "y": rng.normal(size=400)}).write_parquet(tmp_path / "c.parquet")
    result = run(tmp_path, tmp_path / "b.parquet", tmp_path / "c.parquet")
    row = result.drift.filter(feature="x").row(0, named=True)
    assert row["status"] == "critical" and row["top_bins"][0]["bin"] == "__missing__"
    assert statuses(result)["y"] == ("ok", None)


def test_segment_without_baseline_is_an_error_row(tmp_path: Path) -> None:
    baseline = pl.concat([categorical_histogram("good", GOOD, region=r) for r in ("EU", "US")])
    current = pl.concat([categorical_histogram("good", GOOD, region=r)
                         for r in ("EU", "US", "APAC")])
    result = run(tmp_path, baseline, current)
    rows = {r["segment"]: (r["status"], r["reason"]) for r in result.drift.iter_rows(named=True)}
    assert rows == {"region=EU": ("ok", None), "region=US": ("ok", None),
                    "region=APAC": ("error", "segment region=APAC not in the baseline; "
                                             "rebuild the profile or compare globally")}
