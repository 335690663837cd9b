"""Histogram long tables -> dense baseline/current count arrays over the bin union.

One output row per (segments, feature, window). Each row's bins are the union of its baseline
bins and its current bins (a side without the bin counts 0), in display order. Rows have
different bin counts, so the arrays are padded with zeros to the widest row; because
epsilon smoothing would give padded cells mass, consumers compute on
:meth:`Aligned.groups` (rows of equal width, sliced to that width) and never on padding.

Bins are matched by what they hold, not by how they are spelled: numeric bins by their edges
(``lower``/``upper``; a side that has only labels gets its edges from interval labels,
:func:`pipeline.bins.layout.label_edges`), categories and the reserved bins by label. So
``[0.1, 0.3)`` and ``[0.10, 0.30)`` are one bin, while bins of the two sides that overlap
without being equal cannot be aligned and stop the run with an error naming them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from pipeline.bins.layout import display_rank, label_edges
from pipeline.errors import InputError
from pipeline.formats import HISTOGRAM_COLUMNS
from pipeline.labels import MISSING, OTHER, segment_label_expr, segment_name, window_label_expr

# A bin is identified by its edges (numeric bins) or by its label (the others): _LABEL is
# the label of a bin without edges and null for a numeric bin.
_LABEL = "\0label"
_BIN_KEY = ("lower", "upper", _LABEL)
_SHOWN_BINS = 3  # bins named in an error message


@dataclass(frozen=True)
class Aligned:
    """Dense, row-aligned baseline and current counts.

    Attributes
    ----------
    rows : pl.DataFrame
        One row per output row, in output order (segments, feature, window in time order):
        segment columns (Utf8), ``segment``, ``feature``, ``window`` (Utf8), ``coverage``
        (Float64), ``partial`` (Boolean), ``kind``, and ``reason`` (why the row cannot be
        compared, else null).
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


def pool_segments(histograms: pl.DataFrame, keep: Sequence[str]) -> pl.DataFrame:
    """Histograms with the counts added up over every segment column not in ``keep`` (and
    over windows): e.g. a baseline pooled to the segment columns of a run.

    >>> table = pl.DataFrame({"region": ["EU", "US"], "feature": "c", "bin": "a",
    ...                       "count": [1.0, 2.0]})
    >>> pool_segments(table, [])["count"].to_list()
    [3.0]
    """
    edges = [pl.col(c).first() for c in ("lower", "upper") if c in histograms.columns]
    return (histograms.group_by([*keep, "feature", "bin"], maintain_order=True)
            .agg(pl.col("count").sum(), *edges))


