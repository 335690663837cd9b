"""The special functions kl-drift uses: numpy versions on every run's path, scipy's elsewhere.

Importing ``scipy.special`` costs about 0.15 s of CPU, a sixth of a small ``kl-drift run``.
Every run, and every model-output comparison, has numpy versions here, held to scipy's
accuracy (``tests/test_kl_metrics_special.py`` compares them with scipy over wide ranges):
the G-test's terms (:func:`kl_div`, :func:`xlogy`), its chi-square tail for whole degrees
of freedom (:func:`chdtrc`), the log factorials of the permutation tails
(:func:`log_factorial`), the logistic functions of model outputs (:func:`expit`,
:func:`log_expit`, :func:`log_softmax`) and the normal quantile of a confidence level
(:func:`ndtri`). :func:`gammaln` (trends of root metrics) calls ``scipy.special``,
imported on its first call.

That import builds an array-API copy of numpy's namespace by reading every public attribute
of ``numpy``, and reading ``numpy.f2py`` or ``numpy.testing`` imports them: Fortran wrapper
generation and test helpers, 40% of the import, used by nothing here. They are registered as
lazy modules first (:class:`importlib.util.LazyLoader`), which load on their first use, so
code that does use them sees no difference. Every module of kl-drift takes these functions
from here; ``tests/test_cli.py`` checks that a run imports no scipy.

>>> from kl_metrics.special import chdtrc
>>> round(float(chdtrc(1, 3.841458820694124)), 6)  # the chi-square tail: P(X >= 3.84), 1 dof
0.05
"""

import functools
import importlib.util
import math
import sys
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike

#: numpy subpackages that ``scipy.special``'s import reads but kl-drift never uses.
LAZY_NUMPY = ("numpy.f2py", "numpy.testing")

__all__ = ["chdtrc", "expit", "gammaln", "kl_div", "log_expit", "log_factorial", "log_softmax",
           "ndtri", "xlogy"]


