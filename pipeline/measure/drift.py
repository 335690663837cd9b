"""Dense aligned counts -> the drift table, through batched kl_metrics calls.

All metrics of all rows sharing a bin count come from one ``divergences`` call (see
:meth:`pipeline.bins.align.Aligned.groups` for why rows are grouped by width, not padded).
Decision columns (thresholds, p/q values, final status) are left for
:func:`pipeline.decide.alerts.decide`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kl_metrics import bin_contributions, divergences
from pipeline.bins.align import Aligned
from pipeline.config import METRICS, DriftConfig

TOP_BINS = 3
TOP_BIN = pl.Struct({"bin": pl.Utf8, "contribution": pl.Float64,
                     "baseline_share": pl.Float64, "current_share": pl.Float64})
BIN = pl.Struct({"bin": pl.Utf8, "lower": pl.Float64, "upper": pl.Float64,
                 "baseline_count": pl.Float64, "current_count": pl.Float64,
                 "baseline_share": pl.Float64, "current_share": pl.Float64,
                 "contribution": pl.Float64})
#: Columns filled by :func:`pipeline.decide.alerts.decide`.
DECISION_COLUMNS = ("warn_threshold", "critical_threshold", "p_value", "q_value")


def compute_drift(aligned: Aligned, config: DriftConfig) -> pl.DataFrame:
    """Compute every metric, totals and per-bin contributions for each aligned row.

    Parameters
    ----------
    aligned : Aligned
        Output of :func:`pipeline.bins.align.align`.
    config : DriftConfig
        Alert metric, log base and epsilon smoothing.

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

    values = {name: np.full(len(n_baseline), np.nan) for name in METRICS}
    contributions = np.full(aligned.baseline.shape, np.nan)
    # One batched call per distinct bin count; zero-total rows are excluded up front
    # because kl_metrics rejects all-zero slices.
    for rows, width in aligned.groups(comparable):
        current, baseline = aligned.current[rows, :width], aligned.baseline[rows, :width]
        for name, value in divergences(current, baseline, metrics=METRICS,
                                       base=config.log_base, eps=config.eps).items():
            values[name][rows] = value
        contributions[rows, :width] = bin_contributions(
            current, baseline, config.metric, base=config.log_base, eps=config.eps)

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
        *(pl.Series(name, values[name], dtype=pl.Float64, nan_to_null=True)
          for name in METRICS),
    ).with_columns(
        metric=pl.lit(config.metric), value=pl.col(config.metric),
        **{name: pl.lit(None, dtype=pl.Float64) for name in DECISION_COLUMNS},
        status=status, window_status=status, reason=reason,
    )
    bins, top_bins = _bin_lists(aligned, contributions, n_baseline, n_current)
    return table.with_columns(bins=bins, top_bins=top_bins).select(
        *aligned.segments, "segment", "feature", "window", "coverage", "partial", "kind",
        "n_baseline", "n_current",
        *METRICS, "metric", "value", *DECISION_COLUMNS, "status", "window_status", "reason",
        "top_bins", "bins",
    )


def _bin_lists(aligned: Aligned, contributions: np.ndarray, n_baseline: np.ndarray,
               n_current: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """``bins`` (display order) and ``top_bins`` list columns, one entry per row."""
    row = aligned.cells["row"].to_numpy()
    slot = aligned.cells["slot"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        baseline_share = aligned.baseline[row, slot] / n_baseline[row]
        current_share = aligned.current[row, slot] / n_current[row]
    cells = aligned.cells.with_columns(
        pl.Series("baseline_count", aligned.baseline[row, slot]),
        pl.Series("current_count", aligned.current[row, slot]),
        pl.Series("baseline_share", baseline_share, nan_to_null=True),
        pl.Series("current_share", current_share, nan_to_null=True),
        pl.Series("contribution", contributions[row, slot], nan_to_null=True),
    )
    top = pl.struct(*TOP_BIN.to_schema()).filter(pl.col("contribution").is_not_null())
    lists = (
        pl.DataFrame({"row": np.arange(aligned.rows.height, dtype=np.uint32)})
        .join(cells.group_by("row").agg(
                  bins=pl.struct(*BIN.to_schema()),
                  top_bins=top.sort_by(pl.col("contribution").filter(
                      pl.col("contribution").is_not_null()), descending=True).head(TOP_BINS)),
              on="row", how="left", maintain_order="left")
        .with_columns(pl.col("bins").fill_null([]).cast(pl.List(BIN)),
                      pl.col("top_bins").fill_null([]).cast(pl.List(TOP_BIN)))
    )
    return lists["bins"], lists["top_bins"]
