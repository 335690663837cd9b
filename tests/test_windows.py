"""Windows in one time zone for every input and every part of a run, and window coverage.

References are computed independently with ``zoneinfo`` and Python datetimes (window starts,
ends, labels) and by brute force over minutes (coverage of the demo's weeks).
"""

from __future__ import annotations

import doctest
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline.labels
import pipeline.windows
from pipeline.bins.binning import bin_windows
from pipeline.bins.profile import build_profile
from pipeline.config import EstimateConfig, ModelsConfig, load_config
from pipeline.errors import ConfigError, InputError
from pipeline.labels import window_label_expr
from pipeline.measure.estimate import estimate_frame
from pipeline.measure.models import compare_outputs
from pipeline.run import run_drift
from pipeline.windows import TimeSpan, merge_spans, window_coverage

DATA = Path(__file__).parents[1] / "data"
ZONES = ("UTC", "Europe/Paris", "Asia/Kolkata")
# Instants around the two 2024 DST changes of Paris and the midnights of every zone used.
_DST_DAYS = (datetime(2024, 3, 29, tzinfo=UTC), datetime(2024, 10, 25, tzinfo=UTC))


def _instants(minutes: list[int], start: datetime) -> list[datetime]:
    return [start + timedelta(minutes=m) for m in minutes]


instants_strategy = st.builds(
    _instants, st.lists(st.integers(0, 5 * 24 * 60), min_size=2, max_size=40),
    st.sampled_from(_DST_DAYS))


# --- independent references ----------------------------------------------------------------

def reference_start(instant: datetime, period: str, zone: str) -> datetime:
    """Start of the window holding ``instant``, with zoneinfo (aware)."""
    local = instant.astimezone(ZoneInfo(zone))
    if period == "1h":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.date() - timedelta(days=local.weekday() if period == "1w" else 0)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))


def reference_end(start: datetime, period: str, zone: str) -> datetime:
    if period == "1h":  # an hour is absolute time, even across a DST change
        return (start.astimezone(UTC) + timedelta(hours=1)).astimezone(ZoneInfo(zone))
    day = start.date() + timedelta(days=7 if period == "1w" else 1)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))


def reference_label(start: datetime, zone: str) -> str:
    """ISO-8601: naive text for UTC windows, with the UTC offset for any other zone."""
    return start.replace(tzinfo=None).isoformat() if zone == "UTC" else start.isoformat()


def reference_counts(instants: list[datetime], period: str, zone: str) -> Counter[str]:
    return Counter(reference_label(reference_start(t, period, zone), zone) for t in instants)


def reference_coverage(instants: list[datetime], period: str,
                       zone: str) -> dict[str, float | None]:
    """Coverage of each window: overlap of [start, end) with [first, last + tick), in UTC
    (Python subtracts two datetimes of one zone by their wall clocks)."""
    distinct = sorted(set(instants))
    first, last = distinct[0], distinct[-1]
    covered_end = last + (last - distinct[-2]) if len(distinct) > 1 else None
    coverage: dict[str, float | None] = {}
    for local in {reference_start(t, period, zone) for t in instants}:
        start, end = local.astimezone(UTC), reference_end(local, period, zone).astimezone(UTC)
        if covered_end is None:
            coverage[reference_label(local, zone)] = None
            continue
        overlap = min(end, covered_end) - max(start, first)
        coverage[reference_label(local, zone)] = max(overlap, timedelta(0)) / (end - start)
    return coverage


# --- the same instants stored in every way ----------------------------------------------------

