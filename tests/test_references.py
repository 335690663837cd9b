"""Moving references: which earlier windows each window is compared with, and their counts.

Every reference histogram is checked against an independent one: the counts of the same
windows as the ``baseline`` rows of the same runs measured them (``current_count`` of the
bins), summed by hand. Runs follow each other into one output folder, so references come
from this run and from the history; reruns, partial windows, new bin layouts, lookbacks and
runs without windows are covered, and memory stays with what the lookback needs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.bins.align import align
from pipeline.bins.profile import build_profile, write_profile
from pipeline.bins.references import (
    build_references,
    feature_layouts,
    history_rows,
    read_earlier,
    timeline,
    window_keys,
    with_keys,
)
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.labels import private_segment_columns
from pipeline.run import run_drift
from pipeline.write.history import HISTORY_DIR, append_history, scan_histograms

START = datetime(2024, 3, 1)
MODES = ["baseline", "previous", "rolling", "same_period"]


def _days(rng: np.random.Generator, days: range, rows: int = 400, *,
          until: dict[int, int] | None = None) -> pl.DataFrame:
    """Raw rows of some days (``until``: day -> the hour its data stops, a partial day)."""
    parts = []
    for day in days:
        hours = (until or {}).get(day, 24)
        seconds = np.sort(rng.integers(0, hours * 3600, rows))
        parts.append(pl.DataFrame({
            "ts": [START + timedelta(days=day, seconds=int(s)) for s in seconds],
            "x": rng.normal(0.05 * day, 1.0, rows),
            "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2])}))
    return pl.concat(parts)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("refs") / "profile.parquet"
    baseline = pl.DataFrame({"x": rng.normal(0, 1, 5000),
                             "c": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])})
    write_profile(build_profile(baseline.lazy(), features=["x", "c"], bins=10), path)
    return path


def _run(profile: Path, data: pl.DataFrame, out: Path, run_id: str, **settings: Any
         ) -> pl.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run_id}.parquet"
    data.write_parquet(path)
    overrides = {"input.baseline": str(profile), "input.current": str(path),
                 "input.timestamp": "ts", "input.period": "1d", "references.modes": MODES,
                 "references.season": "7d", "references.rolling_windows": 3,
                 "output.dir": str(out), "output.run_id": run_id, "output.fail_on": "never",
                 **settings}
    result = run_drift(load_config(None, overrides))
    assert result.drift is not None
    return result.drift


def _counts(drift: pl.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """Each window's own counts per bin, as the baseline rows measured them."""
    rows = drift.filter(pl.col("reference") == "baseline").select("feature", "window", "bins")
    return {(r["feature"], r["window"]): {b["bin"]: b["current_count"] for b in r["bins"]
                                         if b["current_count"]}
            for r in rows.iter_rows(named=True)}


def _reference_counts(row: dict[str, Any]) -> dict[str, float]:
    return {b["bin"]: b["baseline_count"] for b in row["bins"] if b["baseline_count"]}


