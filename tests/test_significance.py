"""p-values where they decide alerts: the permutation tail against brute force and exact
enumeration, validity under the null, huge counts, and the BH decision threshold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from kl_metrics import g_test
from pipeline import parallel
from pipeline.decide import significance
from pipeline.decide.significance import (
    Streams,
    benjamini_hochberg,
    chi_square_p,
    decision_threshold,
    floor_at_most,
    is_sparse,
    permutation_exceedances,
    permutation_tail,
    precise_p_values,
)
from tests.conftest import categorical_histogram
from tests.scenarios import decided, permutation_reference, skewed_sparse_tables


def exact_permutation_p(current: np.ndarray, baseline: np.ndarray) -> float:
    """P(G >= observed G) under the permutation null, by enumerating every table with the
    same margins (small tables only): independent of the importance sampler."""
    total = (current + baseline).astype(int)
    n1, size = int(current.sum()), int(total.sum())
    observed = float(g_test(current, baseline).statistic)
    sums, gs, logs = np.zeros(1, dtype=int), np.zeros(1), np.zeros(1)
    for j, t in enumerate(total):
        x = np.arange(min(t, n1) + 1)
        e1, e2 = n1 * t / size, (size - n1) * t / size
        h = 2 * (special.xlogy(x, x / e1) + special.xlogy(t - x, (t - x) / e2))
        log_c = special.gammaln(t + 1) - special.gammaln(x + 1) - special.gammaln(t - x + 1)
        new_sums = (sums[:, None] + x[None, :]).ravel()
        keep = new_sums <= n1 if j < len(total) - 1 else new_sums == n1
        gs = (gs[:, None] + h[None, :]).ravel()[keep]
        logs = (logs[:, None] + log_c[None, :]).ravel()[keep]
        sums = new_sums[keep]
    log_all = special.gammaln(size + 1) - special.gammaln(n1 + 1) - special.gammaln(size - n1 + 1)
    tail = gs >= observed * (1 - 1e-9) - 1e-12
    return float(np.exp(special.logsumexp(logs[tail]) - log_all))


@pytest.mark.parametrize(("current", "baseline"), [
    ([0, 0, 0, 2, 10, 14], [400, 300, 200, 80, 15, 5]),  # rare bins dominate: p ~ 1e-35
    ([1, 0, 3, 2, 6], [120, 60, 30, 8, 2]),
    ([9, 4, 0, 1, 2, 4], [300, 150, 60, 20, 6, 2]),
    ([1, 0, 0, 3, 0, 2, 6], [120, 60, 0, 30, 0, 8, 2]),  # bins empty on both sides
])
def test_permutation_tail_matches_exact_enumeration(current: list, baseline: list) -> None:
    cur, base = np.array(current, dtype=float), np.array(baseline, dtype=float)
    seen = cur + base > 0  # empty bins add nothing to G or to the tables' probabilities
    exact = exact_permutation_p(cur[seen], base[seen])
    rng = np.random.default_rng(1)
    got = [permutation_tail(cur, cur + base, draws=2000, rng=rng) for _ in range(3)]
    assert all(g is not None and 0.5 * exact <= g <= 2 * exact for g in got), (exact, got)


@pytest.mark.parametrize(("current", "baseline"), [
    ([9, 4, 0, 1, 2, 4], [300, 150, 60, 20, 6, 2]),
    ([1, 0, 3, 2, 6], [120, 60, 30, 8, 2]),
])
def test_importance_sampled_tail_is_unbiased(current: list, baseline: list) -> None:
    # the mean of eight independent estimates of 20,000 draws each (a relative standard
    # error of about 1%) is the exact p: a proposal other than the one the weights assume
    # (e.g. the defensive share of untilted draws dropped: p about 10% too large) is off
    cur, base = np.array(current, dtype=float), np.array(baseline, dtype=float)
    exact = exact_permutation_p(cur, base)
    estimates = [permutation_tail(cur, cur + base, draws=20_000, rng=np.random.default_rng(seed))
                 for seed in range(8)]
    assert abs(np.mean(np.array(estimates, dtype=float)) / exact - 1) < 0.04, (exact, estimates)


def test_permutation_tail_within_a_factor_two_of_brute_force_on_skewed_tables() -> None:
    # Where the simulation cannot resolve p (1e-4 to 1e-3) and the old Satterthwaite tail
    # was 3-20x too small; the bench runs a larger battery (docs/alerts.md).
    rng = np.random.default_rng(2)
    for i, (current, baseline) in enumerate(skewed_sparse_tables(3, seed=0)):
        assert is_sparse(current[None], baseline[None])[0]
        reference, hits = permutation_reference(current, baseline, 200_000, rng)
        assert hits >= 20  # the reference itself is within ~25%
        got = precise_p_values(current[None], baseline[None], draws=2000,
                               streams=Streams(2, (i,)))[0]
        assert 0.5 <= got / reference <= 2.0, (got, reference)


def test_precise_p_is_valid_under_the_null() -> None:
    # 300 windows of 40 rows drawn from the baseline's distribution: p is uniform, so about
    # 5% fall below 0.05 (binomial sd 1.3%); the chi-square p gives clearly more there
    rng = np.random.default_rng(3)
    probs = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])
    baseline = np.tile(rng.multinomial(20_000, probs), (300, 1)).astype(float)
    windows = rng.multinomial(40, probs, size=300).astype(float)
    p = precise_p_values(windows, baseline, draws=1000, streams=Streams(3))
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_huge_and_weighted_counts_do_not_overflow() -> None:
    # totals near 2^63: no permutation draws (they would overflow), the asymptotic test
    current = np.array([[2.0**62, 2.0**61, 3.0]])
    baseline = np.array([[2.0**61, 2.0**62, 1.0]])
    assert is_sparse(current, baseline)[0]
    assert np.isnan(permutation_exceedances(current, baseline, 100, Streams(0)))
    p = precise_p_values(current, baseline, draws=100, streams=Streams(0))
    assert p == pytest.approx(chi_square_p(current, baseline))
    # through decide: weighted counts in a drift table
    base = categorical_histogram("w", {"a": 2.0**62, "b": 2.0**61, "c": 0.5})
    cur = categorical_histogram("w", {"a": 2.0**61, "b": 2.0**62, "c": 3.25}, window="w1")
    row = decided(base, cur).row(0, named=True)
    assert row["status"] == "critical" and row["p_value"] == 0.0


def test_non_candidates_keep_the_chi_square_p() -> None:
    # effect below warn: no draws at all, whatever the sparsity
    rng = np.random.default_rng(4)
    base = categorical_histogram("f", dict(zip("abcdef", [400.0, 300, 200, 80, 15, 5],
                                               strict=True)))
    windows = [categorical_histogram("f", dict(zip("abcdef", row, strict=True)), window=f"w{i}")
               for i, row in enumerate(rng.multinomial(40, [0.4, 0.3, 0.2, 0.08, 0.015, 0.005],
                                                      size=20).astype(float))]
    drift = decided(base, pl.concat(windows))
    quiet = drift.filter(pl.col("effect") < pl.col("warn_threshold"))
    assert quiet.height > 10
    counts = np.array([[b["current_count"] for b in bins] for bins in quiet["bins"]])
    reference = np.array([[b["baseline_count"] for b in bins] for bins in quiet["bins"]])
    np.testing.assert_allclose(quiet["p_value"].to_numpy(), chi_square_p(counts, reference))


@settings(max_examples=50)
@given(p=st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=60),
       fdr_q=st.sampled_from([0.01, 0.05, 0.2]))
@example(p=[0.01, 0.01], fdr_q=0.01)  # p at fdr_q: discoveries when every p is at most it
@example(p=[0.2, 0.5, 0.2], fdr_q=0.2)
def test_decision_threshold_separates_the_bh_discoveries(p: list[float], fdr_q: float) -> None:
    values = np.array(p)
    threshold = decision_threshold(values, fdr_q)
    q = benjamini_hochberg(values)
    assert threshold >= fdr_q / len(p)  # a p this small is significant whatever the others
    assert ((q <= fdr_q) == (values <= threshold)).all()


@settings(max_examples=300)
@given(exceed=st.integers(0, 500), drawn=st.sampled_from([100, 500, 1000]),
       threshold=st.floats(1e-9, 1.0))
def test_floor_at_most_compares_the_clopper_pearson_lower_bound(exceed: int, drawn: int,
                                                                threshold: float) -> None:
    # the bound is the 2e-4 quantile of Beta(exceed, drawn - exceed + 1), 0 without any:
    # one look of five (DRAW_ROUNDS) spends a fifth of the risk FLOOR_RISK = 1e-3
    exceed = min(exceed, drawn)
    bound = special.betaincinv(max(exceed, 1), drawn - exceed + 1, 2e-4) if exceed else 0.0
    if abs(bound - threshold) <= 1e-9 * threshold:
        return  # a tie within the rounding of either side
    got = floor_at_most(np.array([float(exceed)]), np.array([float(drawn)]), threshold)
    assert got.tolist() == [bound <= threshold]


@settings(max_examples=100)
@given(seed=st.integers(0, 2**32 - 1), laws=st.integers(1, 6), width=st.integers(1, 40),
       tiny=st.booleans())
def test_inversion_draws_are_the_smallest_count_whose_cdf_passes_the_uniform(
        seed: int, laws: int, width: int, tiny: bool) -> None:
    # against a search of each law's own cumulative sums: laws with zero cells anywhere
    # (padding past the support included), long tails of negligible cells (many cells in
    # one slot of the guide), and uniforms at the cumulative sums themselves and at 0
    rng = np.random.default_rng(seed)
    probabilities = rng.random((laws, width)) * (rng.random((laws, width)) < 0.7)
    probabilities[:, 0] += probabilities.sum(axis=1) == 0
    if tiny:
        probabilities[:, :width // 2] *= 1e-80
    probabilities[:, rng.integers(1, width + 1):] = 0.0  # a law's cells past its support
    probabilities[probabilities.sum(axis=1) == 0, 0] = 1.0
    sampler = significance._Inversion(probabilities)
    cdf = sampler.cdf.reshape(laws, width)
    chosen = rng.integers(0, laws, 300)
    uniforms = np.concatenate([rng.random(100), np.zeros(100),
                               cdf[chosen[200:], rng.integers(0, width, 100)]])
    uniforms = np.where(uniforms < 1.0, uniforms, 0.5)
    got = sampler.draw(chosen.reshape(3, 100), uniforms.reshape(3, 100))
    expected = [np.searchsorted(cdf[law], u, side="right")
                for law, u in zip(chosen, uniforms, strict=True)]
    assert got.ravel().tolist() == expected
    assert (probabilities[chosen, got.ravel()] > 0).all()  # never a cell of probability 0
    np.testing.assert_allclose(cdf, np.cumsum(probabilities, axis=1)
                               / probabilities.sum(axis=1, keepdims=True), rtol=1e-12)


def test_floor_at_most_on_rows_settled_and_not_permuted() -> None:
    exceed, drawn = np.array([0.0, 1, 5, 9, 9, np.nan]), np.array([100.0, 100, 500, 500, 500, 0])
    bounds = [0.0, *stats.beta.ppf(2e-4, exceed[1:5], drawn[1:5] - exceed[1:5] + 1)]
    threshold = bounds[3] * (1 + 1e-6)  # just above the bound of 9 in 500
    assert floor_at_most(exceed, drawn, threshold).tolist() == [
        *(b <= threshold for b in bounds), False]  # NaN: never permuted, never open


@pytest.mark.parametrize(("current", "baseline"), [
    ([5, 0, 1], [5, 10, 9]),  # ties: tables as extreme as the observed one hold 96% of p
    ([8, 2, 0], [7, 13, 15]),  # the window is a third of the pooled rows
])
def test_monte_carlo_and_tail_count_ties_on_tiny_tables(current: list, baseline: list) -> None:
    cur, base = np.array([current], dtype=float), np.array([baseline], dtype=float)
    exact = exact_permutation_p(cur[0], base[0])
    draws = 20_000
    monte_carlo = (1 + permutation_exceedances(cur, base, draws, Streams(5))[0]) / (draws + 1)
    assert abs(monte_carlo - exact) < 5 * np.sqrt(exact * (1 - exact) / draws)
    tail = precise_p_values(cur, base, draws=2000, streams=Streams(6))[0]
    assert 0.67 * exact <= tail <= 1.5 * exact


@pytest.mark.parametrize("chunk_cells", [1, 37, 1 << 20])
def test_flat_tables_of_any_widths_match_the_g_test_row_by_row(
        monkeypatch: pytest.MonkeyPatch, chunk_cells: int) -> None:
    """One pass over the flat cells of tables of different widths (split into blocks of
    rows of about ``chunk_cells`` cells) gives each row's own G-test p and Cochran flag."""
    monkeypatch.setattr(significance, "_CHUNK_CELLS", chunk_cells)
    rng = np.random.default_rng(5)
    widths = rng.integers(1, 12, size=60)
    rows = []
    for width in widths:  # empty bins on either side or both; every side has a count
        current = rng.poisson(rng.uniform(0.2, 30), width) * (rng.random(width) > 0.2)
        baseline = rng.poisson(rng.uniform(0.2, 300), width) * (rng.random(width) > 0.1)
        current[0], baseline[-1] = current[0] + 1, baseline[-1] + 1
        rows.append((current.astype(float), baseline.astype(float)))
    tables = significance.Tables(np.concatenate([c for c, _ in rows]),
                                 np.concatenate([b for _, b in rows]),
                                 np.concatenate([[0], np.cumsum(widths)]))
    p, sparse = tables.asymptotic()
    for i, (current, baseline) in enumerate(rows):
        assert p[i] == pytest.approx(float(g_test(current, baseline).p_value), rel=1e-9)
        total = current + baseline
        smallest = min(current.sum(), baseline.sum()) * total[total > 0].min() / total.sum()
        assert sparse[i] == (smallest < 5)