def storage_forms(instants: list[datetime]) -> dict[str, pl.Series]:
    """The same instants as naive UTC, aware UTC, aware Paris (ns) and ISO text with
    assorted offsets."""
    utc = pl.Series("t", instants, dtype=pl.Datetime("us", "UTC"))
    offsets = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((5, 30), (-3, 0), (0, 0),
                                                                      (1, 0), (-9, -30))]
    return {
        "naive UTC": utc.dt.replace_time_zone(None),
        "aware UTC": utc,
        "aware Paris": utc.dt.convert_time_zone("Europe/Paris").dt.cast_time_unit("ns"),
        "ISO text with offsets": pl.Series("t", [
            t.astimezone(offsets[i % len(offsets)]).isoformat() for i, t in enumerate(instants)]),
    }


Windows = tuple[Counter[str], dict[str, float | None]]  # rows and coverage per window label


def input_windows(column: pl.Series, period: str, zone: str) -> Windows:
    """[input]: raw rows binned, windows labelled as the drift table labels them."""
    frame = pl.DataFrame({"t": column, "x": np.arange(column.len(), dtype=float)})
    profile = build_profile(pl.LazyFrame({"x": [0.0, 1.0]}))
    binned = bin_windows(frame.lazy(), profile, timestamp="t", period=period,
                         window_timezone=zone)
    counts = binned.histograms.filter(pl.col("bin") != "__missing__")
    dtype = counts.schema["window"]
    per_window = counts.group_by("window").agg(pl.col("count").sum())
    coverage = window_coverage(counts["window"], binned.span, period, 0.5)
    return (Counter(dict(per_window.select(window_label_expr(dtype), "count").iter_rows())),
            dict(coverage.select(window_label_expr(dtype), "coverage").iter_rows()))


def models_windows(column: pl.Series, period: str, zone: str) -> Windows:
    n = column.len()
    ids = pl.Series("id", range(n))
    logits = pl.Series("logits", [[0.0, 1.0]] * n)
    current = pl.DataFrame([ids, logits, column])
    config = ModelsConfig(baseline="b", current="c", outputs="logits", timestamp="t",
                          period=period)
    summary = compare_outputs(pl.DataFrame([ids, logits]), current, config,
                              window_timezone=zone).summary
    return (Counter(dict(summary.select("window", "n").iter_rows())),
            dict(summary.select("window", "coverage").iter_rows()))


def estimate_windows(column: pl.Series, period: str, zone: str) -> Windows:
    n = column.len()
    frame = pl.DataFrame({"logq": [-1.0] * n, "logp": [-2.0] * n, "t": column})
    table = estimate_frame(frame, EstimateConfig(source="s", timestamp="t", period=period),
                           window_timezone=zone)
    return (Counter(dict(table.select("window", "n").iter_rows())),
            dict(table.select("window", "coverage").iter_rows()))


PARTS = {"input": input_windows, "models": models_windows, "estimate": estimate_windows}


@settings(max_examples=12)
@given(instants=instants_strategy, period=st.sampled_from(["1h", "1d", "1w"]),
       zone=st.sampled_from(ZONES))
def test_same_instants_give_the_same_windows_in_every_part_and_storage(
        instants: list[datetime], period: str, zone: str) -> None:
    expected = reference_counts(instants, period, zone)
    coverage = reference_coverage(instants, period, zone)
    for form, column in storage_forms(instants).items():
        for part, windows in PARTS.items():
            counts, covered = windows(column, period, zone)
            assert counts == expected, (part, form)
            assert covered == pytest.approx(coverage, abs=1e-12), (part, form)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_paris_daily_and_weekly_windows_start_at_local_midnight(zone: str) -> None:
    # 22:30 UTC on Sunday 31 March 2024 is 00:30 on Monday 1 April in Paris (summer time)
    instants = [datetime(2024, 3, 31, 22, 30, tzinfo=UTC), datetime(2024, 3, 30, 23, 30,
                                                                   tzinfo=UTC)]
    for form, column in storage_forms(instants).items():
        got = {period: input_windows(column, period, zone)[0] for period in ("1d", "1w")}
        if zone == "UTC":
            assert got["1d"] == {"2024-03-31T00:00:00": 1, "2024-03-30T00:00:00": 1}, form
            assert got["1w"] == {"2024-03-25T00:00:00": 2}, form
        else:  # the DST day 31 March lasts 23 hours; both weeks start at local midnight
            assert got["1d"] == {"2024-04-01T00:00:00+02:00": 1,
                                 "2024-03-31T00:00:00+01:00": 1}, form
            assert got["1w"] == {"2024-04-01T00:00:00+02:00": 1,
                                 "2024-03-25T00:00:00+01:00": 1}, form


