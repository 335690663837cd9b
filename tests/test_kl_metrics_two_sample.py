"""kl_metrics.kl_estimate_two_sample: KL from samples of both sides and a (possibly estimated)
log ratio — the estimator of the joint drift check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kl_metrics import kl_estimate, kl_estimate_two_sample

# Q = N(0.5, 1), P = N(0, 0.8^2): unequal variances make the two directions differ
MU, SIGMA = 0.5, 0.8
FORWARD = math.log(SIGMA) + (1 + MU**2) / (2 * SIGMA**2) - 0.5  # KL(Q||P)
REVERSE = -math.log(SIGMA) + (SIGMA**2 + MU**2) / 2 - 0.5  # KL(P||Q)


def log_ratio(x: np.ndarray) -> np.ndarray:
    """log Q(x) - log P(x)."""
    return stats.norm.logpdf(x, MU) - stats.norm.logpdf(x, 0, SIGMA)


def draws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(MU, 1, n), rng.normal(0, SIGMA, n)


@pytest.mark.parametrize(("direction", "truth"), [("forward", FORWARD), ("reverse", REVERSE)])
def test_exact_ratio_is_unbiased_and_its_interval_covers(direction: str, truth: float) -> None:
    rng = np.random.default_rng(1)
    xq, xp = draws(rng, (400, 2000))
    est = kl_estimate_two_sample(log_ratio(xq), log_ratio(xp), direction=direction)
    # 400 independent estimates at once (samples along the last axis)
    assert est.value.shape == (400,) and est.n == 4000
    assert abs(est.value.mean() - truth) < 4 * est.value.std() / 20
    # the standard error is the spread of the estimates
    assert est.stderr.mean() == pytest.approx(est.value.std(), rel=0.1)
    low, high = est.confidence_interval(0.95)
    assert 0.92 < np.mean((low <= truth) & (truth <= high)) < 0.98


def test_stderr_adds_both_sides_variances_and_base_scales() -> None:
    rng = np.random.default_rng(2)
    lq, lp = log_ratio(rng.normal(MU, 1, 300)), log_ratio(rng.normal(0, SIGMA, 500))
    est = kl_estimate_two_sample(lq, lp)
    want = np.sqrt(lq.var(ddof=1) / 300 + np.expm1(lp).var(ddof=1) / 500)
    assert est.value == pytest.approx(lq.mean() - np.expm1(lp).mean())
    assert est.stderr == pytest.approx(want)
    bits = kl_estimate_two_sample(lq, lp, base=2)
    assert bits.value == pytest.approx(est.value / math.log(2))
    assert bits.stderr == pytest.approx(est.stderr / math.log(2))
    assert (est.estimator, est.direction, est.n) == ("two-sample", "forward", 800)


def test_a_wrong_ratio_never_overestimates_and_errs_only_to_second_order() -> None:
    rng = np.random.default_rng(3)
    xq, xp = draws(rng, 2_000_000)
    for scale in (0.8, 0.9, 1.1, 1.2):  # the ratio's log off by 10-20 %
        wrong_q, wrong_p = scale * log_ratio(xq), scale * log_ratio(xp)
        two = kl_estimate_two_sample(wrong_q, wrong_p)
        assert two.value < FORWARD + 3 * two.stderr  # a lower bound (NWJ)
        # k3 on Q's sample alone, fed the same wrong ratio, errs to first order
        one = kl_estimate(wrong_q, np.zeros_like(wrong_q), estimator="k3")
        assert abs(two.value - FORWARD) < 0.35 * abs(one.value - FORWARD), scale
    # an unrelated score: the estimate drops to (below) zero, never above the truth
    noise = kl_estimate_two_sample(rng.normal(0, 0.3, 100_000), rng.normal(0, 0.3, 100_000))
    assert noise.value < 3 * noise.stderr


def test_bad_input_raises_value_errors() -> None:
    with pytest.raises(ValueError, match="log_ratio_q contains NaN"):
        kl_estimate_two_sample([0.1, np.nan], [0.0, 0.2])
    with pytest.raises(ValueError, match="at least 2 samples of log_ratio_p"):
        kl_estimate_two_sample([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="direction must be one of"):
        kl_estimate_two_sample([0.1, 0.2], [0.3, 0.1], direction="sideways")
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        kl_estimate_two_sample(np.zeros((2, 5)), np.zeros((3, 4)))
