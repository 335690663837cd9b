"""Is a window's drift real or sampling noise: G-test p-values and the metric's null quantiles.

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

Null quantiles: the alert metric of windows of the same size drawn from the baseline, so a
threshold is never below what sampling noise alone reaches at that window size.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from kl_metrics import divergences, g_test
from pipeline.config import DriftConfig

#: Smallest expected cell count for which the chi-square approximation is trusted.
MIN_EXPECTED = 5.0
#: Simulated G values at or above the observed one needed to trust the Monte Carlo p.
RESOLVED_EXCEEDANCES = 10
# Draws before rows with an already resolved Monte Carlo p stop.
_FIRST_ROUND = 100
# Cells per simulated chunk (draws x rows x bins), bounding memory to tens of MB.
_CHUNK_CELLS = 1 << 20


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