@pytest.mark.parametrize("zone", ZONES)
def test_dates_are_whole_days_of_the_window_zone(zone: str) -> None:
    days = [date(2024, 3, 29), date(2024, 3, 31), date(2024, 4, 1), date(2024, 4, 2)]
    midnights = [datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(zone)) for d in days]
    as_dates = pl.Series("t", days)
    for period in ("1d", "1w"):
        expected = reference_counts(midnights, period, zone)
        for part, windows in PARTS.items():
            assert windows(as_dates, period, zone)[0] == expected, (part, period)
    # a date covers its whole day: the last one ends at the next local midnight
    frame = pl.DataFrame({"t": as_dates, "x": [1.0] * 4})
    profile = build_profile(pl.LazyFrame({"x": [0.0, 1.0]}))
    binned = bin_windows(frame.lazy(), profile, timestamp="t", period="1w",
                         window_timezone=zone)
    coverage = window_coverage(binned.histograms["window"], binned.span, "1w", 0.5)
    got = dict(coverage.select(window_label_expr(coverage.schema["window"]),
                               "coverage").iter_rows())
    first = datetime(2024, 3, 25, tzinfo=ZoneInfo(zone))
    second = datetime(2024, 4, 1, tzinfo=ZoneInfo(zone))
    utc = [d.astimezone(UTC) for d in (first, second, midnights[0])]
    week = utc[1] - utc[0]  # 167 hours in Paris: the week of the DST change
    assert got == pytest.approx({reference_label(first, zone): (utc[1] - utc[2]) / week,
                                 reference_label(second, zone): 2 / 7})


def test_unparsable_text_is_an_error_in_every_part() -> None:
    column = pl.Series("t", ["2024-01-01T00:00:00Z", "soon", "2024-01-02T00:00:00+01:00"])
    for windows in PARTS.values():
        with pytest.raises(InputError, match=r"column 't': 1 timestamp value\(s\) are not "
                                             r"ISO-8601 text, first 'soon'"):
            windows(column, "1d", "UTC")


def test_window_timezone_is_one_validated_key_of_input() -> None:
    assert load_config(None).input.window_timezone == "UTC"
    with pytest.raises(ConfigError, match=r"input\.window_timezone: unknown IANA time zone"):
        load_config(None, {"input.window_timezone": "Europe/Pariss"})


# --- coverage ----------------------------------------------------------------------------------

@settings(max_examples=40)
@given(instants=instants_strategy, period=st.sampled_from(["1h", "1d", "1w"]),
       zone=st.sampled_from(ZONES), split=st.integers(1, 39))
def test_coverage_matches_the_reference_and_spans_merge(
        instants: list[datetime], period: str, zone: str, split: int) -> None:
    column = storage_forms(instants)["aware UTC"]
    frame = pl.DataFrame({"t": column, "x": [0.0] * column.len()})
    profile = build_profile(pl.LazyFrame({"x": [0.0, 1.0]}))
    binned = bin_windows(frame.lazy(), profile, timestamp="t", period=period,
                         window_timezone=zone)
    coverage = window_coverage(binned.histograms["window"], binned.span, period, 0.5)
    got = dict(coverage.select(window_label_expr(coverage.schema["window"]),
                               "coverage").iter_rows())
    expected = reference_coverage(instants, period, zone)
    assert got.keys() == expected.keys()
    for label, value in expected.items():
        assert got[label] == (None if value is None else pytest.approx(value, abs=1e-12))
    partial = dict(coverage.select(window_label_expr(coverage.schema["window"]),
                                   "partial").iter_rows())
    assert partial == {k: v is not None and v < 0.5 for k, v in expected.items()}
    # spans of two parts of the data (two files, two batches) merge into the whole's span
    parts = [TimeSpan.of(frame["t"][:split].dt.replace_time_zone(None)),
             TimeSpan.of(frame["t"][split:].dt.replace_time_zone(None))]
    whole = TimeSpan.of(frame["t"].dt.replace_time_zone(None))
    assert merge_spans(*parts) == whole == merge_spans(None, whole)


