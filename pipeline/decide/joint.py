"""Verdicts of the joint drift check: thresholds on KL and Benjamini-Hochberg q-values.

A segment x window of joint.parquet alerts like a feature does: its KL(current ‖ baseline)
reaches ``joint.warn`` / ``joint.critical`` (in the run's base) *and* its drift is
significant after FDR control, ``q < alerts.fdr_q``. The q-values are computed over the
run's joint rows only, as their own family: pooling them with the feature p-values would
change the features' q-values, and so their alerts, whenever ``[joint]`` is switched on.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats


def decide_joint(joint: pl.DataFrame, *, fdr_q: float) -> pl.DataFrame:
    """Fill ``q_value``, ``status`` and ``reason`` of the joint table's tested rows.

    Parameters
    ----------
    joint : polars.DataFrame
        From :func:`pipeline.measure.joint.measure_joint`: rows with a null ``status`` were
        tested; the others keep their ``insufficient_data`` / ``error`` status and reason.
    fdr_q : float
        The FDR level (``alerts.fdr_q``).

    Returns
    -------
    polars.DataFrame
        ``joint`` with ``q_value`` after ``p_value``; ``status`` is ``ok``, ``warn`` or
        ``critical`` for tested rows, with a ``reason`` when a threshold is reached but the
        drift is not significant.

    Examples
    --------
    >>> import polars as pl
    >>> rows = pl.DataFrame({"p_value": [1e-9, 0.5, None], "value": [0.3, 0.3, None],
    ...                      "warn_threshold": 0.05, "critical_threshold": 0.2,
    ...                      "status": [None, None, "insufficient_data"],
    ...                      "reason": [None, None, "n_current=12 < min_rows=200"]})
    >>> decide_joint(rows, fdr_q=0.01)["status"].to_list()
    ['critical', 'ok', 'insufficient_data']
    """
    tested = joint["status"].is_null().to_numpy()
    q = np.full(joint.height, np.nan)
    if tested.any():
        q[tested] = stats.false_discovery_control(joint["p_value"].to_numpy()[tested],
                                                  method="bh")
    value, q_value = pl.col("value"), pl.col("q_value")
    level = (pl.when(value >= pl.col("critical_threshold")).then(pl.lit("critical"))
             .when(value >= pl.col("warn_threshold")).then(pl.lit("warn"))
             .otherwise(pl.lit("ok")))
    threshold = (pl.when(level == "critical").then("critical_threshold")
                 .otherwise("warn_threshold"))
    significant = q_value < fdr_q
    decided = joint.with_columns(pl.Series("q_value", q, nan_to_null=True))
    columns = [c for c in joint.columns if c != "q_value"]
    at = columns.index("p_value") + 1
    return decided.with_columns(
        status=pl.when(pl.col("status").is_not_null()).then("status")
        .when(significant).then(level).otherwise(pl.lit("ok")),
        reason=pl.when(pl.col("status").is_not_null()).then("reason")
        .when((level != "ok") & ~significant)
        .then(pl.format("above {} threshold {} but not significant (q={} >= fdr_q={})",
                        level, threshold.round_sig_figs(3), q_value.round_sig_figs(2),
                        pl.lit(fdr_q))),
    ).select(*columns[:at], "q_value", *columns[at:])
