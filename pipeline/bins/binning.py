"""Raw rows -> histogram long format against a baseline profile, per window and segment.

One streaming pass over the data bins every feature. Polars reads and casts the columns
(and maps categories to bin indices); numpy counts numeric bins as differences of
``#(x >= edge)``, one vectorised comparison per edge, several times faster than
``searchsorted`` or polars ``cut`` for profile-sized edge lists (docs/benchmarks.md).
Windows and segments split each batch into runs of consecutive rows with equal keys (found
by comparing each row with the previous one, no hashing), and only the runs' keys get a
group id. Counts of each batch are summed, so memory is bounded by the batch size and
partial results from several workers add up the same way. The same pass measures the data's
time range (:class:`pipeline.windows.TimeSpan`), from which the coverage of each window
follows without a second scan. Segment columns come out under their private names
(:func:`pipeline.labels.segment_column`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.bins.layout import FeatureBins, HasLayout, feature_bins
from pipeline.bins.sketch import NumericSketch
from pipeline.errors import ConfigError, InputError
from pipeline.labels import segment_column
from pipeline.parallel import in_parallel
from pipeline.read.sources import FEATURES_PER_PASS, collect_schema, iter_batches
from pipeline.windows import (
    UTC,
    TimeSpan,
    check_parsed,
    check_period,
    timestamp_expr,
    window_start_expr,
)

_CHUNK = 1 << 15  # values binned at once: the chunk and its masks stay in L2 cache
_SEARCH_ABOVE = 64  # with more edges than this, binary search beats counting edges
_MAX_RUNS = 64  # above this many runs of one group in a batch, per-run overhead dominates
#: Column of a feature bin's position in the counts a pass produces (feature offset + bin).
SLOT = "\0slot"
_INSTANT = "\0instant"
_UNPARSED = "\0unparsed"


def _numeric_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of every value: the number of edges <= value (NaN -> ``len(edges) + 1``).

    ``-inf`` lands in bin 0 and ``+inf`` in the last numeric bin, like any out-of-range value.
    """
    n_edges = len(edges)
    if n_edges > _SEARCH_ABOVE:
        # NaN sorts after every number, so a trailing NaN edge sends NaN to index n_edges + 1.
        return np.searchsorted(np.append(edges, np.nan), values, side="right")
    codes = np.empty(len(values), dtype=np.int8)  # at most _SEARCH_ABOVE + 2 bins
    reached = np.empty(min(_CHUNK, len(values)), dtype=np.bool_)
    for start in range(0, len(values), _CHUNK):
        chunk, out = values[start:start + _CHUNK], codes[start:start + _CHUNK]
        mask = reached[:len(chunk)]
        np.isnan(chunk, out=mask)
        np.multiply(mask, n_edges + 1, out=out)  # NaN compares False below: stays missing
        for edge in edges:
            np.greater_equal(chunk, edge, out=mask)
            np.add(out, mask, out=out)
    return codes


