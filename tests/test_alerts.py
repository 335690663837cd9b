"""Alert decisions: G-test p, BH q, thresholds, calibration, min_count, persistence."""

from __future__ import annotations

import decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from pipeline import parallel
from pipeline.bins.align import align
from pipeline.config import AlertsConfig, DriftConfig, load_config
from pipeline.decide import alerts, significance
from pipeline.decide.alerts import decide
from pipeline.decide.significance import (
    DRAW_ROUNDS,
    FLOOR_RISK,
    MIN_EXPECTED,
    RESOLVED_EXCEEDANCES,
    TAIL_PRECISION,
    Streams,
    Tables,
    benjamini_hochberg,
    chi_square_p,
    decision_threshold,
    is_sparse,
    permutation_exceedances,
    precise_p_values,
)
from pipeline.measure.drift import compute_drift
from tests.conftest import categorical_histogram
from tests.scenarios import decided, permutation_reference, windows_table
from tests.test_significance import exact_permutation_p

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
    return decide(compute_drift(aligned, drift_config), AlertsConfig(**alerts))


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
    assert not is_sparse(current, baseline).any()
    p = chi_square_p(current, baseline)
    for i in range(30):
        statistic, reference, *_ = stats.chi2_contingency(
            np.stack([current[i], baseline[i]]), correction=False, lambda_="log-likelihood")
        assert statistic == pytest.approx(g_statistic(current[i], baseline[i]), rel=1e-9)
        assert p[i] == pytest.approx(reference, rel=1e-6)
    # decide gives such rows exactly that p, candidates or not
    windows = rng.multinomial(600, FLAT, size=3)
    drift = run_decide(*windowed(np.full(6, 1000.0), windows), warn=0.0)
    expected = chi_square_p(windows.astype(float), np.full((3, 6), 1000.0))
    np.testing.assert_allclose(drift["p_value"].to_numpy(), expected, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.tuples(
    st.lists(st.integers(0, 3000), min_size=4, max_size=4),
    st.lists(st.integers(0, 600_000), min_size=4, max_size=4),
    st.sampled_from([1.0, 0.37, 4096.0]), st.integers(2, 4)), min_size=1, max_size=6))
# two near-equal tables of 9M observations a side (found by hypothesis in CI)
@example(counts=[([1449, 742, 0, 0], [1449, 742, 0, 0], 4096.0, 2)])
# weighted (g_terms) first, then whole rows (tabled) of another width
@example(counts=[([5, 3, 2, 0], [7, 2, 4, 0], 0.37, 3), ([30, 20, 0, 0], [40, 10, 0, 0], 1.0, 2),
                 ([8, 9, 0, 0], [6, 12, 0, 0], 1.0, 2)])
def test_the_chi_square_p_of_whole_and_weighted_tables_is_exact_and_the_rows_own(
        counts: list[tuple[list[int], list[int], float, int]]) -> None:
    # whole counts below 2^20 observations take G from tabled k log k, the others (weights
    # 0.37, or 4096 x: totals up to 2.5e9) from g_terms; one call mixes them, and rows of
    # different widths
    rows = [(np.array(c[:k], dtype=float) * w, np.array(b[:k], dtype=float) * w)
            for c, b, w, k in counts]
    for current, baseline in rows:
        current[0] += 1  # a positive total on both sides
        baseline[-1] += 1
    starts = np.cumsum([0, *(len(c) for c, _ in rows)])
    p, _ = Tables(np.concatenate([c for c, _ in rows]), np.concatenate([b for _, b in rows]),
                  starts).asymptotic()
    for i, (current, baseline) in enumerate(rows):
        table = np.stack([current, baseline])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            assert p[i] == 1.0
            continue
        reference = stats.chi2.sf(_exact_g(table), table.shape[1] - 1)
        assert p[i] == pytest.approx(reference, rel=1e-7, abs=1e-300)
        assert p[i] == chi_square_p(current[None], baseline[None])[0]  # alone