def align(baseline: pl.DataFrame, current: pl.DataFrame, *,
          reasons: Mapping[str, str] | None = None,
          coverage: pl.DataFrame | None = None, by_window: bool = False) -> Aligned:
    """Align baseline and current histogram long tables into dense arrays.

    Parameters
    ----------
    baseline : pl.DataFrame
        Histogram long format. Its segment columns must be a subset of the current ones
        (none: one global reference for every segment; otherwise each current segment is
        compared with the baseline of its values of those columns); a ``window`` column is
        summed over, unless ``by_window``.
    current : pl.DataFrame
        Histogram long format, optionally with ``window`` and segment columns.
    reasons : mapping of str to str, optional
        Why some features are absent from the current data (e.g. their column type
        changed), by feature: the reason of their rows instead of "not in the current data".
    coverage : pl.DataFrame, optional
        ``window`` (the current data's window values), ``coverage`` and ``partial`` of each
        window (:func:`pipeline.windows.window_coverage`); without it every row's coverage
        is null and ``partial`` false.
    by_window : bool
        The baseline holds one reference histogram per current window (moving references,
        :mod:`pipeline.bins.references`): its ``window`` column, with the current window
        values, is matched like a segment column instead of summed over.

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
        If the baseline has a segment column the current data lacks, if bins of the two
        sides overlap without being equal (their edges cannot be aligned), or if a numeric
        feature has bins without edges whose labels are not intervals.
    """
    segments = segment_columns(current)
    base_segments = segment_columns(baseline)
    extra = [segment_name(c) for c in base_segments if c not in segments]
    if extra:
        raise InputError(
            f"the baseline is segmented by {extra} but the current data has segment columns "
            f"{[segment_name(c) for c in segments] or 'none'}; use a baseline without segment "
            "columns or with a subset of the current ones", column=extra[0])
    window = ["window"] if "window" in current.columns else []
    groups = [*segments, *window]
    base_keys = [*base_segments, *(window if by_window else [])]
    tables = _with_edges(baseline), _with_edges(current)
    edges = _label_edges(*tables)
    base, cur = pl.collect_all([_bins(tables[0], base_keys, edges.filter(side="baseline")),
                                _bins(tables[1], groups, edges.filter(side="current"))])

    features = pl.concat([base.select("feature"), cur.select("feature")]).unique().lazy()
    grid = (_as_text(current.lazy(), segments).select(groups).unique().join(features, how="cross")
            if groups else features)
    rows = (grid.sort([*segments, "feature", *window], nulls_last=True)
            .with_row_index("row").collect())
    # Which (row, side) pairs exist decides the row's reason; bins come from both sides.
    # nulls_equal: a null segment value or window (null timestamp) is a group of its own.
    base_cells = rows.join(base, on=[*base_keys, "feature"], how="inner", nulls_equal=True)
    cur_cells = rows.join(cur, on=[*groups, "feature"], how="inner", nulls_equal=True)
    # numeric bins meet by their edges, the others by their label (two joins: null keys
    # would make one join several times slower)
    sides = (base_cells.lazy().select("row", "lower", "upper", "bin", b_count="count",
                                      b_order="order"),
             cur_cells.lazy().select("row", "lower", "upper", c_bin="bin", c_count="count",
                                     c_order="order"))
    numeric = [side.filter(pl.col("lower").is_not_null()) for side in sides]
    labelled = [side.filter(pl.col("lower").is_null()).drop("lower", "upper")
                for side in sides]
    cells = (
        pl.concat([numeric[0].join(numeric[1], on=["row", "lower", "upper"], how="full",
                                   coalesce=True),
                   labelled[0].join(labelled[1].rename({"c_bin": "bin"}), on=["row", "bin"],
                                    how="full", coalesce=True)], how="diagonal")
        .with_columns(
            pl.coalesce("bin", "c_bin"), special=display_rank(pl.coalesce("bin", "c_bin")))
        .sort(["row", "special", "lower", "upper", "b_order", "c_order", "bin"],
              nulls_last=True)
        .with_columns(slot=pl.int_range(pl.len(), dtype=pl.Int64).over("row"))
    ).collect()
    _check_overlaps(cells, rows)
    cells = cells.with_columns(pl.col("b_count", "c_count").fill_null(0.0))

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

    described = _describe_rows(rows, per_row, base_cells, cur_cells,
                               base.select(base_segments), segments,
                               current.schema.get("window"), reasons or {}, coverage)
    return Aligned(rows=described, cells=cells.select("row", "slot", "bin", "lower", "upper"),
                   baseline=arrays[0], current=arrays[1], n_bins=n_bins,
                   segments=tuple(segments))


def _as_text(frame: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    return frame.with_columns(pl.col(columns).cast(pl.Utf8)) if columns else frame


def _with_edges(histograms: pl.DataFrame) -> pl.LazyFrame:
    """``histograms`` with ``lower``/``upper`` columns (null when it has none) and ``order``
    (row number: first appearance gives the baseline's category order)."""
    optional = {"lower": pl.Float64, "upper": pl.Float64}
    return histograms.lazy().with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in optional.items() if name not in histograms.columns
    ).with_columns(pl.col("lower", "upper").cast(pl.Float64)).with_row_index("order")


def _label_edges(base: pl.LazyFrame, cur: pl.LazyFrame) -> pl.DataFrame:
    """Edges for bins without edges, from their interval labels: ``side``, ``feature``,
    ``bin``, ``parsed_lower``, ``parsed_upper``, for the features that are numeric.

    A feature is numeric when a bin of either side has edges, or when every bin of both
    sides without edges (the reserved ones aside) has an interval label. A numeric feature
    with a bin that has neither edges nor an interval label cannot be aligned: InputError.
    """
    ordinary = pl.col("lower").is_null() & ~pl.col("bin").is_in([MISSING, OTHER])
    labelled, with_edges = pl.collect_all([
        pl.concat([side.filter(ordinary).group_by("feature", "bin").agg(pl.col("order").min())
                   .with_columns(side=pl.lit(name))
                   for name, side in (("baseline", base), ("current", cur))]),
        pl.concat([side.filter(pl.col("lower").is_not_null()).select("feature").unique()
                   for side in (base, cur)]).unique()])
    parsed = labelled.join(label_edges(labelled["bin"].unique()), on="bin", how="left")
    unparsed = parsed.filter(pl.col("lower").is_null())
    broken = unparsed.join(with_edges, on="feature", how="semi").sort("side", "order")
    if broken.height:
        first = broken.row(0, named=True)
        bins = broken.filter(feature=first["feature"], side=first["side"])["bin"]
        shown = ", ".join(repr(b) for b in bins.head(_SHOWN_BINS))
        raise InputError(
            f"{first['side']} bins {shown}{', ...' * (bins.len() > _SHOWN_BINS)} have no "
            f"lower/upper edges and their labels are not intervals such as '[0.1, 0.3)', while "
            "other bins of this feature are numeric: their bins cannot be aligned; give their "
            "edges or relabel them", feature=first["feature"])
    return (parsed.join(unparsed.select("feature").unique(), on="feature", how="anti")
            .select("side", "feature", "bin", parsed_lower="lower", parsed_upper="upper"))


