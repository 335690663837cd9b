"""kl_metrics.estimators: the k1/k2/k3 Monte-Carlo KL estimators (seed 003)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

import kl_metrics

N = 500_000


def gaussian_log_ratio(mu, n, seed=0):
    """log Q(x), log P(x) for x ~ Q = N(0, 1), P = N(mu, 1); KL(Q||P) = mu^2 / 2."""
    x = np.random.default_rng(seed).normal(size=n)
    return stats.norm.logpdf(x), stats.norm.logpdf(x, loc=mu)


# The seed-003 table: (mu, estimator) -> (bias / true KL, stdev / true KL), as printed.
SEED_TABLE = {
    (0.1, "k1"): (0.0, 20.0),
    (0.1, "k2"): (0.002, 1.42),
    (0.1, "k3"): (0.0, 1.42),
    (1.0, "k1"): (0.0, 2.0),
    (1.0, "k2"): (0.25, 1.73),
    (1.0, "k3"): (0.0, 1.7),
}


@pytest.mark.parametrize(("mu", "estimator"), list(SEED_TABLE))
def test_seed_003_bias_and_stdev_table(mu, estimator):
    logq, logp = gaussian_log_ratio(mu, N)
    true = mu**2 / 2
    terms = kl_metrics.kl_estimator_terms(logq, logp, estimator=estimator)
    bias, spread = terms.mean() / true - 1, terms.std() / true
    want_bias, want_spread = SEED_TABLE[mu, estimator]
    # Monte-Carlo error of the mean (4 sigma) plus the table's rounding (half its last digit)
    mc = 4 * spread / math.sqrt(N)
    digits = 0.0005 if want_bias < 0.01 and want_bias else 0.005
    assert abs(bias - want_bias) < mc + digits, (bias, want_bias)
    assert abs(spread - want_spread) < 0.02 * want_spread + 0.005, (spread, want_spread)


def test_k2_bias_matches_its_closed_form():
    # log r ~ N(-mu^2/2, mu^2) under Q, so E[k2] = (mu^2 + mu^4 / 4) / 2 exactly
    for mu in (0.1, 1.0):
        logq, logp = gaussian_log_ratio(mu, N, seed=1)
        est = kl_metrics.kl_estimate(logq, logp, estimator="k2")
        assert abs(est.value - (mu**2 + mu**4 / 4) / 2) < 4 * est.stderr


def test_forward_and_reverse_estimate_their_own_direction():
    # Q = N(0, 1), P = N(0.5, 0.8^2): unequal variances make the two directions differ
    x = np.random.default_rng(3).normal(size=N)
    logq, logp = stats.norm.logpdf(x), stats.norm.logpdf(x, loc=0.5, scale=0.8)
    forward = math.log(0.8) + (1 + 0.25) / (2 * 0.64) - 0.5  # KL(Q||P)
    reverse = math.log(1 / 0.8) + (0.64 + 0.25) / 2 - 0.5  # KL(P||Q)
    for estimator in ("k1", "k3"):  # unbiased in both directions
        f = kl_metrics.kl_estimate(logq, logp, estimator=estimator)
        r = kl_metrics.kl_estimate(logq, logp, estimator=estimator, direction="reverse")
        assert abs(f.value - forward) < 4 * f.stderr, (estimator, f)
        assert abs(r.value - reverse) < 4 * r.stderr, (estimator, r)
        low, high = r.confidence_interval(0.9999)
        assert low < reverse < high
    # k3 has lower variance than k1 in both directions here
    for direction in ("forward", "reverse"):
        k1, k3 = (kl_metrics.kl_estimate(logq, logp, estimator=k, direction=direction)
                  for k in ("k1", "k3"))
        assert k3.stderr < k1.stderr


def test_estimate_is_mean_and_standard_error_of_terms():
    rng = np.random.default_rng(4)
    logq, logp = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    est = kl_metrics.kl_estimate(logq, logp, estimator="k1", base=2)
    terms = (logq - logp) / math.log(2)
    np.testing.assert_allclose(est.value, terms.mean(-1))
    np.testing.assert_allclose(est.stderr, terms.std(-1, ddof=1) / math.sqrt(50))
    assert (est.n, est.estimator, est.direction) == (50, "k1", "forward")
    pooled = kl_metrics.kl_estimate(logq, logp, estimator="k1", axis=None)
    assert pooled.n == 150 and pooled.value == pytest.approx(terms.mean() * math.log(2))
    low, high = est.confidence_interval(0.95)
    np.testing.assert_allclose(high - low, 2 * stats.norm.ppf(0.975) * est.stderr)
    columns = kl_metrics.kl_estimate(logq.T, logp.T, estimator="k1", axis=0, base=2)
    np.testing.assert_allclose(columns.value, est.value)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-800, 800)),
       st.sampled_from(["forward", "reverse"]))
def test_k3_and_k2_are_never_negative_and_never_nan(log_r, direction):
    zeros = np.zeros_like(log_r)
    for estimator in ("k2", "k3"):
        terms = kl_metrics.kl_estimator_terms(zeros, log_r, estimator=estimator,
                                              direction=direction)
        assert not np.isnan(terms).any()
        assert (terms >= 0).all()


def test_k3_is_accurate_for_tiny_log_ratios():
    log_r = np.array([1e-9, -1e-9, 1e-5])
    terms = kl_metrics.kl_estimator_terms(np.zeros(3), log_r, estimator="k3")
    series = log_r**2 / 2 + log_r**3 / 6 + log_r**4 / 24  # Taylor series of e^x - 1 - x
    np.testing.assert_allclose(terms, series, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"logq": [0.0, np.nan], "logp": [0.0, 0.0]}, "logq contains NaN"),
        ({"logq": [0.0, 0.0], "logp": [-np.inf, 0.0]}, "logp contains infinite"),
        ({"logq": [0.0, 0.0], "logp": [0.0, 0.0], "estimator": "k4"}, "estimator"),
        ({"logq": [0.0, 0.0], "logp": [0.0, 0.0], "direction": "both"}, "direction"),
        ({"logq": [0.0], "logp": [0.0]}, "at least 2 samples"),
        ({"logq": [0.0, 0.0], "logp": [0.0, 0.0, 0.0]}, "broadcast"),
        ({"logq": [0.0, 0.0], "logp": [0.0, 0.0], "base": 0}, "base"),
    ],
)
def test_invalid_estimator_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl_metrics.kl_estimate(**kwargs)
    with pytest.raises(ValueError, match="level"):
        kl_metrics.KLEstimate(0.1, 0.01, 10, "k3", "forward").confidence_interval(1.5)


def test_reverse_k2_targets_its_own_second_moment():
    # reverse k2 = r (log r)^2 / 2 on Q-samples estimates E_P[(log r)^2 / 2]; with unequal
    # variances that differs from the forward k2 target E_Q[(log r)^2 / 2]
    from scipy import integrate

    p, q = stats.norm(0.5, 0.8), stats.norm(0, 1)

    def half_square(x: float) -> float:
        return 0.5 * (p.logpdf(x) - q.logpdf(x)) ** 2

    reverse = integrate.quad(lambda x: p.pdf(x) * half_square(x), -12, 12)[0]
    forward = integrate.quad(lambda x: q.pdf(x) * half_square(x), -12, 12)[0]
    x = np.random.default_rng(6).normal(size=N)
    est = kl_metrics.kl_estimate(q.logpdf(x), p.logpdf(x), estimator="k2", direction="reverse")
    assert abs(est.value - reverse) < 4 * est.stderr
    assert abs(forward - reverse) > 20 * est.stderr
