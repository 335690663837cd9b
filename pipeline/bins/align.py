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

How (for speed and memory at millions of long rows): every key column is encoded once as
integer codes in sort order (segments, windows, features, bin labels, edges; a current
histogram's segments, window and feature once per run of its rows,
:func:`pipeline.read.histograms.histogram_runs`); output rows and cells are then positions
computed with integer arithmetic, and counts are scattered into the arrays with
``bincount``, without joins on text keys or exploded tables. Rows that hold every bin of
their feature, from their baseline row (the common case), take their cells and counts as
they come, without scatters. Only the distinct bin spellings (a small catalogue) are
handled as a table.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl
from polars.expr.whenthen import ChainedThen, Then

from pipeline.bins.codes import combine, dense_codes, encode, lookup
from pipeline.bins.layout import display_rank, label_edges
from pipeline.errors import InputError
from pipeline.formats import HISTOGRAM_COLUMNS
from pipeline.labels import MISSING, OTHER, segment_label_expr, segment_name, window_label_expr
from pipeline.parallel import in_parallel, side_by_side
from pipeline.read.histograms import histogram_runs

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
    bins : pl.DataFrame
        The catalogue of distinct bins: ``bin`` (label), ``lower``, ``upper`` (the edges
        the bin was matched by; null for a category) and ``cell_kind`` (Int8 display rank:
        0 ordinary, 1 ``__other__``, 2 ``__missing__``).
    cell_bins : np.ndarray
        Integer position (int32 when the bins allow) in ``bins`` of every cell, row by row in
        slot order (the cells of row ``r`` are the first ``n_bins[r]`` columns of the arrays).
    baseline, current : np.ndarray
        float64 counts, shape ``(n_rows, max_bins)``; zero beyond ``n_bins[row]``.
    n_bins : np.ndarray
        int64 number of real bins of each row.
    segments : tuple of str
        Segment columns of the current data.
    """

    rows: pl.DataFrame
    bins: pl.DataFrame
    cell_bins: np.ndarray
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

    def cell_mask(self) -> np.ndarray:
        """Boolean mask of the real cells in the arrays: ``array[mask]`` lists every cell's
        value row by row in slot order, like :attr:`cell_bins`."""
        return np.arange(self.baseline.shape[1]) < self.n_bins[:, None]

    @property
    def cells(self) -> pl.DataFrame:
        """One row per (row, slot) in row-major order: ``row``, ``slot``, ``bin``,
        ``lower``, ``upper``."""
        row = np.repeat(np.arange(len(self.n_bins), dtype=np.uint32), self.n_bins)
        starts = np.cumsum(self.n_bins) - self.n_bins
        return pl.DataFrame({"row": row, "slot": np.arange(len(row)) - starts[row]}).hstack(
            self.bins[self.cell_bins].select("bin", "lower", "upper"))


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
    base_keys = [*base_segments, *(window if by_window else [])]
    # the keys of a current histogram are coded on the first row of each run of its rows
    # (20 times fewer rows than its bins at 20 bins a histogram)
    heads = histogram_runs(current, [*segments, *window, "feature"])
    lengths = np.diff(np.r_[heads, current.height])
    first_rows = current.select(*segments, *window, "feature")[heads]
    # segments are matched as text; windows in their own type (they sort in time order)
    def coded(column: str) -> tuple[pl.Series, list[np.ndarray]]:
        sides = [side[column] for side in (baseline, current if column == "bin" else first_rows)
                 if column in side.columns]
        if column in segments:  # categories already stand for their text (encode)
            sides = [side if isinstance(side.dtype, pl.Categorical | pl.Enum)
                     else side.cast(pl.String) for side in sides]
        return encode(sides)

    # the columns are coded side by side; the bins of every long row take longest: first
    columns = ["bin", *segments, *window, "feature"]
    dictionaries, codes = {}, {}
    for column, (values, coded_sides) in zip(columns, in_parallel(coded, columns), strict=True):
        dictionaries[column] = values
        codes[column] = dict(zip(("baseline", "current")[2 - len(coded_sides):], coded_sides,
                                 strict=True))
    n_features = dictionaries["feature"].len()
    sizes = {c: dictionaries[c].len() for c in dictionaries}

    # key codes are dropped as soon as they are used: at millions of rows they dominate memory
    cur_groups, groups = Groups.of([codes[c].pop("current") for c in [*segments, *window]],
                                   [sizes[c] for c in [*segments, *window]], len(heads),
                                   n_segment_columns=len(segments))
    base_groups_of_rows, base_groups = Groups.of(
        [codes[c].pop("baseline") for c in base_keys], [sizes[c] for c in base_keys],
        baseline.height)
    # the baseline group of each current (segments, window), -1 where the baseline has none
    on = [[*segments, *window].index(c) for c in base_keys]
    combo_base = lookup(groups.parts[:, on], base_groups.parts, [sizes[c] for c in base_keys])
    on_segments = [segments.index(c) for c in base_segments]
    known = lookup(groups.parts[:, on_segments], base_groups.parts[:, :len(base_segments)],
                    [sizes[c] for c in base_segments]) >= 0

    head_feature = codes["feature"]["current"]
    cur_rows = groups.row(cur_groups, head_feature, n_features)  # of each run
    del cur_groups
    codes["feature"]["current"] = np.repeat(head_feature, lengths)
    base_rows = base_groups_of_rows * n_features + codes["feature"]["baseline"]
    features_in_current = np.bincount(head_feature, minlength=n_features) > 0
    catalogue = Catalogue.of(baseline, current, codes.pop("feature"), codes.pop("bin"),
                             dictionaries["feature"], dictionaries["bin"])
    combo_of_row, row_feature = groups.of_row(n_features)
    row_base = combo_base[combo_of_row]
    cells = Cells.of(catalogue, cur_rows, lengths, base_rows,
                     np.where(row_base >= 0, row_base * n_features + row_feature, -1),
                     len(base_groups.segment) * n_features, row_feature, current["count"],
                     baseline["count"])
    _check_overlaps(cells, catalogue, dictionaries["feature"], row_feature)

    n_rows = len(row_feature)
    width = int(cells.n_bins.max(initial=0))
    if (cells.n_bins == width).all():  # no padding: the cells, row by row, as they are
        arrays = [counts.reshape(n_rows, width) for counts in (cells.baseline, cells.current)]
    else:
        real = np.arange(width) < cells.n_bins[:, None]
        arrays = []
        for counts in (cells.baseline, cells.current):
            dense = np.zeros((n_rows, width))
            dense[real] = counts
            arrays.append(dense)
    numeric = _any_per_row(catalogue.numeric[cells.bins], cells.n_bins)
    has_base = _any_per_row(cells.in_base, cells.n_bins)
    described = _describe_rows(
        groups.frame(dictionaries, segments, window), combo_of_row, row_feature,
        dictionaries["feature"], base_segments=base_segments,
        kind=np.where(numeric, 0, np.where(cells.n_bins > 0, 1, 2)),
        has_base=has_base, known_segment=known,
        features_in_current=features_in_current,
        window_dtype=current.schema.get("window"), reasons=reasons or {}, coverage=coverage)
    return Aligned(rows=described, bins=catalogue.table, cell_bins=cells.bins,
                   baseline=arrays[0], current=arrays[1], n_bins=cells.n_bins,
                   segments=tuple(segments))


def _representatives(codes: np.ndarray, n: int) -> np.ndarray:
    """One position of each code ``0..n-1`` in ``codes`` (all of them occur)."""
    where = np.zeros(n, dtype=np.int64)
    where[codes] = np.arange(len(codes))
    return where


def _first(codes: np.ndarray, n: int, positions: np.ndarray) -> np.ndarray:
    """The smallest of ``positions`` at each code ``0..n-1`` (int64 max where absent)."""
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, positions)
    return first


@dataclass(frozen=True)
class Groups:
    """The distinct (segments, window) tuples of one side, in sort order (nulls last).

    Output rows are ordered by segments, then feature, then window: the rows of segment
    tuple ``s`` start at ``first[s] * n_features``, and the row of window position ``p``
    within it and feature ``f`` is ``start + f * windows[s] + p``.
    """

    parts: np.ndarray  # (groups, columns): the column codes of each group
    segment: np.ndarray  # segment tuple of each group

    @classmethod
    def of(cls, columns: Sequence[np.ndarray], sizes: Sequence[int], length: int, *,
           n_segment_columns: int = 0) -> tuple[np.ndarray, Groups]:
        """The group of each long row, and the groups."""
        codes, n = combine(columns, sizes, length)
        if not columns:  # one group: every row, even of an empty table
            n = 1
        where = _representatives(codes, n) if columns else np.zeros(n, dtype=np.int64)
        parts = np.stack([c[where] for c in columns], axis=1) if columns and n \
            else np.zeros((n, len(columns)), dtype=np.int64)
        segment, _ = combine(list(parts[:, :n_segment_columns].T),
                              sizes[:n_segment_columns], n)
        return codes, cls(parts, segment)

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        windows = np.bincount(self.segment, minlength=len(self.segment))[self.segment]
        first = np.flatnonzero(np.r_[True, self.segment[1:] != self.segment[:-1]])
        start = np.repeat(first, np.diff(np.r_[first, len(self.segment)]))
        return windows, start

    def row(self, group: np.ndarray, feature: np.ndarray, n_features: int) -> np.ndarray:
        """Output row of each (group, feature)."""
        windows, start = self._layout()
        position = np.arange(len(self.segment)) - start
        row = windows[group]
        row *= feature
        row += (start * n_features + position)[group]
        return row

    def of_row(self, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """The group and the feature code of each output row."""
        group = np.repeat(np.arange(len(self.segment)), n_features)
        feature = np.tile(np.arange(n_features), len(self.segment))
        rows = self.row(group, feature, n_features)
        combo, features = np.empty_like(rows), np.empty_like(rows)
        combo[rows], features[rows] = group, feature
        return combo, features

    def frame(self, dictionaries: Mapping[str, pl.Series], segments: Sequence[str],
              window: Sequence[str]) -> pl.DataFrame:
        """``combo`` (the group) and its segment (text) and window values."""
        return pl.DataFrame({"combo": np.arange(len(self.segment))}).with_columns(
            dictionaries[c][self.parts[:, i]].alias(c)
            for i, c in enumerate([*segments, *window]))


@dataclass(frozen=True)
class Catalogue:
    """The distinct bin spellings (feature, label, edges) of both sides and the bin each
    is matched as: numeric bins by their edges, the others by their label.

    ``spelling`` holds the spelling of every long row, baseline rows first; bins
    are numbered by feature, then display order as far as it is the same in every row
    (:class:`Cells` puts the rows where it is not in order)."""

    table: pl.DataFrame  # bin, lower, upper, cell_kind per spelling
    spelling: np.ndarray
    local: np.ndarray  # bin of each spelling within its feature
    per_feature: np.ndarray  # number of bins of each feature
    numeric: np.ndarray  # per spelling: matched by its edges
    rank: np.ndarray  # per spelling: display-order key but for the first appearance

    @classmethod
    def of(cls, baseline: pl.DataFrame, current: pl.DataFrame,
           features: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
           feature_names: pl.Series, label_names: pl.Series) -> Catalogue:
        sides = [s for s in ("baseline", "current") if s in features]
        parts = [np.concatenate([features[s] for s in sides]),
                 np.concatenate([labels[s] for s in sides])]
        sizes = [feature_names.len(), label_names.len()]
        edge_values = {}
        for name in ("lower", "upper"):
            if any(name in side.columns for side in (baseline, current)):
                columns = [side[name].cast(pl.Float64) if name in side.columns
                           else pl.repeat(None, side.height, dtype=pl.Float64, eager=True)
                           for side in (baseline, current)]
                values, coded = encode([*columns, pl.Series([None], dtype=pl.Float64)])
                edge_values[name] = values
                parts.append(np.concatenate(coded[:2]))
                sizes.append(values.len())
        spelling, n = combine(parts, sizes, len(parts[0]))
        # the first row of each spelling (its parts, from any of its rows): the current rows
        # (millions) are only searched for spellings the baseline lacks
        first = _first(spelling[:baseline.height], n, np.arange(baseline.height))
        if (first == np.iinfo(np.int64).max).any():
            first = np.minimum(first, _first(spelling[baseline.height:], n,
                                             np.arange(baseline.height, len(spelling))))
        feature = parts[0][first]
        table = pl.DataFrame({
            "feature": feature, "bin": label_names[parts[1][first]],
            **{name: values[parts[i][first]] for i, (name, values)
               in enumerate(edge_values.items(), start=2)}})
        for name in ("lower", "upper"):
            if name not in table.columns:
                table = table.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
        table = _with_label_edges(table, first, baseline.height, feature_names)
        numeric = table["lower"].is_not_null()
        special = table.select(display_rank(pl.col("bin")))["bin"]
        # bins: numeric by (feature, edges), others by (feature, label); numbered by feature,
        # kind of cell, edges, then first appearance (the baseline's order first)
        keyed = table.with_columns(
            numeric=numeric, cell_kind=special, first=first,
            label=pl.when(~numeric).then("bin"))
        bins = (keyed.group_by("feature", "lower", "upper", "label")
                .agg(pl.col("cell_kind").min(), pl.col("first").min())
                .sort("feature", "cell_kind", "lower", "upper", "first", nulls_last=True)
                .with_row_index("key"))
        matched = keyed.join(bins.select("feature", "lower", "upper", "label", "key"),
                             on=["feature", "lower", "upper", "label"], how="left",
                             nulls_equal=True, maintain_order="left")
        key = matched["key"].to_numpy().astype(np.int64)
        per_feature = np.bincount(bins["feature"].to_numpy(), minlength=feature_names.len())
        starts = np.cumsum(per_feature) - per_feature
        numbers, kinds = numeric.to_numpy(), special.to_numpy().astype(np.int64)
        # kind of cell, then numeric bins (by edges, as numbered) before the others
        rank = (2 * kinds + ~numbers) * (len(spelling) + len(key) + 1) + np.where(numbers, key, 0)
        return cls(table=keyed.select("bin", "lower", "upper", "cell_kind"),
                   spelling=spelling, local=(key - starts[feature]).astype(np.int32),
                   per_feature=per_feature, numeric=numbers, rank=rank)


def _with_label_edges(table: pl.DataFrame, first: np.ndarray, n_baseline: int,
                      feature_names: pl.Series) -> pl.DataFrame:
    """Spellings with edges for bins without edges, from their interval labels, for the
    features that are numeric.

    A feature is numeric when a bin of either side has edges, or when every bin of both
    sides without edges (the reserved ones aside) has an interval label. A numeric feature
    with a bin that has neither edges nor an interval label cannot be aligned: InputError.
    """
    ordinary = pl.col("lower").is_null() & ~pl.col("bin").is_in([MISSING, OTHER])
    parsed = table.with_columns(
        label_edges(table["bin"]).select(parsed_lower="lower", parsed_upper="upper"),
        ordinary=ordinary)
    unparsed = pl.col("ordinary") & pl.col("parsed_lower").is_null()
    with_edges = pl.col("lower").is_not_null().any().over("feature")
    broken = parsed.with_row_index("spelling").filter(unparsed & with_edges)
    if broken.height:
        _broken_labels(broken, first, n_baseline, feature_names)
    usable = pl.col("ordinary") & ~unparsed.any().over("feature")
    return parsed.select(
        "feature", "bin",
        pl.when(usable).then("parsed_lower").otherwise("lower").alias("lower"),
        pl.when(usable).then(pl.coalesce("upper", "parsed_upper")).otherwise("upper")
        .alias("upper"))


def _broken_labels(broken: pl.DataFrame, first: np.ndarray, n_baseline: int,
                   feature_names: pl.Series) -> None:
    """Raise the error for labelled bins of numeric features: the first side (baseline
    first), feature and bins in order of appearance."""
    spelling = broken["spelling"].to_numpy()
    side = np.where(first[spelling] < n_baseline, "baseline", "current")
    ordered = broken.with_columns(side=side, order=first[spelling]).sort("side", "order")
    feature, which = ordered["feature"][0], ordered["side"][0]
    bins = ordered.filter(feature=feature, side=which)["bin"]
    shown = ", ".join(repr(b) for b in bins.head(_SHOWN_BINS))
    raise InputError(
        f"{which} bins {shown}{', ...' * (bins.len() > _SHOWN_BINS)} have no "
        f"lower/upper edges and their labels are not intervals such as '[0.1, 0.3)', while "
        "other bins of this feature are numeric: their bins cannot be aligned; give their "
        "edges or relabel them", feature=feature_names[int(feature)])


@dataclass(frozen=True)
class Cells:
    """The union of each output row's baseline and current bins, row by row in display
    order: the row, the spelling shown (the baseline's first, else the current's) and the
    counts of each cell."""

    row: np.ndarray
    bins: np.ndarray
    baseline: np.ndarray
    current: np.ndarray
    in_base: np.ndarray
    in_current: np.ndarray
    n_bins: np.ndarray

    @classmethod
    def of(cls, catalogue: Catalogue, cur_rows: np.ndarray, lengths: np.ndarray,
           base_rows: np.ndarray, row_base: np.ndarray, n_base_rows: int,
           row_feature: np.ndarray, cur_counts: pl.Series, base_counts: pl.Series) -> Cells:
        """Cells from the output row of each run of current long rows (``lengths`` rows
        each), the baseline row (group x feature) of each baseline long row and of each
        output row (-1: none)."""
        n_base = len(base_rows)
        spellings = catalogue.spelling
        # baseline: counts summed per (baseline row, bin); first appearance of each
        base_key = catalogue.local[spellings[:n_base]]
        base_widths = catalogue.per_feature[np.arange(n_base_rows) % len(catalogue.per_feature)]
        base_offsets = np.r_[0, np.cumsum(base_widths)]
        base_cell, n_base_cells = dense_codes(base_offsets[base_rows] + base_key,
                                         int(base_offsets[-1]))
        base_first = _first(base_cell, n_base_cells, np.arange(n_base))
        base_count = np.bincount(base_cell, weights=base_counts.cast(pl.Float64).to_numpy(),
                                 minlength=n_base_cells)
        per_base_row = np.bincount(base_rows[base_first], minlength=n_base_rows)
        base_start = np.cumsum(per_base_row) - per_base_row
        base_local = catalogue.local[spellings[base_first]]
        # every output row with a baseline gets its baseline row's cells; a cell is at
        # offsets[row] + its bin within the feature (few large temporaries: at millions of
        # cells, fresh memory costs as much as the arithmetic)
        offsets = np.r_[0, np.cumsum(catalogue.per_feature[row_feature])]
        # positions of cells as int32 when they fit: half the fresh memory of int64
        position = np.int32 if offsets[-1] < np.iinfo(np.int32).max else np.int64
        has = np.flatnonzero(row_base >= 0)
        widths = per_base_row[row_base[has]]
        shared = np.repeat((base_start[row_base[has]] - np.cumsum(widths) + widths)
                           .astype(position), widths)
        shared += np.arange(len(shared), dtype=position)
        cur_at = np.repeat(offsets[cur_rows].astype(position), lengths)
        cur_at += catalogue.local[spellings[n_base:]]
        counts = cur_counts.cast(pl.Float64).to_numpy()
        # display order: kind of cell, edges (numeric bins), then first appearance (other
        # bins); the catalogue numbered bins in that order unless rows disagree on it
        if len(has) == len(row_feature) \
                and np.array_equal(widths, catalogue.per_feature[row_feature]):
            # the common case: every row holds every bin of its feature, its baseline row's
            # in their order. A cell is then its position, and the display order is checked
            # once per baseline cell (no 10^7-cell temporaries: fresh memory costs most)
            n_cells, n_bins, cell = int(offsets[-1]), np.diff(offsets), cur_at
            base_bins = spellings[base_first]
            base_order = _display_order(catalogue, base_bins, base_first)
            base_row = np.repeat(np.arange(n_base_rows), per_base_row)
            gathered = [base_count, base_bins,
                        *([base_order] if _disordered(base_row, base_order) else [])]
            # passes over every cell, side by side; indexed, not np.take: take copies int32
            # positions as int64 first (80 MB more at 10^7 cells)
            row, baseline, bins, *orders = side_by_side(
                partial(np.repeat, np.arange(len(row_feature), dtype=np.int32), n_bins),
                *(partial(operator.getitem, values, shared) for values in gathered))
            in_base, order = np.ones(n_cells, dtype=bool), (orders or [None])[0]
        else:
            # every output row with a baseline gets its baseline row's cells; a cell is at
            # offsets[row] + its bin within the feature, numbered over the positions seen
            at = np.repeat(offsets[has], widths)
            at += base_local[shared]
            seen = np.zeros(int(offsets[-1]) + 1, dtype=bool)
            seen[at] = True
            seen[cur_at] = True
            before = np.cumsum(seen)
            before -= seen  # cells before each position
            n_cells = int(before[-1])
            n_bins = np.diff(before[offsets])
            shared_cell, cell = before[at], before[cur_at]
            del at, cur_at, before, seen
            row = np.repeat(np.arange(len(row_feature), dtype=np.int32), n_bins)
            baseline = np.zeros(n_cells)
            baseline[shared_cell] = base_count[shared]
            in_base = _marked(shared_cell, n_cells)
            # the first appearance of each cell: its baseline's, else its current one's
            first = np.empty(n_cells, dtype=np.int64)
            first[shared_cell] = base_first[shared]
            only = np.flatnonzero(~in_base[cell])
            first[~in_base] = _first(cell[only], n_cells, n_base + only)[~in_base]
            bins = spellings[first]
            order = _display_order(catalogue, bins, first)
            order = order if _disordered(row, order) else None
        del shared
        # long rows already in cell order (common) are taken as they are, not scattered
        if len(cell) == n_cells and (cell[1:] > cell[:-1]).all():
            # polars' own (read-only) array, not a copy: nothing writes into the arrays
            current = counts
            in_current = np.ones(n_cells, dtype=bool)
        else:
            in_current = _marked(cell, n_cells)
            if np.count_nonzero(in_current) == len(cell):
                # each cell of one long row (the common case): its count is placed, not
                # summed (a bincount copies the cells as intp and costs up to 10x more)
                current = np.zeros(n_cells)
                current[cell] = counts
            else:  # a numeric bin spelt two ways in one histogram: its rows add up
                current = np.bincount(cell, weights=counts, minlength=n_cells)
        del cell
        if order is not None:
            sort = np.lexsort((order, row))
            bins, baseline, current = bins[sort], baseline[sort], current[sort]
            in_base, in_current = in_base[sort], in_current[sort]
        return cls(row, bins, baseline, current, in_base, in_current, n_bins)


def _marked(positions: np.ndarray, n: int) -> np.ndarray:
    """Boolean array of length ``n``, true at ``positions``."""
    marked = np.zeros(n, dtype=bool)
    marked[positions] = True
    return marked


def _any_per_row(flags: np.ndarray, n_bins: np.ndarray) -> np.ndarray:
    """Whether any of each row's cells has its flag (``flags`` of the cells row by row,
    ``n_bins`` of each row)."""
    hit = np.zeros(len(n_bins), dtype=bool)
    full = n_bins > 0
    if full.any():  # each non-empty row's cells run up to the next non-empty row's
        hit[full] = np.logical_or.reduceat(flags, (np.cumsum(n_bins) - n_bins)[full])
    return hit


def _display_order(catalogue: Catalogue, bins: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The display-order key of cells of spellings ``bins`` first seen at ``first`` (which
    it reuses)."""
    order = first
    order *= ~catalogue.numeric[bins]  # numeric bins keep their rank alone
    order += catalogue.rank[bins]
    return order


