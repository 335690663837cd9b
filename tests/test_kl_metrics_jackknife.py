"""kl_metrics.jackknife: bias-corrected divergence and interval, against brute-force
leave-one-out, simulation and the 1/n scaling of large samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kl_metrics import DEFAULT_METRICS, divergences, jackknife

UNROOTED = {"js_distance": "js_divergence"}


def brute_force(current: np.ndarray, baseline: np.ndarray, metric: str,
                level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) by deleting each observation in turn (every count >= 2, eps=0,
    so no leave-one-out sample has an empty bin and the plain definition applies)."""
    from scipy.stats import norm

    def inner(c: np.ndarray, b: np.ndarray) -> float:
        name = UNROOTED.get(metric, metric)
        value = float(divergences(c, b, metrics=(name,), eps=0)[name])
        return value**2 if metric == "hellinger" else value

    plug_in = inner(current, baseline)
    bias = variance = 0.0
    for side in (0, 1):
        sample = (current, baseline)[side]
        loo = []
        for i in np.flatnonzero(sample):
            fewer = sample.copy()
            fewer[i] -= 1
            loo += [inner(fewer, baseline) if side == 0 else inner(current, fewer)] * int(
                sample[i])
        values = np.array(loo)
        n = len(values)
        bias += (n - 1) * (values.mean() - plug_in)
        variance += (n - 1) / n * ((values - values.mean()) ** 2).sum()
    estimate = min(max(plug_in - bias, 0.0), plug_in)
    half = norm.ppf(0.5 + level / 2) * np.sqrt(variance)
    low, high = max(estimate - half, 0.0), estimate + half
    if metric in ("js_distance", "hellinger"):
        return float(np.sqrt(estimate)), float(np.sqrt(low)), float(np.sqrt(high))
    return estimate, low, high


@settings(max_examples=40)
@given(current=st.lists(st.integers(2, 12), min_size=2, max_size=6),
       shift=st.lists(st.integers(0, 9), min_size=6, max_size=6),
       metric=st.sampled_from(DEFAULT_METRICS))
def test_equals_brute_force_leave_one_out(current: list[int], shift: list[int],
                                         metric: str) -> None:
    cur = np.array(current, dtype=float)
    base = cur[::-1] + np.array(shift[: len(cur)], dtype=float)
    result = jackknife(cur, base, metric, eps=0)
    np.testing.assert_allclose(
        [result.estimate, result.low, result.high], brute_force(cur, base, metric),
        rtol=1e-7, atol=1e-12)


@settings(max_examples=60)
@given(current=st.lists(st.floats(0, 1e4), min_size=1, max_size=8),
       seed=st.integers(0, 2**32 - 1), metric=st.sampled_from(DEFAULT_METRICS),
       eps=st.sampled_from([0.0, 1e-6, 1e-3]))
def test_estimate_stays_between_zero_and_the_value(current: list[float], seed: int,
                                                   metric: str, eps: float) -> None:
    cur = np.array(current)
    cur[0] += 1  # a positive total
    base = np.random.default_rng(seed).uniform(0, 50, len(cur)) + (eps > 0)
    result = jackknife(cur, base, metric, eps=eps)
    assert result.value == pytest.approx(divergences(cur, base, metrics=(metric,),
                                                     eps=eps)[metric])
    if np.isfinite(result.value):
        assert 0 <= result.low <= result.estimate <= result.high
        assert result.estimate <= result.value


