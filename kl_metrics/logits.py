"""Divergences between model outputs given as logits, computed in log space.

Categorical outputs use softmax; multi-label outputs use one sigmoid per label, i.e. one
binary distribution (sigma(z), 1 - sigma(z)) per label, whose divergences are summed over
the labels. Logits are divided by the temperature first. Probabilities are never formed
and then logged: ``log_softmax`` and ``log_sigmoid`` keep every log-probability finite and
exact, so logits of +-1e4 give finite, correct divergences.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _terms
from . import _validation as v
from .special import log_expit
from .special import log_softmax as _log_softmax

LOGIT_METRICS = ("kl", "reverse_kl", "symmetric_kl", "js_divergence")

# Square roots do not add up over labels; every other metric is a per-bin sum.
_MULTILABEL_METRICS = tuple(name for name, m in _terms.METRICS.items() if not m.root)


def _softmax_logs(z: np.ndarray) -> np.ndarray:
    return _log_softmax(z, axis=-1)


def _sigmoid_logs(z: np.ndarray) -> np.ndarray:
    # label j becomes the two bins (log sigma(z_j), log sigma(-z_j)); sums over bins then
    # add up the per-label binary divergences
    return np.concatenate([log_expit(z), log_expit(-z)], axis=-1)


def log_softmax(z: ArrayLike, *, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    """Logarithm of the softmax of ``z / temperature`` along `axis`, computed stably.

    ``z/T - logsumexp(z/T)``: the maximum is subtracted before exponentiating, so no logit
    overflows and no log-probability underflows to ``-inf``.

    Parameters
    ----------
    z : array_like
        Finite logits.
    axis : int, optional
        Axis holding the classes. Default -1.
    temperature : float, optional
        T > 0; the logits are divided by it (T > 1 flattens the distribution).

    Returns
    -------
    ndarray
        Log-probabilities, the shape of `z`; ``exp`` of them sums to 1 along `axis`.

    Raises
    ------
    ValueError
        For NaN or infinite logits, an invalid `axis` or a temperature that is not > 0.

    Examples
    --------
    >>> from kl_metrics import log_softmax
    >>> log_softmax([1e4, 0.0, -1e4])
    array([     0., -10000., -20000.])
    >>> log_softmax([2.0, 0.0], temperature=2.0).round(4)
    array([-0.3133, -1.3133])
    """
    temperature = v.check_positive(temperature, "temperature")
    (arr,), ax = v.axis_last(v.finite_arrays((z,), ("z",)), ("z",), axis)
    return np.moveaxis(_softmax_logs(arr / temperature), -1, ax)


def divergences_from_logits(
    s: ArrayLike,
    t: ArrayLike,
    *,
    metrics: str | Sequence[str] = LOGIT_METRICS,
    multilabel: bool = False,
    base: float | None = None,
    temperature: float = 1.0,
    axis: int = -1,
) -> dict[str, np.ndarray]:
    """Several divergences between the output distributions of logits s and t, in one pass.

    With p = softmax(s/T) and q = softmax(t/T) (``multilabel=False``), or per label
    p_j = sigma(s_j/T), q_j = sigma(t_j/T) summed over labels (``multilabel=True``), this
    is :func:`kl_metrics.divergences` of p and q computed from log-probabilities: ``kl`` is
    KL(p||q), ``reverse_kl`` KL(q||p), ``symmetric_kl`` their sum, which equals
    ``<softmax(s/T) - softmax(t/T), (s - t)/T>`` (resp. ``sum (sigma(s/T) - sigma(t/T))
    (s - t)/T``), ``js_divergence`` the JS divergence (at most log 2, per label when
    multi-label). Probabilities that underflow to 0 contribute 0.

    Parameters
    ----------
    s, t : array_like
        Finite logits, broadcasting like numpy's, with the same length along `axis`.
    metrics : str or sequence of str, optional
        Names accepted by :func:`kl_metrics.divergences`; with ``multilabel=True`` only
        those that add up over labels (not ``js_distance`` or ``hellinger``). Default
        ``LOGIT_METRICS``: forward, reverse and symmetric KL and JS divergence.
    multilabel : bool, optional
        Independent sigmoid labels instead of one softmax over classes.
    base : float, optional
        Logarithm base: ``None`` (default) for nats, 2 for bits.
    temperature : float, optional
        T > 0; both logits are divided by it. Default 1.
    axis : int, optional
        Axis holding the classes (labels). Default -1.

    Returns
    -------
    dict of str to float or ndarray
        ``{name: value}``, one value per slice along `axis`.

    Raises
    ------
    ValueError
        For NaN or infinite logits, shapes that do not broadcast, different lengths along
        `axis`, an unknown or non-additive metric, or an invalid `base`, `temperature` or
        `axis`.

    Examples
    --------
    >>> from kl_metrics import divergences_from_logits
    >>> d = divergences_from_logits([1e4, 0.0], [0.0, 1e4], metrics=("kl", "js_divergence"))
    >>> float(d["kl"]), float(d["js_divergence"]) == float(np.log(2))
    (10000.0, True)
    """
    allowed = _MULTILABEL_METRICS if multilabel else tuple(_terms.METRICS)
    names = _terms.check_metrics(metrics, allowed)
    divisor = v.log_base(base)
    temperature = v.check_positive(temperature, "temperature")
    (s, t), _ = v.axis_last(v.finite_arrays((s, t), ("s", "t")), ("s", "t"), axis)
    logs = _sigmoid_logs if multilabel else _softmax_logs

    def prepare(block: np.ndarray, _: np.ndarray | None) -> np.ndarray:
        return logs(block / temperature)

    inputs = [_terms.Input("log_p", s, prepare), _terms.Input("log_q", t, prepare)]
    # exact: probabilities that underflow are zeros, and the 0 log 0 = 0 convention applies
    values, _ = _terms.measure(inputs, True, names, divisor)
    return {name: value[()] for name, value in values.items()}


def _single(name: str, s: ArrayLike, t: ArrayLike, **options: Any) -> np.ndarray:
    return divergences_from_logits(s, t, metrics=(name,), **options)[name]


def kl_from_logits(
    s: ArrayLike,
    t: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """KL(softmax(s/T) || softmax(t/T)), computed from log-softmax (finite for huge logits).

    See :func:`divergences_from_logits` for parameters; ``kl_from_logits(t, s)`` is the
    reverse divergence.

    Examples
    --------
    >>> from kl_metrics import kl_from_logits
    >>> float(kl_from_logits([1e4, 0.0, -1e4], [0.0, 1e4, -1e4]))
    10000.0
    >>> print(f"{kl_from_logits([2.0, 0.0], [0.0, 0.0], base=2):.5f}")
    0.47293
    """
    return _single("kl", s, t, axis=axis, base=base, temperature=temperature)


def symmetric_kl_from_logits(
    s: ArrayLike,
    t: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Symmetric KL of softmax outputs: ``<softmax(s/T) - softmax(t/T), (s - t)/T>``.

    Equal to KL(p||q) + KL(q||p) for p = softmax(s/T), q = softmax(t/T): the
    normalising constants cancel because both distributions sum to 1. See
    :func:`divergences_from_logits` for parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import softmax
    >>> from kl_metrics import symmetric_kl_from_logits
    >>> s, t = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, 3.0])
    >>> inner = (softmax(s) - softmax(t)) @ (s - t)
    >>> bool(np.isclose(symmetric_kl_from_logits(s, t), inner))
    True
    """
    return _single("symmetric_kl", s, t, axis=axis, base=base, temperature=temperature)


