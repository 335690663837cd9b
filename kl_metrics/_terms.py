"""Per-bin terms of every metric, shared between metrics and evaluated block by block.

Each metric is a sum over bins of ``coef * weight * field`` pairs: KL(p||q) is
``p log p - p log q``, JS is ``(p log p + q log q) / 2 - m log m`` with m = (p + q) / 2,
optionally divided by ``log(base)`` and square-rooted. The fields (``log p``, ``log q``,
``log m``) are computed lazily, once per block, and every pair sum is computed once and
shared: KL, reverse KL, symmetric KL, PSI and JS together cost two logarithms of the large
input (``log p`` and ``log m``) and five dot products along the bins, one of them small.

Inputs are processed in blocks of about ``BLOCK_CELLS`` cells along the leading axes, so
the working arrays stay in the CPU cache and no temporary is ever as large as the input;
each working array is one buffer reused from block to block.

Accuracy: a pair sum has an absolute rounding error of a few ulp of ``|sum p log p|``
(about 1e-15 for 100 bins), so values below ~1e-14 are rounding level. Equal inputs give
exactly 0, and the tiny negative values rounding can produce are clipped to 0.
"""

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _validation as v

# 1 MiB of float64 per working array: measured fastest (smaller blocks pay numpy's per-call
# overhead more often, larger ones spill the working arrays out of cache).
BLOCK_CELLS = 1 << 17
#: Key of the per-bin contributions among a block's results.
_TERMS = "terms"


class Workspace:
    """Working arrays reused from block to block, one buffer per role.

    Fresh block-sized arrays for every block let the allocator hand memory back to the
    system and fault it in again (measured 3-4x slower overall, depending on the process's
    allocation history).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, role: str, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised array of `shape`, owned by `role`."""
        size = math.prod(shape)
        buffer = self._buffers.get(role)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[role] = np.empty(size)
        return buffer[:size].reshape(shape)


class Fields:
    """Lazily computed per-bin arrays of one block of a pair of distributions (p, q).

    Built from probabilities (``p``, ``q``) or log-probabilities (``log_p``, ``log_q``);
    any other attribute (``shape`` and the per-bin arrays) is computed on first access by
    the method ``_<name>``, into a workspace buffer for arrays, and kept. ``exact`` marks
    inputs that may hold zero probabilities: products with a zero weight are then forced
    to 0 (the 0 log 0 = 0 convention) instead of evaluating to NaN.
    """

    # Declared for the type checker only: no class attribute, so __getattr__ still computes
    # each on first access.
    shape: tuple[int, ...]
    p: np.ndarray
    q: np.ndarray
    log_p: np.ndarray
    log_q: np.ndarray
    m: np.ndarray
    log_m: np.ndarray
    sqrt_diff: np.ndarray
    abs_diff: np.ndarray

    def __init__(self, out: Workspace, *, exact: bool, **given: np.ndarray) -> None:
        self.out, self.exact, self._given = out, exact, tuple(given.values())
        self.__dict__.update(given)

    def __getattr__(self, name: str) -> np.ndarray:
        # only called for attributes not yet in the instance dict
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self, f"_{name}")()
        setattr(self, name, value)
        return value

    def _shape(self) -> tuple[int, ...]:
        # the broadcast shape of the block: that of every per-bin array of both inputs
        return np.broadcast_shapes(*(a.shape for a in self._given))

    def _p(self) -> np.ndarray:
        return np.exp(self.log_p, out=self.out("p", self.log_p.shape))

    def _q(self) -> np.ndarray:
        return np.exp(self.log_q, out=self.out("q", self.log_q.shape))

    def _log_p(self) -> np.ndarray:
        return np.log(self.p, out=self.out("log_p", self.p.shape))

    def _log_q(self) -> np.ndarray:
        return np.log(self.q, out=self.out("log_q", self.q.shape))

    def _m(self) -> np.ndarray:
        m = np.add(self.p, self.q, out=self.out("m", self.shape))
        m *= 0.5
        return m

    def _log_m(self) -> np.ndarray:
        return np.log(self.m, out=self.out("log_m", self.shape))

    def _sqrt_diff(self) -> np.ndarray:
        root_p = np.sqrt(self.p, out=self.out("sqrt_p", self.p.shape))
        root_q = np.sqrt(self.q, out=self.out("sqrt_q", self.q.shape))
        return np.subtract(root_p, root_q, out=self.out("sqrt_diff", self.shape))

    def _abs_diff(self) -> np.ndarray:
        diff = np.subtract(self.p, self.q, out=self.out("abs_diff", self.shape))
        return np.abs(diff, out=diff)


class Metric(NamedTuple):
    """A metric as ``sum(coef * weight * field)`` over bins (``field=None``: weight alone)."""

    pairs: tuple[tuple[float, str, str | None], ...]
    logarithmic: bool = True  # in units of log(base)
    root: bool = False  # the square root of the sum


_KL = ((1.0, "p", "log_p"), (-1.0, "p", "log_q"))
_REVERSE = ((1.0, "q", "log_q"), (-1.0, "q", "log_p"))
# H(m) - (H(p) + H(q)) / 2: one dot product with the mixture instead of two. (Folding the
# halving of m into a constant would save a pass but lose exact zeros for equal inputs.)
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
    """The per-bin products weight * field (weight alone for ``field=None``)."""
    w = getattr(fields, weight)
    terms = fields.out("terms", fields.shape)
    if field is None:
        np.copyto(terms, w)
    else:
        np.multiply(w, getattr(fields, field), out=terms)
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