def test_removes_the_small_sample_bias_and_covers_the_true_value() -> None:
    # 300-row windows of a drift whose true js_distance is 0.152, against a 5,000-row
    # baseline: both samples are noisy
    rng = np.random.default_rng(0)
    probs = np.full(20, 0.05)
    drifted = probs * np.exp(0.6 * np.linspace(-1, 1, 20))
    drifted /= drifted.sum()
    truth = float(divergences(drifted, probs, metrics=("js_distance",), base=2)["js_distance"])
    assert truth == pytest.approx(0.152, abs=0.001)
    windows = rng.multinomial(300, drifted, size=2000)
    baselines = rng.multinomial(5000, probs, size=2000)
    result = jackknife(windows, baselines, "js_distance", base=2)
    plug_in_error = result.value.mean() - truth
    assert plug_in_error > 0.02  # the plug-in overstates the drift...
    assert abs(result.estimate.mean() - truth) < 0.15 * plug_in_error  # ...the estimate less
    coverage = ((result.low <= truth) & (truth <= result.high)).mean()
    assert 0.92 <= coverage <= 0.98  # nominal 0.95; 2000 windows: sd 0.005


def test_identical_samples_estimate_zero() -> None:
    counts = np.array([40.0, 30, 20, 10])
    result = jackknife(counts, counts, "js_distance")
    assert result.value == 0 and result.estimate == 0 and result.low == 0


def test_large_samples_scale_bias_and_variance_with_one_over_n() -> None:
    # beyond REFERENCE_SIZE the sample is evaluated at that size and scaled back; the
    # interval's half-width must keep shrinking as 1/sqrt(n), the estimate meet the value
    shares = np.array([0.5, 0.3, 0.2])
    other = np.array([0.4, 0.35, 0.25])
    widths = []
    for n in (1e6, 1e10, 1e14, 2.0**62):
        result = jackknife(shares * n, other * n, "js_divergence")
        widths.append((result.high - result.low) * np.sqrt(n))
        assert result.estimate == pytest.approx(result.value, rel=1e-3)
    np.testing.assert_allclose(widths, widths[0], rtol=1e-3)


def test_fractional_counts_and_an_infinite_value() -> None:
    result = jackknife([0.3, 2.5, 7.2], [1.0, 1.0, 1.0], "hellinger")
    assert 0 <= result.estimate <= result.value
    infinite = jackknife([5.0, 5.0], [10.0, 0.0], "kl", eps=0)
    assert infinite.value == infinite.estimate == infinite.high == np.inf