def test_importance_draws_go_where_the_threshold_needs_them(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    # exact p 6.7e-6 (enumeration): clearly above a threshold of 1e-7 it stops after the
    # first quarter round; within 15% of the threshold, on either side, it draws until it
    # is TAIL_MARGIN standard errors away, more than without a threshold (an estimate that
    # lands far from the truth may stop early: so over six streams); below a far threshold
    # it is as precise as without one
    cur, base = np.array([9.0, 4, 0, 1, 2, 4]), np.array([300.0, 150, 60, 20, 6, 2])
    exact = exact_permutation_p(cur, base)
    assert 6e-6 < exact < 7e-6
    drawn: list[int] = []
    weights = significance._TiltedTables.weights
    monkeypatch.setattr(significance._TiltedTables, "weights",
                        lambda self, active, offsets, *args: (
                            drawn.append(offsets.shape[0] * offsets.shape[1])
                            or weights(self, active, offsets, *args)))

    def tail(threshold: float | None, seed: int) -> tuple[float, int]:
        drawn.clear()
        p = permutation_tail(cur, cur + base, draws=2000, rng=np.random.default_rng(seed),
                             threshold=threshold)
        assert p is not None
        return p, sum(drawn)

    more: list[int] = []  # of the two near thresholds, how many drew more than plain
    for seed in range(6):
        far_above, n_far = tail(1e-7, seed)
        assert n_far == 500 and 0.4 < far_above / exact < 2.5
        plain, n_plain = tail(None, seed)
        assert n_plain >= 2000 and abs(plain / exact - 1) < 0.35
        nears = [tail(threshold, seed) for threshold in (exact / 1.15, exact * 1.15)]
        assert all(n_near >= n_plain and abs(near / exact - 1) < 0.15 for near, n_near in nears)
        more.append(sum(n_near > n_plain for _, n_near in nears))
        below, n_below = tail(1.0, seed)
        assert n_below == n_plain and below == plain
    assert sum(more) >= 10, more


@pytest.mark.parametrize(("tilted_cells", "chunk_cells"), [(1, 1 << 20), (1 << 18, 1),
                                                            (1 << 18, 1 << 20)])
def test_tails_of_many_rows_are_each_rows_own_tail(monkeypatch: pytest.MonkeyPatch,
                                                   tilted_cells: int, chunk_cells: int) -> None:
    # the tails of rows of several widths (batched together, padded, reordered by width,
    # weighed in groups of rows, on threads) equal each row's tail alone from the stream
    # of its key, whichever rows share the call, whatever the threads; equal tables of two
    # keys get their own draws; a row too large to enumerate keeps its chi-square p
    monkeypatch.setattr(significance, "_TILTED_CELLS", tilted_cells)
    monkeypatch.setattr(significance, "_CHUNK_CELLS", chunk_cells)
    rng = np.random.default_rng(6)
    probs = np.array([0.3, 0.25, 0.2, 0.1, 0.08, 0.05, 0.02])
    baseline = rng.multinomial([300, 3000, 30_000, 300, 100_000, 300], probs).astype(float)
    current = rng.multinomial([150, 25, 120, 20, 40, 150], probs[::-1]).astype(float)
    current[5], baseline[5] = current[0], baseline[0]
    baseline[3, 2] = current[3, 2] = 0.0
    current[2], baseline[2] = [7e7, 6e7] * 3 + [7e7], [7e7] * 7  # a total near 10^9
    streams, keys = Streams(7, (1,)), np.array([11, 3, 5, 8, 2, 9])
    results = {}
    for threads in (1, 2):
        monkeypatch.setattr(parallel, "threads", lambda threads=threads: threads)
        results[threads] = precise_p_values(current, baseline, draws=400, streams=streams,
                                            threshold=1e-4, keys=keys)
    together = results[2]
    np.testing.assert_array_equal(together, results[1])
    alone = [permutation_tail(c, c + b, draws=400, rng=streams(key), threshold=1e-4)
             for c, b, key in zip(current, baseline, keys, strict=True)]
    assert alone[2] is None  # 7 bins x over a million likely counts
    seen = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(together[seen], np.array(alone)[seen].astype(float), rtol=1e-9)
    assert together[2] == chi_square_p(current[2:3], baseline[2:3])[0]
    few = [4, 0]
    np.testing.assert_allclose(precise_p_values(current[few], baseline[few], draws=400,
                                                streams=streams, threshold=1e-4,
                                                keys=keys[few]), together[few], rtol=1e-9)
    # the same table under another key: another estimate (p ~ 3e-33: within a factor 2)
    assert together[5] != together[0] and 0.5 < together[5] / together[0] < 2


def test_saddlepoints_of_many_rows_are_each_rows_own() -> None:
    # the damped Newton steps of rows found together (each its own steps, line search and
    # stop) end where each row's alone do, and near the point where the tilted means of G
    # and of the sample size are the observed ones (brute force over every count; Newton
    # stops once the line search can no longer improve, a few iterations suffice)
    tables = skewed_sparse_tables(6, seed=3)
    width = max(len(c) for c, _ in tables)
    current = np.array([np.pad(c, (0, width - len(c))) for c, _ in tables])
    total = np.array([np.pad(c + b, (0, width - len(c))) for c, b in tables])
    batches = significance._TiltedTables.batches(current, total)
    assert max(len(rows) for rows, _ in batches) >= 3
    for rows, batch in batches:
        point = batch().saddlepoint()
        for k, row in enumerate(rows):
            alone = significance._TiltedTables.batches(current[row:row + 1],
                                                       total[row:row + 1])[0][1]()
            np.testing.assert_allclose(point[k], alone.saddlepoint()[0], rtol=1e-9)
            c, t = current[row][total[row] > 0], total[row][total[row] > 0]
            n1, size = c.sum(), t.sum()
            g_mean = n_mean = 0.0
            for bin_total in t:
                x = np.arange(bin_total + 1)
                e1, e2 = n1 * bin_total / size, (size - n1) * bin_total / size
                h = 2 * (special.xlogy(x, x / e1) + special.xlogy(bin_total - x,
                                                                  (bin_total - x) / e2))
                log_w = (stats.binom.logpmf(x, bin_total, n1 / size) + point[k, 0] * h
                         + point[k, 1] * x)
                w = np.exp(log_w - special.logsumexp(log_w))
                g_mean, n_mean = g_mean + (w * h).sum(), n_mean + (w * x).sum()
            observed = float(g_test(c, t - c).statistic)
            assert point[k, 0] > 0 and abs(g_mean / observed - 1) < 0.03
            assert abs(n_mean - n1) < 0.3 * np.sqrt(n1)


def test_permutation_g_from_the_table_of_k_log_k_equals_it_computed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the same draws give the same exceedances whether k log k is read from its table or
    # computed per cell (tables with counts above _TABLED)
    rng = np.random.default_rng(8)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    current = rng.multinomial(30, probs, size=40).astype(float)
    baseline = rng.multinomial(3000, probs, size=40).astype(float)
    tabled = permutation_exceedances(current, baseline, 200, Streams(9))
    monkeypatch.setattr(significance, "_TABLED", 0)
    computed = permutation_exceedances(current, baseline, 200, Streams(9))
    np.testing.assert_array_equal(tabled, computed)
    assert len(np.unique(tabled)) > 10  # p-values across the range


def test_permutation_chunks_draw_their_own_streams_whatever_the_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 80 copies of one table, each its own chunk (_DRAWN_CELLS = one row's draws): chunk c
    # draws from streams(c), so the copies' exceedances are independent Binomial(draws, p)
    # counts (p 0.29 by enumeration), the same on one thread or two
    cur, base = np.array([3.0, 1, 0, 2, 1, 3]), np.array([50.0, 40, 30, 20, 10, 5])
    exact = exact_permutation_p(cur, base)
    draws, copies = 200, 80
    monkeypatch.setattr(significance, "_DRAWN_CELLS", draws * cur.size)
    counts = {}
    for threads in (1, 2):
        monkeypatch.setattr(parallel, "threads", lambda threads=threads: threads)
        counts[threads] = permutation_exceedances(np.tile(cur, (copies, 1)),
                                                  np.tile(base, (copies, 1)), draws, Streams(4))
    np.testing.assert_array_equal(counts[1], counts[2])
    binomial_variance = draws * exact * (1 - exact)
    assert abs(counts[1].mean() / draws - exact) < 4 * np.sqrt(binomial_variance / copies) / draws
    # shared streams would give equal counts (variance 0); chi-square(79) within its 1e-4 tails
    assert 40 < counts[1].var(ddof=1) / binomial_variance * (copies - 1) < 130


def test_the_permutation_tails_import_no_scipy() -> None:
    # the tails' log factorials are numpy (kl_metrics.special.log_factorial): importing
    # scipy.special cost about 0.1 s of every run with a sparse candidate
    probe = ("import sys, numpy as np\n"
             "from pipeline.decide.significance import Streams, precise_p_values\n"
             "p = precise_p_values(np.array([[0.0, 0, 0, 2, 10, 14]]),\n"
             "                     np.array([[400.0, 300, 200, 80, 15, 5]]), draws=500,\n"
             "                     streams=Streams(0))\n"
             "print(0 < p[0] < 1e-30, 'scipy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[1])
    assert done.stdout.split() == ["True", "False"]
