"""How large is the drift itself: small-sample bias correction and an interval by the jackknife.

A divergence measured between two samples overstates the divergence between the populations
they come from: every plug-in divergence here is jointly convex in (p, q), so by Jensen's
inequality its expectation is at least the true value, and the gap is of order
(bins - 1) / n, large for small windows or many bins. The delete-one jackknife estimates
that bias and the estimate's variance from the samples alone, for each sample separately
(the two are independent): deleting one observation from bin i of a sample of n changes
only that bin's count and the sample size, so all n leave-one-out values of a sum over
bins come from three per-bin evaluations, O(bins) per histogram instead of O(n bins).
"""

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _terms
from . import _validation as v
from .divergences import DEFAULT_METRICS, divergences
from .special import ndtri

#: Above this many observations the leave-one-out differences (of relative size 1/n) would
#: drown in rounding, so a sample is evaluated at this size and its bias and variance,
#: which are proportional to 1/n to first order, are scaled to its real size.
REFERENCE_SIZE = 1e8


class JackknifeEstimate(NamedTuple):
    """Result of :func:`jackknife`: the plug-in value, the bias-corrected estimate and an
    interval, each one value per slice."""

    value: float | np.ndarray
    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray


def jackknife(
    current_counts: ArrayLike,
    baseline_counts: ArrayLike,
    metric: str = "js_distance",
    *,
    base: float | None = None,
    eps: float = 1e-6,
    level: float = 0.95,
    axis: int = -1,
    value: ArrayLike | None = None,
) -> JackknifeEstimate:
    """Bias-corrected divergence between the populations behind two histograms of counts.

    For each sample (current, baseline) the delete-one jackknife gives a bias estimate
    ``(n - 1) (mean of the leave-one-out values - plug-in value)`` and a variance
    ``(n - 1) / n * sum((leave-one-out value - their mean)**2)``; the two samples are
    independent, so biases and variances add. The estimate is the plug-in value minus the
    bias, kept in ``[0, value]`` (the bias of a jointly convex divergence is never negative,
    by Jensen's inequality); the interval is estimate +- z * standard error, cut at 0.
    An infinite value (``eps=0``, a bin empty in the baseline only) is returned as is; when
    deleting an observation makes the value infinite (``eps=0``), nothing can be corrected:
    the estimate is the value and the interval ``[0, inf]``.
    For the square-rooted metrics (``js_distance``, ``hellinger``) the correction and the
    interval are computed on the square (a smooth sum over bins) and then rooted.

    Leave-one-out values use the proportions floored at `eps` without renormalising (a
    difference of order eps x bins from :func:`divergences`, which renormalises). Counts
    are observations: weighted or fractional counts are treated as their totals (a bin
    holding less than 1 is deleted whole). Slices with fewer than 2 observations on a
    side get no correction on that side.

    Parameters
    ----------
    current_counts, baseline_counts : array_like
        Counts (finite, >= 0, not normalised: the correction depends on the sample sizes),
        shapes broadcasting like numpy's, every slice with a positive total.
    metric : str, optional
        One of the drift-table metrics ``kl`` (KL(current || baseline)), ``reverse_kl``,
        ``symmetric_kl``, ``psi``, ``js_divergence``, ``js_distance`` (default),
        ``hellinger``.
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.
    eps : float, optional
        Probability floor, as for :func:`divergences`; default 1e-6.
    level : float, optional
        Confidence level of the interval, in (0, 1); default 0.95.
    axis : int, optional
        Axis holding the bins. Default -1.
    value : array_like, optional
        The plug-in value of `metric` for these counts with these `base` and `eps`, as
        :func:`divergences` gives it (the shape of the result), when the caller has it
        already: it is then not computed again (three logarithms per bin fewer). It caps the
        estimate, so it must be that value.

    Returns
    -------
    JackknifeEstimate
        ``value`` (the plug-in metric, as :func:`divergences` gives it), ``estimate``,
        ``low`` and ``high``.

    Raises
    ------
    ValueError
        For negative, NaN or infinite counts, shapes that do not broadcast, different
        numbers of bins, all-zero slices, an unknown metric, or an invalid `base`, `eps`,
        `level` or `axis`.

    Examples
    --------
    A window of 300 rows from a distribution whose JS distance to the baseline's is 0.127
    bits: the plug-in value overstates it, the estimate is closer and the interval holds it.

    >>> import numpy as np
    >>> from kl_metrics import jackknife, js_distance
    >>> baseline = np.full(20, 0.05)
    >>> drifted = baseline * np.exp(0.5 * np.linspace(-1, 1, 20))
    >>> drifted /= drifted.sum()
    >>> print(f"{js_distance(drifted, baseline, base=2):.3f}")
    0.127
    >>> window = np.random.default_rng(0).multinomial(300, drifted)
    >>> res = jackknife(window, baseline * 10**6, "js_distance", base=2)
    >>> print(f"{res.value:.3f} {res.estimate:.3f} [{res.low:.3f}, {res.high:.3f}]")
    0.195 0.159 [0.076, 0.212]
    """
    (name,) = _terms.check_metrics(metric, DEFAULT_METRICS)
    divisor = v.log_base(base)
    eps = v.check_eps(eps)
    level = v._real(level, "level", "a number in (0, 1)")
    if not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    (cur, ref), (n_cur, n_ref), _ = v.histograms(
        (current_counts, baseline_counts), ("current_counts", "baseline_counts"), axis)
    cur, ref, n_cur, n_ref = np.broadcast_arrays(cur, ref, n_cur, n_ref)
    if value is None:
        value = divergences(cur, ref, metrics=(name,), base=base, eps=eps)[name]
    else:
        value = np.broadcast_to(np.asarray(value, dtype=float), cur.shape[:-1])[()]
    shape, bins = cur.shape[:-1], cur.shape[-1]
    cur, ref = cur.reshape(-1, bins), ref.reshape(-1, bins)
    n_cur, n_ref = n_cur[..., :1].reshape(-1, 1), n_ref[..., :1].reshape(-1, 1)
    z = ndtri(0.5 + level / 2)
    definition = _terms.METRICS[name]
    scale = divisor if definition.logarithmic else 1.0
    # the estimate never exceeds the value (the bias is >= 0): the value as a sum in nats
    top = np.ravel(value) ** (2 if definition.root else 1) * scale
    estimate, low, high = (np.empty(len(cur)) for _ in range(3))
    # block by block, so the passes over each block stay in the CPU cache, with one set of
    # working arrays for all blocks. Half of BLOCK_CELLS a block (measured at 500k rows x 20
    # bins: 1.2 s, against 1.4 s at 1/16 and 1.5 s at 2x): its numpy calls, which release
    # the GIL, also outweigh the Python between them, so callers' threads run side by side
    # (0.7 s on 2 threads; at 1/16, no faster than one)
    step = max(1, _terms.BLOCK_CELLS // 2 // bins)
    spaces = (_terms.Workspace(), _terms.Workspace())
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, len(cur), step):
            block = slice(start, start + step)
            estimate[block], low[block], high[block] = _corrected(
                (cur[block], n_cur[block]), (ref[block], n_ref[block]), definition, eps, z,
                top[block], spaces)
    estimate, low, high = (x.reshape(shape) / scale for x in (estimate, low, high))
    if definition.root:
        estimate, low, high = np.sqrt(estimate), np.sqrt(low), np.sqrt(high)
    return JackknifeEstimate(value, estimate[()], low[()], high[()])


