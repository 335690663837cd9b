"""Moving references: each window compared with earlier windows of its own series.

``baseline`` compares every window with the baseline profile. The other modes compare it
with counts of the same segment x feature at an earlier time (docs/references.md):

* ``previous``: the latest earlier window;
* ``rolling``: the counts of the ``k`` latest earlier windows, summed;
* ``same_period``: the window that starts exactly one ``season`` earlier (``"7d"``,
  ``"52w"``).

"Earlier windows" form one timeline per series: the windows of this run's current
histograms and those the history keeps of earlier runs (``histograms.parquet``,
:func:`pipeline.write.history.scan_histograms`; a window both hold takes this run's counts,
a window several earlier runs hold the newest one's). A window serves as a reference only
when it is complete (not ``partial``), has rows, starts at a known time, lies within the
``lookback`` before the window it serves, and was binned with the run's bin layout
(:func:`feature_layouts`): counts binned against another profile are never compared. So no
raw data is ever read again: references are sums of stored counts.

The reference of each window is a histogram table with the current window values in its
``window`` column, which :func:`pipeline.bins.align.align` matches per window
(``by_window=True``). A window without a reference gets a reason instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from pipeline.bins.align import segment_columns
from pipeline.bins.codes import encode, lookup
from pipeline.labels import ALL, MISSING, segment_label_expr, window_label_expr
from pipeline.read.histograms import histogram_runs

#: The type of window starts (and of ``start`` in the history's histograms).
START = pl.Datetime("us", "UTC")
# Window labels written by pipeline.labels, parsed back when the window values are text.
_LABEL_FORMATS = (("%Y-%m-%dT%H:%M:%S%:z", None), ("%Y-%m-%dT%H:%M:%S", "UTC"))
_SERIES = ["segment", "feature"]


def feature_layouts(baseline: pl.DataFrame) -> pl.DataFrame:
    """A fingerprint of each feature's bins in the baseline: ``feature``, ``layout``.

    Two runs share a feature's fingerprint exactly when they bin it into the same bins
    (edges, kept categories, reserved bins), so their counts can be added and compared.

    >>> table = pl.DataFrame({"feature": ["c", "c"], "bin": ["a", "__other__"],
    ...                       "count": [1.0, 2.0]})
    >>> feature_layouts(table)["layout"].str.len_chars().to_list()
    [16]
    """
    edges = [pl.col(c).cast(pl.String).fill_null("") if c in baseline.columns else pl.lit("")
             for c in ("lower", "upper")]
    keys = (baseline.select("feature", key=pl.concat_str(pl.col("bin"), *edges, separator="\t"))
            .unique().sort("feature", "key")
            .group_by("feature", maintain_order=True).agg("key"))
    return pl.DataFrame(
        {"feature": keys["feature"],
         "layout": [hashlib.sha256("\n".join(k).encode()).hexdigest()[:16]
                    for k in keys["key"].to_list()]},
        schema={"feature": pl.String, "layout": pl.String})


def _start(dtype: pl.DataType | None, as_of: datetime, value: pl.Expr) -> pl.Expr:
    """The UTC start of windows ``value`` of type ``dtype`` (``as_of`` without windows;
    null for text that is not a time)."""
    if dtype is None:
        return pl.lit(as_of, START)
    if isinstance(dtype, pl.Datetime):
        aware = (value.dt.replace_time_zone("UTC") if dtype.time_zone is None
                 else value.dt.convert_time_zone("UTC"))
        return aware.dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return value.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    text = value.cast(pl.String)
    return pl.coalesce(
        *(text.str.to_datetime(fmt, time_zone=zone, time_unit="us", strict=False)
          .dt.convert_time_zone("UTC") for fmt, zone in _LABEL_FORMATS),
        text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"))


def scaled_period(period: str, times: int) -> str:
    """``period`` times ``times``, as a duration string.

    >>> scaled_period("1d12h", 4)
    '4d48h'
    """
    return re.sub(r"\d+", lambda m: str(int(m.group()) * times), period)


def window_keys(current: pl.DataFrame, *, as_of: datetime,
                coverage: pl.DataFrame | None = None,
                season: str | None = None) -> pl.DataFrame:
    """One row per segment x window of a run's current histograms, with its labels.

    Parameters
    ----------
    current : pl.DataFrame
        The run's current histograms (private segment columns, optional ``window``).
    as_of : datetime
        When the run was created: the start of its one window when it has no windows.
    coverage : pl.DataFrame, optional
        ``window``, ``partial`` (:func:`pipeline.windows.window_coverage`).
    season : str, optional
        ``same_period``'s season: adds ``target`` (the UTC start one season earlier,
        counted in the window's own calendar) and ``target_label``.

    Returns
    -------
    pl.DataFrame
        The segment columns and ``window`` (values as in ``current``), ``segment`` and
        ``label`` (as the drift table labels them), ``start`` (UTC), ``partial``, and with
        a season ``target`` and ``target_label``.
    """
    segments = segment_columns(current)
    dtype = current.schema.get("window")
    columns = [*segments, *(["window"] if dtype is not None else [])]
    # without segments or windows the run has one window; the distinct windows are found
    # on the first row of each run of rows of one segment x window (few at scale)
    keys = (current.select(columns)[histogram_runs(current, columns)].unique() if columns
            else pl.DataFrame({"_": [0]}))
    window = pl.col("window")
    earlier = window.dt.offset_by(f"-{season}") if season and isinstance(
        dtype, pl.Datetime | pl.Date) else None
    keys = keys.with_columns(
        segment_label_expr(segments), window_label_expr(dtype).alias("label"),
        _start(dtype, as_of, window).alias("start"),
        *([] if season is None else [
            (pl.lit(None, START) if earlier is None else _start(dtype, as_of, earlier))
            .alias("target"),
            (pl.lit(None, pl.String) if earlier is None else window_label_expr(dtype, earlier))
            .alias("target_label")]))
    if coverage is not None and dtype is not None:
        keys = keys.join(coverage.select("window", "partial"), on="window", how="left")
    else:
        keys = keys.with_columns(partial=pl.lit(False))
    return keys.with_columns(pl.col("partial").fill_null(False)).drop("_", strict=False)


def with_keys(frame: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (rows of the run's current histograms) with the labels of its segment x
    window from :func:`window_keys`."""
    on = [c for c in keys.columns if c in frame.columns and c != "feature"]
    if not on:
        return frame.join(keys, how="cross")
    return frame.join(keys, on=on, how="left", nulls_equal=True)


