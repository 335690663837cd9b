"""Alert decisions: thresholds, G-test p, Benjamini-Hochberg q, calibrated null, persistence.

A row alerts only if its alert metric reaches the (per-feature, optionally calibrated)
threshold *and* its drift is significant after FDR control over the run; with
``persistence = k`` it must also have drifted in k consecutive windows.

p-values (two-sample G-test of homogeneity, current vs baseline counts):

* every expected cell count >= 5 (Cochran's rule): the asymptotic chi-square p;
* otherwise the chi-square p is anti-conservative (about 2.5% false alarms at the 1% level
  for 50 rows in 20 bins), so the null is simulated: both samples are redrawn
  multinomially from the pooled proportions with their own sizes, and
  ``p = (1 + #{G_sim >= G}) / (B + 1)``. Draws are sequential: after 100 draws, rows with
  at least 10 simulated G at or above theirs (p resolved, clearly not significant) stop;
  the others get all ``null_draws``. When fewer than 10 of those reach the observed G,
  the draws cannot resolve p (its floor 1/(B+1) would make a single strong drift
  insignificant after BH), so p is the tail of the chi-square matched to the simulated
  mean and variance of G (Satterthwaite; the second-order Rao-Scott correction).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from kl_metrics import divergences, g_test
from pipeline.align import Aligned
from pipeline.config import AlertsConfig, DriftConfig

#: Smallest expected cell count for which the chi-square approximation is trusted.
MIN_EXPECTED = 5.0
#: Simulated G values at or above the observed one needed to trust the Monte Carlo p.
RESOLVED_EXCEEDANCES = 10
# Draws before rows with an already resolved Monte Carlo p stop.
_FIRST_ROUND = 100
# Cells per simulated chunk (draws x rows x bins), bounding memory to tens of MB.
_CHUNK_CELLS = 1 << 20


def decide(drift: pl.DataFrame, config: AlertsConfig, *, aligned: Aligned,
           drift_config: DriftConfig) -> pl.DataFrame:
    """Fill thresholds, p/q values, ``status`` and ``reason`` of a drift table.

    Parameters
    ----------
    drift : pl.DataFrame
        Output of :func:`pipeline.drift.compute_drift`: rows aligned with ``aligned``, in
        window order within each segment x feature.
    config : AlertsConfig
        Thresholds, FDR level, ``min_count``, calibration and persistence settings.
    aligned : Aligned
        The counts the drift table was computed from (for the G-test and null draws).
    drift_config : DriftConfig
        Alert metric, base and eps (the calibrated null recomputes the metric).

    Returns
    -------
    pl.DataFrame
        ``drift`` with ``warn_threshold``, ``critical_threshold``, ``p_value``, ``q_value``,
        ``status`` (``ok | warn | critical | insufficient_data | error``) and ``reason``.
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
    for rows, width in aligned.groups(tested):
        current, baseline = aligned.current[rows, :width], aligned.baseline[rows, :width]
        p[rows] = g_test_p_values(current, baseline, draws=config.null_draws, rng=rng)
    for rows, width in aligned.groups(calibrate):
        null_quantile[rows] = null_quantiles(
            aligned.current[rows, :width].sum(axis=1), aligned.baseline[rows, :width],
            drift_config, quantile=config.null_quantile, draws=config.null_draws, rng=rng)
    q = np.full(n_rows, np.nan)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    # Calibrated: never alert below what sampling noise alone reaches at this n.
    warn, critical = np.fmax(warn, null_quantile), np.fmax(critical, null_quantile)
    decided = drift.with_columns(
        pl.Series("warn_threshold", warn), pl.Series("critical_threshold", critical),
        pl.Series("p_value", p, nan_to_null=True), pl.Series("q_value", q, nan_to_null=True),
    )
    return _statuses(decided, config, pending, tested)