def _numeric_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of :func:`_numeric_codes` without forming the codes.

    Bin counts are differences of ``#(x >= edge)``, and ``count_nonzero`` of a comparison
    is about twice as fast as accumulating bin indices and ``bincount``-ing them.
    """
    n_edges = len(edges)
    if n_edges > _SEARCH_ABOVE:
        return np.bincount(_numeric_codes(values, edges), minlength=n_edges + 2)
    mask = np.empty(len(values), dtype=np.bool_)
    np.isnan(values, out=mask)
    n_missing = np.count_nonzero(mask)
    at_least = np.zeros(n_edges + 2, dtype=np.int64)  # [#non-missing, #(x >= e_j)..., 0]
    at_least[0] = len(values) - n_missing
    for j, edge in enumerate(edges, start=1):
        np.greater_equal(values, edge, out=mask)
        at_least[j] = np.count_nonzero(mask)
    counts = at_least[:-1] - at_least[1:]
    return np.append(counts, n_missing)


def _value_column(index: int) -> str:
    return f"\0value{index}"


def _category_codes(name: str, categories: list[str]) -> pl.Expr:
    """Bin index of a categorical column: its profile category, else __other__/__missing__.

    A cast to an Enum of the categories gives each category its position (the Enum's
    physical code) and every other value null, batch by batch: ``replace_strict`` made the
    streaming engine load the whole column (415 MiB per string column at 5M rows).
    """
    text = pl.col(name).cast(pl.String)
    other = len(categories)
    code = text.cast(pl.Enum(categories), strict=False).to_physical().cast(pl.UInt32)
    return (pl.when(text.is_null()).then(pl.lit(other + 1, pl.UInt32))
            .otherwise(code.fill_null(other)))


def _window_exprs(timestamp: str, dtype: pl.DataType, period: str | None, timezone: str,
                  source: str | None) -> tuple[pl.Expr, pl.Expr, pl.Expr | None]:
    """The timestamp's values (as ``_INSTANT``), the ``window`` column, and for text
    timestamps the text of values that fail to parse."""
    if period is not None:
        try:  # check the period once here rather than failing mid-scan
            check_period(period)
        except ValueError as error:
            raise ConfigError(f"period {error}") from None
    values, unparsed = timestamp_expr(timestamp, dtype, period=period, timezone=timezone,
                                      source=source)
    return (values.alias(_INSTANT), window_start_expr(_INSTANT, period),
            None if unparsed is None else unparsed.alias(_UNPARSED))


def _type_changes(schema: pl.Schema, features: list[FeatureBins]) -> dict[str, str]:
    """Features whose raw column has a type they cannot be binned from -> why."""
    changes = {}
    for feature in features:
        dtype = schema.get(feature.name)
        if dtype is None or dtype == pl.Null:  # absent, or all null: binned as missing
            continue
        text = dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(dtype, pl.Enum)
        if not (dtype.is_numeric() if feature.kind == "numeric" else text):
            changes[feature.name] = (f"profile feature is {feature.kind} but the raw column is "
                                     f"{dtype}; the column type changed since the baseline")
    return changes


def _check_columns(
    schema: pl.Schema, features: list[FeatureBins], keys: Sequence[str],
    missing: Literal["error", "skip"], source: str | None,
) -> list[FeatureBins]:
    """Reject (``missing="error"``) or drop features absent from the raw schema or whose
    column type changed."""
    for key in keys:
        if key not in schema:
            raise InputError("column not found in the raw data; check the timestamp/segment "
                             "settings", source=source, column=key)
    absent = [f.name for f in features if f.name not in schema]
    if absent and missing == "error":
        raise InputError(f"raw data lacks profile feature column(s) {', '.join(absent)}; "
                         f"restore them or pass missing='skip'", source=source, column=absent[0])
    changed = _type_changes(schema, features)
    if changed and missing == "error":
        name, why = next(iter(changed.items()))
        raise InputError(why, source=source, feature=name)
    return [f for f in features if f.name in schema and f.name not in changed]


def _selected(profile: HasLayout, features: Sequence[str] | None) -> list[FeatureBins]:
    """Binning specs of the profile features to bin (default: all), in profile order."""
    specs = feature_bins(profile.layout)
    if features is None:
        return specs
    unknown = sorted(set(features) - {f.name for f in specs})
    if unknown:
        raise InputError(f"not a feature of the profile (profile has "
                         f"{', '.join(f.name for f in specs)})", feature=unknown[0])
    return [f for f in specs if f.name in set(features)]


def retyped_features(schema: pl.Schema, profile: HasLayout,
                     features: Sequence[str] | None = None) -> dict[str, str]:
    """Profile features whose raw column type cannot be binned as the feature's kind.

    These are the features :func:`bin_raw` leaves out with ``missing="skip"`` although
    their column exists: a run reports them as ``error`` rows with this reason.

    Parameters
    ----------
    schema : polars.Schema
        Schema of the raw data.
    profile : Profile
        The baseline profile.
    features : sequence of str, optional
        Profile features considered (default: all).

    Returns
    -------
    dict of str to str
        Feature name -> reason naming the feature and both types, e.g. ``"feature 'x':
        profile feature is numeric but the raw column is String; the column type changed
        since the baseline"``.
    """
    return {name: f"feature '{name}': {why}"
            for name, why in _type_changes(schema, _selected(profile, features)).items()}


def _group_ids(keys_frame: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
    """Dense group id per row (0..G-1) and the G distinct key rows, in first-seen order."""
    first = (keys_frame.with_row_index("\0row")
             .select(pl.col("\0row").first().over(keys_frame.columns))
             .to_series().to_numpy())
    is_first = np.zeros(len(first), dtype=np.bool_)
    is_first[first] = True
    dense = np.cumsum(is_first, dtype=np.int64) - 1
    return dense[first], keys_frame[np.flatnonzero(is_first)]


def _runs(keys_frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
    """Runs of consecutive rows with equal keys: start row and dense group id (0..G-1) of
    each run, and the G distinct key rows in first-seen order.

    Rows of a window usually come together (data sorted by time), so comparing each row
    with the previous one and hashing only the runs' keys is much cheaper than hashing
    every row; shuffled rows make one run per row and cost about the same as hashing.
    """
    changed = keys_frame.select(pl.any_horizontal(
        pl.col(c).ne_missing(pl.col(c).shift()) for c in keys_frame.columns)).to_series()
    starts = np.flatnonzero(changed.to_numpy())
    if keys_frame.height and (not len(starts) or starts[0]):  # a leading null is a run too
        starts = np.insert(starts, 0, 0)
    group, key_rows = _group_ids(keys_frame[starts])
    return starts, group, key_rows


def _count_batch(batch: pl.DataFrame, keys: list[str], features: list[FeatureBins],
                 offsets: np.ndarray, observed: Mapping[str, NumericSketch]) -> pl.DataFrame:
    """Counts of one batch: key columns, ``__slot`` (feature offset + bin index), ``count``;
    the values of the ``observed`` features go to their extremes too."""
    if keys:
        starts, run_group, key_rows = _runs(batch.select(keys))
    else:
        starts, run_group, key_rows = np.zeros(1, np.int64), np.zeros(1, np.int64), None
    n_groups = 1 if key_rows is None else key_rows.height
    counts = np.zeros((n_groups, int(offsets[-1])), dtype=np.int64)
    stops = np.append(starts[1:], batch.height)
    # Few long runs: histogram each run directly. Many short runs (shuffled groups): count
    # bin indices per group, from the group id of every row.
    direct = len(starts) <= _MAX_RUNS
    group = np.repeat(run_group, stops - starts) if keys and not (
        direct and all(f.kind == "numeric" for f in features)) else None

    def count(i: int) -> None:
        """Feature i's counts into its columns (features on threads: each its own)."""
        feature, columns = features[i], slice(offsets[i], offsets[i] + features[i].n_bins)
        values = batch.get_column(_value_column(i)).to_numpy()
        if feature.name in observed:
            observed[feature.name].observe(values)
        if feature.kind == "numeric" and direct:
            for run, start, stop in zip(run_group, starts, stops, strict=True):
                counts[run, columns] += _numeric_histogram(values[start:stop], feature.edges)
            return
        codes = _numeric_codes(values, feature.edges) if feature.kind == "numeric" else values
        flat = codes if group is None else group * feature.n_bins + codes
        counts[:, columns] = np.bincount(flat, minlength=n_groups * feature.n_bins
                                         ).reshape(n_groups, feature.n_bins)

    in_parallel(count, range(len(features)))
    rows, slots = np.nonzero(counts)
    long = pl.DataFrame({SLOT: slots.astype(np.int64), "count": counts[rows, slots]})
    return pl.concat([key_rows[rows], long], how="horizontal") if key_rows is not None else long