def test_rows_are_independent_along_any_axis() -> None:
    rng = np.random.default_rng(3)
    current = rng.integers(0, 30, size=(4, 7)).astype(float) + 1
    baseline = rng.integers(0, 30, size=(1, 7)).astype(float) + 1
    batched = jackknife(current.T, baseline.T, "psi", axis=0)
    for i in range(4):
        single = jackknife(current[i], baseline[0], "psi")
        assert batched.estimate[i] == pytest.approx(single.estimate, rel=1e-12)
        assert batched.high[i] == pytest.approx(single.high, rel=1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"metric": "total_variation"}, "each metric must be one of"),
    ({"level": 1.0}, r"level must be a number in \(0, 1\)"),
    ({"eps": -1.0}, "eps must be"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        jackknife([1.0, 2.0], [2.0, 1.0], **kwargs)
    with pytest.raises(ValueError, match="current_counts contains negative"):
        jackknife([-1.0, 2.0], [2.0, 1.0])


def floored_brute_force(current: np.ndarray, baseline: np.ndarray, metric: str, eps: float,
                        ) -> tuple[float, float, float]:
    """(estimate, low, high) by deleting each observation in turn, every value from the
    textbook formula at the shares floored at `eps` without renormalising (as the
    jackknife's docstring defines them): empty bins and bins emptied by a deletion. A bin
    holding less than one observation is one observation, deleted whole (the sample then
    counts n - 1 observations)."""
    from scipy.stats import norm

    def inner(c: np.ndarray, b: np.ndarray) -> float:
        # a deletion leaves n - 1 observations, even when it deletes less than one count
        p, q = (np.maximum(x / (whole.sum() - (x is not whole)), eps)
                for x, whole in ((c, current), (b, baseline)))
        m = (p + q) / 2
        return {"kl": np.sum(p * np.log(p / q)), "reverse_kl": np.sum(q * np.log(q / p)),
                "symmetric_kl": np.sum((p - q) * np.log(p / q)),
                "psi": np.sum((p - q) * np.log(p / q)),
                "js_divergence": np.sum(p * np.log(p / m) + q * np.log(q / m)) / 2,
                "js_distance": np.sum(p * np.log(p / m) + q * np.log(q / m)) / 2,
                "hellinger": np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2}[metric]

    plug_in = inner(current, baseline)
    bias = variance = 0.0
    for side, sample in enumerate((current, baseline)):
        loo = np.array([inner(fewer, baseline) if side == 0 else inner(current, fewer)
                        for i in np.flatnonzero(sample)
                        for fewer in [sample - (np.arange(len(sample)) == i)
                                      * min(sample[i], 1.0)]])
        units = np.maximum(sample[sample > 0], 1.0)
        n = units.sum()
        mean = (units * loo).sum() / n
        bias += (n - 1) * (mean - plug_in)
        variance += (n - 1) / n * (units * (loo - mean) ** 2).sum()
    # kept below the value, which divergences measures at renormalised shares
    value = float(divergences(current, baseline, metrics=metric, eps=eps)[metric])
    estimate = min(max(plug_in - bias, 0.0), value**2 if metric in UNROOTED_SQUARE else value)
    half = norm.ppf(0.975) * np.sqrt(variance)
    low, high = max(estimate - half, 0.0), estimate + half
    if metric in UNROOTED_SQUARE:
        return float(np.sqrt(estimate)), float(np.sqrt(low)), float(np.sqrt(high))
    return estimate, low, high


UNROOTED_SQUARE = ("js_distance", "hellinger")


@settings(max_examples=40, deadline=None)
@given(current=st.lists(st.integers(0, 12), min_size=2, max_size=6),
       baseline=st.lists(st.integers(0, 12), min_size=6, max_size=6),
       metric=st.sampled_from(DEFAULT_METRICS))
def test_floored_shares_equal_brute_force_leave_one_out(current: list[int], baseline: list[int],
                                                       metric: str) -> None:
    # empty bins and bins of one observation: the floor at eps decides those values (eps is
    # larger than every share step 1/n(n-1), so a grown share is never just above it)
    cur = np.array(current, dtype=float) + (np.arange(len(current)) == 0) * 2
    base = np.array(baseline[: len(cur)], dtype=float) + (np.arange(len(cur)) == 1) * 2
    result = jackknife(cur, base, metric, eps=1e-3)
    np.testing.assert_allclose(
        [result.estimate, result.low, result.high],
        floored_brute_force(cur, base, metric, 1e-3), rtol=1e-7, atol=1e-12)


def test_a_value_given_is_used_as_it_is() -> None:
    rng = np.random.default_rng(5)
    current = rng.integers(0, 40, size=(30, 8)).astype(float) + 1
    baseline = rng.integers(0, 40, size=(30, 8)).astype(float) + 1
    value = divergences(current, baseline, metrics="kl")["kl"]
    given_value = jackknife(current, baseline, "kl", value=value)
    computed = jackknife(current, baseline, "kl")
    for a, b in zip(given_value, computed, strict=True):
        np.testing.assert_array_equal(a, b)
    # it caps the estimate: a smaller value given is a smaller cap
    capped = jackknife(current, baseline, "kl", value=value / 100)
    np.testing.assert_array_equal(capped.estimate, np.minimum(computed.estimate, value / 100))


@pytest.mark.parametrize("metric", DEFAULT_METRICS)
def test_fractional_counts_equal_brute_force_leave_one_out(metric: str) -> None:
    # weighted counts: bins below one observation are deleted whole, as one observation
    cur = np.array([0.3, 2.5, 7.2, 0.0, 4.0])
    base = np.array([1.5, 0.6, 3.0, 2.0, 0.2])
    result = jackknife(cur, base, metric, eps=1e-3)
    assert result.estimate < result.value < result.high  # not capped; an interval
    np.testing.assert_allclose([result.estimate, result.low, result.high],
                               floored_brute_force(cur, base, metric, 1e-3), rtol=1e-7)