def g_test_p_values(current: np.ndarray, baseline: np.ndarray, *, draws: int,
                    rng: np.random.Generator) -> np.ndarray:
    """p-values of the two-sample G-test of homogeneity, row by row.

    Parameters
    ----------
    current, baseline : np.ndarray
        Counts, shape ``(rows, bins)``, every row with positive totals on both sides.
    draws : int
        Simulated tables per row when expected counts are small (see module docstring).
    rng : np.random.Generator

    Returns
    -------
    np.ndarray
        p-values in (0, 1], shape ``(rows,)``.
    """
    observed = g_test(current, baseline)
    p = np.asarray(observed.p_value, dtype=float).copy()
    statistic = np.asarray(observed.statistic, dtype=float)
    n_current, n_baseline = current.sum(axis=1), baseline.sum(axis=1)
    pooled = (current + baseline) / (n_current + n_baseline)[:, None]
    smallest = np.where(pooled > 0, pooled, np.inf).min(axis=1)
    active = np.flatnonzero(np.minimum(n_current, n_baseline) * smallest < MIN_EXPECTED)
    sizes = np.column_stack([_draw_size(n_current), _draw_size(n_baseline)])
    # Per active row: draws at least as extreme, sum and sum of squares of simulated G.
    exceed, total, squares = (np.zeros(len(p)) for _ in range(3))
    drawn = 0
    # Sequential Monte Carlo: a row whose p is resolved after a few draws (clearly not
    # significant, the common case) stops; only the others get all ``draws``.
    for target in dict.fromkeys((min(_FIRST_ROUND, draws), draws)):
        batch, drawn = target - drawn, target
        for chunk in _chunks(active, batch * current.shape[1]):
            g_sim = np.asarray(g_test(
                rng.multinomial(sizes[chunk, 0], pooled[chunk], size=(batch, chunk.size)),
                rng.multinomial(sizes[chunk, 1], pooled[chunk], size=(batch, chunk.size)),
            ).statistic, dtype=float)
            # Relative tolerance: equal tables must count as ties despite rounding.
            exceed[chunk] += (g_sim >= statistic[chunk] * (1 - 1e-9) - 1e-12).sum(axis=0)
            total[chunk] += g_sim.sum(axis=0)
            squares[chunk] += (g_sim**2).sum(axis=0)
        resolved = active[exceed[active] >= RESOLVED_EXCEEDANCES]
        p[resolved] = (1 + exceed[resolved]) / (drawn + 1)
        active = np.setdiff1d(active, resolved)
    mean = total[active] / drawn
    var = (squares[active] - drawn * mean**2) / (drawn - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = stats.chi2.sf(statistic[active] * 2 * mean / var, 2 * mean**2 / var)
    p[active] = np.where(var > 1e-12 * mean**2, tail, (1 + exceed[active]) / (drawn + 1))
    return p


def null_quantiles(n_current: np.ndarray, baseline: np.ndarray, config: DriftConfig, *,
                   quantile: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Quantile of the alert metric for windows of ``n_current`` drawn from the baseline.

    Rows with the same baseline counts and window size share one simulation.

    Parameters
    ----------
    n_current : np.ndarray
        Window sizes, shape ``(rows,)``.
    baseline : np.ndarray
        Baseline counts, shape ``(rows, bins)``.
    config : DriftConfig
        Alert metric, base and eps, as used for the drift table.
    quantile : float
        e.g. 0.999.
    draws : int
        Simulated windows per distinct (baseline, n).
    rng : np.random.Generator

    Returns
    -------
    np.ndarray
        Shape ``(rows,)``.
    """
    keys = np.column_stack([baseline, _draw_size(n_current)])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    sizes, counts = unique[:, -1].astype(np.int64), unique[:, :-1]
    probabilities = counts / counts.sum(axis=1, keepdims=True)
    result = np.empty(len(unique))
    for chunk in _chunks(np.arange(len(unique)), draws * counts.shape[1]):
        windows = rng.multinomial(sizes[chunk], probabilities[chunk], size=(draws, chunk.size))
        values = divergences(windows, counts[chunk], metrics=(config.metric,),
                             base=config.log_base, eps=config.eps)[config.metric]
        result[chunk] = np.quantile(values, quantile, axis=0)
    return result[inverse.ravel()]


def _draw_size(totals: np.ndarray) -> np.ndarray:
    """Integer sample sizes for multinomial draws (weighted counts are rounded, min 1)."""
    return np.maximum(np.rint(totals), 1).astype(np.int64)


def _chunks(rows: np.ndarray, cells_per_row: int) -> list[np.ndarray]:
    size = max(1, _CHUNK_CELLS // max(cells_per_row, 1))
    return [rows[i:i + size] for i in range(0, rows.size, size)]


def _statuses(drift: pl.DataFrame, config: AlertsConfig, pending: np.ndarray,
              tested: np.ndarray) -> pl.DataFrame:
    """Final status and reason; persistence counts drifting windows per segment x feature."""
    value, q = pl.col("value"), pl.col("q_value")
    level = (pl.when(value >= pl.col("critical_threshold")).then(pl.lit("critical"))
             .when(value >= pl.col("warn_threshold")).then(pl.lit("warn"))
             .otherwise(pl.lit("ok")))
    too_few = [pl.when(pl.col(n) < config.min_count)
               .then(pl.format(f"{n}={{}} < min_count={config.min_count}", pl.col(n)))
               for n in ("n_current", "n_baseline")]
    series = ["segment", "feature"]
    drifting = (pl.col("_level") != "ok") & (q < config.fdr_q)
    threshold = pl.when(pl.col("_level") == "critical").then("critical_threshold") \
        .otherwise("warn_threshold")
    decided = (
        drift.with_columns(pl.Series("_pending", pending), pl.Series("_tested", tested),
                           _level=level)
        .with_columns(_drifting=drifting.fill_null(False))
        .with_columns(_spell=(~pl.col("_drifting")).cum_sum().over(series))
        .with_columns(_streak=pl.col("_drifting").cast(pl.Int64).cum_sum()
                      .over([*series, "_spell"]))
    )
    status = (
        pl.when(~pl.col("_pending")).then("status")
        .when(~pl.col("_tested")).then(pl.lit("insufficient_data"))
        .when(~pl.col("_drifting") | (pl.col("_streak") < config.persistence))
        .then(pl.lit("ok"))
        .otherwise("_level")
    )
    reason = (
        pl.when(~pl.col("_pending")).then("reason")
        .when(~pl.col("_tested")).then(pl.concat_str(too_few, separator="; ", ignore_nulls=True))
        .when((pl.col("_level") != "ok") & ~pl.col("_drifting"))
        .then(pl.format("above {} threshold {} but not significant (q={} >= fdr_q={})",
                        "_level", threshold.round_sig_figs(3), q.round_sig_figs(2),
                        pl.lit(config.fdr_q)))
        .when(pl.col("_drifting") & (pl.col("_streak") < config.persistence))
        .then(pl.format(f"{{}} drift in {{}} of {config.persistence} required consecutive "
                        "windows", "_level", "_streak"))
    )
    return decided.with_columns(status=status, reason=reason).drop(
        "_pending", "_tested", "_level", "_drifting", "_spell", "_streak")
