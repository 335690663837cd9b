"""kl_metrics.significance: the two-sample G-test of homogeneity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

import kl_metrics


@st.composite
def count_pairs(draw):
    bins = draw(st.integers(2, 7))
    counts = st.integers(0, 200).map(float)
    a, b = (draw(arrays(np.float64, bins, elements=counts)) for _ in range(2))
    a[0] += 1
    b[-1] += 1
    return a, b


@settings(max_examples=80, deadline=None)
@given(count_pairs())
def test_matches_scipy_chi2_contingency(pair):
    current, baseline = pair
    table = np.stack([current, baseline])
    table = table[:, table.sum(0) > 0]  # scipy rejects empty columns; they carry no evidence
    got = kl_metrics.g_test(current, baseline)
    if table.shape[1] < 2:
        assert (got.statistic, got.dof, got.p_value) == (0.0, 0, 1.0)
        return
    want = stats.chi2_contingency(table, lambda_="log-likelihood", correction=False)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-9, abs=1e-9)
    assert got.dof == want.dof
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-7, abs=1e-15)


@settings(max_examples=80, deadline=None)
@given(count_pairs())
def test_statistic_is_2n_times_weighted_js(pair):
    current, baseline = pair
    n1, n2 = current.sum(), baseline.sum()
    n = n1 + n2
    p1, p2 = current / n1, baseline / n2
    mixture = (n1 * p1 + n2 * p2) / n
    weighted_js = n1 / n * stats.entropy(p1, mixture) + n2 / n * stats.entropy(p2, mixture)
    statistic = kl_metrics.g_test(current, baseline).statistic
    assert statistic == pytest.approx(2 * n * weighted_js, rel=1e-9, abs=1e-9)
    # equal sample sizes: the weights are 1/2 and G = 2N x the drift metric JS itself
    doubled = kl_metrics.g_test(current, current[::-1]).statistic
    js = kl_metrics.js_divergence(current, current[::-1], eps=0)
    assert doubled == pytest.approx(2 * 2 * n1 * js, rel=1e-9, abs=1e-9)


def test_vectorised_over_windows_with_broadcast_baseline():
    rng = np.random.default_rng(8)
    current = rng.poisson(20, size=(4, 6, 5)).astype(float)
    baseline = rng.poisson(50, size=(4, 1, 5)).astype(float) + 1
    got = kl_metrics.g_test(current, baseline)
    assert got.statistic.shape == got.dof.shape == got.p_value.shape == (4, 6)
    for f in range(4):
        for w in range(6):
            one = kl_metrics.g_test(current[f, w], baseline[f, 0])
            assert got.statistic[f, w] == pytest.approx(one.statistic, rel=1e-12)
            assert got.dof[f, w] == one.dof
            assert got.p_value[f, w] == pytest.approx(one.p_value, rel=1e-10)
    transposed = kl_metrics.g_test(np.moveaxis(current, -1, 0), np.moveaxis(baseline, -1, 0),
                                   axis=0)
    np.testing.assert_allclose(transposed.statistic, got.statistic, rtol=1e-12)


def test_same_proportions_give_g_zero_and_p_one():
    res = kl_metrics.g_test([10, 20, 30], [20, 40, 60])
    assert res.statistic == pytest.approx(0.0, abs=1e-12)
    assert res.p_value == pytest.approx(1.0)
    assert kl_metrics.g_test([0, 5, 0], [0, 9, 0]).dof == 0


def test_p_values_are_calibrated_under_the_null():
    # multinomial draws from one distribution: about 5% of p-values fall below 0.05
    rng = np.random.default_rng(9)
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    current = rng.multinomial(2000, shares, size=4000).astype(float)
    baseline = rng.multinomial(3000, shares, size=4000).astype(float)
    p = kl_metrics.g_test(current, baseline).p_value
    assert 0.04 < (p < 0.05).mean() < 0.06
    assert stats.kstest(p, "uniform").pvalue > 1e-3


@pytest.mark.parametrize(
    ("current", "baseline", "match"),
    [
        ([1, -1, 3], [1, 1, 1], "current_counts contains negative"),
        ([1, 2, 3], [1, np.nan, 1], "baseline_counts contains NaN"),
        ([0, 0, 0], [1, 1, 1], "current_counts has 1 all-zero"),
        ([1, 2, 3], [1, 1], "do not broadcast"),
        ([1, 2, 3], [[1], [2]], "same number of bins"),
    ],
)
def test_invalid_counts_raise(current, baseline, match):
    with pytest.raises(ValueError, match=match):
        kl_metrics.g_test(current, baseline)