def history_rows(current: pl.DataFrame, keys: pl.DataFrame,
                 layouts: pl.DataFrame) -> pl.DataFrame:
    """The run's current histograms as the history keeps them (``histograms.parquet``).

    One row per segment x feature x window x bin: ``segment``, ``feature``, ``window``
    (labels), ``start``, ``partial``, ``layout``, ``bin``, ``lower``, ``upper``, ``count``,
    sorted by ``start`` (a reader filtering on it skips whole row groups), then feature and
    segment, the rows of one histogram in their current order. The feature, the labels, the
    layout and the bin are enums of their distinct values: a few values repeated over
    millions of rows, one to four bytes a row.
    """
    n = current.height
    on = [c for c in keys.columns if c in current.columns and c != "feature"]
    # keys are found per run of one histogram's rows (its segment x window x feature), not
    # per row: 20 times fewer at 20 bins a histogram; rows keep their order within a run
    heads = histogram_runs(current, [*on, "feature"])
    lengths = np.diff(np.r_[heads, n])
    first_rows = current.select(*on, "feature")[heads]
    slot = _slots(first_rows, keys, on)
    features, (feature, known) = encode([first_rows["feature"], layouts["feature"]])
    layout_of = np.full(features.len(), -1, dtype=np.int32)
    layout_of[known] = np.arange(layouts.height)
    rank = keys.select(start=pl.col("start").rank("dense").fill_null(keys.height + 1),
                       segment=pl.col("segment").rank("dense").fill_null(keys.height + 1))
    order = ((rank["start"].to_numpy().astype(np.int64)[slot] * features.len() + feature)
             * (keys.height + 2) + rank["segment"].to_numpy()[slot])
    runs = np.argsort(order, kind="stable")
    widths = lengths[runs]
    # the rows of the runs in that order, as polars' index type (each gather would convert
    # other positions again); the run offsets may wrap around below 0, the sums do not
    index = np.uint32 if pl.get_index_type() == pl.UInt32 else np.uint64
    positions = np.repeat((heads[runs] - np.cumsum(widths) + widths).astype(index), widths)
    positions += np.arange(n, dtype=index)
    at = pl.Series(positions)
    del positions
    layout = pl.Series(layout_of[feature])
    # windows without a start (labels) repeat a null, untouched: not 10^7 gathered nulls
    timeless = keys["start"].null_count() == keys.height
    by_slot = keys.select(_enum(keys["segment"]), _enum(keys["label"]).alias("window"),
                          *([] if timeless else ["start"]), "partial")[slot]
    by_run = by_slot.with_columns(
        _enum(features).gather(feature).alias("feature"),
        _enum(layouts["layout"]).gather(layout.set(layout < 0, None)))
    by_row = by_run.select(pl.all().gather(pl.Series(np.repeat(runs.astype(index), widths))))
    if timeless:
        by_row = by_row.with_columns(
            pl.repeat(None, n, dtype=keys.schema["start"], eager=True).alias("start"))
    bins, (bin_codes,) = encode([current["bin"]])

    def edge(name: str) -> pl.Series:
        if name in current.columns:
            return current[name].cast(pl.Float64).gather(at)
        return pl.select(pl.repeat(None, n, dtype=pl.Float64).alias(name)).to_series()

    return by_row.select("segment", "feature", "window", "start", "partial", "layout").hstack([
        pl.Series("bin", bin_codes).cat.to(pl.Enum(bins)).gather(at), edge("lower"),
        edge("upper"), current["count"].cast(pl.Float64).gather(at)])


