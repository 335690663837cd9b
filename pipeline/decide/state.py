"""Decisions across windows: a window alerts only after ``persistence`` drifting windows.

``window_status`` is each window's own verdict (:mod:`pipeline.decide.alerts`); ``status``
is what the run reports, once the persistence rule has counted consecutive drifting windows
of each segment x feature in window order.
"""

from __future__ import annotations

import polars as pl

_SERIES = ("segment", "feature")
_ALERTING = ("warn", "critical")


def apply_persistence(drift: pl.DataFrame, persistence: int) -> pl.DataFrame:
    """Fill ``status`` from ``window_status``: a warn/critical window stays ``ok`` (with a
    reason) until it is the ``persistence``-th consecutive drifting window of its series.

    Parameters
    ----------
    drift : pl.DataFrame
        A drift table with ``window_status`` and ``reason``, rows in window order within
        each segment x feature.
    persistence : int
        Consecutive drifting windows needed (1: every drifting window alerts).

    Returns
    -------
    pl.DataFrame
        ``drift`` with ``status`` set and ``reason`` explaining held-back windows.
    """
    series = list(_SERIES)
    drifting = pl.col("window_status").is_in(_ALERTING)
    streak = (pl.col("_drifting").cast(pl.Int64)
              .cum_sum().over([*series, (~pl.col("_drifting")).cum_sum().over(series)]))
    held = pl.col("_drifting") & (pl.col("_streak") < persistence)
    return (
        drift.with_columns(_drifting=drifting)
        .with_columns(_streak=streak)
        .with_columns(
            status=pl.when(held).then(pl.lit("ok")).otherwise("window_status"),
            reason=pl.when(held).then(pl.format(
                f"{{}} drift in {{}} of {persistence} required consecutive windows",
                "window_status", "_streak")).otherwise("reason"))
        .drop("_drifting", "_streak")
    )
