"""Turning histograms (counts or probabilities) into smoothed probability vectors."""

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v


def floor_normalise(
    x: np.ndarray, sums: np.ndarray, eps: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Epsilon method along the last axis: normalise, floor at `eps`, renormalise.

    `sums` are the totals of `x` along the last axis (kept as a length-1 axis); the result
    goes to `out` if given. ``eps=0`` is plain normalisation.
    """
    # max(x, eps*sum) is the floor of x/sum at eps before dividing: one pass fewer.
    out = np.maximum(x, eps * sums, out=out)
    out *= 1.0 / v.row_sums(out)
    return out


def _additive(x: np.ndarray, sums: np.ndarray, alpha: float) -> np.ndarray:
    return (x + alpha) / (sums + alpha * x.shape[-1])


def _none(x: np.ndarray, sums: np.ndarray, _: float) -> np.ndarray:
    return x / sums


# (histograms, their sums, the method's parameter) -> probabilities
_Method = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
# method -> (implementation, name of the parameter it uses)
_METHODS: dict[str, tuple[_Method, str | None]] = {
    "epsilon": (floor_normalise, "eps"),
    "additive": (_additive, "alpha"),
    "none": (_none, None),
}


def smooth(
    x: ArrayLike,
    *,
    method: str = "epsilon",
    eps: float = 1e-6,
    alpha: float = 0.5,
    axis: int = -1,
) -> np.ndarray:
    """Normalise histograms along `axis` into probabilities, optionally smoothing zeros away.

    Parameters
    ----------
    x : array_like
        Counts or probabilities (finite, >= 0, every slice along `axis` with a positive
        total).
    method : {"epsilon", "additive", "none"}, optional
        ``"epsilon"`` (default): normalise, floor every probability at `eps`, renormalise.
        ``"additive"``: add `alpha` pseudo-counts to every bin of the *counts*, then
        normalise (Laplace ``alpha=1``, Jeffreys ``alpha=0.5``). ``"none"``: normalise only.
    eps : float, optional
        Probability floor of the epsilon method, in [0, 1). Default 1e-6.
    alpha : float, optional
        Pseudo-count of the additive method, > 0. Default 0.5 (Jeffreys).
    axis : int, optional
        Axis holding the bins. Default -1.

    Returns
    -------
    ndarray
        Probabilities with the shape of `x`, summing to 1 along `axis`.

    Raises
    ------
    ValueError
        For an unknown method, invalid `eps`/`alpha`, negative/NaN/inf entries or
        all-zero slices.

    Examples
    --------
    >>> from kl_metrics import smooth
    >>> smooth([3, 1, 0], method="additive", alpha=1).round(4)
    array([0.5714, 0.2857, 0.1429])
    >>> smooth([3, 1, 0], eps=0.01).round(4)
    array([0.7426, 0.2475, 0.0099])
    """
    func, param = _METHODS[v.check_choice(method, "method", tuple(_METHODS))]
    values = {"eps": v.check_eps(eps), "alpha": v.check_positive(alpha, "alpha"), None: 0.0}
    (arr,), (sums,), ax = v.histograms((x,), ("x",), axis)
    return np.moveaxis(func(arr, sums, values[param]), -1, ax)