def test_demo_weeks_coverage_matches_a_brute_force_count_of_minutes(tmp_path: Path) -> None:
    source = DATA / "flights_current.parquet"
    stamps = pl.read_parquet(source, columns=["scheduled_departure"])["scheduled_departure"]
    distinct = stamps.unique().sort().to_list()
    covered = (distinct[0], distinct[-1] + (distinct[-1] - distinct[-2]))
    config = load_config(None, {
        "input.baseline": str(DATA / "flights_baseline.parquet"), "input.current": str(source),
        "input.timestamp": "scheduled_departure", "input.period": "1w",
        "input.features": ["distance"], "input.segments": ["origin"],
        "output.dir": str(tmp_path)})
    result = run_drift(config)
    on_disk = pl.read_parquet(result.run_dir / "drift.parquet")
    assert on_disk.columns[3:9] == ["window", "coverage", "partial", "reference",
                                   "reference_windows", "kind"]
    got = dict(on_disk.select("window", "coverage").unique().iter_rows())
    for label, coverage in got.items():
        start = datetime.fromisoformat(label)
        minutes = [start + timedelta(minutes=m) for m in range(7 * 24 * 60)]
        inside = sum(covered[0] <= m < covered[1] for m in minutes)
        assert coverage == pytest.approx(inside / len(minutes), abs=1e-12), label
    # the first "week" holds two days of data (Saturday 05:00 on), the middle ones are full
    assert got["2013-05-27T00:00:00"] == pytest.approx(43 / 168)
    assert on_disk.filter(partial=True)["window"].unique().to_list() == ["2013-05-27T00:00:00"]
    stricter = run_drift(config.model_copy(update={"input": config.input.model_copy(
        update={"min_coverage": 0.9})}))
    assert sorted(stricter.drift.filter(partial=True)["window"].unique()) == [
        "2013-05-27T00:00:00", "2013-07-08T00:00:00"]


def test_coverage_is_unknown_without_a_period_a_tick_or_for_histograms(tmp_path: Path) -> None:
    profile = build_profile(pl.LazyFrame({"x": [0.0, 1.0]}))
    one_instant = pl.LazyFrame({"t": [datetime(2024, 1, 1, 12)] * 3, "x": [0.0, 1.0, 2.0]})
    binned = bin_windows(one_instant, profile, timestamp="t", period="1d")
    assert window_coverage(binned.histograms["window"], binned.span, "1d", 0.5).rows() == [
        (datetime(2024, 1, 1), None, False)]
    no_period = bin_windows(one_instant, profile, timestamp="t")
    assert no_period.span is None
    # a histogram table: coverage null, partial false, in drift.parquet too
    table = pl.DataFrame({"feature": "c", "bin": ["a", "b"], "count": [5.0, 5.0]})
    table.write_parquet(tmp_path / "h.parquet")
    result = run_drift(load_config(None, {"input.baseline": str(tmp_path / "h.parquet"),
                                          "input.current": str(tmp_path / "h.parquet"),
                                          "output.dir": str(tmp_path)}))
    assert result.drift.select("coverage", "partial").rows() == [(None, False)]


@pytest.mark.parametrize("module", [pipeline.windows, pipeline.labels])
def test_docstring_examples_run(module: object) -> None:
    failures, tried = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert tried > 0 and failures == 0
