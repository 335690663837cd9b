"""The baseline profile: bins and baseline counts of every feature, built once and reused.

Built from baseline raw rows with one query for every feature's edges or top categories,
then counted with the same code that bins current data (:func:`pipeline.bins.binning.bin_raw`),
so the baseline counts are exactly what binning the baseline rows again would give.
With segment columns, the bins come from the whole baseline (one layout per feature, so
current data of any segment is binned once) and the counts are kept per segment; in memory
the segment columns have their private names (:func:`pipeline.labels.segment_column`), on
disk their own, or ``segment:<name>`` for a name that is a column of the profile table.
Stored as Parquet with provenance as JSON in the file's key-value metadata.

Categorical features keep every category with at least ``min_category_count`` baseline
rows, up to ``max_categories`` (most frequent first), so drift among tail categories is
measured rather than cancelled inside ``__other__``. The profile also records, per feature
and segment, how many categories the baseline saw once and twice (``categories`` in the
metadata): the Good-Turing estimate of the mass of categories it never saw
(:mod:`pipeline.measure.unseen`), and a warning when that mass is large.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.bins.binning import SLOT, bin_windows
from pipeline.bins.layout import PROFILE_SCHEMA, bins_table
from pipeline.bins.row_sample import (
    SAMPLE_ENTRY,
    RowSample,
    read_sample,
    remove_stale_samples,
    write_sample,
)
from pipeline.bins.sketch import (
    COUNT,
    VALUE,
    NumericSketch,
    ProfileSketch,
    merge_sketches,
    rank_error_bound,
    realised_rank_error,
    row_count,
    sample_capacity,
    segment_key,
    sketch_rows,
    skips_rows,
)
from pipeline.errors import ConfigError, InputError
from pipeline.files import atomic_write, tool_version
from pipeline.labels import (
    MISSING,
    OTHER,
    output_names,
    segment_column,
    segment_columns_of,
    segment_name,
)
from pipeline.read.histograms import check_totals
from pipeline.read.sources import (
    PROFILE_METADATA_KEY,
    collect_schema,
    read_error,
    read_errors,
)

#: 2: optional segment columns with per-segment counts; 3: category counts per segment
#: (``categories``), ``max_categories``/``min_category_count`` and ``warnings``. Older
#: versions are still read (no category counts: no unseen-mass estimate).
SCHEMA_VERSION = 3
METADATA_KEY = PROFILE_METADATA_KEY.encode()
_HISTOGRAM_OUT = ["feature", "bin", "count", "lower", "upper"]

#: Unseen share (Good-Turing) above which a baseline is too small for its categories.
UNSEEN_WARNING = 0.05
# With more segment columns than this, category counts are recorded for the whole baseline
# and for every segment only (not for every subset of the segment columns).
_SUBSET_SEGMENTS = 3


@dataclass(frozen=True)
class Profile:
    """A baseline profile.

    Attributes
    ----------
    table : polars.DataFrame
        One row per (segment, bin): the segment columns (Utf8, under their private names
        :func:`pipeline.labels.segment_column`; none for a global baseline),
        ``feature``, ``kind`` (``numeric``/``categorical``), ``bin`` (label), ``bin_index``
        (display order within the feature), ``lower``/``upper`` (numeric edges,
        ``-inf``/``+inf`` tails; null for categories and ``__missing__``), ``count``.
        Numeric bins come by ascending ``lower``, then ``__missing__``; categorical bins by
        descending baseline count, then ``__other__``, then ``__missing__``. Every segment
        has the same bins, sorted by segment, then feature, then ``bin_index``.
    metadata : dict
        ``schema_version``, ``tool_version``, ``created_at``, ``source``, ``strategy``,
        ``bins``, ``max_categories``, ``min_category_count``, ``row_count``, ``segments``,
        ``segment_rows``, per-feature details under ``features``, category counts under
        ``categories`` and ``warnings`` (docs/data-contracts.md).
    sample : RowSample, optional
        Baseline rows kept for the joint drift check (:mod:`pipeline.bins.row_sample`),
        stored in a file next to the profile that its metadata names.
    """

    table: pl.DataFrame
    metadata: dict[str, Any]
    sample: RowSample | None = None

    @property
    def segments(self) -> list[str]:
        """Segment columns whose values have their own baseline counts (none: global), by
        the user's names."""
        return [segment_name(c) for c in segment_columns_of(self.table.columns)]

    @cached_property
    def layout(self) -> pl.DataFrame:
        """The bins shared by every segment, one row per feature bin in profile order:
        ``feature``, ``kind``, ``bin``, ``bin_index``, ``lower``, ``upper``."""
        layout = self.table.drop(*segment_columns_of(self.table.columns), "count")
        if self.segments:
            layout = layout.unique(["feature", "bin_index"], keep="first", maintain_order=True)
        return layout

    @property
    def features(self) -> list[str]:
        """Feature names, in profile order."""
        return self.layout["feature"].unique(maintain_order=True).to_list()

    def histograms(self, segments: Sequence[str] | None = None) -> pl.DataFrame:
        """The baseline histograms in long format: (private) segment columns, feature, bin,
        count, lower, upper.

        Parameters
        ----------
        segments : sequence of str, optional
            Profile segment columns to keep, by name; counts are added up over the others
            (every segment has the same bins), so ``[]`` gives one pooled, global baseline.
            Default: every segment column of the profile.

        Raises
        ------
        InputError
            A name that is not a segment column of the profile.
        """
        own = self.segments
        names = own if segments is None else list(dict.fromkeys(segments))
        unknown = [s for s in names if s not in own]
        if unknown:
            raise InputError(f"not a segment column of the profile (it has "
                             f"{', '.join(own) or 'none'}); rebuild the profile with it",
                             column=unknown[0])
        keep = [segment_column(s) for s in names]
        if names == own:
            return self.table.select(*keep, *_HISTOGRAM_OUT)
        return (self.table.group_by([*keep, "feature", "bin_index"], maintain_order=True)
                .agg(pl.col("bin", "lower", "upper").first(), pl.col("count").sum())
                .select(*keep, *_HISTOGRAM_OUT))


    def singletons(self, segments: Sequence[str] | None = None) -> pl.DataFrame:
        """Categories seen exactly once in the baseline, per categorical feature and segment.

        Parameters
        ----------
        segments : sequence of str, optional
            Segment columns to keep, as for :meth:`histograms`. Counts of a subset of the
            segment columns that the profile did not record (more than three segment
            columns) are the sums over its segments: an upper bound, since a category seen
            once in two segments is not seen once in their union.

        Returns
        -------
        pl.DataFrame
            The (private) segment columns (Utf8), ``feature`` and ``singletons`` (Int64), as
            the rows of :meth:`histograms` are keyed; no rows for a profile older than
            schema version 3.
        """
        keep = self.segments if segments is None else list(dict.fromkeys(segments))
        records = [r for r in self.metadata.get("categories", [])
                   if set(r["segment"]) in (set(keep), set(self.segments))]
        exact = [r for r in records if set(r["segment"]) == set(keep)]
        private = [segment_column(s) for s in keep]
        table = pl.DataFrame(
            [{**{segment_column(c): r["segment"][c] for c in keep}, "feature": r["feature"],
              "singletons": r["singletons"]} for r in (exact or records)],
            schema={**dict.fromkeys(private, pl.String), "feature": pl.String,
                    "singletons": pl.Int64})
        if exact or not records:
            return table
        return table.group_by([*private, "feature"], maintain_order=True).agg(
            pl.col("singletons").sum())

    def warnings(self, features: Sequence[str]) -> list[str]:
        """The profile's warnings about ``features`` (e.g. a baseline too small for its
        categories), for the run's warnings."""
        wanted = set(features)
        return [w["message"] for w in self.metadata.get("warnings", [])
                if w["feature"] in wanted]


