"""Dense aligned counts -> the drift table, through batched kl_metrics calls.

All metrics of all rows sharing a bin count come from one ``divergences`` call (see
:meth:`pipeline.bins.align.Aligned.groups` for why rows are grouped by width, not padded).
Besides the plug-in metrics, each row gets the *effect*: the alert metric between the
populations behind the two samples, estimated by :func:`kl_metrics.jackknife` (small-sample
bias removed, with an interval), after giving a categorical baseline its Good-Turing unseen
mass (:mod:`pipeline.measure.unseen`, column ``baseline_unseen``). Decision columns
(thresholds, p/q values, final status) are left for :func:`pipeline.decide.alerts.decide`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import polars as pl

from kl_metrics import divergences, divergences_and_contributions, jackknife
from pipeline.bins.align import Aligned
from pipeline.config import METRICS, DriftConfig
from pipeline.measure.unseen import (
    merged_rows,
    unseen_cells,
    visible_singletons,
    with_unseen_mass,
)
from pipeline.parallel import in_parallel, row_blocks, side_by_side

TOP_BINS = 3
TOP_BIN = pl.Struct({"bin": pl.Utf8, "contribution": pl.Float64,
                     "baseline_share": pl.Float64, "current_share": pl.Float64})
BIN = pl.Struct({"bin": pl.Utf8, "lower": pl.Float64, "upper": pl.Float64,
                 "baseline_count": pl.Float64, "current_count": pl.Float64,
                 "baseline_share": pl.Float64, "current_share": pl.Float64,
                 "contribution": pl.Float64})
#: Columns filled by :func:`pipeline.decide.alerts.decide`.
DECISION_COLUMNS = ("warn_threshold", "critical_threshold", "p_value", "q_value")
#: The effect of each row: the bias-corrected alert metric and its interval.
EFFECT_COLUMNS = ("effect", "effect_low", "effect_high")
#: Most cells of a block of rows measured at once (each thread holds a block's temporaries).
BLOCK_CELLS = 1 << 18
#: Most rows of one chunk of the ``bins`` and ``top_bins`` list columns (:func:`_lists`).
LIST_CHUNK_ROWS = 1 << 17


def compute_drift(aligned: Aligned, config: DriftConfig, *,
                  singletons: pl.DataFrame | None = None) -> pl.DataFrame:
    """Compute every metric, totals, effects and per-bin contributions for each aligned row.

    Parameters
    ----------
    aligned : Aligned
        Output of :func:`pipeline.bins.align.align`.
    config : DriftConfig
        Alert metric, log base, epsilon smoothing and the effect interval's level.
    singletons : pl.DataFrame, optional
        Categories seen exactly once in the baseline, from its profile
        (:meth:`pipeline.bins.profile.Profile.singletons`): the baseline's segment columns,
        ``feature`` and ``singletons`` (null: unknown, e.g. a profile older than the count).
        Without it (a histogram baseline) they are counted from the baseline's own bins.

    Returns
    -------
    pl.DataFrame
        The drift table of docs/architecture.md. ``status`` is ``error`` (no baseline,
        feature missing on one side) or ``insufficient_data`` (no current counts) with a
        ``reason``, else null until :func:`pipeline.decide.alerts.decide` fills it; thresholds and
        p/q values are null.
    """
    n_baseline = aligned.baseline.sum(axis=1)
    n_current = aligned.current.sum(axis=1)
    comparable = (aligned.rows["reason"].is_null().to_numpy()
                  & (n_baseline > 0) & (n_current > 0))
    categorical = (aligned.rows["kind"] == "categorical").to_numpy()
    real = aligned.cell_mask()  # the real cells: here and for the bin lists
    kinds = np.zeros(aligned.baseline.shape, dtype=np.int8)
    kinds[real] = aligned.bins["cell_kind"].to_numpy()[aligned.cell_bins]
    counted = (np.full(len(n_baseline), np.nan) if singletons is None
               else _profile_singletons(aligned, singletons))

    values = {name: np.full(len(n_baseline), np.nan) for name in (*METRICS, *EFFECT_COLUMNS)}
    contributions = np.full(aligned.baseline.shape, np.nan)

    def measure(rows: np.ndarray | slice, width: int) -> None:
        """Metrics, contributions and singletons of ``rows``, of ``width`` bins."""
        current, baseline = aligned.current[rows, :width], aligned.baseline[rows, :width]
        measured, contributions[rows, :width] = divergences_and_contributions(
            current, baseline, config.metric, metrics=METRICS, base=config.log_base,
            eps=config.eps)
        for name, value in measured.items():
            values[name][rows] = value
        if singletons is None:
            counted[rows] = visible_singletons(kinds[rows, :width], baseline)

    def estimate_effects(rows: np.ndarray | slice, width: int) -> None:
        """The effect of ``rows``: on counts whose unseen cells get the unseen share, which
        changes only some rows; the others keep their counts and so their measured value."""
        current, baseline = aligned.current[rows, :width], aligned.baseline[rows, :width]
        share = np.where(categorical[rows], counted[rows] / n_baseline[rows], np.nan)
        cells = unseen_cells(kinds[rows, :width], baseline)
        merged = merged_rows(cells, share)
        value = values[config.metric][rows].copy()
        if merged.any():
            current, baseline = with_unseen_mass(current, baseline, cells, share)
            value[merged] = divergences(current[merged], baseline[merged],
                                        metrics=config.metric, base=config.log_base,
                                        eps=config.eps)[config.metric]
        effect = jackknife(current, baseline, config.metric, base=config.log_base,
                           eps=config.eps, level=config.effect_level, value=value)
        for name, estimate in zip(EFFECT_COLUMNS, effect[1:], strict=True):
            values[name][rows] = estimate

    # One batched call per distinct bin count (zero-total rows are excluded up front because
    # kl_metrics rejects all-zero slices), cut into blocks of rows measured side by side on
    # threads; a block's temporaries (copies of its counts, the jackknife's working arrays)
    # stay small. The metrics are row-wise: blocks give the values of one call, but for the
    # last bits of rows with fractional counts (totals summed by BLAS, in an order that
    # depends on the rows summed together), so the blocks depend on the rows alone, never
    # on the number of threads.
    blocks = [(_positions(rows[block]), width) for rows, width in aligned.groups(comparable)
              for block in row_blocks(len(rows), parts=-(-len(rows) * width // BLOCK_CELLS))]
    in_parallel(lambda block: measure(*block), blocks)
    # the bin lists need only the contributions: built on a thread beside the effects
    lists, *_ = side_by_side(
        partial(_bin_lists, aligned, real, contributions, n_baseline, n_current),
        *(partial(estimate_effects, *block) for block in blocks))
    with np.errstate(divide="ignore", invalid="ignore"):
        unseen = np.where(comparable & categorical, counted / n_baseline, np.nan)

    status = (pl.when(pl.col("reason").is_not_null()).then(pl.lit("error"))
              .when(pl.col("n_baseline") == 0).then(pl.lit("error"))
              .when(pl.col("n_current") == 0).then(pl.lit("insufficient_data")))
    reason = (pl.when(pl.col("reason").is_not_null()).then("reason")
              .when(pl.col("n_baseline") == 0)
              .then(pl.lit("baseline histogram is empty (total count 0)"))
              .when(pl.col("n_current") == 0)
              .then(pl.lit("no current data for this segment and window")))
    table = aligned.rows.with_columns(
        pl.Series("n_baseline", n_baseline, dtype=pl.Float64),
        pl.Series("n_current", n_current, dtype=pl.Float64),
        pl.Series("baseline_unseen", unseen, dtype=pl.Float64, nan_to_null=True),
        *(pl.Series(name, values[name], dtype=pl.Float64, nan_to_null=True)
          for name in (*METRICS, *EFFECT_COLUMNS)),
    ).with_columns(
        metric=pl.lit(config.metric), value=pl.col(config.metric),
        **{name: pl.lit(None, dtype=pl.Float64) for name in DECISION_COLUMNS},
        status=status, window_status=status, reason=reason,
    )
    bins, top_bins = lists
    return table.with_columns(bins=bins, top_bins=top_bins).select(
        *aligned.segments, "segment", "feature", "window", "coverage", "partial", "kind",
        "n_baseline", "n_current", "baseline_unseen", *METRICS, "metric", "value",
        *EFFECT_COLUMNS, *DECISION_COLUMNS, "status", "window_status", "reason", "top_bins",
        "bins",
    )


def _positions(rows: np.ndarray) -> np.ndarray | slice:
    """Row indices (ascending) as a slice when they are consecutive: the arrays' rows are
    then views, not copies."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _profile_singletons(aligned: Aligned, singletons: pl.DataFrame) -> np.ndarray:
    """The profile's singleton count of each row's baseline (NaN where it has none)."""
    keys = [c for c in singletons.columns if c not in ("feature", "singletons")]
    joined = aligned.rows.select(*keys, "feature").join(
        singletons.select(*keys, "feature", pl.col("singletons").cast(pl.Float64)),
        on=[*keys, "feature"], how="left", nulls_equal=True, maintain_order="left")
    return joined["singletons"].fill_null(np.nan).to_numpy()