def _disordered(row: np.ndarray, order: np.ndarray) -> bool:
    """Whether ``order`` falls somewhere within a row (cells listed row by row)."""
    return bool(((row[1:] == row[:-1]) & (order[1:] < order[:-1])).any())


def _check_overlaps(cells: Cells, catalogue: Catalogue, feature_names: pl.Series,
                    row_feature: np.ndarray) -> None:
    """Numeric bins of a row (both sides' union, sorted by edges) must each start where the
    previous one ended or later: overlapping bins cannot be aligned."""
    numeric = np.flatnonzero(catalogue.numeric[cells.bins])
    lower = catalogue.table["lower"].to_numpy()[cells.bins[numeric]]
    upper = catalogue.table["upper"].to_numpy()[cells.bins[numeric]]
    row = cells.row[numeric]
    with np.errstate(invalid="ignore"):
        clash = np.flatnonzero((row[1:] == row[:-1]) & (lower[1:] < upper[:-1]))
    if not len(clash):
        return
    previous, this = numeric[clash[0]], numeric[clash[0] + 1]

    def side(cell: int) -> str:
        return {(True, False): "baseline", (False, True): "current"}.get(
            (bool(cells.in_base[cell]), bool(cells.in_current[cell])), "baseline and current")

    labels = catalogue.table["bin"]
    raise InputError(
        f"{side(previous)} bin {labels[int(cells.bins[previous])]!r} and {side(this)} bin "
        f"{labels[int(cells.bins[this])]!r} overlap without having the same edges, so the "
        "two sides' bins cannot be aligned; bin both sides with the same edges",
        feature=feature_names[int(row_feature[cells.row[this]])])