def _select_features(
    schema: pl.Schema, features: Sequence[str] | None, exclude: Sequence[str], source: str,
) -> dict[str, str]:
    """Feature name -> kind. Numbers are numeric; text, categoricals and booleans categorical;
    other types (dates, lists, structs) are skipped unless asked for, which is an error."""
    def kind(dtype: pl.DataType) -> str | None:
        if dtype.is_numeric():
            return "numeric"
        if dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(dtype, pl.Enum):
            return "categorical"
        return None

    if features is None:
        chosen = {name: k for name, dtype in schema.items()
                  if name not in exclude and (k := kind(dtype)) is not None}
    else:
        absent = [f for f in features if f not in schema]
        if absent:
            raise InputError(f"baseline lacks feature column(s) {', '.join(absent)}; "
                             f"found {', '.join(schema.names())}", source=source,
                             column=absent[0])
        chosen = {}
        for name in dict.fromkeys(f for f in features if f not in exclude):
            if (k := kind(schema[name])) is None:
                raise InputError(f"type {schema[name]} cannot be a feature (numbers, text, "
                                 f"categoricals and booleans can)", source=source, column=name)
            chosen[name] = k
    if not chosen:
        raise InputError("no feature columns (numbers or text) to profile", source=source)
    return chosen


def _check_fixed_edges(fixed: Mapping[str, Sequence[float]],
                       kinds: Mapping[str, str]) -> dict[str, np.ndarray]:
    checked = {}
    for name, values in fixed.items():
        if kinds.get(name) != "numeric":
            raise ConfigError(f"fixed_edges[{name!r}]: not a numeric feature of the baseline")
        edges = np.asarray(values, dtype=np.float64)
        if edges.ndim != 1 or edges.size == 0 or not np.isfinite(edges).all() or (
                np.diff(edges) <= 0).any():
            raise ConfigError(f"fixed_edges[{name!r}]: give finite, strictly increasing edges")
        checked[name] = edges
    return checked