def _summed(counts: dict[tuple[str, str], dict[str, float]], feature: str,
            windows: list[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for window in windows:
        for key, value in counts[(feature, window)].items():
            total[key] = total.get(key, 0.0) + value
    return total


def _label(day: int) -> str:
    return (START + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture(scope="module")
def two_runs(profile: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Days 0-6 in one run, days 7-12 in the next, into one output folder."""
    out = tmp_path_factory.mktemp("two_runs")
    rng = np.random.default_rng(2)
    first = _run(profile, _days(rng, range(7)), out, "a")
    second = _run(profile, _days(rng, range(7, 13)), out, "b")
    return {"out": out, "first": first, "second": second,
            "counts": {**_counts(first), **_counts(second)}}


def test_each_mode_sums_the_right_earlier_windows(two_runs: dict[str, Any]) -> None:
    counts = two_runs["counts"]
    expected = {"previous": lambda d: [d - 1], "rolling": lambda d: [d - 3, d - 2, d - 1],
                "same_period": lambda d: [d - 7]}
    checked = 0
    for drift in (two_runs["first"], two_runs["second"]):
        for row in drift.filter(pl.col("reference") != "baseline").iter_rows(named=True):
            day = (datetime.fromisoformat(row["window"]) - START).days
            earlier = [d for d in expected[row["reference"]](day) if d >= 0]
            if not earlier:
                assert row["status"] == "insufficient_data" and row["reference_windows"] is None
                assert "no complete" in row["reason"]
                continue
            windows = [_label(d) for d in earlier]
            assert row["reference_windows"] == windows, row
            assert _reference_counts(row) == _summed(counts, row["feature"], windows)
            assert row["n_baseline"] == sum(_summed(counts, row["feature"], windows).values())
            checked += 1
    # previous 12 + rolling 12 + same_period 6 windows, two features
    assert checked == 2 * (12 + 12 + 6)


def test_the_next_run_takes_earlier_windows_from_the_history(two_runs: dict[str, Any]) -> None:
    second = two_runs["second"]
    day7 = second.filter(pl.col("window") == _label(7), pl.col("feature") == "x")
    refs = dict(day7.select("reference", "reference_windows").iter_rows())
    assert refs["previous"] == [_label(6)]  # from run "a"
    assert refs["rolling"] == [_label(4), _label(5), _label(6)]
    assert refs["same_period"] == [_label(0)]
    history = two_runs["out"] / HISTORY_DIR
    stored = pl.read_parquet(history / "run_id=a" / "histograms.parquet")
    assert set(stored["window"]) == {_label(d) for d in range(7)}
    assert stored["start"].is_sorted()
    assert {"segment", "feature", "window", "start", "partial", "layout", "bin", "lower",
            "upper", "count", "run_id", "created_at"} == set(stored.columns)


def test_a_rerun_gives_the_same_references(two_runs: dict[str, Any], profile: Path) -> None:
    out = two_runs["out"]
    data = pl.read_parquet(out / "b.parquet")
    again = _run(profile, data, out, "b")
    columns = ["feature", "window", "reference", "reference_windows", "n_baseline", "value",
               "status"]
    assert again.select(columns).equals(two_runs["second"].select(columns))


def test_series_are_segment_feature_reference(two_runs: dict[str, Any]) -> None:
    """Persistence and lifecycles count each reference's windows on their own."""
    drift = two_runs["second"]
    assert drift.select("segment", "feature", "window", "reference").is_unique().all()
    order = drift.select("feature", "window", "reference").rows()
    assert order == sorted(order, key=lambda r: (r[0], r[1], MODES.index(r[2])))


def test_partial_windows_never_serve_as_references(profile: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    # day 4 stops at 05:00: coverage 5/24 < 0.5, partial
    _run(profile, _days(rng, range(5), until={4: 5}), tmp_path, "a")
    second = _run(profile, _days(rng, range(5, 8)), tmp_path, "b")
    day5 = second.filter(pl.col("window") == _label(5), pl.col("feature") == "x")
    refs = dict(day5.select("reference", "reference_windows").iter_rows())
    assert refs["previous"] == [_label(3)]
    assert refs["rolling"] == [_label(1), _label(2), _label(3)]


def test_a_new_bin_layout_is_never_mixed_with_the_old(profile: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    _run(profile, _days(rng, range(3)), tmp_path, "a")
    other = tmp_path / "other.parquet"
    baseline = pl.DataFrame({"x": rng.normal(0, 2, 5000),
                             "c": rng.choice(["a", "b", "c", "d"], 5000)})
    write_profile(build_profile(baseline.lazy(), features=["x", "c"], bins=10), other)
    second = _run(other, _days(rng, range(3, 5)), tmp_path, "b")
    first_day = second.filter(pl.col("window") == _label(3), pl.col("reference") == "previous")
    assert first_day["status"].to_list() == ["insufficient_data"] * 2
    assert all("no complete earlier window" in r for r in first_day["reason"])
    # the run's own earlier window serves the next one
    next_day = second.filter(pl.col("window") == _label(4), pl.col("reference") == "previous")
    assert next_day["reference_windows"].to_list() == [[_label(3)]] * 2


def test_lookback_limits_how_far_back_windows_serve(profile: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = pl.concat([_days(rng, range(3)), _days(rng, range(6, 8))])
    drift = _run(profile, data, tmp_path, "a", **{"references.lookback": "2d"})
    day6 = drift.filter(pl.col("window") == _label(6), pl.col("reference") == "previous")
    assert day6["status"].to_list() == ["insufficient_data"] * 2
    assert "within the lookback (2d)" in day6["reason"][0]
    day7 = drift.filter(pl.col("window") == _label(7), pl.col("reference") == "rolling")
    assert day7["reference_windows"].to_list() == [[_label(6)]] * 2
    # without a limit the gap is bridged
    unlimited = _run(profile, data, tmp_path / "wide", "a", **{"references.lookback": "30d"})
    day6 = unlimited.filter(pl.col("window") == _label(6), pl.col("reference") == "previous")
    assert day6["reference_windows"].to_list() == [[_label(2)]] * 2


def test_runs_without_windows_compare_with_the_previous_run(profile: Path,
                                                           tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    results = []
    for run_id in ("a", "b"):
        path = tmp_path / f"{run_id}.parquet"
        _days(rng, range(1)).drop("ts").write_parquet(path)
        config = load_config(None, {
            "input.baseline": str(profile), "input.current": str(path),
            "references.modes": ["baseline", "previous"], "output.dir": str(tmp_path),
            "output.run_id": run_id, "output.fail_on": "never"})
        results.append(run_drift(config))
    first, second = (r.drift for r in results)
    assert first is not None and second is not None
    assert set(first.filter(pl.col("reference") == "previous")["status"]) == {
        "insufficient_data"}
    previous = second.filter(pl.col("reference") == "previous", pl.col("feature") == "x")
    created = pl.read_parquet(tmp_path / HISTORY_DIR / "run_id=a" / "part.parquet")[
        "created_at"][0]
    assert previous["reference_windows"].to_list() == [
        [f"run of {created.strftime('%Y-%m-%dT%H:%M:%SZ')}"]]
    assert previous["n_baseline"].to_list() == first.filter(
        pl.col("reference") == "baseline", pl.col("feature") == "x")["n_current"].to_list()


def test_adding_modes_leaves_the_baseline_verdicts_unchanged(profile: Path,
                                                             tmp_path: Path) -> None:
    """Each mode is its own Benjamini-Hochberg family: the baseline rows are those of a run
    that checks only the baseline (today's behaviour, the default)."""
    data = _days(np.random.default_rng(7), range(6))
    alone = _run(profile, data, tmp_path / "alone", "r", **{"references.modes": ["baseline"]})
    both = _run(profile, data, tmp_path / "both", "r")
    assert both.filter(pl.col("reference") == "baseline").equals(alone)
    assert alone["reference"].unique().to_list() == ["baseline"]


def test_per_feature_modes(profile: Path, tmp_path: Path) -> None:
    data = _days(np.random.default_rng(8), range(3))
    drift = _run(profile, data, tmp_path, "r", **{
        "references.modes": ["baseline"], "references.features": {"x": ["previous"],
                                                                  "z*": ["rolling"]}})
    assert dict(drift.group_by("feature").agg(pl.col("reference").unique().sort())
                .iter_rows()) == {"x": ["previous"], "c": ["baseline"]}
    document = (tmp_path / "r" / "alerts.json").read_text()
    assert "references.features pattern 'z*' matches no feature" in document


def test_a_feature_missing_from_the_current_data_is_an_error_under_every_mode(
        profile: Path, tmp_path: Path) -> None:
    data = _days(np.random.default_rng(9), range(2)).drop("c")
    drift = _run(profile, data, tmp_path, "r")
    missing = drift.filter(pl.col("feature") == "c")
    assert sorted(missing["reference"].unique()) == sorted(MODES)
    assert set(missing["status"]) == {"error"}
    assert missing.height == 2 * len(MODES)


def test_old_history_partitions_read_as_baseline(profile: Path, tmp_path: Path) -> None:
    """A history written before reference modes (no ``reference`` column, no histograms)
    continues its series: the next run's alert is ongoing, not new."""
    rng = np.random.default_rng(10)
    shifted = _days(rng, range(2)).with_columns(pl.col("x") + 2)
    first = _run(profile, shifted, tmp_path, "a", **{"references.modes": ["baseline"]})
    part = tmp_path / HISTORY_DIR / "run_id=a"
    (part / "histograms.parquet").unlink()
    old = pl.read_parquet(part / "part.parquet").drop("reference", "reference_windows")
    old.write_parquet(part / "part.parquet")
    assert "critical" in set(first.filter(pl.col("feature") == "x")["status"])
    second = _run(profile, _days(rng, range(2, 3)).with_columns(pl.col("x") + 2), tmp_path,
                  "b", **{"references.modes": ["baseline"]})
    x = second.filter(pl.col("feature") == "x").row(0, named=True)
    assert x["status"] == "critical" and x["lifecycle"] == "ongoing"


def test_reading_the_history_loads_only_the_lookback(tmp_path: Path) -> None:
    """Memory follows the lookback, not the history: 200 runs of one window each, the next
    run with a 3-day lookback loads 3 windows' rows."""
    layouts = pl.DataFrame({"feature": ["x"], "layout": ["l"]})
    for day in range(200):
        start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)
        rows = pl.DataFrame({
            "segment": "all", "feature": "x", "window": start.strftime("%Y-%m-%dT%H:%M:%S"),
            "start": start, "partial": False, "layout": "l", "bin": ["a", "b"],
            "lower": None, "upper": None, "count": [1.0, 2.0]},
            schema_overrides={"lower": pl.Float64, "upper": pl.Float64})
        append_history(tmp_path, rows, f"r{day}", start, part="histograms")
    parts, warnings = scan_histograms(tmp_path, exclude_run_id="next")
    assert len(parts) == 200 and not warnings
    scan = pl.concat([part for _, part in parts])
    since = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=197)
    loaded = read_earlier(scan, layouts, since=since)
    assert loaded.height == 3 * 2
    other = read_earlier(scan, pl.DataFrame({"feature": ["x"], "layout": ["m"]}), since=None)
    assert other.is_empty()


def test_a_history_partition_damaged_inside_its_pages_is_skipped(profile: Path,
                                                                 tmp_path: Path) -> None:
    """Footers intact, pages garbage: found only when the references are read. The run
    warns naming the file and compares with the windows of the other partitions."""
    rng = np.random.default_rng(9)
    out = tmp_path / "out"
    _run(profile, _days(rng, range(0, 3)), out, "a")
    _run(profile, _days(rng, range(3, 6)), out, "b")
    damaged = out / HISTORY_DIR / "run_id=a" / "histograms.parquet"
    data = bytearray(damaged.read_bytes())
    meta = pq.ParquetFile(damaged).metadata
    for group in range(meta.num_row_groups):  # the counts only: footer and ids stay readable
        chunk = next(c for c in map(meta.row_group(group).column, range(meta.num_columns))
                     if c.path_in_schema == "count")
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        data[start:start + chunk.total_compressed_size] = b"Z" * chunk.total_compressed_size
    damaged.write_bytes(bytes(data))
    result = run_drift(load_config(None, {
        "input.baseline": str(profile), "input.current": str(out / "b.parquet"),
        "input.timestamp": "ts", "input.period": "1d", "references.modes": MODES,
        "references.season": "3d", "output.dir": str(out), "output.run_id": "c",
        "output.fail_on": "never"}))
    warnings = result.alerts["warnings"]
    assert any(str(damaged) in w and "skipped" in w for w in warnings), warnings
    assert result.drift is not None
    day3 = result.drift.filter(pl.col("window") == _label(3), pl.col("feature") == "x")
    refs = dict(day3.select("reference", "reference_windows").iter_rows())
    # day 2 and day 0 were in the damaged run "a": no previous and no same_period reference
    assert refs["previous"] is None and refs["same_period"] is None
    day4 = result.drift.filter(pl.col("window") == _label(4), pl.col("feature") == "x")
    assert dict(day4.select("reference", "reference_windows").iter_rows())["previous"] == [
        _label(3)]


def test_align_by_window_matches_each_window_with_its_own_reference() -> None:
    windows = [datetime(2024, 1, d) for d in (1, 2)]
    current = pl.DataFrame({"feature": "c", "window": [windows[0]] * 2 + [windows[1]] * 2,
                            "bin": ["a", "b"] * 2, "count": [1.0, 2.0, 3.0, 4.0]})
    reference = current.with_columns(pl.col("count") * 10)
    aligned = align(reference, current, by_window=True)
    np.testing.assert_array_equal(aligned.baseline, aligned.current * 10)
    pooled = align(reference, current)  # without: summed over the windows
    np.testing.assert_array_equal(pooled.baseline, [[40.0, 60.0], [40.0, 60.0]])


def test_references_of_a_histogram_table_in_memory() -> None:
    """build_references on its own: three windows, k = 2, against a numpy sum."""
    rng = np.random.default_rng(11)
    days = [datetime(2024, 1, d) for d in range(1, 6)]
    counts = rng.integers(0, 20, (5, 4)).astype(float)
    current = pl.DataFrame({"feature": "c", "window": [d for d in days for _ in range(4)],
                            "bin": list("abcd") * 5, "count": counts.ravel()})
    keys = window_keys(current, as_of=datetime(2024, 2, 1))
    line = timeline(current, keys, None, ["c"])
    refs = build_references(current, keys, line, mode="rolling", features=["c"],
                            rolling_windows=2)
    for i in range(2, 5):
        got = (refs.histograms.filter(pl.col("window") == days[i]).sort("bin")["count"]
               .to_numpy())
        np.testing.assert_array_equal(got, counts[i - 2:i].sum(axis=0)[counts[i - 2:i]
                                                                        .sum(axis=0) > 0])
    assert feature_layouts(current)["layout"].n_unique() == 1


@pytest.mark.parametrize("seed", range(6))
def test_history_rows_are_the_joined_rows_sorted_by_start_feature_segment(seed: int) -> None:
    """history_rows (integer codes, one stable argsort) against the join + stable sort it
    replaces: null segment values, two segment columns or none, a feature without a layout,
    histograms with and without edges, rows in random order, labels as text or as categories
    (a histogram table read for a run), windows in time or labels without a start."""
    rng = np.random.default_rng(seed)
    n = 400
    days: list[object] = ([datetime(2024, 1, d, tzinfo=UTC) for d in (3, 1, 2)] if seed < 4
                          else ["w3", "w1", "w2"])
    table = pl.DataFrame({
        "region": [["eu", "us", None][i] for i in rng.integers(0, 3, n)],
        "tier": rng.choice(["a", "b"], n),
        "feature": rng.choice(["x", "y", "zz", "w"], n),
        "window": [days[i] for i in rng.integers(0, 3, n)],
        "bin": [f"b{i}" for i in rng.integers(0, 6, n)],
        "count": rng.integers(0, 9, n).astype(float)})
    segments = [["region", "tier"], ["region"], []][seed % 3]
    current = private_segment_columns(table.drop(c for c in ("region", "tier")
                                                 if c not in segments), segments)
    if seed == 3:
        current = current.with_columns(lower=pl.col("count"), upper=pl.col("count") + 1)
    labels = [c for c, t in current.schema.items() if t == pl.String]
    coded = current.with_columns(pl.col(labels).cast(pl.Categorical)) if seed % 2 else current
    keys = window_keys(coded, as_of=datetime(2024, 2, 1))
    layouts = feature_layouts(current.filter(pl.col("feature") != "w"))
    got = history_rows(coded, keys, layouts)
    edges = [pl.col(c) if c in current.columns else pl.lit(None, pl.Float64).alias(c)
             for c in ("lower", "upper")]
    text_keys = keys.with_columns(pl.col(c).cast(pl.String) for c in labels if c in keys)
    expected = (with_keys(current, text_keys).join(layouts, on="feature", how="left",
                                                   maintain_order="left")
                .select("segment", "feature", pl.col("label").alias("window"), "start",
                        "partial", "layout", "bin", *(e.cast(pl.Float64) for e in edges),
                        pl.col("count").cast(pl.Float64))
                .sort("start", "feature", "segment", nulls_last=True, maintain_order=True))
    assert got.null_count()["layout"].item() == (current["feature"] == "w").sum() > 0
    enums = [c for c, t in got.schema.items() if isinstance(t, pl.Enum)]
    assert enums == ["segment", "feature", "window", "layout", "bin"]
    assert got.with_columns(pl.col(enums).cast(pl.String)).equals(expected)


def test_config_errors_name_the_key() -> None:
    for overrides, message in (
            ({"references.modes": ["same_period"]}, "references.season: needed"),
            ({"references.modes": []}, "references.modes: list at least one"),
            ({"references.features": {"x": ["previous", "previous"]}}, "listed twice"),
            ({"references.modes": ["same_period"], "references.season": "36h",
              "input.timestamp": "t", "input.period": "1d"}, "not a whole number"),
            ({"references.lookback": "two days"}, "references.lookback"),
            ({"trends.min_windows": 40}, "trends.min_windows: must be <="),
            ({"trends.yellow": 8.0}, "trends.yellow: must be < trends.red")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)


@pytest.mark.parametrize("grouped", [False, True])
def test_window_keys_are_the_distinct_segment_windows(grouped: bool) -> None:
    """One key per distinct segment x window (found on the first rows of runs), in random
    order or one histogram after another, null segment values and windows included."""
    rng = np.random.default_rng(5)
    n = 300
    days = [datetime(2024, 1, d) for d in (3, 1, 2)] + [None]
    table = pl.DataFrame({"region": [["eu", "us", None][i] for i in rng.integers(0, 3, n)],
                          "window": [days[i] for i in rng.integers(0, 4, n)],
                          "feature": rng.choice(["x", "y"], n), "bin": "b", "count": 1.0})
    if grouped:
        table = table.sort("region", "window", "feature", nulls_last=True)
    current = private_segment_columns(table, ["region"])
    keys = window_keys(current, as_of=datetime(2024, 2, 1))
    on = [c for c in keys.columns if c in current.columns]
    assert len(on) == 2
    expected = current.select(on).unique()
    assert keys.height == expected.height
    assert keys.select(on).sort(on, nulls_last=True).equals(expected.sort(on, nulls_last=True))
