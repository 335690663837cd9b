"""What a baseline profile's bins are derived from, gathered in one streamed pass.

A :class:`ProfileSketch` holds, for the rows of one pass: the row count; per numeric feature
the finite minimum, maximum, whether every finite value is whole, how many are finite and a
uniform random sample of them (the values with the smallest of independent uniform keys, at
most ``capacity`` per feature); per categorical feature the count of every (segment values,
category) pair. Memory is bounded by the sample capacity and the number of distinct
categories, not by the number of rows.

The numeric features can be read from a share of the rows only (``fraction``: evenly spread
slices, :func:`spread_rows`), which is what makes a profile of a large baseline cost little
more than one pass over it: their extremes and integrality are then those of the rows read,
and the profile builder takes the exact ones from its counting pass
(:meth:`NumericSketch.observe`), where it also measures the edges' realised rank error
(:func:`realised_rank_error`).

Sketches of disjoint parts of the baseline merge into the sketch of their union
(:meth:`ProfileSketch.merge`): extremes and counts add up exactly, and the smallest keys of
the union are the smallest keys of the parts, so the merged sample is again a uniform
sample of the rows read. Edges are quantiles of the sample: exact when it holds every finite
value (any baseline of up to ``capacity`` rows); for a uniform sample of every row, within
the rank error :func:`rank_error_bound` states.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.labels import MISSING, OTHER
from pipeline.read.sources import FEATURES_PER_PASS, collect, iter_batches

#: Most sampled values over all numeric features (64 MiB as float64, as much for the keys,
#: and a buffer half again as large).
SAMPLE_VALUES = 1 << 23
#: Most sampled values of one numeric feature: rank error at most 0.3% at 20 bins.
SAMPLE_ROWS = 1 << 20
#: Chance that an edge's rank error exceeds the bound recorded in the profile.
RANK_ERROR_RISK = 1e-6
_COMPACT_PARTS = 16  # per-batch category counts kept before they are added up
#: Slices a share of the rows is read in (:func:`spread_rows`). Each costs about a Parquet
#: page of every column it reads, so more would cost more than the spread gains (32 slices
#: of 13,000 rows read 4% of 10M rows x 20 in 0.9 s CPU, 64 in 1.7 s; the full read 2.4 s).
SLICES = 32
#: Rows up to which :func:`spread_rows` filters the slices' rows from one pass over every
#: row instead of reading the slices: a slice decodes about a page of each column it reads
#: (2-3 ms, what a pass spends on some 150,000 rows), so below SLICES x 131,072 rows one
#: pass costs less (a 1M x 100 table: 1.7 s of CPU against 8.7 s in slices).
SPREAD_ROWS = SLICES * 131_072
#: Numeric features per pass when their rows are filtered from every row: polars decodes
#: a row group of the columns a pass reads at once (800 MB for 100 columns of a 1M-row
#: group).
FILTERED_FEATURES = 20
#: Private names of a category's columns in the per-segment counts.
VALUE, COUNT = "\0value", "\0n"
_POSITION = "\0position"  # private name of the row positions spread_rows filters on


def segment_key(index: int) -> str:
    """Private name of the ``index``-th segment column in the category counts."""
    return f"\0segment{index}"


def sample_capacity(n_sampled: int) -> int:
    """Values sampled per numeric feature when ``n_sampled`` features need quantiles."""
    return max(1, min(SAMPLE_ROWS, SAMPLE_VALUES // max(n_sampled, 1)))


def rank_error_bound(finite: int, sampled: int, levels: int) -> float:
    """Bound on the rank error of ``levels`` quantile edges taken from a uniform sample of
    ``sampled`` out of ``finite`` values, exceeded with probability at most
    :data:`RANK_ERROR_RISK`.

    The rank error of an edge ``e`` at level ``q`` is the largest ``d`` by which the share of
    the finite values below ``e`` exceeds ``q``, or the share at or below ``e`` falls short
    of ``q``. Hoeffding's bound (which holds for sampling without replacement, Hoeffding
    1963, Theorem 4) at the two population quantiles around each level, with a union bound
    over the levels, gives ``sqrt(ln(4 levels / risk) / (2 sampled))``; the sample's
    nearest-rank quantile adds at most ``1 / sampled``. 0 when the sample is every value.

    >>> rank_error_bound(1000, 1000, 19)
    0.0
    >>> round(rank_error_bound(10**8, 2**20, 19), 4)
    0.0029
    """
    if sampled >= finite:
        return 0.0
    if sampled == 0:
        return 1.0
    return min(1.0, math.sqrt(math.log(4 * levels / RANK_ERROR_RISK) / (2 * sampled))
               + 1 / sampled)


def realised_rank_error(candidates: Sequence[float | None], edges: np.ndarray,
                        counts: np.ndarray, finite: int, neg_inf: int, integral: bool,
                        ties: Mapping[float, int] | None = None) -> float:
    """The largest rank error of quantile edges, measured from the exact bin counts.

    ``candidates[j - 1]`` is the value taken for level ``q = j / (len(candidates) + 1)`` (it is
    one of the interior ``edges``); ``counts`` are the rows of each numeric bin of those
    edges, ``(-inf, e0)``, ``[e0, e1)``, ..., ``[e_last, inf)`` (``-inf`` counted in the
    first, ``+inf`` in the last), of which ``finite`` are finite and ``neg_inf`` are
    ``-inf``. The rank error of value ``v`` at level ``q`` is ``max(0, F(<v) - q,
    q - F(<=v))`` with ``F`` the shares of the finite values (the definition
    :func:`rank_error_bound` bounds). ``F(<v)`` is a cumulative count; ``F(<=v)`` is one
    when ``v`` has a point bin (the next edge is the next possible value: ``v + 1`` for
    ``integral`` features, the next float otherwise), else ``F(<v)`` plus the rows equal to
    ``v``: as ``ties`` counts them, or one (candidates are quantiles of a sample of the
    values, so each is a value), so the result is exact unless an edge value without a
    point bin or a count in ``ties`` has ties, and then an upper bound. 1 when there are finite
    values but no candidates (the rows read had none).

    >>> realised_rank_error([1.0], np.array([1.0]), np.array([3, 1]), 4, 0, False)
    0.25
    >>> realised_rank_error([0.0, 0.0, 0.0], np.array([0.0, 1.0]), np.array([1, 3, 0]), 4, 0,
    ...                     True)
    0.0
    """
    levels = np.arange(1, len(candidates) + 1) / (len(candidates) + 1)
    values = np.array(candidates, dtype=np.float64)
    if not finite:
        return 0.0
    if not len(values) or np.isnan(values).any():
        return 1.0
    below = (np.cumsum(counts)[:len(edges)] - neg_inf) / finite  # F(< each edge)
    at = np.searchsorted(edges, values)
    after = np.minimum(at + 1, len(edges) - 1)
    point = (at + 1 < len(edges)) & (
        edges[after] == (values + 1 if integral else np.nextafter(values, np.inf)))
    tied = np.array([(ties or {}).get(v, 1) for v in values.tolist()]) / finite
    lower, upper = below[at], np.where(point, below[after], below[at] + tied)
    return float(max(0.0, (lower - levels).max(), (levels - upper).max()))


def skips_rows(raw: pl.LazyFrame) -> bool:
    """Whether slices of ``raw`` are read without parsing the rows before them: in-memory
    tables and Parquet or IPC scans (by the scans its plan names; CSV and NDJSON readers
    parse every row up to a slice, which made 32 slices of a CSV file cost more than one
    full read).

    >>> skips_rows(pl.LazyFrame({"x": [1.0]})), skips_rows(pl.scan_csv(b"x\\n1\\n"))
    (True, False)
    """
    scans = [line.strip() for line in raw.explain(optimized=False).splitlines()
             if "SCAN" in line]
    return all(line.startswith(("Parquet SCAN", "IPC SCAN")) for line in scans)


def _filtered(rows: int) -> bool:
    """Whether :func:`spread_rows` filters a share of ``rows`` rows from one pass over every
    row (up to :data:`SPREAD_ROWS`) rather than reading it as slices."""
    return rows <= SPREAD_ROWS


def spread_rows(raw: pl.LazyFrame, rows: int, take: int) -> pl.LazyFrame:
    """About ``take`` of the ``rows`` rows of ``raw``: :data:`SLICES` disjoint slices spread
    evenly from first row to last, in order (streamed by
    :func:`pipeline.read.sources.iter_batches`, which computes no plan once for all slices).

    Above :data:`SPREAD_ROWS` rows they are read as slices (a Parquet scan decodes only the
    pages each slice touches); up to it, the same rows are filtered from one pass over
    every row.

    >>> spread_rows(pl.LazyFrame({"x": range(100)}), 100, 4).collect()["x"].to_list()
    [0, 25, 50, 75]
    """
    slices = max(1, min(SLICES, take))
    length = min(-(-take // slices), rows // slices)
    if not _filtered(rows):
        return pl.concat([raw.slice(i * rows // slices, length) for i in range(slices)])
    # row p is in slice k = p * slices // rows when within `length` of its start, or else is
    # the first row of slice k + 1 (slice k starts at k * rows // slices: at most p; the
    # next start is p or later, and is `rows` past the last slice)
    p = pl.col(_POSITION).cast(pl.Int64)
    k = p * slices // rows
    within = (p - k * rows // slices < length) | (p == (k + 1) * rows // slices)
    return raw.with_row_index(_POSITION).filter(within).drop(_POSITION)


class NumericSketch:
    """One numeric feature: finite ``low``/``high`` (None without finite values), whether
    every finite value is ``integral`` (whole), how many are ``finite``, how many are
    ``neg_inf`` (``-inf``), how many equal each of the ``watched`` values (``ties``), and a
    uniform sample of at most ``capacity`` of them (:meth:`sample`).

    The sample is kept as the values with the smallest keys, in a buffer half again as
    large that is pruned back to ``capacity`` when full. The buffer is allocated once
    (untouched pages cost nothing) and values are written into it directly: on a busy
    machine every fresh page costs a fault, which made allocating per batch the main cost.
    """

    def __init__(self, capacity: int, watched: Sequence[float] = ()) -> None:
        self.capacity = capacity
        self.watched = np.array(watched, dtype=np.float64)
        self.ties = np.zeros(len(watched), dtype=np.int64)
        self.low: float | None = None
        self.high: float | None = None
        self.integral = True
        self.finite = 0
        self.neg_inf = 0
        self._limit = capacity + max(capacity // 2, 1) if capacity else 0
        self._keys = np.empty(self._limit)
        self._values = np.empty(self._limit)
        self._size = 0
        self._threshold = 1.0  # keys at or above it cannot be among the smallest

    def observe(self, values: np.ndarray) -> np.ndarray:
        """Count the float64 ``values`` of a batch into the extremes, integrality and
        counts (NaN and ±inf are not finite values); their finite values."""
        mask = np.isfinite(values)
        if mask.all():
            finite = values
        else:
            finite = values[mask]
            self.neg_inf += int(np.count_nonzero(values == -np.inf))
        if len(finite):
            # once a fraction is seen the feature is not integral: skip the check
            self._count(float(finite.min()), float(finite.max()),
                        self.integral and bool(np.array_equal(finite, np.floor(finite))),
                        len(finite))
        for i, value in enumerate(self.watched):  # a few tied quantiles at most
            self.ties[i] += np.count_nonzero(finite == value)
        return finite

    def add(self, values: np.ndarray, rng: np.random.Generator) -> None:
        """:meth:`observe` the ``values`` of a batch and sample their finite values."""
        finite = self.observe(values)
        while self.capacity and self._threshold == 1.0 and len(finite):
            # not pruned yet: every value enters, with a key drawn straight into the buffer
            room = self._room()
            taken = slice(self._size, self._size + min(room, len(finite)))
            rng.random(out=self._keys[taken])
            self._values[taken] = finite[:room]
            self._size, finite = taken.stop, finite[room:]
        if self.capacity and len(finite):
            # Only keys below the threshold can enter: which values get one is a Bernoulli
            # subset, drawn by geometric gaps, and their keys are uniform below it (the same
            # distribution as drawing every key, at a cost proportional to those entering).
            chosen = _bernoulli_positions(len(finite), self._threshold, rng)
            self._insert(self._threshold * rng.random(len(chosen)), finite[chosen])

    def merge(self, other: NumericSketch) -> NumericSketch:
        """A new sketch of both (disjoint) parts' values."""
        merged = NumericSketch(self.capacity, self.watched.tolist())
        for part in (self, other):
            merged._count(part.low, part.high, part.integral, part.finite)
            merged.neg_inf += part.neg_inf
            merged.ties += part.ties
            if self.capacity:
                merged._insert(part._keys[:part._size], part._values[:part._size])
        return merged

    def sample(self) -> np.ndarray:
        """The sampled values: every finite value, or ``capacity`` of them at random."""
        if self._size > self.capacity:
            self._prune()
        return self._values[:self._size]

    def _count(self, low: float | None, high: float | None, integral: bool,
               finite: int) -> None:
        lows = [v for v in (self.low, low) if v is not None]
        highs = [v for v in (self.high, high) if v is not None]
        self.low, self.high = min(lows, default=None), max(highs, default=None)
        self.integral = self.integral and integral
        self.finite += finite

    def _insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add keyed values, pruning whenever the buffer is full."""
        while len(keys):
            if self._threshold < 1.0:
                below = keys < self._threshold
                keys, values = keys[below], values[below]
            room = self._room()
            taken = slice(self._size, self._size + min(room, len(keys)))
            self._keys[taken], self._values[taken] = keys[:room], values[:room]
            self._size, keys, values = taken.stop, keys[room:], values[room:]

    def _room(self) -> int:
        if self._size == self._limit:
            self._prune()
        return self._limit - self._size

    def _prune(self) -> None:
        """Keep the ``capacity`` smallest keys (in place)."""
        kept = np.argpartition(self._keys[:self._size], self.capacity - 1)[:self.capacity]
        self._keys[:self.capacity] = self._keys[kept]
        self._values[:self.capacity] = self._values[kept]
        self._size = self.capacity
        self._threshold = float(self._keys[:self.capacity].max())


def _bernoulli_positions(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Ascending positions in ``range(n)``, each present with probability ``p``
    independently: cumulative sums of geometric gaps."""
    found, last = [], -1
    while True:
        expected = (n - last) * p
        gaps = rng.geometric(p, size=int(expected + 4 * expected ** 0.5 + 16))
        steps = last + np.cumsum(gaps)
        found.append(steps[steps < n])
        if steps[-1] >= n:
            return np.concatenate(found)
        last = int(steps[-1])