def _enum(labels: pl.Series) -> pl.Series:
    """``labels`` (text or categories) as an Enum of their distinct values: the narrowest
    codes (one byte a row for up to 256 values)."""
    return labels.cast(pl.Enum(labels.unique().drop_nulls().cast(pl.String).sort()))


def _slots(current: pl.DataFrame, keys: pl.DataFrame, on: list[str]) -> np.ndarray:
    """The row of ``keys`` (:func:`window_keys`) holding each current row's segment x
    window (the key columns ``on``), by integer codes: a join on the text keys of 10^7 rows
    costs seconds and a copy of them."""
    if not on:  # no segments, no windows: ``keys`` is the run's one window
        return np.zeros(current.height, dtype=np.int64)
    coded = [encode([current[c], keys[c]]) for c in on]
    return lookup(np.column_stack([codes[0] for _, codes in coded]),
                  np.column_stack([codes[1] for _, codes in coded]),
                  [values.len() for values, _ in coded])


def read_earlier(scan: pl.LazyFrame, layouts: pl.DataFrame, *, since: datetime | None,
                 starts: Sequence[datetime] = ()) -> pl.DataFrame:
    """The earlier runs' histograms a run may use, loaded: only what can serve.

    Parameters
    ----------
    scan : pl.LazyFrame
        :func:`pipeline.write.history.scan_histograms`.
    layouts : pl.DataFrame
        The run's :func:`feature_layouts`: rows of other features or bin layouts are
        left out.
    since : datetime, optional
        Only windows starting at or after it (the lookback before the run's first window).
    starts : sequence of datetime
        Windows starting at these times are read whatever ``since`` says (``same_period``).
    """
    rows = scan.join(layouts.lazy(), on=["feature", "layout"], how="semi")
    if since is not None:
        rows = rows.filter((pl.col("start") >= since)
                           | pl.col("start").is_in(pl.Series(list(starts), dtype=START)
                                                   .implode()))
    return rows.collect(engine="streaming")


@dataclass(frozen=True)
class Timeline:
    """The windows of every series that can serve as references, and their counts.

    Attributes
    ----------
    points : pl.DataFrame
        One row per usable window: ``segment``, ``feature``, ``window`` (label), ``start``,
        ``index`` (its rank in its series by start, from 0), ``run_order`` (null: this run).
    bins : pl.DataFrame
        The counts of those windows and of every window of this run (partial ones too):
        ``segment``, ``feature``, ``window``, ``start``, ``partial``, ``run_order``,
        ``bin``, ``lower``, ``upper``, ``count``.
    """

    points: pl.DataFrame
    bins: pl.DataFrame