def _exact_g(table: np.ndarray) -> float:
    """G of a 2 x k table of counts, in 50 digits: scipy's own G of two near-equal tables
    of millions of observations keeps only the rounding of the counts (a p of 0.9996036
    where the exact one is 0.9996020)."""
    with decimal.localcontext() as context:
        context.prec = 50
        cells = [[decimal.Decimal(float(v)) for v in row] for row in table]
        sizes = [sum(row, decimal.Decimal(0)) for row in cells]
        columns = [a + b for a, b in zip(*cells, strict=True)]
        total = sum(sizes, decimal.Decimal(0))
        g = sum((o * (o * total / (size * column)).ln()
                 for row, size in zip(cells, sizes, strict=True)
                 for o, column in zip(row, columns, strict=True) if o > 0), decimal.Decimal(0))
        return float(2 * g)


def test_sparse_tables_get_a_permutation_p_matching_an_independent_simulation() -> None:
    rng = np.random.default_rng(5)
    current = np.array([[3.0, 1, 0, 2, 1, 3]])  # n = 10: expected counts far below 5
    baseline = np.array([[50.0, 40, 30, 20, 10, 5]])
    assert is_sparse(current, baseline)[0]
    p = (1 + permutation_exceedances(current, baseline, 4000, Streams(5))[0]) / 4001
    reference, _ = permutation_reference(current[0], baseline[0], 40_000, rng)
    assert 0.01 < reference < 0.9  # resolved region: the plain Monte Carlo p applies
    assert abs(p - reference) < 4 * np.sqrt(reference * (1 - reference) / 4000)


def test_simulated_p_fixes_the_anti_conservative_chi_square_at_small_n() -> None:
    rng = np.random.default_rng(11)
    probs = np.full(20, 0.05)
    baseline = rng.multinomial(10**6, probs).astype(float)
    windows = rng.multinomial(50, probs, size=2000).astype(float)
    assert 50 * probs.min() < MIN_EXPECTED
    labels = [f"b{i:02d}" for i in range(20)]
    base = pl.DataFrame({"feature": "f", "bin": labels, "count": baseline})
    # warn = 0: every row is a candidate, so each gets the precise p where it decides
    drift = decided(base, windows_table("f", labels, windows),
                    config=load_config(None, {"alerts.warn": 0.0, "alerts.calibrated": False}))
    simulated = drift["p_value"].to_numpy()
    asymptotic = stats.chi2.sf(g_statistic(windows, np.tile(baseline, (2000, 1))), 19)
    # Valid: about 1% below 0.01 (binomial sd 0.2%); the chi-square gives about 2.5%.
    assert (simulated < 0.01).mean() <= 0.016
    assert (asymptotic < 0.01).mean() > (simulated < 0.01).mean() + 0.005


def test_strong_sparse_drift_is_not_capped_at_one_over_draws() -> None:
    base, current = windowed(np.array([400.0, 300, 200, 80, 15, 5]),
                             np.array([[0.0, 0, 0, 2, 10, 14]]))  # rare bins dominate
    row = run_decide(base, current, min_count=20).row(0, named=True)
    assert row["p_value"] < 1e-30 < 1 / (DRAW_ROUNDS[-1] + 1)
    assert row["status"] == "critical"


@settings(max_examples=30, deadline=None)
@given(p=st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=40))
def test_benjamini_hochberg_matches_the_definition(p: list[float]) -> None:
    from scipy.stats import false_discovery_control

    q = benjamini_hochberg(np.array(p))
    np.testing.assert_allclose(q, false_discovery_control(np.array(p), method="bh"), rtol=1e-12)
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


def test_min_count_is_the_smallest_tested_total() -> None:
    base, current = windowed(np.full(6, 5.0), np.array([[5.0] * 6, [5.0, 5, 5, 5, 5, 4]]))
    drift = run_decide(base, current, min_count=30)
    assert drift["status"].to_list() == ["ok", "insufficient_data"]
    assert drift["p_value"][0] is not None and drift["p_value"][1] is None


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
    # 40 rows, far from flat: the effect reaches 0.1 but 40 rows cannot make it significant
    base, current = windowed(np.full(6, 1000.0), np.array([[14.0, 10, 6, 4, 3, 3]]))
    row = run_decide(base, current, calibrated=False).row(0, named=True)
    assert row["effect"] >= 0.1 and row["q_value"] > 0.01
    assert row["status"] == "ok"
    assert row["reason"].startswith("above warn threshold 0.1 but not significant (q=")


