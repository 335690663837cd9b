"""Is a histogram difference real or sampling noise: the two-sample G-test of homogeneity."""

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from .special import chdtrc, kl_div


def g_terms(current: np.ndarray, baseline: np.ndarray, n_current: np.ndarray | float,
            n_baseline: np.ndarray | float) -> np.ndarray:
    """Each bin's term of the G statistic (:func:`g_test`), without checking the inputs.

    For callers that build many tables themselves (simulations, flat arrays of tables of
    different widths): ``current``/``baseline`` are float counts, ``n_current``/
    ``n_baseline`` their totals broadcast to the same shape. Every term is >= 0 and G is
    their sum over a table's bins.

    >>> cur, base = np.array([30.0, 20, 50]), np.array([40.0, 40, 20])
    >>> round(float(g_terms(cur, base, cur.sum(), base.sum()).sum()), 3)
    21.512
    """
    share = (current + baseline) / (n_current + n_baseline)  # column total / N
    # kl_div(O, E) = O log(O/E) - O + E: the added terms sum to 0 along each row, and make
    # every term >= 0, so the sum has no cancellation
    terms: np.ndarray = kl_div(current, n_current * share)
    terms += kl_div(baseline, n_baseline * share)
    terms *= 2
    return terms


class GTestResult(NamedTuple):
    """Result of :func:`g_test`; unpacks as ``statistic, dof, p_value``."""

    statistic: float | np.ndarray
    dof: int | np.ndarray
    p_value: float | np.ndarray


def g_test(
    current_counts: ArrayLike, baseline_counts: ArrayLike, *, axis: int = -1
) -> GTestResult:
    """Two-sample G-test (log-likelihood ratio) that two histograms share one distribution.

    For the 2 x k table of counts O (rows: current, baseline) with expected counts
    E = row total x column total / N, ``G = 2 sum O log(O/E)``. Equivalently
    ``G = 2 N JS_w``, the JS divergence in nats of the two empirical distributions weighted
    by their sample sizes n1/N and n2/N: the test is the drift metric JS scaled by the
    sample size. Under homogeneity G is asymptotically chi-square with ``dof`` = (number of
    bins with a nonzero total) - 1; the p-value is its survival function (1 when dof is 0).
    Equal to ``scipy.stats.chi2_contingency(table, lambda_="log-likelihood",
    correction=False)`` on tables without empty columns, vectorised.

    Parameters
    ----------
    current_counts, baseline_counts : array_like
        Counts (finite, >= 0, not normalised: the test depends on the sample sizes), with
        shapes that broadcast like numpy's and the same number of bins along `axis`; every
        slice along `axis` has a positive total.
    axis : int, optional
        Axis holding the bins. Default -1.

    Returns
    -------
    GTestResult
        ``statistic`` (G), ``dof`` and ``p_value``, each one value per slice along `axis`.

    Raises
    ------
    ValueError
        For negative, NaN or infinite counts, shapes that do not broadcast, different
        numbers of bins, all-zero slices or an invalid `axis`.

    Examples
    --------
    >>> from kl_metrics import g_test
    >>> res = g_test([30, 20, 50], [40, 40, 20])
    >>> print(f"G={res.statistic:.3f} dof={res.dof} p={res.p_value:.2e}")
    G=21.512 dof=2 p=2.13e-05
    """
    (cur, base), (n_cur, n_base), _ = v.histograms(
        (current_counts, baseline_counts), ("current_counts", "baseline_counts"), axis
    )
    statistic = g_terms(cur, base, n_cur, n_base).sum(axis=-1)
    dof = np.count_nonzero(cur + base, axis=-1) - 1
    # chdtrc is the chi-square survival function (scipy.stats is slow to import)
    p_value = np.where(dof > 0, chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return GTestResult(statistic[()], dof[()], p_value[()])