def _corrected(current: tuple[np.ndarray, np.ndarray], baseline: tuple[np.ndarray, np.ndarray],
               metric: _terms.Metric, eps: float, z: float, top: np.ndarray,
               spaces: tuple[_terms.Workspace, _terms.Workspace]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and interval of one block of rows, as sums in nats (the squares of rooted
    metrics); the estimate is kept in ``[0, top]``. ``current`` and ``baseline``: the
    counts and their totals (a length-1 axis); ``spaces``: working arrays of the plug-in
    and of the leave-one-out values."""
    out, loo = spaces
    (cur, n_cur), (ref, n_ref) = current, baseline
    shares = {}
    for side, counts, n in (("p", cur, n_cur), ("q", ref, n_ref)):
        share = np.divide(counts, n, out=out(f"share {side}", counts.shape))
        np.maximum(share, eps, out=share)
        shares[side] = share
        shares[f"log_{side}"] = np.log(share, out=out(f"log share {side}", counts.shape))
    # the plug-in value from its pair sums, as divergences computes it
    plug_in = _terms.Fields(out, exact=eps == 0, **shares)
    whole = sum(coef * _terms.pair_sum(plug_in, weight, field)
                for coef, weight, field in metric.pairs)
    bias_cur, var_cur = _one_side(cur, n_cur, "p", plug_in, metric, eps, loo)
    bias_ref, var_ref = _one_side(ref, n_ref, "q", plug_in, metric, eps, loo)
    estimate = np.clip(whole - bias_cur - bias_ref, 0.0, top)
    half = z * np.sqrt(var_cur + var_ref)
    low, high = np.maximum(estimate - half, 0.0), estimate + half
    # with eps=0 a deletion can make the divergence infinite: no correction is possible
    undefined = ~np.isfinite(bias_cur + bias_ref + var_cur + var_ref)
    estimate = np.where(undefined, top, estimate)
    low, high = np.where(undefined, 0.0, low), np.where(undefined, np.inf, high)
    # an infinite divergence (eps=0, a bin empty in the baseline only) stays infinite
    infinite = ~np.isfinite(whole)
    estimate, low, high = (np.where(infinite, np.inf, x) for x in (estimate, low, high))
    return estimate, low, high


#: The fields that do not depend on a side's sample: pairs made only of them are constants
#: of that side's leave-one-out values and cancel from their differences.
_FIXED = {"p": ("q", "log_q", None), "q": ("p", "log_p", None)}


def _one_side(counts: np.ndarray, totals: np.ndarray, side: str, plug_in: _terms.Fields,
              metric: _terms.Metric, eps: float, out: _terms.Workspace
              ) -> tuple[np.ndarray, np.ndarray]:
    """Jackknife bias and variance (of the un-rooted sum, in nats) from the observations of
    one sample, ``side`` ("p": current, "q": baseline); ``plug_in`` holds the fields of both
    samples' floored shares; ``out`` the working arrays of this side's values.

    Deleting an observation of bin j leaves every other bin at its count over n - 1 (its
    share grown) and bin j one count lower, so the leave-one-out value minus the plug-in
    value is ``sum_i (grown_i - plug-in_i)`` (one number per row) plus ``without_j -
    grown_j`` (one per bin), where each is a bin's summand of the pairs that depend on this
    side's share (the others cancel). Each difference is taken bin by bin before summing:
    a difference of whole sums would lose the digits of these small changes.
    """
    size = totals[..., 0]
    shrink = np.minimum(REFERENCE_SIZE / size, 1.0)[..., None]
    if (shrink < 1).any():  # large samples: evaluated at REFERENCE_SIZE, scaled back below
        counts, totals = counts * shrink, totals * shrink
    n = totals
    smaller = np.maximum(n - 1, 1e-300)
    # x[0]: every bin at size n - 1, shares grown by n / (n - 1) (floored ones stay at eps);
    # x[1]: the bin that lost the observation (one observation, or a bin holding less)
    x = out("loo share", (2, *counts.shape))
    log_x = out("loo log share", x.shape)
    grown, fewer = np.divide(counts, smaller, out=x[0]), np.subtract(counts, 1.0, out=x[1])
    floored = grown < eps
    np.maximum(grown, eps, out=grown)
    np.add(getattr(plug_in, f"log_{side}"), np.log(n / smaller), out=log_x[0])
    np.copyto(log_x[0], np.log(eps), where=floored)
    fewer /= smaller
    np.log(np.maximum(fewer, eps, out=fewer), out=log_x[1])
    other = "q" if side == "p" else "p"
    fields = _terms.Fields(out, exact=eps == 0, **{
        side: x, f"log_{side}": log_x, other: getattr(plug_in, other),
        f"log_{other}": getattr(plug_in, f"log_{other}")})
    pairs = [pair for pair in metric.pairs if not {pair[1], pair[2]} <= set(_FIXED[side])]
    terms = _terms.bin_terms(pairs, fields, out("loo terms", x.shape))
    whole = _terms.bin_terms(pairs, plug_in, out("loo plug-in terms", counts.shape))
    shift = np.subtract(terms[0], whole, out=whole).sum(axis=-1)
    d = np.subtract(terms[1], terms[0], out=terms[1])
    units = np.maximum(counts, counts > 0)  # observations in each bin (a bin below 1 is one)
    n_units = units.sum(axis=-1)
    mean_d = np.vecdot(units, d) / n_units
    bias = (n_units - 1) * (shift + mean_d)
    d -= mean_d[..., None]
    variance = (n_units - 1) / n_units * np.vecdot(units * d, d)
    enough = n_units >= 2
    first_order = shrink[..., 0]  # bias and variance ~ 1/n: back to the real size
    return (np.where(enough, bias * first_order, 0.0),
            np.where(enough, variance * first_order, 0.0))