def kl_div(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """``x log(x/y) - x + y`` elementwise, ``y`` where ``x`` is 0, ``inf`` where ``x`` or
    ``y`` is negative or only ``y`` is 0 (``scipy.special.kl_div``).

    Where ``x`` is within a factor 2 of ``y``, as ``x log1p(d/y) - d`` with ``d = x - y``
    (exact there); elsewhere as scipy does, to the same digits. Near ``y`` the term is of
    the size of ``d^2/y``, and the textbook form keeps only the rounding of ``x`` (two
    near-equal G-test tables of millions of observations: G off by 1%); this keeps it to
    about ``eps |d|``.

    >>> kl_div([2.0, 0.0, 1.0], [1.0, 3.0, 0.0]).round(4).tolist()
    [0.3863, 3.0, inf]
    >>> round(float(kl_div(6e6 + 1, 6e6)) * 12e6, 9)  # 1/(2 x 6e6) - 1/(6 x 36e12) + ...
    0.999999944
    """
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        difference = x - y
        near = (x > 0.5 * y) & (x < 2 * y)
        far = ~near  # as scipy, the same digits
        out = np.log(x / y, where=far, out=np.empty_like(difference))
        np.log1p(difference / y, where=near, out=out)
        out *= x
        np.subtract(out, x, out=out, where=far)
        np.add(out, y, out=out, where=far)
        np.subtract(out, difference, out=out, where=near)
    other = ~((x > 0) & (y > 0))  # rare: fixed on their own (G-test tables: empty bins)
    if other.any():
        edge_x, edge_y = x[other], y[other]
        out[other] = np.where((edge_x == 0) & (edge_y >= 0), edge_y,
                              np.where(np.isnan(edge_x) | np.isnan(edge_y), np.nan, np.inf))
    return out


def xlogy(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """``x log(y)`` elementwise, 0 where ``x`` is 0 and ``y`` is not NaN
    (``scipy.special.xlogy``).

    >>> xlogy([0.0, 2.0], [0.0, np.e]).tolist()
    [0.0, 2.0]
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log(y))


# Cephes' erfc (scipy's ndtr.h): x erf-polynomial T/U below 1, exp(-x^2) P/Q below 8, R/S
# above; highest power first, the denominators' leading 1 written out.
_ERF_T = (9.60497373987051638749E0, 9.00260197203842689217E1, 2.23200534594684319226E3,
          7.00332514112805075473E3, 5.55923013010394962768E4)
_ERF_U = (1.0, 3.35617141647503099647E1, 5.21357949780152679795E2, 4.59432382970980127987E3,
          2.26290000613890934246E4, 4.92673942608635921086E4)
_ERFC_P = (2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0,
           4.86371970985681366614E1, 1.96520832956077098242E2, 5.26445194995477358631E2,
           9.34528527171957607540E2, 1.02755188689515710272E3, 5.57535335369399327526E2)
_ERFC_Q = (1.0, 1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2,
           9.75708501743205489753E2, 1.82390916687909736289E3, 2.24633760818710981792E3,
           1.65666309194161350182E3, 5.57535340817727675546E2)
_ERFC_R = (5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0,
           6.16021097993053585195E0, 7.40974269950448939160E0, 2.97886665372100240670E0)
_ERFC_S = (1.0, 2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1,
           1.70814450747565897222E1, 9.60896809063285878198E0, 3.36907645100081516050E0)


def _erfc_of_root(y: np.ndarray) -> np.ndarray:
    """``erfc(sqrt(y))`` for ``y >= 0`` (NaN stays NaN): Cephes' rational approximations,
    each on its own range, with ``exp(-y)`` taken from ``y`` itself (not from
    ``sqrt(y)**2``), so far tails keep their precision."""
    x, out = np.sqrt(y), np.empty_like(y)
    near, far = x < 1.0, x >= 8.0
    middle = ~(near | far)  # NaN included: it stays NaN
    out[near] = 1.0 - x[near] * (np.polyval(_ERF_T, y[near]) / np.polyval(_ERF_U, y[near]))
    out[middle] = np.exp(-y[middle]) * (np.polyval(_ERFC_P, x[middle])
                                        / np.polyval(_ERFC_Q, x[middle]))
    out[far] = np.exp(-y[far]) * (np.polyval(_ERFC_R, x[far]) / np.polyval(_ERFC_S, x[far]))
    return out


#: Cephes' log of the largest double, below which its exponentials underflow to 0.
_CEPHES_MAXLOG = 7.09782712893383996843E2
#: Above this ``a`` Stirling's series gives log Gamma(a + 1) to double precision.
_STIRLING_FROM = 15
#: ``log Gamma(a + 1) - (a log a - a)`` at a = 0, 0.5, ..., 15 (index 2a), rounded from 60-digit
#: decimals (``math.lgamma`` is off by up to 5e-15 here; tests/test_kl_metrics_special.py).
_SMALL_EXCESS = np.array([
    0.0, 0.7257913526447274, 1.0, 1.1764852083106725, 1.3068528194400546, 1.4102467726616865,
    1.4959226032237258, 1.5690661811086541, 1.6328763858683832, 1.689465682125483,
    1.7403021806115442, 1.7864475525458028, 1.828694396641771, 1.8676500868983887,
    1.9037903176782212, 1.9374946032340121, 1.9690705693065629, 1.998771031078967,
    2.0268062840554952, 2.0533531326420595, 2.0785616431350586, 2.1025602763507254,
    2.12545984509181, 2.1473566051905952, 2.168334698205882, 2.188468102391508,
    2.207822206123445, 2.226455088189904, 2.244418568125061, 2.2617590744309473,
    2.2785183673077407])


def _stirling_excess(a: np.ndarray) -> np.ndarray:
    """``log Gamma(a + 1) - (a log a - a)`` for ``a > 15`` by Stirling's series
    ``log(2 pi a)/2 + 1/(12a) - 1/(360a^3) + 1/(1260a^5) - 1/(1680a^7) + 1/(1188a^9)`` (off by
    less than the next term, 691/(360360a^11): 2e-16 at 15.5)."""
    inverse_square = 1.0 / (a * a)
    return 0.5 * np.log(2 * np.pi * a) + (1 / 12 - inverse_square * (1 / 360 - inverse_square * (
        1 / 1260 - inverse_square * (1 / 1680 - inverse_square / 1188)))) / a


def _gamma_excess(largest: float) -> np.ndarray:
    """``log Gamma(a + 1) - (a log a - a)`` at a = 0, 0.5, 1, ..., ``largest`` (index 2a):
    exact values up to 15, Stirling's series above (:func:`_stirling_excess`)."""
    a = np.arange(2 * _STIRLING_FROM + 1, int(2 * largest) + 1) / 2
    return np.concatenate([_SMALL_EXCESS, _stirling_excess(a)])


def log_factorial(k: ArrayLike) -> np.ndarray:
    """``log(k!)`` of whole numbers ``k >= 0`` (``scipy.special.gammaln(k + 1)``): ``k log k -
    k`` plus the excess of log Gamma over it, exact to 15 and Stirling's series above.

    >>> log_factorial([0.0, 1.0, 4.0]).round(6).tolist()  # log 1, log 1, log 24
    [0.0, 0.0, 3.178054]
    """
    k = np.asarray(k, dtype=np.float64)
    small = k <= _STIRLING_FROM
    excess = np.where(small, _SMALL_EXCESS[(2 * np.where(small, k, 0)).astype(np.intp)],
                      _stirling_excess(np.where(small, _STIRLING_FROM + 1.0, k)))
    values: np.ndarray = xlogy(k, k) - k + excess
    return values


def _log_poisson_term(a: np.ndarray, y: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """``log(exp(-y) y^a / Gamma(a + 1))`` for whole and half ``a >= 0``, ``y >= 0``, with
    ``excess`` from :func:`_gamma_excess`.

    Written as ``-(a log(a/y) + y - a) - excess(a)`` (Loader's form of the Poisson density):
    the large terms cancel inside the deviance ``a log(a/y) + y - a``, computed as
    ``y ((1 + u) log1p(u) - u)``, ``u = (a - y)/y``, near ``a = y``, so the result is as
    precise as the tail it gives.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (a - y) / y
        near = np.abs(u) < 1.0
        deviance = a * np.log(a / y, where=~near & (a > 0), out=np.zeros_like(u))
        deviance += y - a
        close = y * ((1 + u) * np.log1p(u, where=near, out=np.zeros_like(u)) - u)
    deviance[near] = close[near]
    return -deviance - excess[(2 * a).astype(np.int64)]


def _poisson_sum(lowest: np.ndarray, highest: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum of exp(-y) y^a / Gamma(a + 1)`` over a = ``lowest``, ``lowest`` + 1, ...,
    ``highest`` (0 when ``highest < lowest``), elementwise.

    The sum starts at its largest term, computed on its own (:func:`_log_poisson_term`), and
    walks down and up from it by the ratios ``t(a-1)/t(a) = a/y`` and
    ``t(a+1)/t(a) = y/(a+1)``, both at most 1 there: positive terms, no cancellation, no
    overflow. An element stops when its next terms add less than 1e-20 of its sum (they
    shrink faster than a geometric series from there), so the work follows the terms that
    matter, not the degrees of freedom.
    """
    # the largest term (any term where y is NaN or there are none: they give NaN or 0)
    anchor = np.clip(np.nan_to_num(np.floor(y - lowest)) + lowest, lowest,
                     np.maximum(highest, lowest))
    excess = _gamma_excess(float(highest.max(initial=0.0)))
    total = np.where(highest >= lowest, np.exp(_log_poisson_term(anchor, y, excess)), 0.0)
    live = np.flatnonzero(highest > lowest)
    with np.errstate(divide="ignore"):
        state = (anchor[live], lowest[live], highest[live], y[live], 1 / y[live],
                 total[live], total[live], total[live])
    step = 0
    while live.size:
        step += 1
        top, bottom, end, mean, inverse, down, up, sums = state
        with np.errstate(invalid="ignore", over="ignore"):
            down = np.where(top - step >= bottom, down * ((top - step + 1) * inverse), 0.0)
            up = np.where(top + step <= end, up * (mean / (top + step)), 0.0)
        added = down + up
        sums = sums + added
        state = (top, bottom, end, mean, inverse, down, up, sums)
        going = added > 1e-20 * sums  # False once both ends are passed, and for NaN
        if np.count_nonzero(going) <= live.size // 2:  # stopped ones go, half at a time
            total[live] = sums
            live, state = live[going], tuple(v[going] for v in state)
    return total


def chdtrc(dof: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Chi-square survival function ``P(X >= x)`` for whole degrees of freedom
    (``scipy.special.chdtrc``).

    Closed forms of ``Q(dof/2, x/2)``, ``y = x/2``: for even ``dof = 2m`` the Poisson sum
    ``sum_{j<m} t(j)``, for odd ``dof = 2m + 1`` ``erfc(sqrt y) + sum_{j<m} t(j + 1/2)``,
    ``t(a) = exp(-y) y^a / Gamma(a + 1)`` (:func:`_poisson_sum`). Agrees with scipy to a
    relative 2e-12 from 1 down to 1e-300 for dof 1 to 2,000
    (``tests/test_kl_metrics_special.py``).

    Parameters
    ----------
    dof : array_like of int
        Degrees of freedom, whole numbers >= 1.
    x : array_like of float
        The statistic; ``inf`` gives 0, NaN or below 0 gives NaN (as scipy).

    Returns
    -------
    np.ndarray
        The tail probabilities, ``dof`` and ``x`` broadcast.

    Raises
    ------
    ValueError
        For degrees of freedom that are not whole numbers >= 1.

    Examples
    --------
    >>> from kl_metrics.special import chdtrc
    >>> chdtrc([1, 2, 3], 2.0).round(6).tolist()
    [0.157299, 0.367879, 0.572407]
    """
    k, statistic = np.broadcast_arrays(np.asarray(dof), np.asarray(x, dtype=np.float64))
    if k.size and not (k.min() >= 1 and (k.dtype.kind in "iu" or np.all(k == np.floor(k)))):
        raise ValueError("chdtrc: degrees of freedom must be whole numbers >= 1")
    k, shape = k.astype(np.int64).ravel(), statistic.shape
    # inf -> a huge finite y whose terms underflow to 0 (and whose powers stay finite)
    y = np.where(statistic < 0, np.nan, np.minimum(statistic / 2, 1e30)).ravel()
    odd = k % 2 == 1
    lowest = np.where(odd, 0.5, 0.0)
    tail = _poisson_sum(lowest, lowest + k // 2 - 1, y)
    tail[odd] += _erfc_of_root(y[odd])
    # 0 in the far tail where scipy's (Cephes') leading factor y^(k/2) exp(-y) / Gamma(k/2)
    # is below exp(-709.78), as scipy's underflow: far below any p that means anything
    orders, at = np.unique(k, return_inverse=True)
    log_gamma = np.array([math.lgamma(order / 2) for order in orders])[at.ravel()]
    with np.errstate(invalid="ignore"):
        far = y > k / 2
        tail[far] *= k[far] / 2 * np.log(y[far]) - y[far] - log_gamma[far] >= -_CEPHES_MAXLOG
    return np.where(np.isnan(y), np.nan, np.minimum(tail, 1.0)).reshape(shape)


def ndtri(p: float) -> float:
    """The standard normal quantile of ``p`` in (0, 1) (``scipy.special.ndtri`` of a number).

    >>> round(ndtri(0.975), 6)
    1.959964
    """
    from statistics import NormalDist  # 5 ms of imports, for estimates only

    return NormalDist().inv_cdf(p)


def _defer(name: str) -> None:
    """Put a lazy module for ``name`` in ``sys.modules`` and on its parent, unless imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # gone from this numpy: nothing to defer
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # lazy: runs the module on its first attribute access
    # the parent's attribute, as a real import sets it: numpy's own lazy __getattr__ would
    # import the module for real
    setattr(np, name.rpartition(".")[2], module)


@functools.cache
def _scipy() -> ModuleType:
    """``scipy.special``, imported on first use with numpy's developer tools deferred."""
    for name in LAZY_NUMPY:
        _defer(name)
    import scipy.special

    return scipy.special


def expit(x: ArrayLike) -> np.ndarray:
    """The logistic sigmoid ``1 / (1 + exp(-x))`` (``scipy.special.expit``).

    >>> expit([-800.0, 0.0, 800.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def log_expit(x: ArrayLike) -> np.ndarray:
    """``log(expit(x))``, finite for every finite ``x`` (``scipy.special.log_expit``):
    ``x - log1p(exp(x))`` below 0, ``-log1p(exp(-x))`` above.

    >>> log_expit([-1000.0, 0.0]).round(6).tolist()
    [-1000.0, -0.693147]
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.where(x < 0, x - np.log1p(np.exp(np.minimum(x, 0.0))),
                        -np.log1p(np.exp(-np.maximum(x, 0.0))))


def log_softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """Log-probabilities of logits along ``axis``, ``x - max - log(sum(exp(x - max)))``
    (``scipy.special.log_softmax``; a non-finite maximum shifts by 0).

    >>> log_softmax([1e4, 0.0]).tolist()
    [0.0, -10000.0]
    """
    x = np.asarray(x, dtype=np.float64)
    top = np.amax(x, axis=axis, keepdims=True)
    shifted = x - np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def gammaln(x: ArrayLike) -> np.ndarray:
    """``log |Gamma(x)|`` (``scipy.special.gammaln``)."""
    values: np.ndarray = _scipy().gammaln(x)
    return values