@dataclass(frozen=True)
class Binned:
    """What one pass over raw rows gives (:func:`bin_windows`).

    Attributes
    ----------
    histograms : polars.DataFrame
        The histogram long table (see :func:`bin_raw`).
    span : TimeSpan or None
        The time range of the rows' timestamps when windows are cut by a ``period`` (for
        :func:`pipeline.windows.window_coverage`); None otherwise or without timestamps.
        Spans of several passes over disjoint rows combine with
        :func:`pipeline.windows.merge_spans`.
    extremes : dict of str to NumericSketch
        With ``extremes``, each numeric feature's exact finite min, max, integrality and
        counts of finite, ``-inf`` and watched values (:meth:`NumericSketch.observe`, no
        sample); empty otherwise.
    """

    histograms: pl.DataFrame
    span: TimeSpan | None
    extremes: dict[str, NumericSketch] = field(default_factory=dict)


def bin_raw(raw: pl.LazyFrame, profile: HasLayout, **options: Any) -> pl.DataFrame:
    """The histograms of :func:`bin_windows` (same keyword arguments), without the span.

    >>> from pipeline.bins.layout import bins_table
    >>> from pipeline.bins.profile import Profile
    >>> bins = Profile(bins_table("x", "numeric", np.array([0.0]), None), {})
    >>> bin_raw(pl.LazyFrame({"x": [-1.0, 2.0, 3.0]}), bins)["count"].to_list()
    [1.0, 2.0, 0.0]
    """
    return bin_windows(raw, profile, **options).histograms