def timeline(current: pl.DataFrame, keys: pl.DataFrame, earlier: pl.DataFrame | None,
             features: Sequence[str]) -> Timeline:
    """The usable windows of ``features``: this run's and the history's (:class:`Timeline`).

    A window this run holds takes this run's counts; one several earlier runs hold, the
    newest run's. Partial windows, windows without rows and windows that do not start at
    a known time are left out.
    """
    edges = [pl.col(c) if c in current.columns else pl.lit(None, pl.Float64).alias(c)
             for c in ("lower", "upper")]
    run_bins = (with_keys(current.filter(pl.col("feature").is_in(list(features))), keys)
                .select("segment", "feature", pl.col("label").alias("window"), "start",
                        "partial", "bin", *(e.cast(pl.Float64) for e in edges),
                        pl.col("count").cast(pl.Float64), run_order=pl.lit(None, pl.Int64)))
    parts = [run_bins]
    if earlier is not None and earlier.height:
        # Without windows each earlier run is a point of its own, named by its time.
        runs = pl.format("run of {}", pl.col("start").dt.to_string("%Y-%m-%dT%H:%M:%SZ"))
        newest = (earlier.filter(pl.col("feature").is_in(list(features)))
                  .with_columns(window=pl.when(pl.col("window") == ALL).then(runs)
                                .otherwise("window"))
                  .filter(pl.col("run_order") == pl.col("run_order").max()
                          .over([*_SERIES, "window"])))
        parts.append(newest.join(run_bins.select(*_SERIES, "window").unique(),
                                 on=[*_SERIES, "window"], how="anti")
                     .select(run_bins.columns))
    bins = pl.concat(parts, how="vertical_relaxed")
    points = (bins.group_by(*_SERIES, "window")
              .agg(pl.col("start", "partial", "run_order").first(), total=pl.col("count").sum())
              .filter(~pl.col("partial") & (pl.col("total") > 0) & pl.col("start").is_not_null())
              .sort(*_SERIES, "start")
              .with_columns(index=pl.int_range(pl.len(), dtype=pl.Int64).over(_SERIES))
              .select(*_SERIES, "window", "start", "index", "run_order"))
    return Timeline(points, bins.select(*_SERIES, "window", "start", "partial", "run_order",
                                        "bin", "lower", "upper", "count"))


def earlier_windows(windows: pl.DataFrame, line: Timeline, *, count: int,
                    lookback: str | None) -> pl.DataFrame:
    """The ``count`` latest usable windows before each of ``windows`` (fewer when there
    are fewer), within ``lookback`` before it.

    Parameters
    ----------
    windows : pl.DataFrame
        ``segment``, ``feature``, ``window`` (label), ``start`` of the windows to serve.
    line : Timeline
    count : int
        1 for ``previous``, k for ``rolling`` (and for the trends' bounds).
    lookback : str, optional
        A duration: older windows never serve.

    Returns
    -------
    pl.DataFrame
        ``segment``, ``feature``, ``window`` (the window served), ``reference`` (the label
        of a window serving it), ``start`` (of that window).
    """
    points = line.points.sort("start")
    latest = (windows.filter(pl.col("start").is_not_null()).sort("start")
              .join_asof(points.select(*_SERIES, "start", "index"), on="start", by=_SERIES,
                         strategy="backward", allow_exact_matches=False, check_sortedness=False)
              .filter(pl.col("index").is_not_null()))
    picked = (latest.select(*_SERIES, "window", served="start",
                            index=pl.int_ranges(pl.max_horizontal(pl.col("index") - count + 1, 0),
                                                pl.col("index") + 1))
              .explode("index")
              .join(points.select(*_SERIES, "index", reference="window", ref_start="start"),
                    on=[*_SERIES, "index"]))
    if lookback is not None:
        picked = picked.filter(pl.col("ref_start")
                               >= pl.col("served").dt.offset_by(f"-{lookback}"))
    return picked.select(*_SERIES, "window", "reference", start="ref_start")


@dataclass(frozen=True)
class References:
    """The reference of every window of one mode.

    Attributes
    ----------
    histograms : pl.DataFrame
        Histogram long format, one histogram per current window that has a reference: the
        segment columns, ``feature``, ``window`` (the current window values), ``bin``,
        ``lower``, ``upper``, ``count``; for :func:`pipeline.bins.align.align` with
        ``by_window=True``.
    windows : pl.DataFrame
        One row per segment x feature x window of the mode's features: ``segment``,
        ``feature``, ``window`` (labels), ``reference_windows`` (the labels of the windows
        summed, oldest first; null without a reference) and ``reason`` (why there is no
        reference; null when there is one).
    """

    histograms: pl.DataFrame
    windows: pl.DataFrame