def _describe_rows(combos: pl.DataFrame, combo_of_row: np.ndarray, row_feature: np.ndarray,
                   features: pl.Series, *, base_segments: Sequence[str], kind: np.ndarray,
                   has_base: np.ndarray, known_segment: np.ndarray,
                   features_in_current: np.ndarray, window_dtype: pl.DataType | None,
                   reasons: Mapping[str, str], coverage: pl.DataFrame | None) -> pl.DataFrame:
    """Segment columns and label, feature, Utf8 window, coverage, kind and the reason a row
    cannot be compared.

    ``combos`` holds the segment (text) and window values of each (segments, window) of
    the current data: labels and coverage are found once per combination, not per row."""
    segments = [c for c in combos.columns if c not in ("combo", "window")]
    described = combos.with_columns(segment_label_expr(segments),
                                    segment_label_expr(base_segments).alias("base_segment"),
                                    known=known_segment)
    if coverage is not None and window_dtype is not None:
        described = described.join(coverage.select("window", "coverage", "partial"),
                                   on="window", how="left", maintain_order="left")
    else:
        described = described.with_columns(coverage=pl.lit(None, dtype=pl.Float64),
                                           partial=pl.lit(False))
    rows = described.with_columns(window_label_expr(window_dtype),
                                  pl.col("partial").fill_null(False))[combo_of_row]
    feature_in_base = np.bincount(row_feature, weights=has_base, minlength=features.len()) > 0
    flags = {"feature_in_base": feature_in_base[row_feature], "has_base": has_base,
             "feature_in_current": features_in_current[row_feature],
             "known": rows["known"].to_numpy()}
    reason: Then | ChainedThen = pl.when(~pl.col("feature_in_base")).then(
        pl.format("feature '{}' not in the baseline", "feature"))
    if reasons:
        reason = reason.when(~pl.col("feature_in_current") & pl.col("feature").is_in(
            list(reasons))).then(pl.col("feature").replace_strict(reasons, default=None))
    reason = (
        reason.when(~pl.col("known"))
        .then(pl.format("segment {} not in the baseline; rebuild the profile or compare "
                        "globally", "base_segment"))
        .when(~pl.col("has_base"))
        .then(pl.format("feature '{}' has no baseline for segment '{}'", "feature",
                        "base_segment"))
        .when(~pl.col("feature_in_current"))
        .then(pl.format("feature '{}' not in the current data", "feature"))
    )
    # reasons are formatted for the rows that have one only
    failing = np.flatnonzero(~np.logical_and.reduce(list(flags.values())))
    explained = rows[failing].with_columns(
        features[row_feature[failing]].alias("feature"),
        *(pl.Series(name, values[failing]) for name, values in flags.items()),
    ).select(reason.alias("reason"))["reason"]
    return rows.select(
        *segments, "segment", features[row_feature].alias("feature"), "window", "coverage",
        "partial", pl.Series("kind", ["numeric", "categorical", "unknown"]).gather(kind),
        pl.Series("reason", [None], dtype=pl.String).extend_constant(None, rows.height - 1)
        .scatter(failing, explained) if rows.height else pl.lit(None, pl.String).alias("reason"))