def test_value_above_threshold_with_a_small_effect_is_ok_with_a_reason() -> None:
    # 45 rows of the baseline's own distribution: the plug-in value reaches 0.1 on noise
    rng = np.random.default_rng(2)
    base, current = windowed(np.full(6, 1000.0), rng.multinomial(45, FLAT, size=40))
    drift = run_decide(base, current, calibrated=False)
    noisy = drift.filter(pl.col("value") >= 0.1, pl.col("effect") < 0.1)
    assert noisy.height > 5 and (noisy["status"] == "ok").all()
    assert noisy["reason"].str.contains(
        r"^value [0-9.]+ reaches the warn threshold 0.1 but the effect corrected for sample "
        r"size is [0-9.e-]+ \(interval").all()


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
    assert drift["reason"][2] is None and drift["reason"][5] is None  # the alert has none


def test_calibrated_rows_must_be_beyond_their_own_null_quantile() -> None:
    # Half the windows drift strongly, which makes Benjamini-Hochberg lenient: without
    # calibration, noise windows whose p is below that lenient threshold alert with them.
    rng = np.random.default_rng(8)
    probs = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    drifted = np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.3])
    windows = np.vstack([rng.multinomial(60, probs, size=400),
                         rng.multinomial(60, drifted, size=400)]).astype(float)
    # fdr_q = 0.1 and warn = 0: every noise row is a candidate and BH passes p up to ~0.05
    plain = run_decide(*windowed(probs * 10**5, windows), calibrated=False, warn=0.0,
                       fdr_q=0.1)
    calibrated = run_decide(*windowed(probs * 10**5, windows), warn=0.0, fdr_q=0.1)
    noise = pl.int_range(pl.len()) < 400
    alerting = pl.col("status").is_in(["warn", "critical"])
    assert plain.filter(noise).select(alerting.sum()).item() >= 10
    assert calibrated.filter(noise, alerting).height <= 3
    assert (calibrated.filter(alerting)["p_value"] <= 0.001).all()
    held = calibrated.filter(noise, pl.col("reason").str.starts_with("significant over"))
    assert held.height > 0 and (held["p_value"] > 0.001).all()
    assert held["reason"][0].endswith("> 1 - null_quantile=0.001")
    # the drifting windows alert either way
    assert calibrated.filter(~noise).select(alerting.mean()).item() >= 0.95


def test_same_seed_reproduces_and_statuses_are_complete(rng: np.random.Generator) -> None:
    base, current = windowed(np.full(6, 1000.0), rng.multinomial(45, FLAT, size=20))
    first, second = (run_decide(base, current, seed=4) for _ in range(2))
    assert first.equals(second)
    assert first["status"].is_in(["ok", "warn", "critical"]).all()


def test_bins_empty_on_both_sides_do_not_change_the_test(rng: np.random.Generator) -> None:
    baseline = rng.integers(200, 400, size=(5, 6)).astype(float)
    current = rng.integers(1, 4, size=(5, 6)).astype(float)  # sparse: permuted and tilted
    padded = [np.pad(a, ((0, 0), (0, 2))) for a in (current, baseline)]
    np.testing.assert_allclose(chi_square_p(*padded), chi_square_p(current, baseline))
    assert (permutation_exceedances(*padded, 200, Streams(1))
            == permutation_exceedances(current, baseline, 200, Streams(1))).all()
    np.testing.assert_allclose(
        precise_p_values(*padded, draws=500, streams=Streams(2)),
        precise_p_values(current, baseline, draws=500, streams=Streams(2)))


def test_fdr_q_is_a_strict_bound() -> None:
    # one tested row with p = q exactly: significant below fdr_q, not at it
    base, current = windowed(np.full(6, 1000.0), np.array([[80.0, 60, 50, 40, 40, 30]]))
    q = run_decide(base, current, calibrated=False, warn=0.0)["q_value"][0]
    at = run_decide(base, current, calibrated=False, warn=0.0, fdr_q=q).row(0, named=True)
    assert at["status"] == "ok" and "but not significant" in at["reason"]
    above = run_decide(base, current, calibrated=False, warn=0.0, fdr_q=q * (1 + 1e-9))
    assert above["status"][0] != "ok"