def bin_windows(
    raw: pl.LazyFrame,
    profile: HasLayout,
    *,
    timestamp: str | None = None,
    period: str | None = None,
    segments: Sequence[str] = (),
    features: Sequence[str] | None = None,
    missing: Literal["error", "skip"] = "error",
    source: str | None = None,
    window_timezone: str = UTC,
    extremes: Mapping[str, Sequence[float]] | None = None,
) -> Binned:
    """Histograms of raw rows against the bins of ``profile``, in one pass over the data.

    Parameters
    ----------
    raw : polars.LazyFrame
        Raw rows, e.g. from :func:`pipeline.read.sources.scan_raw`.
    profile : Profile
        The baseline profile whose bins are used.
    timestamp : str, optional
        Column giving each row's time: a datetime (naive means UTC), a date or ISO-8601
        text (parsed as UTC when it has no offset).
    period : str, optional
        Window length as a polars duration (``"1h"``, ``"1d"``, ``"1w"``, ``"1mo"``): the
        ``window`` column is the start of each row's period in ``window_timezone``
        (:mod:`pipeline.windows`). Without a period the timestamp column's values are the
        windows as they are (datetimes converted to ``window_timezone``).
    segments : sequence of str
        Columns to split by (cast to text), e.g. ``["model_version", "region"]``; any
        name works, they come out under their private names
        (:func:`pipeline.labels.segment_column`).
    features : sequence of str, optional
        Profile features to bin (default: all).
    missing : {"error", "skip"}
        A profile feature absent from the raw data, or whose column type cannot be binned
        as the feature's kind (numbers for numeric features; text, categorical or boolean
        for categorical ones), stops with an InputError (listing every absent column), or
        is left out of the result (:func:`retyped_features` gives the reasons).
    source : str, optional
        The file the rows come from, named in error messages.
    window_timezone : str
        IANA time zone the windows are cut in (default UTC: naive window starts).
    extremes : mapping of str to sequence of float, optional
        Also gather each numeric feature's exact extremes (:attr:`Binned.extremes`; the
        profile builder's counting pass), with the rows equal to the values given for a
        feature.

    Returns
    -------
    Binned
        ``histograms`` in long format: private segment columns (Utf8), ``feature``,
        ``window`` (if a timestamp was given), ``bin``, ``count`` (Float64), ``lower``,
        ``upper``. Every profile bin appears for every (segments, window) group present in
        the data, with count 0 if empty. Numeric values outside the profile range fall in
        the open tails, null and NaN in ``__missing__``, categories not in the profile in
        ``__other__``. ``span``: the rows' time range (with a period).

    Raises
    ------
    InputError
        Missing or retyped columns, unparsable timestamps, unreadable data.
    ConfigError
        A period that is not a duration, or a period without a timestamp.
    """
    if period is not None and timestamp is None:
        raise ConfigError("period is set but timestamp is not; name the timestamp column")
    specs = _selected(profile, features)
    schema = collect_schema(raw, source or "raw data")
    timestamp_keys = [timestamp] if timestamp is not None else []
    specs = _check_columns(schema, specs, [*segments, *timestamp_keys], missing, source)

    # segments and values get private names: any name works, a feature may be a segment too
    private = [segment_column(c) for c in dict.fromkeys(segments)]
    key_exprs = [pl.col(segment_name).cast(pl.String).alias(column)
                 for segment_name, column in zip(dict.fromkeys(segments), private, strict=True)]
    instant, extra = [], []
    if timestamp is not None:
        values, window, check = _window_exprs(timestamp, schema[timestamp], period,
                                              window_timezone, source)
        instant = [values]
        key_exprs.append(window)
        extra = [pl.col(_INSTANT)] if period is not None else []
        extra += [check] if check is not None else []
    keys = [*private, *(["window"] if timestamp is not None else [])]
    offsets = np.cumsum([0, *(f.n_bins for f in specs)])
    key_schema = raw.with_columns(*instant).select(*key_exprs).collect_schema()
    parts = [pl.DataFrame(schema={**{k: key_schema[k] for k in keys},
                                  SLOT: pl.Int64, "count": pl.Int64})]
    span = None
    observed = {f.name: NumericSketch(0, extremes.get(f.name, ())) for f in specs
                if extremes is not None and f.kind == "numeric"}
    days = timestamp is not None and schema[timestamp] == pl.Date
    # one pass per FEATURES_PER_PASS features; the first also checks the timestamps
    for start in range(0, max(len(specs), 1), FEATURES_PER_PASS):
        chunk = specs[start:start + FEATURES_PER_PASS]
        value_exprs = [(pl.col(f.name).cast(pl.Float64) if f.kind == "numeric"
                        else _category_codes(f.name, f.categories)).alias(_value_column(i))
                       for i, f in enumerate(chunk)]
        query = raw.with_columns(*instant).select(*key_exprs, *value_exprs,
                                                  *(extra if start == 0 else []))
        base = int(offsets[start])
        local = offsets[start:start + len(chunk) + 1] - base
        for batch in iter_batches(query, source or "raw data"):
            if _UNPARSED in batch.columns:
                check_parsed(batch[_UNPARSED], str(timestamp), source)
            if _INSTANT in batch.columns:
                batch_span = TimeSpan.of(batch[_INSTANT], days=days)
                span = batch_span if span is None else span.merge(batch_span)
            parts.append(_count_batch(batch, keys, chunk, local, observed)
                         .with_columns(pl.col(SLOT) + base))
    return Binned(assemble_counts(pl.concat(parts), private, keys, specs, profile.layout), span,
                  observed)


def assemble_counts(counts: pl.DataFrame, segments: Sequence[str], keys: list[str],
                    specs: list[FeatureBins], layout: pl.DataFrame) -> pl.DataFrame:
    """Sum partial counts (key columns, :data:`SLOT`, ``count``: from batches here, from a
    database in :mod:`pipeline.bins.pushdown`) and give every group every bin of every
    feature (count 0 if empty)."""
    names = [f.name for f in specs]
    bins = (layout.filter(pl.col("feature").is_in(names))
            .with_columns(order=pl.col("feature").replace_strict(names, range(len(names))))
            .sort("order", "bin_index")
            .select(pl.int_range(pl.len(), dtype=pl.Int64).alias(SLOT),
                    "feature", "bin", "lower", "upper"))
    counts = counts.group_by([*keys, SLOT]).agg(pl.col("count").sum())
    grid = counts.select(keys).unique().join(bins, how="cross") if keys else bins
    window = ["window"] if "window" in keys else []
    return (grid.join(counts, on=[*keys, SLOT], how="left", nulls_equal=True)
            .sort([*keys, SLOT], nulls_last=True)
            .select(*segments, "feature", *window, "bin",
                    pl.col("count").fill_null(0).cast(pl.Float64), "lower", "upper"))