def _bin_lists(aligned: Aligned, cells: np.ndarray, contributions: np.ndarray,
               n_baseline: np.ndarray, n_current: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """``bins`` (display order) and ``top_bins`` list columns, one entry per row, built
    from the flat cells (row by row) and the list lengths, not row by row.

    ``cells`` is :meth:`Aligned.cell_mask`. When every row is as wide as the arrays, the
    cells are the arrays themselves, flat: the count and contribution columns are then
    views of them (no copies of 10^7 cells), so none of them may change afterwards."""
    full = bool((aligned.n_bins == cells.shape[1]).all())

    def flat(array: np.ndarray) -> np.ndarray:
        return array.reshape(-1) if full else array[cells]

    top_cells, counted = _top_cells(contributions, aligned.n_bins)
    fields = {}
    for side, array, total in (("baseline", aligned.baseline, n_baseline),
                               ("current", aligned.current, n_current)):
        fields[f"{side}_count"] = pl.Series(flat(array))
        with np.errstate(divide="ignore", invalid="ignore"):
            fields[f"{side}_share"] = pl.Series(flat(array / total[:, None]), nan_to_null=True)
    # edges that are null in the whole catalogue (categories only) are repeated, not
    # gathered: untouched, millions of null cells take no memory
    n_cells = len(aligned.cell_bins)
    bins = pl.DataFrame([
        pl.repeat(None, n_cells, dtype=column.dtype, eager=True).alias(column.name)
        if column.null_count() == column.len() else column.gather(aligned.cell_bins)
        for column in aligned.bins.select("bin", "lower", "upper")]).with_columns(
        **fields, contribution=pl.Series(flat(contributions), nan_to_null=True)
    ).select(*BIN.to_schema())
    top = bins.select(*TOP_BIN.to_schema())[top_cells]
    return (_lists(bins.to_struct("bins"), aligned.n_bins).cast(pl.List(BIN)),
            _lists(top.to_struct("top_bins"), counted).cast(pl.List(TOP_BIN)))


def _top_cells(contributions: np.ndarray, n_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell positions of each row's top bins, row by row, and how many each row has:
    the largest contributions first, ties in display order (argmax takes the first); NaN
    (rows not compared) is never a top bin.

    Ranked in `contributions` itself (a copy would be one more array of every cell), which
    is left as it was found."""
    missing = np.isnan(contributions)
    counted = np.minimum(contributions.shape[1] - missing.sum(axis=1), TOP_BINS)
    contributions[missing] = -np.inf
    rows = np.arange(len(contributions))
    picks, values = [], []
    for _ in range(TOP_BINS if contributions.shape[1] else 0):
        pick = contributions.argmax(axis=1)
        picks.append(pick)
        values.append(contributions[rows, pick])
        contributions[rows, pick] = -np.inf
    for pick, value in zip(picks[::-1], values[::-1], strict=True):
        contributions[rows, pick] = value
    contributions[missing] = np.nan
    chosen = np.stack(picks or [np.zeros(len(rows), np.int64)] * TOP_BINS, axis=1)[
        np.arange(TOP_BINS) < counted[:, None]]
    top_rows = np.repeat(rows, counted)
    return (np.cumsum(n_bins) - n_bins)[top_rows] + chosen, counted


def _lists(values: pl.Series, lengths: np.ndarray) -> pl.Series:
    """``values`` cut into consecutive lists of ``lengths`` (zero-copy, through Arrow), in
    chunks of at most ``LIST_CHUNK_ROWS`` lists, each list array holding only its own
    values: polars writes such a column as fast as one read back from Parquet (one chunk
    of every row: the 500,000-row run's ``bins`` took 1.8 s of CPU to write instead of 1.2)."""
    import pyarrow as pa  # only here: the list offsets

    offsets = np.r_[0, np.cumsum(lengths)]
    chunks = []
    for first in range(0, max(len(lengths), 1), LIST_CHUNK_ROWS):
        last = min(first + LIST_CHUNK_ROWS, len(lengths))
        cells = values.slice(int(offsets[first]), int(offsets[last] - offsets[first]))
        # the newest Arrow types keep polars' string views: no copy either way
        # offsets through polars: pa.array on a numpy array imports pandas (0.2 s a run)
        lists = pa.LargeListArray.from_arrays(
            pl.Series(offsets[first:last + 1] - offsets[first], dtype=pl.Int64).to_arrow(),
            cells.to_arrow(compat_level=pl.CompatLevel.newest()))
        chunks.append(pl.Series(values.name, _ArrowArray(lists)))
    return pl.concat(chunks, rechunk=False)


def list_rows(column: pl.Series, rows: np.ndarray) -> pl.Series:
    """``column[rows]`` (any order, repeats allowed) of a list column in chunks, as
    :func:`_lists` builds them, without first joining its chunks into one as a gather does
    (0.4 s for ``bins`` at 500,000 rows): the rows are filtered, then put in order.

    >>> column = pl.concat([pl.Series([[1], [2, 3]]), pl.Series([[4]])], rechunk=False)
    >>> list_rows(column, np.array([2, 0, 2])).to_list()
    [[4], [1], [4]]
    """
    kept = np.zeros(column.len(), dtype=bool)
    kept[rows] = True
    return column.filter(pl.Series(kept)).gather(np.searchsorted(np.flatnonzero(kept), rows))


class _ArrowArray:
    """Only the Arrow C data interface of a pyarrow array. polars takes such an object as
    it is, where for a pyarrow array it first imports ``pyarrow.compute`` to combine
    dictionary chunks (0.045 s of every run; a list array has none)."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def __arrow_c_array__(self, requested_schema: object | None = None
                          ) -> tuple[object, object]:
        capsules: tuple[object, object] = self._array.__arrow_c_array__(requested_schema)
        return capsules