def build_references(current: pl.DataFrame, keys: pl.DataFrame, line: Timeline, *,
                     mode: str, features: Sequence[str], rolling_windows: int = 7,
                     season: str | None = None, lookback: str | None = None,
                     baseline: pl.DataFrame | None = None) -> References:
    """The reference histogram of each window of ``features`` under ``mode``.

    Parameters
    ----------
    current : pl.DataFrame
        The run's current histograms.
    keys : pl.DataFrame
        :func:`window_keys` of ``current`` (with the ``season`` for ``same_period``).
    line : Timeline
        :func:`timeline` of ``current`` and the earlier runs' histograms.
    mode : {"previous", "rolling", "same_period"}
    features : sequence of str
        The features checked with this mode.
    rolling_windows : int
        k of ``rolling``.
    season : str, optional
        ``same_period``'s distance (required for it).
    lookback : str, optional
        How far back ``previous`` and ``rolling`` look (a duration; None: no limit).
    baseline : pl.DataFrame, optional
        The baseline histograms: reference bins come in their order (categories are shown
        in the baseline's order, as with the baseline), the others after them by label.

    Returns
    -------
    References

    Examples
    --------
    >>> from datetime import datetime
    >>> current = pl.DataFrame({"feature": "x", "bin": ["a", "b"] * 3,
    ...     "window": [datetime(2024, 6, d) for d in (1, 1, 2, 2, 3, 3)],
    ...     "count": [5.0, 1.0, 4.0, 2.0, 3.0, 3.0]})
    >>> keys = window_keys(current, as_of=datetime(2024, 6, 4))
    >>> line = timeline(current, keys, None, ["x"])
    >>> refs = build_references(current, keys, line, mode="rolling", features=["x"],
    ...                         rolling_windows=2)
    >>> refs.windows.sort("window").select("window", "reference_windows").rows()[-1]
    ('2024-06-03T00:00:00', ['2024-06-01T00:00:00', '2024-06-02T00:00:00'])
    >>> refs.histograms.filter(pl.col("window").dt.day() == 3).sort("bin")["count"].to_list()
    [9.0, 3.0]
    """
    served = with_keys(current.filter(pl.col("feature").is_in(list(features)))
                       .select(*[c for c in keys.columns if c in current.columns], "feature")
                       .unique(), keys)
    windows = served.select(*_SERIES, pl.col("label").alias("window"), "start",
                            *(["target", "target_label"] if "target" in keys.columns else []))
    if mode == "same_period":
        if season is None:
            raise ValueError("same_period needs a season")
        picked = (windows.filter(pl.col("target").is_not_null())
                  .join(line.points.select(*_SERIES, reference="window", target="start"),
                        on=[*_SERIES, "target"])
                  .select(*_SERIES, "window", "reference", start="target"))
    elif mode in ("previous", "rolling"):
        picked = earlier_windows(windows, line, lookback=lookback,
                                 count=1 if mode == "previous" else rolling_windows)
    else:
        raise ValueError(f"unknown reference mode {mode!r}")
    summary = (windows.join(
        picked.sort("start").group_by(*_SERIES, "window").agg(reference_windows="reference"),
        on=[*_SERIES, "window"], how="left")
        .with_columns(reason=pl.when(pl.col("reference_windows").is_null())
                      .then(_no_reference(mode, season, lookback))))
    sums = (picked.join(line.bins.select(*_SERIES, "bin", "lower", "upper", "count",
                                         reference="window"),
                        on=[*_SERIES, "reference"])
            .group_by(*_SERIES, "window", "bin", "lower", "upper")
            .agg(pl.col("count").sum()))
    segments = segment_columns(current)
    window = ["window"] if "window" in current.columns else []
    histograms = (sums.rename({"window": "label"})
                  .join(served.select(*segments, *window, *_SERIES, "label"),
                        on=[*_SERIES, "label"])
                  .join(_bin_order(baseline), on=["feature", "bin"], how="left")
                  # a fixed order: the same counts always give the same sums
                  .sort(*_SERIES, "label", "_rank", "lower", "bin", nulls_last=True)
                  .select(*segments, "feature", *window, "bin", "lower", "upper", "count"))
    return References(histograms, summary.select(*_SERIES, "window", "reference_windows",
                                                 "reason"))


def _bin_order(baseline: pl.DataFrame | None) -> pl.DataFrame:
    """``feature``, ``bin``, ``_rank``: each bin's first row in the baseline."""
    if baseline is None:
        return pl.DataFrame(schema={"feature": pl.String, "bin": pl.String,
                                    "_rank": pl.UInt32})
    return (baseline.with_row_index("_rank").group_by("feature", "bin")
            .agg(pl.col("_rank").min()))


def _no_reference(mode: str, season: str | None, lookback: str | None) -> pl.Expr:
    """Why a window has no reference under ``mode``."""
    within = "" if lookback is None else f" within the lookback ({lookback}) before it"
    untimed = (pl.when(pl.col("window") == MISSING)
               .then(pl.lit("rows without a timestamp have no earlier window"))
               .when(pl.col("start").is_null())
               .then(pl.format("window '{}' is not a time, so no window comes before it",
                               "window")))
    if mode == "same_period":
        return (untimed.when(pl.col("window") == ALL)
                .then(pl.lit("same_period needs time windows (input.timestamp and "
                             "input.period)"))
                .otherwise(pl.format(f"no complete window one season ({season}) earlier "
                                     "({}) in this run or the history", "target_label")))
    return untimed.otherwise(pl.lit(f"no complete earlier window of this segment and feature"
                                    f"{within} in this run or the history"))
