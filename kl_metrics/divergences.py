"""Divergences and distances between histograms: the KL family, JS, PSI, entropy, Hellinger, TV.

Every function here is a thin wrapper over :func:`divergences`, which normalises and
smooths each input once, computes each logarithm once and shares it between metrics.
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import _terms
from . import _validation as v
from .smoothing import floor_normalise

DEFAULT_METRICS = (
    "kl",
    "reverse_kl",
    "symmetric_kl",
    "psi",
    "js_divergence",
    "js_distance",
    "hellinger",
)

_PAIR_PARAMS = """p, q : array_like
        Histograms as counts or probabilities (finite, >= 0), normalised along `axis`.
        Their shapes broadcast like numpy's (e.g. a baseline ``features x 1 x bins``
        against a current ``features x windows x bins``); both have the same number of
        bins along `axis`, and every slice along `axis` has a positive total."""
_BASE = """base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits."""
_EPS = """eps : float, optional
        Probability floor applied to both inputs (normalise, floor at `eps`, renormalise)
        before measuring; default 1e-6. ``eps=0`` measures the exact distributions."""
_AXIS = """axis : int, optional
        Axis holding the bins, in the broadcast shape. Default -1."""
_RETURNS = """float or ndarray
        One value per slice along `axis` (the broadcast shape without `axis`)."""
_RAISES = """ValueError
        For negative, NaN or infinite entries, shapes that do not broadcast, different
        numbers of bins, all-zero slices, or an invalid `base`, `eps` or `axis`."""


# The Parameters/Returns/Raises sections of every plain p-vs-q function.
_SECTIONS = f"""Parameters
    ----------
    {_PAIR_PARAMS}
    {_BASE}
    {_EPS}
    {_AXIS}

    Returns
    -------
    {_RETURNS}

    Raises
    ------
    {_RAISES}"""


_F = TypeVar("_F", bound=Callable[..., Any])


def _doc(func: _F) -> _F:
    """Fill the shared parameter descriptions (or all of ``{sections}``) into a docstring."""
    assert func.__doc__ is not None  # every decorated function has one
    func.__doc__ = func.__doc__.format(
        pair=_PAIR_PARAMS, base=_BASE, eps=_EPS, axis=_AXIS, returns=_RETURNS, raises=_RAISES,
        sections=_SECTIONS,
    )
    return func


def _distribution(name: str, eps: float, block: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Validate a block of histograms and smooth it with the epsilon method."""
    return floor_normalise(block, v.histogram_sums(block, name), eps, out)


def _histogram_pair(p: ArrayLike, q: ArrayLike, eps: float, axis: int) -> tuple:
    """The block-evaluation inputs for a pair of histograms, whether zeros may remain, axis.

    Shapes, bins and `eps` are checked here; entries are validated and smoothed by each
    input's preparation (block by block for the large input, while it is in cache).
    """
    eps = v.check_eps(eps)
    arrays, ax = v.real_arrays((p, q), ("p", "q"), axis)
    inputs = [
        _terms.Input(name, a, partial(_distribution, name, eps))
        for name, a in zip("pq", arrays, strict=True)
    ]
    return inputs, eps == 0, ax


