"""Histogram long tables -> dense baseline/current count arrays over the bin union.

One output row per (segments, feature, window). Each row's bins are the union of its baseline
bins and its current bins (a side without the bin counts 0), in display order. Rows have
different bin counts, so the arrays are padded with zeros to the widest row; because
epsilon smoothing would give padded cells mass, consumers compute on
:meth:`Aligned.groups` (rows of equal width, sliced to that width) and never on padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.bins.layout import display_rank
from pipeline.errors import InputError
from pipeline.formats import HISTOGRAM_COLUMNS
from pipeline.labels import segment_label_expr, window_label_expr

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

_KEYS = ("feature", "bin")


@dataclass(frozen=True)
class Aligned:
    """Dense, row-aligned baseline and current counts.

    Attributes
    ----------
    rows : pl.DataFrame
        One row per output row, in output order (segments, feature, window in time order):
        segment columns (Utf8), ``segment``, ``feature``, ``window`` (Utf8), ``kind``, and
        ``reason`` (why the row cannot be compared, else null).
    cells : pl.DataFrame
        One row per (row, slot) in row-major order: ``row``, ``slot``, ``bin``, ``lower``,
        ``upper``. ``slot`` indexes the columns of the arrays.
    baseline, current : np.ndarray
        float64 counts, shape ``(n_rows, max_bins)``; zero beyond ``n_bins[row]``.
    n_bins : np.ndarray
        int64 number of real bins of each row.
    segments : tuple of str
        Segment columns of the current data.
    """

    rows: pl.DataFrame
    cells: pl.DataFrame
    baseline: np.ndarray
    current: np.ndarray
    n_bins: np.ndarray
    segments: tuple[str, ...]

    def groups(self, mask: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Yield ``(row_indices, width)`` for rows sharing a bin count.

        ``baseline[idx, :width]`` is then an unpadded batch. ``mask`` (boolean, one per row)
        restricts the rows considered; rows without bins are never yielded.
        """
        keep = self.n_bins > 0 if mask is None else mask & (self.n_bins > 0)
        for width in np.unique(self.n_bins[keep]):
            yield np.flatnonzero(keep & (self.n_bins == width)), int(width)


def segment_columns(histograms: pl.DataFrame) -> list[str]:
    """Columns of a histogram long table that identify a segment."""
    return [c for c in histograms.columns if c not in HISTOGRAM_COLUMNS]


def align(baseline: pl.DataFrame, current: pl.DataFrame, *,
          reasons: Mapping[str, str] | None = None) -> Aligned:
    """Align baseline and current histogram long tables into dense arrays.

    Parameters
    ----------
    baseline : pl.DataFrame
        Histogram long format. Its segment columns must be a subset of the current ones
        (none: one global reference for every segment; otherwise each current segment is
        compared with the baseline of its values of those columns); a ``window`` column is
        summed over.
    current : pl.DataFrame
        Histogram long format, optionally with ``window`` and segment columns.
    reasons : mapping of str to str, optional
        Why some features are absent from the current data (e.g. their column type
        changed), by feature: the reason of their rows instead of "not in the current data".

    Returns
    -------
    Aligned
        Rows for every current (segment, window) x feature of either side. A feature
        missing from one side, or a current segment value absent from the baseline, gives a
        row with a ``reason`` instead of stopping the run: such a segment is never compared
        with another segment's or the pooled baseline.

    Raises
    ------
    InputError
        If the baseline has a segment column the current data lacks.
    """
    segments = segment_columns(current)
    base_segments = segment_columns(baseline)
    extra = [c for c in base_segments if c not in segments]
    if extra:
        raise InputError(
            f"the baseline is segmented by {extra} but the current data has segment columns "
            f"{segments or 'none'}; use a baseline without segment columns or with a subset "
            "of the current ones", column=extra[0])
    window = ["window"] if "window" in current.columns else []
    groups = [*segments, *window]
    base = _bins(baseline, base_segments).collect()
    cur = _bins(current, groups).collect()

    features = pl.concat([base.select("feature"), cur.select("feature")]).unique().lazy()
    grid = (_as_text(current.lazy(), segments).select(groups).unique().join(features, how="cross")
            if groups else features)
    rows = (grid.sort([*segments, "feature", *window], nulls_last=True).with_row_index("row")
            .collect())
    # Which (row, side) pairs exist decides the row's reason; bins come from both sides.
    # nulls_equal: a null segment value or window (null timestamp) is a group of its own.
    base_cells = rows.join(base, on=[*base_segments, "feature"], how="inner", nulls_equal=True)
    cur_cells = rows.join(cur, on=[*groups, "feature"], how="inner", nulls_equal=True)
    cells = (
        base_cells.lazy().select("row", "bin", "lower", "upper", b_count="count", b_order="order")
        .join(cur_cells.lazy().select("row", "bin", c_lower="lower", c_upper="upper",
                               c_count="count", c_order="order"),
              on=["row", "bin"], how="full", coalesce=True)
        .with_columns(
            pl.coalesce("lower", "c_lower"), pl.coalesce("upper", "c_upper"),
            pl.col("b_count", "c_count").fill_null(0.0),
            special=display_rank(pl.col("bin")),
        )
        .sort(["row", "special", "lower", "b_order", "c_order", "bin"], nulls_last=True)
        .with_columns(slot=pl.int_range(pl.len(), dtype=pl.Int64).over("row"))
    ).collect()

    n_rows = rows.height
    n_bins = np.zeros(n_rows, dtype=np.int64)
    per_row = cells.group_by("row").agg(
        n=pl.len(),
        numeric=(pl.col("lower").is_not_null() | pl.col("upper").is_not_null()).any())
    n_bins[per_row["row"].to_numpy()] = per_row["n"].to_numpy()
    width = int(n_bins.max(initial=0))
    row_idx, slot = cells["row"].to_numpy(), cells["slot"].to_numpy()
    arrays = []
    for column in ("b_count", "c_count"):
        dense = np.zeros((n_rows, width))
        dense[row_idx, slot] = cells[column].to_numpy()
        arrays.append(dense)

    rows = _describe_rows(rows, per_row, base_cells, cur_cells, base.select(base_segments),
                          segments, current.schema.get("window"), reasons or {})
    return Aligned(rows=rows, cells=cells.select("row", "slot", "bin", "lower", "upper"),
                   baseline=arrays[0], current=arrays[1], n_bins=n_bins,
                   segments=tuple(segments))