def test_chi_square_decides_only_far_below_the_threshold() -> None:
    # 59 rows in 25 equal bins: chi-square p 8.0e-4, permutation p 2.3e-3. With the
    # calibrated bound 0.001 the chi-square would alert; the permutation tail does not.
    window = np.array([[2.0, 0, 3, 1, 1, 0, 1, 2, 4, 6, 9, 3, 3, 3, 4, 0, 0, 0, 4, 3, 0, 2, 3, 1,
                        4]])
    labels = [f"b{i:02d}" for i in range(25)]
    base = pl.DataFrame({"feature": "f", "bin": labels, "count": np.full(25, 4000.0)})
    drift = decided(base, windows_table("f", labels, window),
                    config=load_config(None, {"alerts.warn": 0.05}))
    row = drift.row(0, named=True)
    assert chi_square_p(window, np.full((1, 25), 4000.0))[0] < 0.001
    assert row["effect"] >= 0.05 and 0.0015 < row["p_value"] < 0.0035
    assert row["status"] == "ok" and row["reason"].startswith("significant over the run")


def test_sequential_draws_stop_as_soon_as_a_row_is_settled(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # sparse windows of the baseline's own distribution, all candidates (warn = 0): each
    # row's p is the plain Monte Carlo p (1 + e) / (d + 1) of the d draws it made, and it
    # stopped drawing because those draws settle it against the final threshold
    rng = np.random.default_rng(12)
    base, current = windowed(np.array([400.0, 300, 200, 80, 15, 5]),
                             rng.multinomial(40, [0.4, 0.3, 0.2, 0.08, 0.015, 0.005], size=30))
    spent = []

    def counted(current: np.ndarray, baseline: np.ndarray, draws: int,
                streams: Streams) -> np.ndarray:
        spent.append(draws * len(current))
        return permutation_exceedances(current, baseline, draws, streams)

    monkeypatch.setattr(alerts, "permutation_exceedances", counted)
    p = run_decide(base, current, warn=0.0, calibrated=False)["p_value"].to_numpy()
    rounds = np.array(DRAW_ROUNDS)
    grid = p[:, None] * (rounds + 1)
    on_grid = np.abs(grid - np.round(grid)) < 1e-9
    assert on_grid.any(axis=1).all()
    drawn = rounds[on_grid.argmax(axis=1)]
    exceed = np.round(p * (drawn + 1)) - 1
    floor = np.where(exceed > 0, stats.beta.ppf(FLOOR_RISK / rounds.size, np.maximum(exceed, 1),
                                                drawn - exceed + 1), 0.0)
    assert ((exceed >= RESOLVED_EXCEEDANCES) | (floor > decision_threshold(p, 0.01))).all()
    # most rows are settled by the first rounds: far fewer draws than 100 per row
    assert (drawn == DRAW_ROUNDS[0]).sum() >= 10
    assert sum(spent) == drawn.sum() < 30 * 50


@pytest.mark.parametrize(("window", "calibrated", "tail_at_once"), [
    ([6.0, 4, 3, 3, 4, 2], True, True),  # chi-square p 4.5e-4: below the threshold (0.001)
    ([6.0, 5, 3, 4, 4, 1], True, True),  # 2.7e-3: above it, below 2 exceedances in 500 draws
    ([7.0, 5, 3, 3, 3, 1], True, False),  # 3.6e-2: draws can settle it
    ([7.0, 5, 3, 3, 3, 2], False, True),  # 5.3e-3: above 2 in 500, below the threshold 0.01
])
def test_rows_whose_chi_square_p_draws_could_not_settle_go_straight_to_the_tail(
        monkeypatch: pytest.MonkeyPatch, window: list[float], calibrated: bool,
        tail_at_once: bool) -> None:
    # draws settle a row only once several reach its G (4 of 500 at small thresholds): a
    # row whose chi-square p is below the threshold (0.001 calibrated, else fdr_q 0.01 for
    # a lone row), or promises fewer than TAIL_EXCEEDANCES exceedances in all 500 draws,
    # could be settled by them only by showing its p far above its chi-square p: it draws
    # none and gets the importance-sampled tail. The others draw permutations first.
    spent = []
    monkeypatch.setattr(alerts, "permutation_exceedances",
                        lambda current, *args: spent.append(len(current)) or
                        permutation_exceedances(current, *args))
    counts, baseline = np.array(window), np.array([400.0, 300, 200, 80, 15, 5])
    chi_square = chi_square_p(counts[None], baseline[None])[0]
    threshold = 0.001 if calibrated else 0.01
    assert (chi_square < max(threshold, significance.TAIL_EXCEEDANCES / DRAW_ROUNDS[-1])
            ) == tail_at_once
    row = run_decide(*windowed(baseline, counts[None]), min_count=20,
                     calibrated=calibrated).row(0, named=True)
    exact = exact_permutation_p(counts, baseline)  # 2.55e-4, 1.8e-3, 2.6e-2, 3.6e-3
    assert row["effect"] >= 0.1 and (spent == []) == tail_at_once
    if tail_at_once:  # the tail stops at a relative standard error of 15%
        assert abs(row["p_value"] / exact - 1) < 3 * TAIL_PRECISION
    else:  # the Monte Carlo p of the draws it made
        assert any(np.isclose(row["p_value"] * (d + 1), round(row["p_value"] * (d + 1)))
                   for d in DRAW_ROUNDS)


def test_persistence_counts_warn_windows_too() -> None:
    warned = [240.0, 160, 100, 100, 100, 100]  # a warn-sized drift (effect 0.1-0.2)
    windows = np.array([warned, warned, [100.0] * 6, warned])
    base, current = windowed(np.full(6, 1000.0), windows)
    single = run_decide(base, current, calibrated=False)["window_status"].to_list()
    assert single == ["warn", "warn", "ok", "warn"]
    assert run_decide(base, current, calibrated=False, persistence=2)["status"].to_list() == [
        "ok", "warn", "ok", "ok"]


def test_p_values_do_not_depend_on_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # sparse windows, some drifted towards the rare bins: permuted in several chunks and
    # rounds, some with the importance-sampled tail in several batches; every stream is
    # keyed by the data, so one thread and two give the same p-values
    rng = np.random.default_rng(13)
    probs = np.array([0.4, 0.3, 0.2, 0.08, 0.015, 0.005])
    drifted = [[6, 4, 3, 3, 4, 2], [7, 4, 3, 3, 3, 2], [6, 5, 3, 2, 4, 2], [5, 4, 4, 3, 4, 2]]
    base, current = windowed(np.array([400.0, 300, 200, 80, 15, 5]),
                             np.vstack([rng.multinomial(40, probs, size=30), drifted]))
    monkeypatch.setattr(significance, "_DRAWN_CELLS", 25 * 6 * 4)  # chunks of 4 rows
    monkeypatch.setattr(significance, "_TILTED_CELLS", 1)  # a batch per row
    streams: list[tuple[int, ...]] = []  # every stream a run's calls draw from

    def permuted(current: np.ndarray, baseline: np.ndarray, draws: int,
                 keyed: Streams) -> np.ndarray:
        streams.append(keyed.key)
        return permutation_exceedances(current, baseline, draws, keyed)

    def tails(current: np.ndarray, baseline: np.ndarray, *, streams: Streams,
              keys: np.ndarray, **kwargs: object) -> np.ndarray:
        tail_keys.extend((*streams.key, key) for key in keys.tolist())
        return precise_p_values(current, baseline, streams=streams, keys=keys, **kwargs)

    tail_keys: list[tuple[int, ...]] = []
    monkeypatch.setattr(alerts, "permutation_exceedances", permuted)
    monkeypatch.setattr(alerts, "precise_p_values", tails)
    p = {}
    for threads in (1, 2):
        streams.clear()
        tail_keys.clear()
        monkeypatch.setattr(parallel, "threads", lambda threads=threads: threads)
        p[threads] = run_decide(base, current, warn=0.0, calibrated=False,
                               min_count=20)["p_value"]
        # no two calls (nor two tail rows) of the run draw from the same stream
        assert len(set(streams)) == len(streams) >= 3
        assert len(set(tail_keys)) == len(tail_keys) >= 2
        assert not {key[:1] for key in streams} & {key[:1] for key in tail_keys}
    assert p[1].equals(p[2])
    on_grid = [np.isclose(p[1] * (d + 1), np.round(p[1] * (d + 1))) for d in DRAW_ROUNDS]
    assert np.any(on_grid, axis=0).sum() >= 10  # and Monte Carlo p-values