@_doc
def divergences(
    p: ArrayLike,
    q: ArrayLike,
    *,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    base: float | None = None,
    eps: float = 1e-6,
    axis: int = -1,
) -> dict[str, np.ndarray]:
    """Several divergences of p from q in one pass, sharing normalisation and logarithms.

    This is the fast entry point: each input is smoothed once and ``log p``, ``log q``,
    ``log(p/q)`` and ``log m`` (m = (p+q)/2) are each computed once, block by block so
    the work stays in the CPU cache. The single-metric functions are wrappers over it.

    Parameters
    ----------
    {pair}
    metrics : str or sequence of str, optional
        Names among ``"kl"``, ``"reverse_kl"``, ``"symmetric_kl"``, ``"psi"``,
        ``"js_divergence"``, ``"js_distance"``, ``"cross_entropy"``, ``"entropy"`` (of
        p), ``"hellinger"`` and ``"total_variation"``. Default: the drift-table set
        ``DEFAULT_METRICS`` (KL family, PSI, JS and Hellinger).
    {base}
        Hellinger and total variation do not depend on it.
    {eps}
    {axis}

    Returns
    -------
    dict of str to float or ndarray
        ``{{name: value}}`` in the order asked, each value as from the single-metric
        function of that name.

    Raises
    ------
    {raises}
        Also for an unknown metric name.

    Examples
    --------
    >>> from kl_metrics import divergences
    >>> d = divergences([5, 3, 2], [4, 4, 2], metrics=("kl", "js_distance"), base=2, eps=0)
    >>> print(f"{{d['kl']:.5f}} {{d['js_distance']:.5f}}")
    0.03645 0.09584
    """
    names = _terms.check_metrics(metrics)
    divisor = v.log_base(base)
    inputs, exact, _ = _histogram_pair(p, q, eps, axis)
    values, _ = _terms.measure(inputs, exact, names, divisor)
    return {name: value[()] for name, value in values.items()}


