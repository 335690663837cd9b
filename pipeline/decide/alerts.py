"""Alert decisions: thresholds, G-test p, Benjamini-Hochberg q, calibrated null, persistence.

A row alerts only if its alert metric reaches the (per-feature, optionally calibrated)
threshold *and* its drift is significant after FDR control over the run; with
``persistence = k`` it must also have drifted in k consecutive windows.

p-values and null quantiles come from :mod:`pipeline.decide.significance`. Every input
is the drift table's own rows: the per-bin counts are read from its ``bins`` column, so the
decision does not depend on how an upstream stage ordered its arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
from scipy import stats

from pipeline.config import AlertsConfig, DriftConfig
from pipeline.decide.significance import g_test_p_values, null_quantiles
from pipeline.decide.state import apply_persistence


def count_groups(drift: pl.DataFrame, mask: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(rows, current, baseline)``: the per-bin counts of the masked rows of a drift
    table, one batch per bin count, read from its ``bins`` column.

    ``current`` and ``baseline`` have shape ``(len(rows), width)``; rows without bins are
    never yielded. Batches come by increasing width, rows in table order.
    """
    widths = drift["bins"].list.len().to_numpy()
    keep = mask & (widths > 0)
    for width in np.unique(widths[keep]):
        rows = np.flatnonzero(keep & (widths == width))
        cells = drift["bins"].gather(rows).explode().struct
        yield (rows, cells.field("current_count").to_numpy().reshape(-1, width),
               cells.field("baseline_count").to_numpy().reshape(-1, width))


def decide(drift: pl.DataFrame, config: AlertsConfig, *,
           drift_config: DriftConfig) -> pl.DataFrame:
    """Fill thresholds, p/q values, ``status`` and ``reason`` of a drift table.

    Parameters
    ----------
    drift : pl.DataFrame
        Output of :func:`pipeline.measure.drift.compute_drift`, in window order within each
        segment x feature; its ``bins`` column holds the counts the G-test and the null
        draws use.
    config : AlertsConfig
        Thresholds, FDR level, ``min_count``, calibration and persistence settings.
    drift_config : DriftConfig
        Alert metric, base and eps (the calibrated null recomputes the metric).

    Returns
    -------
    pl.DataFrame
        ``drift`` with ``warn_threshold``, ``critical_threshold``, ``p_value``, ``q_value``,
        ``window_status`` (the window's own verdict), ``status`` (``ok | warn | critical |
        insufficient_data | error``, after persistence) and ``reason``.
    """
    rng = np.random.default_rng(config.seed)
    n_rows = drift.height
    pending = drift["status"].is_null().to_numpy()
    n_baseline, n_current = drift["n_baseline"].to_numpy(), drift["n_current"].to_numpy()
    tested = pending & (n_baseline >= config.min_count) & (n_current >= config.min_count)

    # Pattern matching runs once per distinct feature name, not per row.
    lookup = {f: config.thresholds_for(f) for f in drift["feature"].unique().to_list()}
    warn, critical = (
        drift["feature"].replace_strict({f: t[i] for f, t in lookup.items()},
                                        return_dtype=pl.Float64).to_numpy()
        for i in (0, 1))
    # Calibration can only raise thresholds, so rows below the configured warn threshold
    # cannot alert whatever it gives: simulate only the others (the costly part of a run).
    calibrate = tested & (drift["value"].fill_null(0).to_numpy() >= warn) & config.calibrated

    p = np.full(n_rows, np.nan)
    null_quantile = np.full(n_rows, np.nan)
    for rows, current, baseline in count_groups(drift, tested):
        p[rows] = g_test_p_values(current, baseline, draws=config.null_draws, rng=rng)
    for rows, current, baseline in count_groups(drift, calibrate):
        null_quantile[rows] = null_quantiles(
            current.sum(axis=1), baseline, drift_config, quantile=config.null_quantile,
            draws=config.null_draws, rng=rng)
    q = np.full(n_rows, np.nan)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    # Calibrated: never alert below what sampling noise alone reaches at this n.
    warn, critical = np.fmax(warn, null_quantile), np.fmax(critical, null_quantile)
    decided = drift.with_columns(
        pl.Series("warn_threshold", warn), pl.Series("critical_threshold", critical),
        pl.Series("p_value", p, nan_to_null=True), pl.Series("q_value", q, nan_to_null=True),
    )
    return apply_persistence(_window_statuses(decided, config, pending, tested),
                             config.persistence)


def _window_statuses(drift: pl.DataFrame, config: AlertsConfig, pending: np.ndarray,
                     tested: np.ndarray) -> pl.DataFrame:
    """``window_status`` and ``reason``: the verdict of each window on its own.

    ``status`` is filled from it by :func:`pipeline.decide.state.apply_persistence`.
    """
    value, q = pl.col("value"), pl.col("q_value")
    level = (pl.when(value >= pl.col("critical_threshold")).then(pl.lit("critical"))
             .when(value >= pl.col("warn_threshold")).then(pl.lit("warn"))
             .otherwise(pl.lit("ok")))
    too_few = [pl.when(pl.col(n) < config.min_count)
               .then(pl.format(f"{n}={{}} < min_count={config.min_count}", pl.col(n)))
               for n in ("n_current", "n_baseline")]
    drifting = ((pl.col("_level") != "ok") & (q < config.fdr_q)).fill_null(False)
    threshold = pl.when(pl.col("_level") == "critical").then("critical_threshold") \
        .otherwise("warn_threshold")
    window_status = (
        pl.when(~pl.col("_pending")).then("status")
        .when(~pl.col("_tested")).then(pl.lit("insufficient_data"))
        .when(drifting).then("_level")
        .otherwise(pl.lit("ok"))
    )
    reason = (
        pl.when(~pl.col("_pending")).then("reason")
        .when(~pl.col("_tested")).then(pl.concat_str(too_few, separator="; ", ignore_nulls=True))
        .when((pl.col("_level") != "ok") & ~drifting)
        .then(pl.format("above {} threshold {} but not significant (q={} >= fdr_q={})",
                        "_level", threshold.round_sig_figs(3), q.round_sig_figs(2),
                        pl.lit(config.fdr_q)))
    )
    return (drift.with_columns(pl.Series("_pending", pending), pl.Series("_tested", tested),
                               _level=level)
            .with_columns(window_status=window_status, reason=reason)
            .drop("_pending", "_tested", "_level"))
