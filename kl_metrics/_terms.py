"""Per-bin terms of every metric, shared between metrics and evaluated block by block.

Each metric is a sum over bins of ``coef * weight * field`` pairs (for example KL(p||q) is
``p * log(p/q)``), optionally divided by ``log(base)`` and square-rooted. The fields
(``log p``, ``log(p/q)``, ``log(p/m)``, ...) are computed lazily, once per block, and
shared by every metric that needs them; the per-pair sums are shared too, so KL, reverse
KL, symmetric KL and PSI together cost one logarithm of the large input.

Inputs are processed in blocks of about ``BLOCK_CELLS`` cells along the leading axes so
the working arrays stay in the CPU cache: the whole computation then costs about as much
as two memory passes over the input instead of one per numpy operation.
"""

import math
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import NamedTuple

import numpy as np

from . import _validation as v

# ~256 KiB of float64 per working array: small enough for L2, large enough to amortise
# the per-call overhead of numpy.
BLOCK_CELLS = 1 << 15


class Fields:
    """Lazily computed per-bin arrays of one block of a pair of distributions (p, q).

    Built from probabilities (``p``, ``q``) or log-probabilities (``log_p``, ``log_q``).
    ``exact`` marks inputs that may hold zero probabilities: products with a zero weight
    are then forced to 0 (the 0 log 0 = 0 convention) instead of evaluating to NaN.
    """

    def __init__(self, *, exact: bool, **given: np.ndarray) -> None:
        self.exact = exact
        # cached_property looks in the instance dict first: given arrays are never recomputed
        self.__dict__.update(given)

    @cached_property
    def p(self) -> np.ndarray:
        return np.exp(self.log_p)

    @cached_property
    def q(self) -> np.ndarray:
        return np.exp(self.log_q)

    @cached_property
    def log_p(self) -> np.ndarray:
        return np.log(self.p)

    @cached_property
    def log_q(self) -> np.ndarray:
        return np.log(self.q)

    @cached_property
    def log_m(self) -> np.ndarray:
        m = np.add(self.p, self.q)
        m *= 0.5
        return np.log(m, out=m)

    @cached_property
    def log_p_q(self) -> np.ndarray:
        return self.log_p - self.log_q

    @cached_property
    def log_p_m(self) -> np.ndarray:
        return self.log_p - self.log_m

    @cached_property
    def log_q_m(self) -> np.ndarray:
        return self.log_q - self.log_m

    @cached_property
    def sqrt_diff(self) -> np.ndarray:
        return np.sqrt(self.p) - np.sqrt(self.q)

    @cached_property
    def abs_diff(self) -> np.ndarray:
        return np.abs(self.p - self.q)


class Metric(NamedTuple):
    """A metric as ``sum(coef * weight * field)`` over bins (``field=None``: weight alone)."""

    pairs: tuple[tuple[float, str, str | None], ...]
    logarithmic: bool = True  # in units of log(base)
    root: bool = False  # the square root of the sum


_SYMMETRIC = ((1.0, "p", "log_p_q"), (-1.0, "q", "log_p_q"))
_JS = ((0.5, "p", "log_p_m"), (0.5, "q", "log_q_m"))

METRICS = {
    "kl": Metric(((1.0, "p", "log_p_q"),)),
    "reverse_kl": Metric(((-1.0, "q", "log_p_q"),)),
    "symmetric_kl": Metric(_SYMMETRIC),
    "psi": Metric(_SYMMETRIC),
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


def _pair_sum(fields: Fields, weight: str, field: str | None) -> np.ndarray:
    if fields.exact:
        return _pair_terms(fields, weight, field).sum(axis=-1)
    w = getattr(fields, weight)
    return w.sum(axis=-1) if field is None else np.vecdot(w, getattr(fields, field))


def _finish(total: np.ndarray, metric: Metric, divisor: float) -> np.ndarray:
    """Convert a raw sum to the metric value: units of `base`, clipped at 0, rooted."""
    value = total / divisor if metric.logarithmic else np.asarray(total, dtype=np.float64)
    # every metric here is >= 0; a negative sum is rounding error around 0
    value = np.maximum(value, 0.0)
    return np.sqrt(value) if metric.root else value


def block_values(fields: Fields, names: Sequence[str], divisor: float) -> dict:
    """Values of the metrics `names` for one block; pair sums are computed once and shared."""
    sums: dict[tuple, np.ndarray] = {}
    values = {}
    for name in names:
        metric = METRICS[name]
        total = 0.0
        for coef, weight, field in metric.pairs:
            if (weight, field) not in sums:
                sums[weight, field] = _pair_sum(fields, weight, field)
            total = total + coef * sums[weight, field]
        values[name] = _finish(total, metric, divisor)
    return values


def block_terms(fields: Fields, name: str, divisor: float) -> dict:
    """Per-bin contributions to metric `name` for one block; they sum to its value.

    For a square-rooted metric sqrt(S) the terms of S are scaled by sqrt(S)/S (0 where S is
    0), which keeps them additive.
    """
    metric = METRICS[name]
    terms = sum(coef * _pair_terms(fields, weight, field) for coef, weight, field in metric.pairs)
    if metric.logarithmic:
        terms /= divisor
    if metric.root:
        total = terms.sum(axis=-1, keepdims=True)
        root = _finish(total, metric, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms *= np.where(root > 0, root / total, 0.0)
    return {name: terms}


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
    return arr[tuple(s if n != 1 else slice(None) for s, n in zip(index, arr.shape))]


def evaluate(
    inputs: Sequence[np.ndarray],
    prepare: Callable[..., Fields],
    compute: Callable[[Fields], dict],
    out: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Fill `out` block by block: ``out[name][block] = compute(prepare(*input blocks))``.

    `inputs` are axis-last arrays that broadcast along their leading axes; `out` arrays
    have the broadcast leading shape (plus the bins axis for per-bin results).
    """
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in inputs))
    with np.errstate(divide="ignore", invalid="ignore"):
        for index in _blocks(lead, max(a.shape[-1] for a in inputs)):
            results = compute(prepare(*(_take(a, index) for a in inputs)))
            for name, value in results.items():
                out[name][index] = value
    return out
