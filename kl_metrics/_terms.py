"""Per-bin terms of every metric, shared between metrics and evaluated block by block.

Each metric is a sum over bins of ``coef * weight * field`` pairs: KL(p||q) is
``p log p - p log q``, JS is ``(p log p + q log q) / 2 - m log m`` with m = (p + q) / 2,
optionally divided by ``log(base)`` and square-rooted. The fields (``log p``, ``log q``,
``log m``) are computed lazily, once per block, and every pair sum is computed once and
shared: KL, reverse KL, symmetric KL, PSI and JS together cost two logarithms of the large
input (``log p`` and ``log m``) and five dot products along the bins, one of them small.

Inputs are processed in blocks of about ``BLOCK_CELLS`` cells along the leading axes, so
the working arrays stay in the CPU cache and no temporary is ever as large as the input.

Accuracy: a pair sum has an absolute rounding error of a few ulp of ``|sum p log p|``
(about 1e-15 for 100 bins), so values below ~1e-14 are rounding level. Equal inputs give
exactly 0, and the tiny negative values rounding can produce are clipped to 0.
"""

import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from . import _validation as v

# ~512 KiB of float64 per working array (measured best: L2-sized blocks lose to per-call
# overhead of numpy, larger ones to cache misses).
BLOCK_CELLS = 1 << 16


class Fields:
    """Lazily computed per-bin arrays of one block of a pair of distributions (p, q).

    Built from probabilities (``p``, ``q``) or log-probabilities (``log_p``, ``log_q``);
    any other attribute is computed on first access by the method ``_<name>`` and kept.
    ``exact`` marks inputs that may hold zero probabilities: products with a zero weight
    are then forced to 0 (the 0 log 0 = 0 convention) instead of evaluating to NaN.
    """

    def __init__(self, *, exact: bool, **given: np.ndarray) -> None:
        self.exact = exact
        self.__dict__.update(given)

    def __getattr__(self, name: str) -> np.ndarray:
        # only called for attributes not yet in the instance dict
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self, f"_{name}")()
        setattr(self, name, value)
        return value

    def _p(self) -> np.ndarray:
        return np.exp(self.log_p)

    def _q(self) -> np.ndarray:
        return np.exp(self.log_q)

    def _log_p(self) -> np.ndarray:
        return np.log(self.p)

    def _log_q(self) -> np.ndarray:
        return np.log(self.q)

    def _m(self) -> np.ndarray:
        m = np.add(self.p, self.q)
        m *= 0.5
        return m

    def _log_m(self) -> np.ndarray:
        return np.log(self.m)

    def _sqrt_diff(self) -> np.ndarray:
        return np.sqrt(self.p) - np.sqrt(self.q)

    def _abs_diff(self) -> np.ndarray:
        return np.abs(self.p - self.q)


class Metric(NamedTuple):
    """A metric as ``sum(coef * weight * field)`` over bins (``field=None``: weight alone)."""

    pairs: tuple[tuple[float, str, str | None], ...]
    logarithmic: bool = True  # in units of log(base)
    root: bool = False  # the square root of the sum


_KL = ((1.0, "p", "log_p"), (-1.0, "p", "log_q"))
_REVERSE = ((1.0, "q", "log_q"), (-1.0, "q", "log_p"))
# H(m) - (H(p) + H(q)) / 2: one dot product with the mixture instead of two
_JS = ((0.5, "p", "log_p"), (0.5, "q", "log_q"), (-1.0, "m", "log_m"))

METRICS = {
    "kl": Metric(_KL),
    "reverse_kl": Metric(_REVERSE),
    "symmetric_kl": Metric(_KL + _REVERSE),
    "psi": Metric(_KL + _REVERSE),
    "js_divergence": Metric(_JS),
    "js_distance": Metric(_JS, root=True),
    "cross_entropy": Metric(((-1.0, "p", "log_q"),)),
    "entropy": Metric(((-1.0, "p", "log_p"),)),
    "hellinger": Metric(((0.5, "sqrt_diff", "sqrt_diff"),), logarithmic=False, root=True),
    "total_variation": Metric(((0.5, "abs_diff", None),), logarithmic=False),
}


def check_metrics(metrics: str | Sequence[str], allowed: Sequence[str] = tuple(METRICS)) -> tuple:
    """Return the requested metric names as a tuple of unique, known names."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not names:
        raise ValueError("metrics must name at least one metric")
    for name in names:
        v.check_choice(name, "each metric", allowed)
    return tuple(dict.fromkeys(names))


def _pair_terms(fields: Fields, weight: str, field: str | None) -> np.ndarray:
    w = getattr(fields, weight)
    terms = w.copy() if field is None else w * getattr(fields, field)
    if fields.exact:
        np.copyto(terms, 0.0, where=w == 0)
    return terms


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products along the last axis, broadcasting the leading axes."""
    # a baseline row against many windows is a matrix-vector product: BLAS is ~1.5x faster
    if a.ndim > 1 and b.ndim > 1 and a.shape[-2] != b.shape[-2]:
        rows, vector = (a, b) if b.shape[-2] == 1 else (b, a)
        return np.matmul(rows, vector.swapaxes(-1, -2))[..., 0]
    return np.vecdot(a, b)