def js_from_logits(
    s: ArrayLike,
    t: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Jensen-Shannon divergence between softmax(s/T) and softmax(t/T) (at most log 2).

    See :func:`divergences_from_logits` for parameters.

    Examples
    --------
    >>> from kl_metrics import js_from_logits
    >>> float(js_from_logits([1e4, 0.0], [0.0, 1e4], base=2))
    1.0
    """
    return _single("js_divergence", s, t, axis=axis, base=base, temperature=temperature)


def multilabel_kl_from_logits(
    s: ArrayLike,
    t: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Sum over labels of KL(Bernoulli(sigma(s_j/T)) || Bernoulli(sigma(t_j/T))).

    Computed from log-sigmoids, so finite for huge logits. See
    :func:`divergences_from_logits` for parameters.

    Examples
    --------
    >>> from kl_metrics import multilabel_kl_from_logits
    >>> print(f"{multilabel_kl_from_logits([0.0, 0.0], [0.0, 2.0]):.5f}")
    0.43378
    """
    return _single(
        "kl", s, t, multilabel=True, axis=axis, base=base, temperature=temperature
    )


def multilabel_symmetric_kl(
    s: ArrayLike,
    t: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """Multi-label symmetric KL ``sum_j (sigma(s_j/T) - sigma(t_j/T)) (s_j - t_j)/T``.

    The sum over labels of the binary symmetric KLs of the per-label sigmoid outputs
    (seed 002: the sigmoid replaces the softmax). See :func:`divergences_from_logits` for
    parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import expit
    >>> from kl_metrics import multilabel_symmetric_kl
    >>> s, t = np.array([3.0, -1.0]), np.array([0.5, 2.0])
    >>> inner = (expit(s) - expit(t)) @ (s - t)
    >>> bool(np.isclose(multilabel_symmetric_kl(s, t), inner))
    True
    """
    return _single(
        "symmetric_kl", s, t, multilabel=True, axis=axis, base=base, temperature=temperature
    )