@dataclass(frozen=True)
class ProfileSketch:
    """What a profile's bins are derived from, for the rows of one or several passes.

    Attributes
    ----------
    rows : int
        Rows seen.
    numeric : dict of str to NumericSketch
        Extremes, integrality and sample of each numeric feature.
    categories : dict of str to polars.DataFrame
        Per categorical feature, the rows of each (segment values, category) pair: columns
        :func:`segment_key` ``(i)`` for the i-th segment column and :data:`VALUE` (Utf8,
        null for a missing value), :data:`COUNT` (UInt32 or wider).
    """

    rows: int
    numeric: dict[str, NumericSketch]
    categories: dict[str, pl.DataFrame]

    def merge(self, other: ProfileSketch) -> ProfileSketch:
        """The sketch of the rows of both (disjoint) parts.

        >>> a = sketch_rows(pl.LazyFrame({"x": [1.0, 5.0]}), {"x": "numeric"}, [], seed=0)
        >>> b = sketch_rows(pl.LazyFrame({"x": [-2.0]}), {"x": "numeric"}, [], seed=1)
        >>> merged = a.merge(b)
        >>> merged.rows, merged.numeric["x"].low, sorted(merged.numeric["x"].sample().tolist())
        (3, -2.0, [-2.0, 1.0, 5.0])
        """
        if set(self.numeric) != set(other.numeric) or set(self.categories) != set(
                other.categories):
            raise ValueError("sketches of different features cannot be merged")
        return ProfileSketch(
            self.rows + other.rows,
            {name: sketch.merge(other.numeric[name]) for name, sketch in self.numeric.items()},
            {name: _add_counts([counts, other.categories[name]])
             for name, counts in self.categories.items()})

    def stats(self, bins: int, max_categories: int, min_category_count: int,
              quantiles: Sequence[str]) -> dict[str, Any]:
        """What :func:`pipeline.bins.profile.profile_from_stats` derives bins from:
        ``__rows``; per numeric feature ``min``, ``max``, ``integral`` and, for the features
        in ``quantiles``, the nearest-rank quantiles ``q`` at ``1/bins .. (bins-1)/bins``
        of its sample; per categorical feature the ``top`` categories (by count, ties by
        value; at most ``max_categories`` with at least ``min_category_count`` rows) and
        how many ``distinct`` ones there are."""
        stats: dict[str, Any] = {"__rows": self.rows}
        levels = [i / bins for i in range(1, bins)]
        for name, sketch in self.numeric.items():
            stats |= {f"{name}\0min": sketch.low, f"{name}\0max": sketch.high,
                      f"{name}\0integral": sketch.integral}
            if name in quantiles:
                sample = pl.Series("x", sketch.sample(), dtype=pl.Float64).to_frame()
                stats[f"{name}\0q"] = sample.select(
                    pl.col("x").quantile(levels, interpolation="nearest")).item()
        value, n = pl.col(VALUE), pl.col(COUNT)
        for name, counts in self.categories.items():
            seen = (counts.group_by(VALUE).agg(n.sum())
                    .filter(value.is_not_null() & ~value.is_in([MISSING, OTHER])))
            top = (seen.filter(n >= min_category_count)
                   .sort([COUNT, VALUE], descending=[True, False]).head(max_categories))
            stats |= {f"{name}\0top": top[VALUE].to_list(), f"{name}\0distinct": seen.height}
        return stats


