"""Monte-Carlo estimates of KL divergence from samples and their log-densities (k1, k2, k3).

Samples x are drawn from Q; ``logq = log Q(x)``, ``logp = log P(x)`` and
``log r = logp - logq``. Forward estimators target KL(Q||P) = E_Q[-log r]:

- ``k1 = -log r``: unbiased, high variance (negative for half the samples when P ~ Q);
- ``k2 = (log r)**2 / 2``: biased (an f-divergence that matches KL to second order), low
  variance, good only when P and Q are close;
- ``k3 = (r - 1) - log r``: unbiased (E_Q[r - 1] = 0 is a control variate), low variance,
  never negative. The default.

Reverse estimators target KL(P||Q) = E_Q[r log r] from the same Q-samples. Each is the
forward estimator for samples of P, importance-weighted: ``r * k(1/r)``, i.e.
``k1 -> r log r`` (unbiased), ``k2 -> r (log r)**2 / 2`` (biased),
``k3 -> r log r - (r - 1)`` (unbiased, >= 0; the seed's estimator).

With samples of both Q and P and an *estimated* ratio (e.g. a classifier's, the joint drift
check), :func:`kl_estimate_two_sample` takes k3's control variate over the other sample,
which makes the estimate insensitive to first-order errors of the ratio.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from .special import ndtri

# (direction, estimator) -> per-sample term as a function of log r. Reverse terms are
# r * k(1/r), written so that neither overflow of r nor its underflow gives inf * 0.
_TERMS = {
    ("forward", "k1"): lambda x: -x,
    ("forward", "k2"): lambda x: 0.5 * x * x,
    # expm1 keeps r - 1 exact for r near 1, where the estimate is smallest
    ("forward", "k3"): lambda x: np.expm1(x) - x,
    ("reverse", "k1"): lambda x: x * np.exp(x),
    ("reverse", "k2"): lambda x: 0.5 * x * (x * np.exp(x)),
    # r log r - (r - 1); past log r = 700, r overflows and 1 + r (log r - 1) is exact enough
    ("reverse", "k3"): lambda x: np.where(
        x < 700, x * np.exp(x) - np.expm1(x), 1 + np.exp(x) * (x - 1)
    ),
}
ESTIMATORS = ("k1", "k2", "k3")
DIRECTIONS = ("forward", "reverse")


@dataclass(frozen=True)
class KLEstimate:
    """A Monte-Carlo KL estimate: the mean of per-sample terms and its standard error.

    Attributes
    ----------
    value : float or ndarray
        The estimate (mean of the per-sample terms), in nats or units of `base`.
    stderr : float or ndarray
        Standard error of the mean: sample standard deviation (ddof=1) over sqrt(n) (for
        two samples, the root of the sum of both sides' squared standard errors).
    n : int
        Number of samples per estimate (of both sides, for two samples).
    estimator : str
        ``"k1"``, ``"k2"``, ``"k3"``, or ``"two-sample"`` (:func:`kl_estimate_two_sample`).
    direction : str
        ``"forward"`` (KL(Q||P)) or ``"reverse"`` (KL(P||Q)).
    """

    value: float | np.ndarray
    stderr: float | np.ndarray
    n: int
    estimator: str
    direction: str

    def confidence_interval(self, level: float = 0.95) -> tuple:
        """Normal-approximation interval ``value -+ z * stderr`` at confidence `level`.

        Examples
        --------
        >>> from kl_metrics import KLEstimate
        >>> low, high = KLEstimate(0.5, 0.1, 100, "k3", "forward").confidence_interval(0.95)
        >>> print(f"{low:.4f} {high:.4f}")
        0.3040 0.6960
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        z = ndtri(0.5 + level / 2)  # the normal quantile; scipy.stats is slow to import
        return self.value - z * self.stderr, self.value + z * self.stderr


def kl_estimator_terms(
    logq: ArrayLike,
    logp: ArrayLike,
    *,
    estimator: str = "k3",
    direction: str = "forward",
    base: float | None = None,
) -> np.ndarray:
    """Per-sample terms of a KL estimator; their mean is the estimate.

    Parameters
    ----------
    logq, logp : array_like
        Finite log-densities (or log-probabilities) of samples x ~ Q under Q and under P;
        shapes broadcast like numpy's.
    estimator : {"k1", "k2", "k3"}, optional
        See the module docstring. Default ``"k3"``.
    direction : {"forward", "reverse"}, optional
        ``"forward"`` (default) estimates KL(Q||P), ``"reverse"`` KL(P||Q).
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.

    Returns
    -------
    ndarray
        The terms, in the broadcast shape. ``inf`` where r overflows (log r > ~709).

    Raises
    ------
    ValueError
        For NaN or infinite log-densities, shapes that do not broadcast, an unknown
        estimator or direction, or an invalid base.

    Examples
    --------
    >>> from kl_metrics import kl_estimator_terms
    >>> kl_estimator_terms([0.0, 0.0], [-0.5, 0.5], estimator="k1")
    array([ 0.5, -0.5])
    >>> kl_estimator_terms([0.0, 0.0], [-0.5, 0.5]).round(4)
    array([0.1065, 0.1487])
    """
    term = _TERMS[
        v.check_choice(direction, "direction", DIRECTIONS),
        v.check_choice(estimator, "estimator", ESTIMATORS),
    ]
    divisor = v.log_base(base)
    logq, logp = v.finite_arrays((logq, logp), ("logq", "logp"))
    with np.errstate(over="ignore", invalid="ignore"):
        return term(logp - logq) / divisor


def kl_estimate(
    logq: ArrayLike,
    logp: ArrayLike,
    *,
    estimator: str = "k3",
    direction: str = "forward",
    axis: int | None = -1,
    base: float | None = None,
) -> KLEstimate:
    """Monte-Carlo estimate of KL(Q||P) (or KL(P||Q)) from samples x ~ Q.

    Parameters
    ----------
    logq, logp : array_like
        Finite log-densities (or log-probabilities) of samples x ~ Q under Q and under P;
        shapes broadcast like numpy's.
    estimator : {"k1", "k2", "k3"}, optional
        ``k1`` unbiased/high variance, ``k2`` biased/low variance, ``k3`` (default)
        unbiased/low variance (see the module docstring and docs/kl_metrics.md).
    direction : {"forward", "reverse"}, optional
        ``"forward"`` (default) estimates KL(Q||P), ``"reverse"`` KL(P||Q).
    axis : int or None, optional
        Axis along which samples lie (default -1); ``None`` uses all samples.
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.

    Returns
    -------
    KLEstimate
        ``value``, ``stderr`` (floats, or arrays for batched input), ``n``, and the names.

    Raises
    ------
    ValueError
        As :func:`kl_estimator_terms`, and for fewer than 2 samples along `axis`.

    Examples
    --------
    >>> import numpy as np
    >>> from kl_metrics import kl_estimate
    >>> x = np.random.default_rng(0).normal(size=200_000)   # x ~ Q = N(0, 1)
    >>> logq, logp = -x**2 / 2, -(x - 1) ** 2 / 2           # P = N(1, 1); KL(Q||P) = 0.5
    >>> est = kl_estimate(logq, logp, estimator="k3")
    >>> bool(abs(est.value - 0.5) < 3 * est.stderr), est.n
    (True, 200000)
    """
    terms = kl_estimator_terms(
        logq, logp, estimator=estimator, direction=direction, base=base
    )
    if axis is None:
        terms, axis = terms.ravel(), -1
    (terms,), _ = v.axis_last((terms,), ("samples",), axis)
    n = terms.shape[-1]
    if n < 2:
        raise ValueError(f"need at least 2 samples along axis for a standard error, got {n}")
    value = terms.mean(axis=-1)
    stderr = terms.std(axis=-1, ddof=1) / np.sqrt(n)
    return KLEstimate(value[()], stderr[()], n, estimator, direction)


# (direction) -> per-sample terms (on Q's samples, on P's samples) as functions of
# lambda = log Q(x) - log P(x): k1 on one sample, k3's control variate on the other.
_TWO_SAMPLE_TERMS = {
    "forward": (lambda lam: lam, lambda lam: -np.expm1(lam)),
    "reverse": (lambda lam: -np.expm1(-lam), lambda lam: -lam),
}


def kl_estimate_two_sample(
    log_ratio_q: ArrayLike,
    log_ratio_p: ArrayLike,
    *,
    direction: str = "forward",
    axis: int = -1,
    base: float | None = None,
) -> KLEstimate:
    """KL(Q||P) (or KL(P||Q)) from samples of both Q and P and the log ratio at each.

    With samples of both distributions, k3's control variate ``r - 1`` (zero mean under Q
    when the ratio is exact) can be taken over the *other* sample, where it reads
    ``e^lambda - 1`` (zero mean under P). With ``lambda = log Q(x) - log P(x)``:

    - forward: KL(Q||P) = mean over Q's samples of ``lambda`` (k1)
      - mean over P's samples of ``e^lambda - 1``;
    - reverse: KL(P||Q) = mean over P's samples of ``-lambda`` (k1)
      - mean over Q's samples of ``e^-lambda - 1``.

    With the exact ratio both are unbiased, like k3. With an *estimated* ratio
    ``lambda + e`` (a classifier's, scored out of fold) the forward expectation is
    ``KL - E_Q[e^e - 1 - e]``: never above the truth, and wrong only to second order in
    the error ``e`` (the one-step, or Nguyen-Wainwright-Jordan, estimator), whereas k3
    on Q's samples alone is off to first order and its standard error ignores P's sample.
    ``stderr`` combines both samples: ``sqrt(var_Q / n_Q + var_P / n_P)``.

    Parameters
    ----------
    log_ratio_q, log_ratio_p : array_like
        Finite ``log Q(x) - log P(x)`` at samples x ~ Q and at samples x ~ P. The samples
        lie along `axis` (their numbers may differ); other axes broadcast like numpy's.
    direction : {"forward", "reverse"}, optional
        ``"forward"`` (default) estimates KL(Q||P), ``"reverse"`` KL(P||Q).
    axis : int, optional
        Axis along which samples lie (default -1).
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.

    Returns
    -------
    KLEstimate
        ``estimator`` is ``"two-sample"``; ``n`` counts the samples of both sides.

    Raises
    ------
    ValueError
        For NaN or infinite log ratios, an unknown direction, an invalid base, leading
        shapes that do not broadcast, or fewer than 2 samples on a side.

    Examples
    --------
    >>> import numpy as np
    >>> from kl_metrics import kl_estimate_two_sample
    >>> rng = np.random.default_rng(0)
    >>> xq, xp = rng.normal(1, 1, 100_000), rng.normal(0, 1, 100_000)  # Q = N(1,1), P = N(0,1)
    >>> est = kl_estimate_two_sample(xq - 0.5, xp - 0.5)  # log Q/P = x - 1/2; KL = 0.5
    >>> bool(abs(est.value - 0.5) < 3 * est.stderr), est.n
    (True, 200000)
    """
    on_q, on_p = _TWO_SAMPLE_TERMS[v.check_choice(direction, "direction", DIRECTIONS)]
    divisor = v.log_base(base)
    sides = []
    for name, values, term in (("log_ratio_q", log_ratio_q, on_q),
                               ("log_ratio_p", log_ratio_p, on_p)):
        lam = v.as_float_array(values, name)
        v.check_finite(lam, name)
        if lam.ndim == 0 or lam.shape[axis] < 2:
            raise ValueError(f"need at least 2 samples of {name} along axis for a standard "
                             f"error, got {lam.shape[axis] if lam.ndim else 1}")
        with np.errstate(over="ignore"):
            terms = np.moveaxis(term(lam), axis, -1) / divisor
        sides.append((terms.mean(axis=-1), terms.var(axis=-1, ddof=1) / terms.shape[-1],
                      terms.shape[-1]))
    (mean_q, var_q, n_q), (mean_p, var_p, n_p) = sides
    v.broadcast_shape([mean_q, mean_p], ["log_ratio_q", "log_ratio_p"])
    value, stderr = mean_q + mean_p, np.sqrt(var_q + var_p)
    return KLEstimate(value[()], stderr[()], n_q + n_p, "two-sample", direction)