def _bins(frame: pl.LazyFrame, keys: list[str], edges: pl.DataFrame) -> pl.LazyFrame:
    """One row per (keys, feature, bin key): counts summed (e.g. over baseline windows or
    two spellings of one bin), the first label, ``order`` = first appearance. ``edges``
    (:func:`_label_edges` of this side) fill the edges of bins that have none."""
    frame = _as_text(frame, [k for k in keys if k != "window"])
    if edges.height:
        frame = (frame.join(edges.lazy().drop("side"), on=["feature", "bin"], how="left")
                 .with_columns(pl.coalesce("lower", "parsed_lower"),
                               pl.coalesce("upper", "parsed_upper")))
    label = pl.when(pl.col("lower").is_null()).then(pl.col("bin")).alias(_LABEL)
    return (frame.with_columns(label)
            .group_by([*keys, "feature", *_BIN_KEY])
            .agg(pl.col("bin").first(), pl.col("count").cast(pl.Float64).sum(),
                 pl.col("order").min()))


def _check_overlaps(cells: pl.DataFrame, rows: pl.DataFrame) -> None:
    """Numeric bins of a row (both sides' union, sorted by edges) must each start where the
    previous one ended or later: overlapping bins cannot be aligned."""
    previous = {f"previous_{c}": pl.col(c).shift()
                for c in ("row", "bin", "upper", "b_count", "c_count")}
    clash = (cells.filter(pl.col("lower").is_not_null())  # sorted by row, then edges
             .with_columns(**previous)
             .filter((pl.col("row") == pl.col("previous_row"))
                     & (pl.col("lower") < pl.col("previous_upper"))))
    if clash.height == 0:
        return
    first = clash.row(0, named=True)

    def side(prefix: str) -> str:
        counts = (first[f"{prefix}b_count"] is not None, first[f"{prefix}c_count"] is not None)
        return {(True, False): "baseline", (False, True): "current"}.get(
            counts, "baseline and current")

    feature = rows.filter(pl.col("row") == first["row"])["feature"][0]
    raise InputError(
        f"{side('previous_')} bin {first['previous_bin']!r} and {side('')} bin "
        f"{first['bin']!r} overlap without having the same edges, so the two sides' bins "
        "cannot be aligned; bin both sides with the same edges", feature=feature)


def _describe_rows(rows: pl.DataFrame, per_row: pl.DataFrame, base_cells: pl.DataFrame,
                   cur_cells: pl.DataFrame, base_keys: pl.DataFrame, segments: list[str],
                   window_dtype: pl.DataType | None, reasons: Mapping[str, str],
                   coverage: pl.DataFrame | None) -> pl.DataFrame:
    """Add segment label, Utf8 window, coverage, kind and the reason a row cannot be
    compared.

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
    described = rows.lazy()
    if coverage is not None and window_dtype is not None:
        described = described.join(coverage.lazy().select("window", "coverage", "partial"),
                                   on="window", how="left")
    else:
        described = described.with_columns(coverage=pl.lit(None, dtype=pl.Float64),
                                           partial=pl.lit(False))
    return (
        described
        .join(per_row.lazy(), on="row", how="left")
        .join(in_base, on="row", how="left")
        .join(base_features, on="feature", how="left")
        .join(cur_features, on="feature", how="left")
        .join(known_segment, **by_segment)
        .with_columns(pl.col("has_base", "feature_in_base", "feature_in_current",
                             "segment_in_base").fill_null(False))
        .sort("row")
        .select(*segments, segment_label_expr(segments), "feature",
                window_label_expr(window_dtype), "coverage", pl.col("partial").fill_null(False),
                kind=kind, reason=reason)
    ).collect()