def _edges(candidates: np.ndarray, low: float | None, high: float | None,
           integral: bool) -> np.ndarray:
    """Interior edges from candidate values (quantiles or a uniform grid).

    A value repeated among the candidates carries at least one bin's worth of mass, so it
    gets its own point bin: edges ``v`` and the next possible value (``v + 1`` when every
    baseline value is a whole number, the next float otherwise) rather than being merged
    with the values around it.
    A constant column ``c`` thus gets (-inf, c), [c, c] and (c, inf). The largest float
    has no next one: repeated, it keeps the open top bin ``[v, inf)``.
    """
    finite = candidates[np.isfinite(candidates)]
    if low is not None and low == high:
        finite = np.array([low, low])
    values, repeats = np.unique(finite, return_counts=True)
    points = values[repeats > 1]
    with np.errstate(over="ignore"):
        edges = np.union1d(values, points + 1 if integral else np.nextafter(points, np.inf))
    return edges[np.isfinite(edges)]


def _numeric_edges(stats: Mapping[str, Any], name: str, strategy: str, bins: int,
                   fixed: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """Interior edges of a numeric feature and where they came from."""
    if name in fixed:
        return fixed[name], "fixed"
    low, high = stats[f"{name}\0min"], stats[f"{name}\0max"]
    if strategy == "quantile":
        candidates = np.array(stats[f"{name}\0q"], dtype=np.float64)
    elif low is None:  # no finite value: one open bin
        candidates = np.empty(0)
    elif np.isfinite(float(high) - float(low)):
        candidates = np.linspace(low, high, bins + 1)[1:-1]
    else:  # the range overflows a float: weigh the ends instead of scaling their difference
        steps = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        candidates = low * (1 - steps) + high * steps
    return _edges(candidates, low, high, stats[f"{name}\0integral"]), strategy


def _check_segments(schema: pl.Schema, segments: list[str], source: str) -> None:
    for name in segments:
        if name not in schema:
            raise InputError(f"baseline lacks segment column; found "
                             f"{', '.join(schema.names())}", source=source, column=name)


def summarise_categories(finest: Mapping[str, pl.DataFrame],
                         segments: list[str]) -> list[dict[str, Any]]:
    """Per categorical feature and segment (and subset of the segment columns): baseline
    ``rows``, distinct ``categories``, and how many were seen once (``singletons``) and
    twice (``doubletons``).

    ``finest`` maps each feature to its row counts ``\\0n`` per value ``\\0value`` and
    segment (``\\0segment0``, ... for ``segments``, as text), however they were counted
    (polars: :attr:`pipeline.bins.sketch.ProfileSketch.categories`, or a database). Every
    column has a private name, so no segment or feature name can collide with one.
    """
    keys = {segment_key(i): s for i, s in enumerate(segments)}
    value, n = pl.col(VALUE), pl.col(COUNT)
    private = list(keys)
    if len(segments) <= _SUBSET_SEGMENTS:
        subsets = [list(c) for r in range(len(segments) + 1)
                   for c in itertools.combinations(private, r)]
    else:
        subsets = [[], private]
    stats = {"\0rows": n.sum(), "\0categories": value.is_not_null().sum(),
             "\0singletons": (value.is_not_null() & (n == 1)).sum(),
             "\0doubletons": (value.is_not_null() & (n == 2)).sum()}
    records = []
    for name, counts in finest.items():
        for subset in subsets:
            per_value = counts.group_by([*subset, VALUE]).agg(n.sum())
            summary = (per_value.group_by(subset).agg(**stats).sort(subset, nulls_last=True)
                       if subset else per_value.select(**stats))
            records += [{"feature": name, "segment": {keys[c]: row[c] for c in subset},
                         **{k: int(row[f"\0{k}"]) for k in
                            ("rows", "categories", "singletons", "doubletons")}}
                        for row in summary.iter_rows(named=True)]
    return records


def _category_warnings(records: list[dict[str, Any]], details: Mapping[str, dict[str, Any]],
                       segments: list[str]) -> list[dict[str, str]]:
    """A warning per categorical feature whose baseline (or a segment's) leaves more than
    ``UNSEEN_WARNING`` of its rows to categories it never saw, and per feature with more
    categories than it kept."""
    warnings = []
    finest = [r for r in records if len(r["segment"]) == len(segments) and r["rows"] > 0]
    for name in dict.fromkeys(r["feature"] for r in finest):
        mine = [r for r in finest if r["feature"] == name]
        worst = max(mine, key=lambda r: r["singletons"] / r["rows"])
        share = worst["singletons"] / worst["rows"]
        if share > UNSEEN_WARNING:
            where = ", ".join(f"{k}={v}" for k, v in worst["segment"].items())
            many = sum(r["singletons"] / r["rows"] > UNSEEN_WARNING for r in mine)
            scope = (f" in segment {where}" + (f" and {many - 1} other segment(s)"
                                                if many > 1 else "")) if where else ""
            warnings.append({"feature": name, "message": (
                f"feature {name!r}: baseline too small for its categories{scope}: about "
                f"{share:.0%} of its rows belong to categories it never saw (Good-Turing: "
                f"{worst['singletons']} of {worst['categories']} categories seen once in "
                f"{worst['rows']} rows); unseen and new categories are tested against that "
                "estimate. A larger baseline would measure them")})
    for name, detail in details.items():
        if detail["kind"] == "categorical" and detail["n_categories"] > detail["n_kept"]:
            warnings.append({"feature": name, "message": (
                f"feature {name!r}: {detail['n_categories']} baseline categories, "
                f"{detail['n_kept']} kept (max_categories / min_category_count); the other "
                f"{detail['n_categories'] - detail['n_kept']} share the __other__ bin, which "
                "holds drift among them")})
    return warnings


def _segment_rows(table: pl.DataFrame, segments: list[str]) -> list[dict[str, Any]]:
    """Baseline rows of each segment (private ``segments`` columns, user names in the
    result): every row is in exactly one bin of each feature, so the total of the first
    feature counts them."""
    if not segments:
        return []
    first = table.filter(pl.col("feature") == table["feature"][0])
    totals = first.group_by(segments, maintain_order=True).agg(pl.col("count").sum())
    return [{"segment": {segment_name(s): row[s] for s in segments}, "rows": int(row["count"])}
            for row in totals.iter_rows(named=True)]


def build_profile(
    raw: pl.LazyFrame | Sequence[pl.LazyFrame],
    *,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    segments: Sequence[str] = (),
    strategy: Literal["quantile", "uniform"] = "quantile",
    bins: int = 20,
    max_categories: int = 1000,
    min_category_count: int = 1,
    fixed_edges: Mapping[str, Sequence[float]] | None = None,
    source: str = "",
) -> Profile:
    """Build a baseline profile from baseline raw rows.

    Parameters
    ----------
    raw : polars.LazyFrame or sequence of polars.LazyFrame
        Baseline rows, e.g. from :func:`pipeline.read.sources.scan_raw`, or disjoint parts
        of them with the same columns (e.g. the partitions of a Dask dataframe): each part is
        sketched and counted on its own and the results are merged
        (:mod:`pipeline.bins.sketch`), giving the profile of all their rows.
    features : sequence of str, optional
        Columns to profile. Default: every numeric column (numeric feature) and every text,
        categorical or boolean column (categorical feature), except ``exclude``; dates,
        lists and structs are skipped.
    exclude : sequence of str
        Columns never profiled: timestamp and id columns. Unknown names are ignored.
    segments : sequence of str
        Columns (cast to text; null is a value of its own) whose values get their own
        baseline counts, e.g. ``["region"]``: bins still come from the whole baseline, so
        every segment has the same bins. They are never profiled as features. Any name
        works (``kind``, ``count``, ...): see :func:`write_profile` for how they are stored.
    strategy : {"quantile", "uniform"}
        Numeric edges at the baseline's ``1/bins, ..., (bins-1)/bins`` quantiles, or evenly
        spaced between its finite min and max; the outer bins are open (-inf, +inf tails).
    bins : int
        Number of numeric bins before ties are merged (>= 2).
    max_categories : int
        Most categories kept per categorical feature (most frequent first; ties by value).
    min_category_count : int
        Fewest baseline rows a category needs for a bin of its own. Categories not kept go
        to ``__other__``.
    fixed_edges : mapping of str to sequence of float, optional
        Edges that replace the computed ones for some numeric features, e.g. ``{"score":
        [0, 0.1, ..., 1]}``; open tails are added outside them.
    source : str
        Where the rows come from: recorded in the metadata and named in errors.

    Returns
    -------
    Profile

    Raises
    ------
    InputError
        Unreadable data, absent or unsupported feature columns, absent segment columns,
        nothing to profile.
    ConfigError
        Invalid ``strategy``, ``bins``, ``max_categories``, ``min_category_count`` or
        ``fixed_edges``.
    """
    where = source or "baseline data"
    segments = list(dict.fromkeys(segments))
    parts = [raw] if isinstance(raw, pl.LazyFrame) else list(raw)
    if not parts:
        raise InputError("no baseline parts to profile", source=where)
    kinds, fixed = profiled_features(collect_schema(parts[0], where), features=features,
                                     exclude=exclude, segments=segments, strategy=strategy,
                                     bins=bins, max_categories=max_categories,
                                     min_category_count=min_category_count,
                                     fixed_edges=fixed_edges, source=where)
    quantiles = [name for name, kind in kinds.items()
                 if kind == "numeric" and strategy == "quantile" and name not in fixed]
    capacity = sample_capacity(len(quantiles))
    # Quantiles need a sample only: read the numeric features from about `capacity` rows
    # spread over the baseline (the same share of every part, so that the merged sample is
    # uniform over the rows read); their exact extremes come from the counting pass.
    sliced = quantiles and all(skips_rows(part) for part in parts)
    rows = sum(row_count(part, where) for part in parts) if sliced else 0
    fraction = min(1.0, capacity / rows) if rows else 1.0

    def sketch(fraction: float, kinds: Mapping[str, str], segments: list[str]) -> ProfileSketch:
        return merge_sketches(sketch_rows(part, kinds, segments, quantiles=quantiles, seed=i,
                                          capacity=capacity, fraction=fraction, source=where)
                              for i, part in enumerate(parts))

    sketched = sketch(fraction, kinds, segments)
    stats = sketched.stats(bins, max_categories, min_category_count, quantiles)
    categories = summarise_categories(sketched.categories, segments)
    sampled = {name: len(sketched.numeric[name].sample()) for name in quantiles}
    watched = _tied_quantiles(sketched, stats, quantiles)
    del sketched  # the samples are not needed for counting: free them before
    layout, _ = _layout(stats, kinds, fixed, strategy, bins)
    counts, exact = count_parts(parts, layout, segments, where, watched)
    stats |= {f"{name}\0{key}": value for name, sketch_ in exact.items()
              for key, value in (("min", sketch_.low), ("max", sketch_.high),
                                 ("integral", sketch_.integral))}
    errors = _rank_errors(stats, counts, exact, sampled)
    if fraction < 1 and any(
            errors[name] > rank_error_bound(exact[name].finite, sampled[name], bins - 1)
            or (exact[name].finite and not sampled[name]) for name in quantiles):
        # The rows read were not like the others (rows sorted by a feature or trending in
        # time, or no finite value among them): fall back to a uniform sample of every
        # row, whose edges keep that bound.
        full = sketch(1.0, {name: "numeric" for name in quantiles}, [])
        stats |= {key: q for key, q in full.stats(bins, 0, 1, quantiles).items()
                  if key.endswith("\0q")}
        sampled = {name: len(full.numeric[name].sample()) for name in quantiles}
        watched = _tied_quantiles(full, stats, quantiles)
    final, _ = _layout(stats, kinds, fixed, strategy, bins)
    if not final.equals(layout) or any(
            not np.array_equal(exact[n].watched, watched[n]) for n in quantiles):
        # new quantiles, or the rows read had other extremes than all rows
        counts, exact = count_parts(parts, final, segments, where, watched)
        errors = _rank_errors(stats, counts, exact, sampled)
    return profile_from_stats(
        stats, kinds, fixed, lambda _: counts, segments=segments, strategy=strategy,
        bins=bins, max_categories=max_categories, min_category_count=min_category_count,
        source=source, categories=categories, rank_errors=errors)


def _tied_quantiles(sketched: ProfileSketch, stats: Mapping[str, Any],
                    quantiles: Sequence[str]) -> dict[str, list[float]]:
    """Per feature in ``quantiles``, the quantile values taken for one level only (so without
    a point bin) that the sample holds more than once: the counting pass counts their rows,
    for an exact realised rank error."""
    watched = {}
    for name in quantiles:
        values, repeats = np.unique(np.array(stats[f"{name}\0q"], dtype=np.float64),
                                    return_counts=True)
        sample = sketched.numeric[name].sample()
        watched[name] = [v for v in values[(repeats == 1) & np.isfinite(values)].tolist()
                         if np.count_nonzero(sample == v) > 1]
    return watched


def _rank_errors(stats: Mapping[str, Any], counts: pl.DataFrame,
                 exact: Mapping[str, NumericSketch], sampled: Mapping[str, int]
                 ) -> dict[str, float]:
    """The realised rank error (:func:`pipeline.bins.sketch.realised_rank_error`) of the
    quantile edges of each feature of ``sampled`` (feature -> size of its sample), from its
    baseline ``counts`` (the histograms :func:`count_parts` gives) and ``exact`` extremes
    and ties; 0 for exact quantiles (a sample of every finite value), as a database states
    them (:mod:`pipeline.bins.pushdown`)."""
    quantiles = list(sampled)
    totals = (counts.filter(pl.col("feature").is_in(quantiles) & (pl.col("bin") != MISSING))
              .group_by("feature", "bin", maintain_order=True)
              .agg(pl.col("count").sum(), pl.col("lower").first()))
    by_feature = totals.partition_by("feature", as_dict=True, include_key=False)
    errors = {}
    for name in quantiles:
        bins = by_feature.get((name,), totals.clear())  # no rows (no segment): no bins
        errors[name] = 0.0 if sampled[name] >= exact[name].finite else realised_rank_error(
            stats[f"{name}\0q"], bins["lower"].to_numpy()[1:], bins["count"].to_numpy(),
            exact[name].finite, exact[name].neg_inf, exact[name].integral,
            dict(zip(exact[name].watched.tolist(), exact[name].ties.tolist(), strict=True)))
    return errors


def count_parts(parts: Sequence[pl.LazyFrame], layout: pl.DataFrame, segments: list[str],
                source: str, watched: Mapping[str, Sequence[float]]
                ) -> tuple[pl.DataFrame, dict[str, NumericSketch]]:
    """Baseline counts of ``layout`` over disjoint parts of the baseline rows, added up: the
    histograms :func:`pipeline.bins.binning.bin_raw` gives for all rows at once (private
    segment columns, feature, bin, count, lower, upper; in its order), and the exact
    extremes of each numeric feature, with the rows equal to its ``watched`` values
    (:attr:`pipeline.bins.binning.Binned.extremes`)."""
    profile = Profile(layout, {})
    counted = [bin_windows(part, profile, segments=segments, source=source, extremes=watched)
               for part in parts]
    exact = {name: functools.reduce(NumericSketch.merge, (c.extremes[name] for c in counted))
             for name in counted[0].extremes}
    if len(counted) == 1:
        return counted[0].histograms, exact
    private = [segment_column(s) for s in segments]
    slots = layout.select("feature", "bin", pl.int_range(pl.len()).alias(SLOT))
    return (pl.concat(c.histograms for c in counted)
            .group_by([*private, "feature", "bin"], maintain_order=True)
            .agg(pl.col("count").sum(), pl.col("lower", "upper").first())
            .join(slots, on=["feature", "bin"]).sort([*private, SLOT], nulls_last=True)
            .select(*private, *_HISTOGRAM_OUT)), exact


def profiled_features(
    schema: pl.Schema, *, features: Sequence[str] | None, exclude: Sequence[str],
    segments: list[str], strategy: str, bins: int, max_categories: int,
    min_category_count: int, fixed_edges: Mapping[str, Sequence[float]] | None, source: str,
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Check the options and columns of a profile to build; feature -> kind, fixed edges."""
    if strategy not in ("quantile", "uniform"):
        raise ConfigError(f"strategy {strategy!r}: use 'quantile' or 'uniform'")
    if bins < 2 or max_categories < 0 or min_category_count < 1:
        raise ConfigError(f"bins={bins}, max_categories={max_categories}, min_category_count="
                          f"{min_category_count}: need bins >= 2, max_categories >= 0 and "
                          "min_category_count >= 1")
    _check_segments(schema, segments, source)
    kinds = _select_features(schema, features, (*exclude, *segments), source)
    return kinds, _check_fixed_edges(fixed_edges or {}, kinds)


def _layout(stats: Mapping[str, Any], kinds: Mapping[str, str], fixed: Mapping[str, np.ndarray],
            strategy: str, bins: int) -> tuple[pl.DataFrame, dict[str, dict[str, Any]]]:
    """The bins of every feature (``feature``, ``kind``, ``bin``, ``bin_index``, ``lower``,
    ``upper``) and the per-feature details of the metadata, from the first pass's
    ``stats`` (:func:`profile_from_stats`)."""
    tables: list[pl.DataFrame] = []
    details: dict[str, dict[str, Any]] = {}
    for name, kind in kinds.items():
        if kind == "numeric":
            edges, origin = _numeric_edges(stats, name, strategy, bins, fixed)
            tables.append(bins_table(name, kind, edges, None))
            details[name] = {"kind": kind, "edges": origin, "min": stats[f"{name}\0min"],
                             "max": stats[f"{name}\0max"]}
        else:
            top = stats[f"{name}\0top"]
            tables.append(bins_table(name, kind, None, top))
            details[name] = {"kind": kind, "n_categories": stats[f"{name}\0distinct"],
                             "n_kept": len(top)}
    return pl.concat(tables), details


def profile_from_stats(
    stats: Mapping[str, Any], kinds: Mapping[str, str], fixed: Mapping[str, np.ndarray],
    count: Callable[[pl.DataFrame], pl.DataFrame], *, segments: list[str], strategy: str,
    bins: int, max_categories: int, min_category_count: int, source: str,
    categories: list[dict[str, Any]] | None = None,
    rank_errors: Mapping[str, float] | None = None,
) -> Profile:
    """A profile from what its bins are derived from and a way to count the baseline.

    ``stats`` holds, per feature, what the first pass computes (:mod:`pipeline.bins.sketch`,
    or aggregates in a database; ``__rows``; numeric:
    finite ``min``, ``max``, ``integral``, quantiles ``q``; categorical: ``top`` categories by
    count then value, ``distinct``), whether polars or a database computed it; ``count(layout)``
    bins the baseline rows against the layout (segment columns, feature, bin, count, ...).
    ``categories`` are the category counts per segment (:func:`summarise_categories`).
    ``rank_errors`` are the realised rank errors of each feature's quantile edges (sampled
    edges, :func:`pipeline.bins.sketch.realised_rank_error`); absent features' edges are
    exact quantiles.
    """
    where = source or "baseline data"
    layout, details = _layout(stats, kinds, fixed, strategy, bins)
    for name, detail in details.items():
        if detail.get("edges") == "quantile":
            detail["rank_error"] = (rank_errors or {}).get(name, 0.0)
    counts = count(layout)
    private = [segment_column(s) for s in segments]
    table = counts.join(layout.select("feature", "bin", "kind", "bin_index"),
                        on=["feature", "bin"], how="left", maintain_order="left"
                        ).select(*private, *PROFILE_SCHEMA)
    if table.height == 0:
        raise InputError("baseline has no rows, so no segment to profile", source=where)
    row_count = stats["__rows"]
    per_feature = table.group_by("feature", maintain_order=True).agg(
        pl.col("bin_index").n_unique().alias("n_bins"),
        pl.col("count").filter(pl.col("bin") == MISSING).sum().alias("n_missing"))
    for row in per_feature.iter_rows(named=True):
        details[row["feature"]] |= {"n_bins": row["n_bins"], "n_rows": row_count,
                                    "n_missing": int(row["n_missing"])}
    categories = categories or []
    for record in categories:
        if not record["segment"]:
            details[record["feature"]]["unseen_share"] = (
                record["singletons"] / record["rows"] if record["rows"] else 0.0)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "tool_version": tool_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "strategy": strategy,
        "bins": bins,
        "max_categories": max_categories,
        "min_category_count": min_category_count,
        "row_count": row_count,
        "segments": segments,
        "segment_rows": _segment_rows(table, private),
        "features": details,
        "categories": categories,
        "warnings": _category_warnings(categories, details, segments),
    }
    return Profile(table, meta)


def write_profile(profile: Profile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` to a Parquet file atomically; the metadata goes in the file's
    key-value metadata under ``kl_drift.profile`` (JSON). A baseline sample is written
    first, next to it, and named in that metadata.

    Segment columns are written under their own names, or, for a name that is a column of
    the profile table (``kind``, ``count``, ...), as ``segment:<name>``
    (:func:`pipeline.labels.output_names`); the metadata lists them by their own names.
    """
    metadata = {k: v for k, v in profile.metadata.items() if k != SAMPLE_ENTRY}
    if profile.sample is not None:
        metadata[SAMPLE_ENTRY] = write_sample(profile.sample, path)
    private = segment_columns_of(profile.table.columns)
    written = output_names(private, PROFILE_SCHEMA)
    import pyarrow.parquet as pq  # writing only: pyarrow puts the metadata where every
    # reader finds it (polars' writer hides it from pyarrow's schema.metadata)

    arrow = profile.table.rename({c: written[segment_name(c)] for c in private}).to_arrow()
    arrow = arrow.replace_schema_metadata(
        {PROFILE_METADATA_KEY: json.dumps(metadata, allow_nan=False)})
    target = atomic_write(path, lambda file: pq.write_table(arrow, file))
    remove_stale_samples(path, keep=metadata.get(SAMPLE_ENTRY, {}).get("file"))
    return target


def read_profile(path: str | os.PathLike[str]) -> Profile:
    """Read a profile written by :func:`write_profile`.

    Raises
    ------
    InputError
        Missing or unreadable file, a Parquet file that is not a kl-drift profile, or a
        profile from a newer kl-drift (``schema_version`` above this version's).
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise InputError("profile file not found; build one with `kl-drift profile`",
                         source=where)
    # polars reads the footer and the table (pyarrow's reader would import pandas: 0.3 s)
    try:
        raw_meta = pl.read_parquet_metadata(where).get(PROFILE_METADATA_KEY)
    except read_errors() as error:
        raise read_error(error, where) from error
    if raw_meta is None:
        raise InputError("not a kl-drift profile (no kl_drift.profile metadata); build one "
                         "with `kl-drift profile`", source=where)
    try:
        meta = json.loads(raw_meta)
        version = meta["schema_version"]
    except (ValueError, KeyError, TypeError) as error:
        raise InputError("not a kl-drift profile (unreadable kl_drift.profile metadata)",
                         source=where) from error
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"not a kl-drift profile this version can read (schema_version "
                         f"{version!r}, supported <= {SCHEMA_VERSION}); upgrade kl-drift",
                         source=where)
    segments = meta.get("segments", [])  # absent from version 1 profiles: no segments
    if not (isinstance(segments, list) and all(isinstance(s, str) for s in segments)):
        raise InputError("not a kl-drift profile (malformed segments in its metadata)",
                         source=where)
    try:
        table = pl.read_parquet(where)
    except read_errors() as error:
        raise read_error(error, where) from error
    written = output_names(segments, PROFILE_SCHEMA)
    if dict(table.schema) != {**dict.fromkeys(written.values(), pl.String), **PROFILE_SCHEMA}:
        raise InputError("not a kl-drift profile (unexpected columns or types)", source=where)
    table = table.rename({written[s]: segment_column(s) for s in segments})
    bad = _malformed_features(table, [segment_column(s) for s in segments])
    if bad:
        raise InputError("profile bins are malformed (edited by hand?); rebuild the profile",
                         source=where, feature=bad[0])
    _check_counts(table, [segment_column(s) for s in segments], where)
    return Profile(table, meta, read_sample(where, meta))


def _check_counts(table: pl.DataFrame, segments: list[str], source: str) -> None:
    """Counts must be finite numbers >= 0 whose totals per feature stay below 2**53."""
    count = pl.col("count")
    bad = table.filter(count.is_null() | count.is_nan() | ~count.is_finite() | (count < 0))
    if bad.height:
        first = bad.row(0, named=True)
        raise InputError(f"profile has {bad.height} count(s) that are not finite numbers "
                         f">= 0, first {first['count']} in bin {first['bin']!r} (edited by "
                         f"hand?); rebuild the profile", source=source,
                         feature=first["feature"])
    check_totals(table, [*segments, "feature"], "profile", source)


def _malformed_features(table: pl.DataFrame, segments: list[str]) -> list[str]:
    """Features whose bins break the layout binning relies on: the same bins in every
    segment, each label once, ``bin_index`` 0..n-1 and ``__missing__`` last, after
    contiguous numeric bins from -inf to +inf, or after the categories and ``__other__``."""
    bad = []
    layout = table.drop(*segments, "count")
    if segments:
        # each bin once per segment, and in every segment
        repeats = layout.group_by(layout.columns, maintain_order=True).len()
        twice = table.select(*segments, "feature", "bin_index").is_duplicated()
        bad += [*repeats.filter(pl.col("len") != table.select(segments).n_unique())["feature"],
                *table.filter(twice)["feature"]]
        layout = repeats.drop("len")
    # one pass over all bins (a loop over features costs ~40 µs each: 0.2 s at 5,000)
    position = pl.int_range(pl.len()).over("feature")
    n_bins = pl.len().over("feature")
    kind = pl.col("kind").first().over("feature")
    numeric_ok = (pl.when(position == 0).then(pl.col("lower") == -np.inf)
                  .when(position < n_bins - 1)
                  .then(pl.col("lower") == pl.col("upper").shift().over("feature"))
                  .otherwise(True)
                  & pl.when(position == n_bins - 2).then(pl.col("upper") == np.inf)
                  .otherwise(True))
    categorical_ok = pl.when(position == n_bins - 2).then(pl.col("bin") == OTHER).otherwise(True)
    row_ok = ((pl.col("bin_index") == position) & (pl.col("kind") == kind) & (n_bins >= 2)
              & pl.when(position == n_bins - 1).then(pl.col("bin") == MISSING).otherwise(True)
              & pl.when(kind == "numeric").then(numeric_ok)
              .when(kind == "categorical").then(categorical_ok).otherwise(False))
    # a label twice in a feature would bin its rows in one place (and no Enum has it twice)
    bad += layout.filter(layout.select("feature", "bin").is_duplicated())["feature"].to_list()
    checked = (layout.sort("bin_index", maintain_order=True)
               .select("feature", ok=row_ok.fill_null(False)))
    bad += checked.filter(~pl.col("ok"))["feature"].to_list()
    return list(dict.fromkeys(bad))