def _as_text(frame: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    return frame.with_columns(pl.col(columns).cast(pl.Utf8)) if columns else frame


def _bins(histograms: pl.DataFrame, keys: list[str]) -> pl.LazyFrame:
    """One row per (keys, feature, bin): counts summed (e.g. over baseline windows), edges
    kept, ``order`` = first appearance (the baseline's category order)."""
    optional = {"lower": pl.Float64, "upper": pl.Float64}
    frame = _as_text(histograms.lazy(), [k for k in keys if k != "window"]).with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in optional.items() if name not in histograms.columns
    )
    return (
        frame.with_row_index("order")
        .group_by([*keys, *_KEYS])
        .agg(pl.col("count").cast(pl.Float64).sum(),
             pl.col("lower", "upper").cast(pl.Float64).first(), pl.col("order").min())
    )


def _describe_rows(rows: pl.DataFrame, per_row: pl.DataFrame, base_cells: pl.DataFrame,
                   cur_cells: pl.DataFrame, base_keys: pl.DataFrame, segments: list[str],
                   window_dtype: pl.DataType | None,
                   reasons: Mapping[str, str]) -> pl.DataFrame:
    """Add segment label, Utf8 window, kind and the reason a row cannot be compared.

    ``base_keys`` holds the baseline's segment columns (one row per baseline bin)."""
    def present(frame: pl.DataFrame, key: str | list[str], flag: str) -> pl.LazyFrame:
        return frame.lazy().select(key).unique().with_columns(pl.lit(True).alias(flag))

    base_segments = base_keys.columns
    in_base = present(base_cells, "row", "has_base")
    base_features = present(base_cells, "feature", "feature_in_base")
    cur_features = present(cur_cells, "feature", "feature_in_current")
    # every current segment is known to a global baseline
    known_segment, by_segment = ((present(base_keys, base_segments, "segment_in_base"),
                                  {"on": base_segments, "how": "left", "nulls_equal": True})
                                 if base_segments else
                                 (pl.LazyFrame({"segment_in_base": [True]}), {"how": "cross"}))
    label = segment_label_expr(base_segments)
    reason: Then | ChainedThen = pl.when(~pl.col("feature_in_base")).then(
        pl.format("feature '{}' not in the baseline", "feature"))
    if reasons:
        reason = reason.when(~pl.col("feature_in_current") & pl.col("feature").is_in(
            list(reasons))).then(pl.col("feature").replace_strict(reasons, default=None))
    reason = (
        reason.when(~pl.col("segment_in_base"))
        .then(pl.format("segment {} not in the baseline; rebuild the profile or compare "
                        "globally", label))
        .when(~pl.col("has_base"))
        .then(pl.format("feature '{}' has no baseline for segment '{}'", "feature", label))
        .when(~pl.col("feature_in_current"))
        .then(pl.format("feature '{}' not in the current data", "feature"))
    )
    kind = (pl.when(pl.col("numeric")).then(pl.lit("numeric"))
            .when(pl.col("n").is_not_null()).then(pl.lit("categorical"))
            .otherwise(pl.lit("unknown")))
    return (
        rows.lazy()
        .join(per_row.lazy(), on="row", how="left")
        .join(in_base, on="row", how="left")
        .join(base_features, on="feature", how="left")
        .join(cur_features, on="feature", how="left")
        .join(known_segment, **by_segment)
        .with_columns(pl.col("has_base", "feature_in_base", "feature_in_current",
                             "segment_in_base").fill_null(False))
        .sort("row")
        .select(*segments, segment_label_expr(segments), "feature",
                window_label_expr(window_dtype), kind=kind, reason=reason)
    ).collect()
