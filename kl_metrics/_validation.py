"""Argument checks and array preparation shared by every kl_metrics function.

Every public function checks its arguments before computing anything and raises
``ValueError`` naming the argument and what is wrong with it; only the entries of a large
histogram input are checked block by block, as the block is read. Arrays are returned as
float64 views with the reduction axis moved last, so the numerical code only ever works
along ``axis=-1``.
"""

import functools
import math
import numbers
import operator
from collections.abc import Sequence
from typing import SupportsIndex

import numpy as np


def as_float_array(x: object, name: str) -> np.ndarray:
    """Return `x` as a float64 array, rejecting complex, string and object input."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if `arr` has NaN or infinite entries."""
    if not np.isfinite(arr).all():
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise ValueError(f"{name} contains {kind} entries; all entries must be finite")


def _real(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_positive(value: object, name: str) -> float:
    """Return `value` as a float if it is a finite number > 0."""
    value = _real(value, name, "a finite number > 0")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_eps(eps: object) -> float:
    """Return the probability floor `eps` as a float; it must lie in [0, 1)."""
    eps = _real(eps, "eps", "a number in [0, 1)")
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be a number in [0, 1), got {eps!r}")
    return eps


def log_base(base: object) -> float:
    """Return the divisor turning nats into units of `base` (1.0 for ``base=None``)."""
    if base is None:
        return 1.0
    what = "None (nats) or a finite number > 0 other than 1"
    value = _real(base, "base", what)
    if not (math.isfinite(value) and value > 0 and value != 1):
        raise ValueError(f"base must be {what}, got {base!r}")
    return math.log(value)


def check_choice(value: str, name: str, options: Sequence[str]) -> str:
    """Return `value` if it is one of `options`."""
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def _axis_index(axis: SupportsIndex, ndim: int) -> int:
    try:
        index = operator.index(axis)
    except TypeError:
        raise ValueError(f"axis must be an integer, got {axis!r}") from None
    if ndim == 0:
        raise ValueError("inputs must have at least one dimension (the bins along axis)")
    if not -ndim <= index < ndim:
        raise ValueError(f"axis {index} is out of bounds for inputs with {ndim} dimensions")
    return index % ndim


def broadcast_shape(arrays: Sequence[np.ndarray], names: Sequence[str]) -> tuple[int, ...]:
    """The shape `arrays` broadcast to, or a ValueError naming their shapes."""
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = " and ".join(f"{n} {a.shape}" for n, a in zip(names, arrays, strict=True))
        raise ValueError(f"shapes do not broadcast: {shapes}") from None


def axis_last(
    arrays: Sequence[np.ndarray], names: Sequence[str], axis: SupportsIndex
) -> tuple[list[np.ndarray], int]:
    """Check that `arrays` broadcast and move `axis` (of the broadcast shape) last in each.

    Returns the views (each with the broadcast number of dimensions) and the
    non-negative axis. All arrays must have the same length along `axis`: a distribution
    axis is never broadcast.
    """
    shape = broadcast_shape(arrays, names)
    ax = _axis_index(axis, len(shape))
    moved = [
        np.moveaxis(a.reshape((1,) * (len(shape) - a.ndim) + a.shape), ax, -1) for a in arrays
    ]
    bins = {m.shape[-1] for m in moved}
    if len(bins) > 1:
        counts = ", ".join(f"{n} has {m.shape[-1]}" for n, m in zip(names, moved, strict=True))
        raise ValueError(f"inputs must have the same number of bins along axis {axis}: {counts}")
    return moved, ax


def _diagnose(arr: np.ndarray, sums: np.ndarray, name: str) -> str:
    """Word the first problem of a histogram array that failed the quick checks."""
    if np.isnan(arr).any():
        return f"{name} contains NaN entries"
    if (arr < 0).any():
        return f"{name} contains negative entries (minimum {arr.min()!r}); counts must be >= 0"
    if np.isinf(arr).any():
        return f"{name} contains infinite entries"
    if np.isinf(sums).any():
        return f"{name} is too large: its sums along axis overflow float64"
    return (
        f"{name} has {np.count_nonzero(sums == 0)} all-zero slice(s) along axis; every "
        "histogram needs a positive total to be normalised"
    )


@functools.cache
def _ones(n: int) -> np.ndarray:
    ones = np.ones(n)
    ones.flags.writeable = False
    return ones


def row_sums(arr: np.ndarray) -> np.ndarray:
    """Sums along the last axis, kept as a length-1 axis (a matrix-vector product: fast)."""
    return (arr @ _ones(arr.shape[-1]))[..., None]


def histogram_sums(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate an axis-last histogram array and return its sums along the last axis.

    Entries must be finite and >= 0 and every slice must have a positive total. The sums
    keep their axis (length 1) so they broadcast against `arr`.
    """
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has no bins along axis")
    if not arr.size:
        return row_sums(arr)
    # why: min() catches NaN and negatives, the range of the sums inf and all-zero slices, in
    # two cheap passes (min first: it streams the block into cache for the matrix-vector
    # sum); the slow per-kind scan only runs to word the error.
    lowest = arr.min()
    with np.errstate(over="ignore"):  # overflowing sums are reported below
        sums = row_sums(arr)
    if not (lowest >= 0 and sums.min() > 0 and sums.max() < np.inf):
        raise ValueError(_diagnose(arr, sums, name))
    return sums


def real_arrays(
    arrays: Sequence[object], names: Sequence[str], axis: SupportsIndex
) -> tuple[list[np.ndarray], int]:
    """Float64 axis-last views of real inputs that broadcast together, and the axis."""
    floats = [as_float_array(a, n) for a, n in zip(arrays, names, strict=True)]
    return axis_last(floats, names, axis)


def histograms(
    arrays: Sequence[object], names: Sequence[str], axis: SupportsIndex
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Validate histogram inputs: float64 axis-last views, their sums, and the axis."""
    moved, ax = real_arrays(arrays, names, axis)
    sums = [histogram_sums(a, n) for a, n in zip(moved, names, strict=True)]
    return moved, sums, ax


def finite_arrays(arrays: Sequence[object], names: Sequence[str]) -> list[np.ndarray]:
    """Float64 arrays of finite real inputs (logits, log-densities) that broadcast together."""
    floats = [as_float_array(a, n) for a, n in zip(arrays, names, strict=True)]
    for a, n in zip(floats, names, strict=True):
        check_finite(a, n)
    broadcast_shape(floats, names)
    return floats
