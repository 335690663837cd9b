"""What a baseline profile's bins are derived from, gathered in one streamed pass.

A :class:`ProfileSketch` holds, for the rows of one pass: the row count; per numeric feature
the finite minimum, maximum, whether every finite value is whole, how many are finite and a
uniform random sample of them (the values with the smallest of independent uniform keys, at
most ``capacity`` per feature); per categorical feature the count of every (segment values,
category) pair. Memory is bounded by the sample capacity and the number of distinct
categories, not by the number of rows.

Sketches of disjoint parts of the baseline merge into the sketch of their union
(:meth:`ProfileSketch.merge`): extremes and counts add up exactly, and the smallest keys of
the union are the smallest keys of the parts, so the merged sample is again a uniform
sample. Edges are quantiles of the sample: exact when it holds every finite value (any
baseline of up to ``capacity`` rows), otherwise within the rank error
:func:`rank_error_bound` states, recorded in the profile metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.labels import MISSING, OTHER
from pipeline.read.sources import iter_batches

#: Most sampled values over all numeric features (128 MiB as float64, as much for the keys).
SAMPLE_VALUES = 1 << 24
#: Most sampled values of one numeric feature: rank error about 0.3% at 20 bins.
SAMPLE_ROWS = 1 << 20
#: Chance that an edge's rank error exceeds the bound recorded in the profile.
RANK_ERROR_RISK = 1e-6
_BATCH_ROWS = 500_000  # rows per streamed batch
_COMPACT_PARTS = 16  # per-batch category counts kept before they are added up
#: Private names of a category's columns in the per-segment counts.
VALUE, COUNT = "\0value", "\0n"


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


@dataclass(frozen=True)
class NumericSketch:
    """One numeric feature: finite ``low``/``high`` (None without finite values), whether
    every finite value is whole, how many are ``finite``, and the sampled values with
    their keys (all finite values while there are at most ``capacity``)."""

    low: float | None
    high: float | None
    integral: bool
    finite: int
    keys: np.ndarray
    values: np.ndarray
    capacity: int

    @classmethod
    def empty(cls, capacity: int) -> NumericSketch:
        return cls(None, None, True, 0, np.empty(0), np.empty(0), capacity)

    def add(self, values: np.ndarray, rng: np.random.Generator) -> NumericSketch:
        """The sketch with the float64 ``values`` of a batch added (NaN, ±inf skipped)."""
        mask = np.isfinite(values)
        finite = values if mask.all() else values[mask]
        if not len(finite):
            return self
        # once a fraction is seen, the feature is not integral: skip the check
        integral = self.integral and bool(np.array_equal(finite, np.floor(finite)))
        sampled = bool(self.capacity)
        return self.merge(NumericSketch(
            float(finite.min()), float(finite.max()), integral, len(finite),
            rng.random(len(finite)) if sampled else np.empty(0),
            finite if sampled else np.empty(0), self.capacity))

    def merge(self, other: NumericSketch) -> NumericSketch:
        """The sketch of both parts' values."""
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        keys, values = other.keys, other.values
        if len(self.keys) >= self.capacity and len(keys):
            # a key above all of at least `capacity` keys cannot be among the smallest
            below = keys < self.keys.max()
            keys, values = keys[below], values[below]
        keys, values = np.concatenate([self.keys, keys]), np.concatenate([self.values, values])
        if len(keys) > self.capacity + self.capacity // 2:  # amortised: prune now and then
            keys, values = _smallest(keys, values, self.capacity)
        return NumericSketch(min(lows) if lows else None, max(highs) if highs else None,
                             self.integral and other.integral, self.finite + other.finite,
                             keys, values, self.capacity)

    def sample(self) -> np.ndarray:
        """The sampled values: every finite value, or ``capacity`` of them at random."""
        return _smallest(self.keys, self.values, self.capacity)[1]


def _smallest(keys: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(keys) <= k:
        return keys, values
    kept = np.argpartition(keys, k - 1)[:k]
    return keys[kept], values[kept]


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

    def rank_errors(self, bins: int, quantiles: Sequence[str]) -> dict[str, float]:
        """The rank error bound (:func:`rank_error_bound`) of the quantile edges of each
        feature in ``quantiles``."""
        return {name: rank_error_bound(sketch.finite, len(sketch.sample()), bins - 1)
                for name, sketch in self.numeric.items() if name in quantiles}


def _add_counts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Category counts of several parts added up (first-seen order of the pairs)."""
    frame = pl.concat(parts, how="vertical_relaxed")
    keys = [c for c in frame.columns if c != COUNT]
    return frame.group_by(keys, maintain_order=True).agg(pl.col(COUNT).sum())


def sketch_rows(raw: pl.LazyFrame, kinds: Mapping[str, str], segments: Sequence[str], *,
                quantiles: Sequence[str] | None = None, seed: int = 0,
                capacity: int | None = None, source: str = "baseline data") -> ProfileSketch:
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
    columns = {f"\0num{i}": name for i, name in enumerate(numeric)}
    texts = {f"\0cat{i}": name for i, name in enumerate(categorical)}
    query = raw.select(
        *(pl.col(s).cast(pl.String).alias(k) for k, s in zip(keys, segments, strict=True)),
        *(pl.col(name).cast(pl.Float64).alias(c) for c, name in columns.items()),
        *(pl.col(name).cast(pl.String).alias(c) for c, name in texts.items()))
    sampled = set(numeric if quantiles is None else quantiles)
    size = sample_capacity(len(sampled)) if capacity is None else capacity
    sketches = {name: NumericSketch.empty(size if name in sampled else 0) for name in numeric}
    rngs = {name: np.random.default_rng([seed, i]) for i, name in enumerate(numeric)}
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in categorical}
    rows = 0
    for batch in iter_batches(query, source, rows=_BATCH_ROWS):
        rows += batch.height
        for column, name in columns.items():
            values = batch.get_column(column).to_numpy()
            sketches[name] = sketches[name].add(values, rngs[name])
        for column, name in texts.items():
            counts = batch.group_by([*keys, pl.col(column).alias(VALUE)]).agg(
                pl.len().alias(COUNT))
            parts[name].append(counts.with_columns(pl.col(COUNT).cast(pl.Int64)))
            if len(parts[name]) >= _COMPACT_PARTS:
                parts[name] = [_add_counts(parts[name])]
    empty = pl.DataFrame(schema={**dict.fromkeys(keys, pl.String), VALUE: pl.String,
                                 COUNT: pl.Int64})
    return ProfileSketch(rows, sketches,
                         {name: _add_counts([empty, *parts[name]]) for name in categorical})


def merge_sketches(sketches: Sequence[ProfileSketch]) -> ProfileSketch:
    """The sketch of the rows of all (disjoint) parts; see :meth:`ProfileSketch.merge`."""
    merged = sketches[0]
    for sketch in sketches[1:]:
        merged = merged.merge(sketch)
    return merged