def _add_counts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Category counts of several parts added up (first-seen order of the pairs)."""
    frame = pl.concat(parts, how="vertical_relaxed")
    keys = [c for c in frame.columns if c != COUNT]
    return frame.group_by(keys, maintain_order=True).agg(pl.col(COUNT).sum())


def sketch_rows(raw: pl.LazyFrame, kinds: Mapping[str, str], segments: Sequence[str], *,
                quantiles: Sequence[str] | None = None, seed: int = 0,
                capacity: int | None = None, fraction: float = 1.0,
                source: str = "baseline data") -> ProfileSketch:
    """Sketch the rows of ``raw`` in one streamed pass of bounded memory.

    Parameters
    ----------
    raw : polars.LazyFrame
        Baseline rows (one part of them, for sketches merged later).
    kinds : mapping of str to str
        Feature name -> ``"numeric"`` or ``"categorical"``.
    segments : sequence of str
        Segment columns whose values key the category counts (cast to text).
    quantiles : sequence of str, optional
        Numeric features whose edges are quantiles, so whose values are sampled (default:
        every numeric feature).
    seed : int
        Seed of the sample's keys; give disjoint parts different seeds, so that their keys
        are independent.
    capacity : int, optional
        Values sampled per feature in ``quantiles`` (default :func:`sample_capacity`).
    fraction : float
        Share of the rows the numeric features are read from (:func:`spread_rows`; their
        extremes, integrality and sample are then of those rows); categorical features are
        always read from every row. Default: every row.
    source : str
        Named in errors.

    Returns
    -------
    ProfileSketch

    Examples
    --------
    >>> sketch = sketch_rows(pl.LazyFrame({"x": [3.0, None, 1.0], "c": ["a", "b", "a"]}),
    ...                      {"x": "numeric", "c": "categorical"}, [])
    >>> sketch.rows, sketch.numeric["x"].finite, sketch.numeric["x"].integral
    (3, 2, True)
    >>> sketch.categories["c"].sort(VALUE).rows()
    [('a', 2), ('b', 1)]
    """
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    keys = [segment_key(i) for i in range(len(segments))]
    sampled = set(numeric if quantiles is None else quantiles)
    size = sample_capacity(len(sampled)) if capacity is None else capacity
    sketches = {name: NumericSketch(size if name in sampled else 0) for name in numeric}
    # SFC64: four times faster than the default PCG64 at drawing doubles
    rngs = {name: np.random.Generator(np.random.SFC64([seed, i]))
            for i, name in enumerate(numeric)}
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in categorical}
    rows = row_count(raw, source) if fraction < 1 else 0
    take = math.ceil(fraction * rows)
    names = list(kinds)
    # one pass per FEATURES_PER_PASS features, as binning does; numeric features read from
    # a share of the rows get passes of their own over those rows (narrower when the rows
    # are filtered from every row: spread_rows)
    chunks = [names[start:start + FEATURES_PER_PASS]
              for start in range(0, len(names), FEATURES_PER_PASS)]
    passes = [(False, chunk) for chunk in chunks]
    if take < rows:
        width = FILTERED_FEATURES if _filtered(rows) else FEATURES_PER_PASS
        passes = [(False, [n for n in chunk if kinds[n] != "numeric"]) for chunk in chunks]
        passes += [(True, numeric[start:start + width])
                   for start in range(0, len(numeric), width)]
    for share, chunk in passes:
        if not chunk:
            continue
        columns = {f"\0f{i}": name for i, name in enumerate(chunk)}
        query = raw.select(
            *(pl.col(s).cast(pl.String).alias(k) for k, s in zip(keys, segments, strict=True)
              if not share),
            *(pl.col(name).cast(pl.Float64 if kinds[name] == "numeric" else pl.String)
              .alias(c) for c, name in columns.items()))
        if share:
            query = spread_rows(query, rows, take)
        counted = 0
        for batch in iter_batches(query, source):
            counted += batch.height
            for column, name in columns.items():
                if kinds[name] == "numeric":
                    sketches[name].add(batch.get_column(column).to_numpy(), rngs[name])
                    continue
                counts = batch.group_by([*keys, pl.col(column).alias(VALUE)]).agg(
                    pl.len().alias(COUNT))
                parts[name].append(counts.with_columns(pl.col(COUNT).cast(pl.Int64)))
                if len(parts[name]) >= _COMPACT_PARTS:
                    parts[name] = [_add_counts(parts[name])]
        if not share:
            rows = counted  # every pass over raw reads every row
    empty = pl.DataFrame(schema={**dict.fromkeys(keys, pl.String), VALUE: pl.String,
                                 COUNT: pl.Int64})
    return ProfileSketch(rows, sketches,
                         {name: _add_counts([empty, *parts[name]]) for name in categorical})


def row_count(raw: pl.LazyFrame, source: str) -> int:
    """Rows of ``raw`` (from the footers of Parquet files)."""
    return int(collect(raw.select(pl.len()), source).item())


def merge_sketches(sketches: Iterable[ProfileSketch]) -> ProfileSketch:
    """The sketch of the rows of all (disjoint) parts (:meth:`ProfileSketch.merge`), taking
    the sketches one at a time: at most two are held at once."""
    return functools.reduce(ProfileSketch.merge, sketches)