def pair_sum(fields: Fields, weight: str, field: str | None) -> np.ndarray:
    """Sum along the bins of weight * field."""
    if fields.exact:
        return _pair_terms(fields, weight, field).sum(axis=-1)
    w = getattr(fields, weight)
    return w.sum(axis=-1) if field is None else _dot(w, getattr(fields, field))


def _finish(total: np.ndarray, metric: Metric, divisor: float) -> np.ndarray:
    """Turn a raw sum into the metric value, in place: units of `base`, clipped at 0, rooted."""
    if metric.logarithmic:
        total /= divisor
    # every metric here is >= 0; a negative sum is rounding error around 0
    np.maximum(total, 0.0, out=total)
    if metric.root:
        np.sqrt(total, out=total)
    return total


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


class Input(NamedTuple):
    """One operand of a pair: the Fields name it fills and how a block is prepared for it.

    ``prepare(block, out)`` validates and normalises an axis-last block, writing into `out`
    (an array of the block's shape, or None) when it can.
    """

    name: str
    array: np.ndarray
    prepare: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def _run(
    inputs: Sequence[Input],
    exact: bool,
    compute: Callable[[Fields], dict],
    per_bin: Mapping[Any, bool],
) -> dict:
    """Evaluate `compute` block by block into whole arrays, one per key of `per_bin`.

    The input arrays are axis-last and broadcast along their leading axes. An input smaller
    than the broadcast shape (a baseline against many windows) is prepared once up front,
    the others block by block while the block is in cache. Results have the broadcast
    leading shape, plus the bins for the keys whose `per_bin` is true.
    """
    lead = np.broadcast_shapes(*(i.array.shape[:-1] for i in inputs))
    bins = max(i.array.shape[-1] for i in inputs)
    ready = {i.name: i.prepare(i.array, None) for i in inputs if i.array.shape[:-1] != lead}
    workspace = Workspace()
    out = {key: np.empty((*lead, bins) if cells else lead) for key, cells in per_bin.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        for index in _blocks(lead, bins):
            blocks = {}
            for name, array, prepare in inputs:
                if name in ready:
                    blocks[name] = _take(ready[name], index)
                else:
                    block = _take(array, index)
                    blocks[name] = prepare(block, workspace(f"input {name}", block.shape))
            for key, value in compute(Fields(workspace, exact=exact, **blocks)).items():
                out[key][index] = value
    return out


def measure(
    inputs: Sequence[Input], exact: bool, names: Sequence[str], divisor: float,
    terms_of: str | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Values of the metrics `names` (divisor: log(base)) and, for `terms_of`, its per-bin
    contributions (None without), from one pass over the inputs: the fields (logarithms,
    mixture) of a block serve both, and each pair sum is computed once.

    The contributions sum along the last axis to the metric's value. For a square-rooted
    metric sqrt(S) the terms of S are scaled by sqrt(S)/S (0 where S is 0), which keeps
    them additive.
    """
    pairs = list(dict.fromkeys(pair[1:] for name in names for pair in METRICS[name].pairs))

    def compute(fields: Fields) -> dict:
        results: dict[Any, np.ndarray] = {pair: pair_sum(fields, *pair) for pair in pairs}
        if terms_of is not None:
            results[_TERMS] = bin_terms(METRICS[terms_of].pairs, fields,
                                        fields.out("total", fields.shape))
        return results

    per_bin: dict[Any, bool] = dict.fromkeys(pairs, False)
    if terms_of is not None:
        per_bin[_TERMS] = True
    results = _run(inputs, exact, compute, per_bin)
    values = {}
    if pairs:
        scratch = np.empty_like(results[pairs[0]])  # in-place sums: no temporary per pair
        for name in names:
            total = np.zeros_like(scratch)
            for coef, weight, field in METRICS[name].pairs:
                total += np.multiply(results[weight, field], coef, out=scratch)
            values[name] = _finish(total, METRICS[name], divisor)
    if terms_of is None:
        return values, None
    terms, metric = results[_TERMS], METRICS[terms_of]
    if metric.logarithmic:
        terms /= divisor
    if metric.root:
        total = terms.sum(axis=-1, keepdims=True)
        root = _finish(total.copy(), metric, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms *= np.where(root > 0, root / total, 0.0)
    return values, terms


def bin_terms(pairs: Sequence[tuple[float, str, str | None]], fields: Fields,
              total: np.ndarray) -> np.ndarray:
    """Per-bin sum of ``coef * weight * field`` over `pairs` (a metric's, or some of them)
    at the fields given, into `total` (of the fields' shape); in nats, unscaled, so a
    square-rooted metric gives the terms of its square. With ``fields.exact``, zero
    weights contribute 0 (``0 log 0 = 0``)."""
    for index, (coef, weight, field) in enumerate(pairs):
        terms = _pair_terms(fields, weight, field)
        if index:
            terms *= coef
            total += terms
        else:  # the first pair fills `total`: no zeroing pass
            np.multiply(terms, coef, out=total)
    return total