@_doc
def divergences_and_contributions(
    p: ArrayLike,
    q: ArrayLike,
    metric: str,
    *,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    base: float | None = None,
    eps: float = 1e-6,
    axis: int = -1,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`divergences` and the :func:`bin_contributions` of one metric in one pass.

    Equal to calling both (same values to the last bit), at about the cost of the first
    alone: the logarithms and the mixture of each block serve both.

    Parameters
    ----------
    {pair}
    metric : str
        The metric whose per-bin contributions are returned (any name of `metrics`' set,
        whether or not it is in `metrics`).
    metrics : str or sequence of str, optional
        The metrics whose values are returned, as for :func:`divergences`. Default
        ``DEFAULT_METRICS``.
    {base}
    {eps}
    {axis}

    Returns
    -------
    tuple of (dict of str to float or ndarray, ndarray)
        The values as :func:`divergences` gives them, and the contributions as
        :func:`bin_contributions` does.

    Raises
    ------
    {raises}
        Also for an unknown metric name.

    Examples
    --------
    >>> from kl_metrics import divergences_and_contributions
    >>> values, terms = divergences_and_contributions([5, 3, 2], [4, 4, 2], "kl",
    ...                                               metrics=("kl", "psi"), eps=0)
    >>> print(f"{{values['kl']:.5f}} {{values['psi']:.5f}}")
    0.02527 0.05108
    >>> terms.round(5)
    array([ 0.11157, -0.0863 ,  0.     ])
    """
    names = _terms.check_metrics(metrics)
    (name,) = _terms.check_metrics(metric)
    divisor = v.log_base(base)
    inputs, exact, ax = _histogram_pair(p, q, eps, axis)
    values, terms = _terms.measure(inputs, exact, names, divisor, name)
    assert terms is not None  # asked for
    return ({key: value[()] for key, value in values.items()}, np.moveaxis(terms, -1, ax))


@_doc
def bin_contributions(
    p: ArrayLike,
    q: ArrayLike,
    metric: str,
    *,
    base: float | None = None,
    eps: float = 1e-6,
    axis: int = -1,
) -> np.ndarray:
    """Per-bin terms of a metric: which bins drove the divergence.

    The terms sum along `axis` to the metric's value. For the KL family, JS, cross
    entropy and entropy they are the summands of the definition (e.g. ``p log(p/q)`` for
    KL: negative where p < q). Total variation uses ``|p - q| / 2``. For the
    square-rooted metrics ``js_distance`` and ``hellinger`` the terms of the squared metric
    (JS divergence terms; ``(sqrt p - sqrt q)**2 / 2``) are scaled by value/value**2, and
    are 0 where the value is 0.

    Parameters
    ----------
    {pair}
    metric : str
        One of the names accepted by :func:`divergences`.
    {base}
    {eps}
    {axis}

    Returns
    -------
    ndarray
        The broadcast shape of the inputs, bins along `axis`.

    Raises
    ------
    {raises}
        Also for an unknown metric name.

    Examples
    --------
    >>> from kl_metrics import bin_contributions
    >>> terms = bin_contributions([5, 3, 2], [4, 4, 2], "kl", eps=0)
    >>> terms.round(5)
    array([ 0.11157, -0.0863 ,  0.     ])
    >>> print(f"{{terms.sum():.5f}}")
    0.02527
    """
    (name,) = _terms.check_metrics(metric)
    divisor = v.log_base(base)
    inputs, exact, ax = _histogram_pair(p, q, eps, axis)
    _, terms = _terms.measure(inputs, exact, (), divisor, name)
    assert terms is not None  # asked for
    return np.moveaxis(terms, -1, ax)


def _single(name: str, p: ArrayLike, q: ArrayLike, **options: Any) -> np.ndarray:
    return divergences(p, q, metrics=(name,), **options)[name]


@_doc
def kl_divergence(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Kullback-Leibler divergence KL(p||q) = sum p log(p/q).

    The forward divergence: the extra information (nats, or units of `base`) per draw
    from p when coding with q. In a drift run p is the current window and q the baseline.
    Non-negative, 0 iff p == q, unbounded; ``inf`` with ``eps=0`` when q is 0 where p is
    not. Bins where p is 0 contribute 0.

    {sections}

    Examples
    --------
    >>> from kl_metrics import kl_divergence
    >>> p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    >>> print(f"{{kl_divergence(p, q, eps=0):.5f}} nats")
    0.02527 nats
    >>> print(f"{{kl_divergence(p, q, base=2, eps=0):.5f}} bits")
    0.03645 bits
    >>> float(kl_divergence([1, 0], [0, 1], eps=0))
    inf
    """
    return _single("kl", p, q, base=base, eps=eps, axis=axis)


@_doc
def reverse_kl(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Reverse Kullback-Leibler divergence KL(q||p) = sum q log(q/p).

    Same as ``kl_divergence(q, p)``. Non-negative, 0 iff p == q, unbounded; ``inf`` with
    ``eps=0`` when p is 0 where q is not.

    {sections}

    Examples
    --------
    >>> from kl_metrics import reverse_kl
    >>> print(f"{{reverse_kl([0.5, 0.3, 0.2], [0.4, 0.4, 0.2], eps=0):.5f}}")
    0.02582
    """
    return _single("reverse_kl", p, q, base=base, eps=eps, axis=axis)


@_doc
def symmetric_kl(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Symmetric (Jeffreys) divergence KL(p||q) + KL(q||p) = sum (p - q)(log p - log q).

    Symmetric in p and q, non-negative, 0 iff p == q, unbounded; ``inf`` with ``eps=0``
    when exactly one of p, q is 0 in some bin.

    {sections}

    Examples
    --------
    >>> from kl_metrics import symmetric_kl
    >>> print(f"{{symmetric_kl([0.5, 0.3, 0.2], [0.4, 0.4, 0.2], eps=0):.5f}}")
    0.05108
    """
    return _single("symmetric_kl", p, q, base=base, eps=eps, axis=axis)


@_doc
def psi(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Population stability index sum (p - q) log(p/q) of the smoothed proportions.

    The credit-risk drift score (p actual, q expected): identical to
    :func:`symmetric_kl` with the same `eps`. Rule of thumb in nats: < 0.1 stable,
    0.1-0.25 moderate shift, > 0.25 major shift.

    {sections}

    Examples
    --------
    >>> from kl_metrics import psi
    >>> print(f"{{psi([50, 30, 20], [40, 40, 20]):.5f}}")
    0.05108
    """
    return _single("psi", p, q, base=base, eps=eps, axis=axis)


@_doc
def js_divergence(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Jensen-Shannon divergence (KL(p||m) + KL(q||m)) / 2 with m = (p + q) / 2.

    Symmetric, 0 iff p == q, at most log 2 (1 bit, reached for disjoint supports), and
    finite even with zeros and ``eps=0`` (m is positive wherever p or q is).

    {sections}

    Examples
    --------
    >>> from kl_metrics import js_divergence
    >>> float(js_divergence([1, 0], [0, 1], base=2, eps=0))
    1.0
    """
    return _single("js_divergence", p, q, base=base, eps=eps, axis=axis)


@_doc
def js_distance(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Jensen-Shannon distance: the square root of :func:`js_divergence` (a metric).

    In [0, sqrt(log 2)] in nats, in [0, 1] with ``base=2``; as
    ``scipy.spatial.distance.jensenshannon``.

    {sections}

    Examples
    --------
    >>> from kl_metrics import js_distance
    >>> print(f"{{js_distance([5, 3, 2], [4, 4, 2], base=2, eps=0):.5f}}")
    0.09584
    """
    return _single("js_distance", p, q, base=base, eps=eps, axis=axis)


@_doc
def cross_entropy(
    p: ArrayLike, q: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Cross entropy H(p, q) = -sum p log q = H(p) + KL(p||q).

    Non-negative, at least H(p); ``inf`` with ``eps=0`` when q is 0 where p is not.

    {sections}

    Examples
    --------
    >>> from kl_metrics import cross_entropy
    >>> print(f"{{cross_entropy([0.5, 0.5], [0.25, 0.75], base=2, eps=0):.5f}}")
    1.20752
    """
    return _single("cross_entropy", p, q, base=base, eps=eps, axis=axis)


def entropy(
    p: ArrayLike, *, base: float | None = None, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Shannon entropy H(p) = -sum p log p.

    Between 0 (one bin holds everything) and log(number of bins) (uniform). Empty bins
    contribute 0; with the default ``eps`` they hold ``eps`` first, so use ``eps=0`` for the
    entropy of p exactly.

    Parameters
    ----------
    p : array_like
        Histograms as counts or probabilities (finite, >= 0), normalised along `axis`;
        every slice along `axis` has a positive total.
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.
    eps : float, optional
        Probability floor (normalise, floor at `eps`, renormalise); default 1e-6.
    axis : int, optional
        Axis holding the bins. Default -1.

    Returns
    -------
    float or ndarray
        One value per slice along `axis`.

    Raises
    ------
    ValueError
        For negative, NaN or infinite entries, all-zero slices, or an invalid `base`,
        `eps` or `axis`.

    Examples
    --------
    >>> from kl_metrics import entropy
    >>> float(entropy([1, 1, 1, 1], base=2, eps=0))
    2.0
    """
    return _single("entropy", p, p, base=base, eps=eps, axis=axis)


@_doc
def hellinger(p: ArrayLike, q: ArrayLike, *, eps: float = 1e-6, axis: int = -1) -> np.ndarray:
    """Hellinger distance sqrt(sum (sqrt p - sqrt q)**2 / 2).

    Symmetric, a metric, in [0, 1] (1 for disjoint supports), finite with zeros. It has no
    logarithm, hence no `base`.

    Parameters
    ----------
    {pair}
    {eps}
    {axis}

    Returns
    -------
    {returns}

    Raises
    ------
    {raises}

    Examples
    --------
    >>> from kl_metrics import hellinger
    >>> float(hellinger([1, 0], [0, 1], eps=0))
    1.0
    """
    return _single("hellinger", p, q, eps=eps, axis=axis)


@_doc
def total_variation(
    p: ArrayLike, q: ArrayLike, *, eps: float = 1e-6, axis: int = -1
) -> np.ndarray:
    """Total variation distance sum |p - q| / 2: the largest difference in any event's mass.

    Symmetric, a metric, in [0, 1], finite with zeros. It has no logarithm, hence no
    `base`.

    Parameters
    ----------
    {pair}
    {eps}
    {axis}

    Returns
    -------
    {returns}

    Raises
    ------
    {raises}

    Examples
    --------
    >>> from kl_metrics import total_variation
    >>> print(f"{{total_variation([0.5, 0.3, 0.2], [0.4, 0.4, 0.2], eps=0):.2f}}")
    0.10
    """
    return _single("total_variation", p, q, eps=eps, axis=axis)