def _pair_sum(fields: Fields, weight: str, field: str | None) -> np.ndarray:
    if fields.exact:
        return _pair_terms(fields, weight, field).sum(axis=-1)
    w = getattr(fields, weight)
    return w.sum(axis=-1) if field is None else _dot(w, getattr(fields, field))


def _finish(total: np.ndarray, metric: Metric, divisor: float) -> np.ndarray:
    """Convert a raw sum to the metric value: units of `base`, clipped at 0, rooted."""
    value = total / divisor if metric.logarithmic else total
    # every metric here is >= 0; a negative sum is rounding error around 0
    value = np.maximum(value, 0.0)
    return np.sqrt(value) if metric.root else value


def _blocks(lead: tuple[int, ...], row: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples splitting the leading shape `lead` into blocks of ~BLOCK_CELLS cells."""
    if not lead:
        yield ()
        return
    inner = row * math.prod(lead[1:])
    if inner > BLOCK_CELLS and len(lead) > 1:
        for i in range(lead[0]):
            for rest in _blocks(lead[1:], row):
                yield (slice(i, i + 1), *rest)
        return
    step = max(1, BLOCK_CELLS // max(inner, 1))
    for start in range(0, lead[0], step):
        yield (slice(start, start + step),)


def _take(arr: np.ndarray, index: tuple[slice, ...]) -> np.ndarray:
    """Block `index` of an axis-last array, keeping its broadcast (length-1) axes whole."""
    return arr[tuple(s if n != 1 else slice(None) for s, n in zip(index, arr.shape, strict=False))]


Input = tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]


def _run(
    inputs: Sequence[Input],
    make_fields: Callable[..., Fields],
    compute: Callable[[Fields], dict],
    keys: Sequence,
    per_bin: bool,
) -> dict:
    """Evaluate `compute` block by block into whole arrays, one per key.

    `inputs` are (axis-last array, preparation) pairs whose shapes broadcast along the
    leading axes; preparation (validation, normalisation) maps an array to one of the same
    shape along the last axis. An input smaller than the broadcast shape (a baseline
    against many windows) is prepared once up front, the others block by block while the
    block is in cache. Results have the broadcast leading shape, plus the bins when
    `per_bin`.
    """
    lead = np.broadcast_shapes(*(a.shape[:-1] for a, _ in inputs))
    bins = max(a.shape[-1] for a, _ in inputs)
    arrays, per_block = [], []
    for arr, prepare in inputs:
        small = arr.shape[:-1] != lead
        arrays.append(prepare(arr) if small else arr)
        per_block.append(None if small else prepare)
    out = {key: np.empty((*lead, bins) if per_bin else lead) for key in keys}
    with np.errstate(divide="ignore", invalid="ignore"):
        for index in _blocks(lead, bins):
            blocks = []
            for arr, prepare in zip(arrays, per_block, strict=True):
                block = _take(arr, index)
                blocks.append(block if prepare is None else prepare(block))
            for key, value in compute(make_fields(*blocks)).items():
                out[key][index] = value
    return out


def metric_values(
    inputs: Sequence[Input],
    make_fields: Callable[..., Fields],
    names: Sequence[str],
    divisor: float,
) -> dict[str, np.ndarray]:
    """Values of the metrics `names` (divisor: log(base)); each pair sum is computed once."""
    pairs = list(dict.fromkeys(pair[1:] for name in names for pair in METRICS[name].pairs))
    sums = _run(
        inputs, make_fields, lambda f: {pair: _pair_sum(f, *pair) for pair in pairs}, pairs, False
    )
    return {
        name: _finish(
            sum(coef * sums[weight, field] for coef, weight, field in METRICS[name].pairs),
            METRICS[name],
            divisor,
        )
        for name in names
    }


def metric_terms(
    inputs: Sequence[Input], make_fields: Callable[..., Fields], name: str, divisor: float
) -> np.ndarray:
    """Per-bin contributions to metric `name`; they sum along the last axis to its value.

    For a square-rooted metric sqrt(S) the terms of S are scaled by sqrt(S)/S (0 where S is
    0), which keeps them additive.
    """
    metric = METRICS[name]

    def compute(fields: Fields) -> dict:
        return {name: sum(coef * _pair_terms(fields, w, f) for coef, w, f in metric.pairs)}

    terms = _run(inputs, make_fields, compute, (name,), True)[name]
    if metric.logarithmic:
        terms /= divisor
    if metric.root:
        total = terms.sum(axis=-1, keepdims=True)
        root = _finish(total, metric, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms *= np.where(root > 0, root / total, 0.0)
    return terms
