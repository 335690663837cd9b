"""Alert decisions: G-test p, BH q, thresholds, calibration, min_count, persistence."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from kl_metrics import divergences
from pipeline.bins.align import align
from pipeline.config import AlertsConfig, DriftConfig
from pipeline.decide.alerts import decide
from pipeline.decide.significance import MIN_EXPECTED, g_test_p_values
from pipeline.measure.drift import compute_drift
from tests.conftest import categorical_histogram

LABELS = [f"b{i}" for i in range(6)]
FLAT = np.full(6, 1 / 6)


def windowed(baseline: np.ndarray, windows: np.ndarray, feature: str = "f") -> tuple:
    """Baseline and current long tables for one feature: current row i is window w{i:03d}."""
    base = categorical_histogram(feature, dict(zip(LABELS, baseline, strict=True)))
    current = pl.concat([
        categorical_histogram(feature, dict(zip(LABELS, counts, strict=True)),
                              window=f"w{i:03d}")
        for i, counts in enumerate(windows)
    ])
    return base, current


def run_decide(baseline: pl.DataFrame, current: pl.DataFrame, drift_config=None,
               **alerts: object) -> pl.DataFrame:
    drift_config = drift_config or DriftConfig()
    aligned = align(baseline, current)
    return decide(compute_drift(aligned, drift_config), AlertsConfig(**alerts),
                  drift_config=drift_config)


def g_statistic(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """G of the 2 x k homogeneity table, written out independently of kl_metrics."""
    table = np.stack([current, baseline], axis=-2).astype(float)
    expected = (table.sum(-1, keepdims=True) * table.sum(-2, keepdims=True)
                / table.sum((-2, -1), keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * np.where(table > 0, special.xlogy(table, table / expected), 0).sum((-2, -1))


def test_large_counts_use_the_asymptotic_g_test(rng: np.random.Generator) -> None:
    baseline = rng.integers(200, 400, size=(30, 6)).astype(float)
    current = rng.integers(100, 300, size=(30, 6)).astype(float)
    p = g_test_p_values(current, baseline, draws=200, rng=rng)
    for i in range(30):
        statistic, reference, *_ = stats.chi2_contingency(
            np.stack([current[i], baseline[i]]), correction=False, lambda_="log-likelihood")
        assert statistic == pytest.approx(g_statistic(current[i], baseline[i]), rel=1e-9)
        assert p[i] == pytest.approx(reference, rel=1e-6)


def test_sparse_tables_get_a_monte_carlo_p_matching_an_independent_simulation() -> None:
    rng = np.random.default_rng(5)
    current = np.array([[3.0, 1, 0, 2, 1, 3]])  # n = 10: expected counts far below 5
    baseline = np.array([[50.0, 40, 30, 20, 10, 5]])
    p = g_test_p_values(current, baseline, draws=4000, rng=rng)[0]
    pooled = (current + baseline)[0] / (current + baseline).sum()
    draws = 40_000
    sim_c = rng.multinomial(10, pooled, size=draws)
    sim_b = rng.multinomial(155, pooled, size=draws)
    g_sim, g_obs = g_statistic(sim_c, sim_b), g_statistic(current[0], baseline[0])
    reference = (1 + (g_sim >= g_obs - 1e-9).sum()) / (draws + 1)
    assert 0.01 < reference < 0.9  # resolved region: the plain Monte Carlo p applies
    assert abs(p - reference) < 4 * np.sqrt(reference * (1 - reference) / 4000)


def test_simulated_p_fixes_the_anti_conservative_chi_square_at_small_n() -> None:
    rng = np.random.default_rng(11)
    probs = np.full(20, 0.05)
    baseline = np.tile(rng.multinomial(10**6, probs), (2000, 1)).astype(float)
    current = rng.multinomial(50, probs, size=2000).astype(float)
    assert 50 * probs.min() < MIN_EXPECTED
    simulated = g_test_p_values(current, baseline, draws=1000, rng=rng)
    asymptotic = stats.chi2.sf(g_statistic(current, baseline), 19)
    # Valid: about 1% below 0.01 (binomial sd 0.2%); the chi-square gives about 2.5%.
    assert (simulated < 0.01).mean() <= 0.016
    assert (asymptotic < 0.01).mean() > (simulated < 0.01).mean()


def test_strong_sparse_drift_is_not_capped_at_one_over_draws() -> None:
    rng = np.random.default_rng(3)
    baseline = np.array([[400.0, 300, 200, 80, 15, 5]])
    current = np.array([[0.0, 0, 0, 2, 10, 14]])  # rare bins dominate the window
    p = g_test_p_values(current, baseline, draws=500, rng=rng)[0]
    assert p < 1e-6 < 1 / 501


@settings(max_examples=30, deadline=None)
@given(p=st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=40))
def test_benjamini_hochberg_matches_the_definition(p: list[float]) -> None:
    from scipy.stats import false_discovery_control

    q = false_discovery_control(np.array(p), method="bh")
    m = len(p)
    order = sorted(p)
    for value, qv in zip(p, q, strict=True):
        candidates = [order[j] * m / (j + 1) for j in range(m) if order[j] >= value]
        assert qv == pytest.approx(min(1.0, min(candidates)), rel=1e-9)


def test_decide_q_values_are_bh_over_the_tested_rows(rng: np.random.Generator) -> None:
    windows = np.vstack([rng.multinomial(300, FLAT, size=12),
                         rng.multinomial(300, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1], size=4),
                         rng.multinomial(10, FLAT, size=3)])  # below min_count: untested
    drift = run_decide(*windowed(np.full(6, 1000.0), windows), calibrated=False)
    tested = drift.filter(pl.col("p_value").is_not_null())
    assert tested.height == 16
    p, q = tested["p_value"].to_numpy(), tested["q_value"].to_numpy()
    ranks = stats.rankdata(p, method="max")
    naive = np.minimum(1, p * len(p) / ranks)
    expected = np.array([naive[p >= x].min() for x in p])
    np.testing.assert_allclose(q, expected, rtol=1e-12)
    assert drift.filter(pl.col("p_value").is_null())["status"].unique().to_list() == [
        "insufficient_data"]


def test_min_count_names_the_short_side() -> None:
    base, current = windowed(np.full(6, 5.0), np.array([[10.0] * 6, [1.0] * 6]))
    reasons = run_decide(base, current, min_count=31)["reason"].to_list()
    assert reasons == ["n_baseline=30.0 < min_count=31",
                       "n_current=6.0 < min_count=31; n_baseline=30.0 < min_count=31"]


def test_glob_overrides_set_each_rows_thresholds(rng: np.random.Generator) -> None:
    tables = [windowed(np.full(6, 1000.0), rng.multinomial(500, FLAT, size=1), feature=f)
              for f in ("dep_delay", "dep_time", "arr_delay", "distance")]
    base, current = (pl.concat(t[i] for t in tables) for i in (0, 1))
    features = {"dep_delay": {"critical": 0.5}, "dep_*": {"warn": 0.05, "critical": 0.15},
                "*delay": {"warn": 0.3, "critical": 0.4}}
    drift = run_decide(base, current, calibrated=False, features=features)
    got = {f: (w, c) for f, w, c in drift.select(
        "feature", "warn_threshold", "critical_threshold").iter_rows()}
    assert got == {"dep_delay": (0.1, 0.5), "dep_time": (0.05, 0.15),
                   "arr_delay": (0.3, 0.4), "distance": (0.1, 0.2)}


def test_above_threshold_but_not_significant_is_ok_with_a_reason() -> None:
    # 40 rows spread evenly but slightly off: effect above 0.1, p far from significant.
    base, current = windowed(np.full(6, 1000.0), np.array([[9.0, 9, 6, 6, 5, 5]]))
    row = run_decide(base, current, calibrated=False).row(0, named=True)
    assert row["value"] >= 0.1 and row["q_value"] > 0.01
    assert row["status"] == "ok"
    assert row["reason"].startswith("above warn threshold 0.1 but not significant (q=")


def test_persistence_alerts_from_the_kth_consecutive_drifting_window() -> None:
    drifted = [600.0, 600, 0, 0, 0, 0]
    pattern = [True, True, False, True, True, True]
    windows = np.array([drifted if d else [100.0] * 6 for d in pattern])
    base, current = windowed(np.full(6, 1000.0), windows)
    single = run_decide(base, current, calibrated=False)["status"].to_list()
    assert single == ["critical", "critical", "ok", "critical", "critical", "critical"]
    drift = run_decide(base, current, calibrated=False, persistence=3)
    assert drift["status"].to_list() == ["ok", "ok", "ok", "ok", "ok", "critical"]
    assert drift["reason"][0] == "critical drift in 1 of 3 required consecutive windows"
    assert drift["reason"][4] == "critical drift in 2 of 3 required consecutive windows"
    assert drift["reason"][2] is None


def test_calibrated_thresholds_are_the_null_quantile_and_cut_false_alarms() -> None:
    rng = np.random.default_rng(8)
    probs = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    baseline = probs * 10**5
    windows = rng.multinomial(40, probs, size=300).astype(float)
    plain = run_decide(*windowed(baseline, windows), calibrated=False)
    calibrated = run_decide(*windowed(baseline, windows))
    above = pl.col("value") >= pl.col("warn_threshold")
    # Small null windows mostly exceed the fixed threshold (only the FDR rule saves them)...
    assert plain.select(above.mean()).item() > 0.5
    # ...while the calibrated threshold lets about 0.1% of them through.
    assert calibrated.select(above.mean()).item() <= 0.01
    assert (calibrated["status"] == "ok").all()
    # Rows that reach the configured 0.1 get the simulated quantile (one simulation shared
    # by all: same baseline, same n); the others cannot alert and keep 0.1.
    raised = calibrated.filter(pl.col("value") >= 0.1)
    assert (calibrated.filter(pl.col("value") < 0.1)["warn_threshold"] == 0.1).all()
    threshold = raised["warn_threshold"].unique()
    assert threshold.len() == 1 and threshold[0] > 0.1
    assert (raised["critical_threshold"] == threshold[0]).all()
    null = rng.multinomial(40, probs, size=20_000)
    exceed = (divergences(null, baseline, metrics=("js_distance",), base=2)["js_distance"]
              >= threshold[0]).mean()
    assert exceed < 0.004


def test_same_seed_reproduces_and_statuses_are_complete(rng: np.random.Generator) -> None:
    base, current = windowed(np.full(6, 1000.0), rng.multinomial(45, FLAT, size=20))
    first, second = (run_decide(base, current, seed=4) for _ in range(2))
    assert first.equals(second)
    assert first["status"].is_in(["ok", "warn", "critical"]).all()


def test_bins_empty_on_both_sides_do_not_change_the_test(rng: np.random.Generator) -> None:
    baseline = rng.integers(200, 400, size=(5, 6)).astype(float)
    current = rng.integers(100, 300, size=(5, 6)).astype(float)
    padded = [np.pad(a, ((0, 0), (0, 2))) for a in (current, baseline)]
    np.testing.assert_allclose(g_test_p_values(*padded, draws=200, rng=rng),
                               g_test_p_values(current, baseline, draws=200, rng=rng))
