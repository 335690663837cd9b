"""Trends with dynamic bounds: a few statistics per window against the windows before it.

For every segment x feature and every window of a run (docs/references.md):

* profile statistics of the window's histogram: ``mean``, ``std`` and the configured
  quantiles (``p5``, ``p50``, ``p95``) of a numeric feature, ``null_share`` (rows in
  ``__missing__``) of every feature and ``other_share`` (rows in ``__other__``) of a
  categorical one; and the alert metric (e.g. ``js_distance``) of each reference it was
  checked against;
* bounds learned from the ``windows`` latest usable windows before it (the same windows a
  ``rolling`` reference sums, :func:`pipeline.bins.references.earlier_windows`): the
  median of their values, plus or minus ``yellow`` and ``red`` times a spread, the larger of
  their median absolute deviation scaled to a standard deviation (1.4826 x MAD) and the
  window's own sampling standard error of the statistic (so a statistic that never moved
  is not red for a change within sampling noise; for the alert metric, the standard
  deviation of its no-drift distribution at the window's sizes, :func:`null_spread`);
* a traffic light, as popmon's: ``green`` within the yellow bounds, ``yellow`` within the
  red ones, ``red`` beyond; null while fewer than ``min_windows`` earlier windows exist, and
  for a partial window.

Statistics of a numeric feature come from its bins: each bin counts at its midpoint (an
open tail bin at its finite edge), quantiles are interpolated within their bin. A shift
within one bin is invisible to them; they follow trends, they do not replace the data's
own summaries. Trends never change a row's status: they are shown next to the alerts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from kl_metrics.special import gammaln
from pipeline.config import TrendsConfig, quantile_name
from pipeline.labels import MISSING, OTHER

#: Scales a median absolute deviation to the standard deviation of a normal distribution.
MAD_SCALE = 1.4826
LIGHTS = ("green", "yellow", "red")
_SERIES = ["segment", "feature"]
#: Columns of trends.parquet, in order (docs/architecture.md).
TREND_COLUMNS = ("segment", "feature", "statistic", "reference", "window", "checked",
                 "partial", "value", "expected", "spread", "lower_red", "lower_yellow",
                 "upper_yellow", "upper_red", "pull", "n_windows", "light")


def window_statistics(bins: pl.DataFrame, quantiles: Sequence[float]) -> pl.DataFrame:
    """Profile statistics of each window's histogram, with their sampling standard errors.

    Parameters
    ----------
    bins : pl.DataFrame
        ``segment``, ``feature``, ``window``, ``bin``, ``lower``, ``upper``, ``count``.
    quantiles : sequence of float

    Returns
    -------
    pl.DataFrame
        One row per segment x feature x window x statistic: ``statistic``, ``value``, ``se``
        (null where a statistic does not apply).

    Examples
    --------
    >>> bins = pl.DataFrame({"segment": "all", "feature": "x", "window": "w",
    ...     "bin": ["[0, 2)", "[2, 4)", "__missing__"], "lower": [0.0, 2.0, None],
    ...     "upper": [2.0, 4.0, None], "count": [1.0, 3.0, 1.0]})
    >>> stats = window_statistics(bins, [0.5])
    >>> dict(stats.select("statistic", "value").drop_nulls().rows())
    {'mean': 2.5, 'std': 0.8660254037844386, 'p50': 2.6666666666666665, 'null_share': 0.2}
    """
    keys = [*_SERIES, "window"]
    valued = pl.col("lower").is_not_null() & ~pl.col("bin").is_in([MISSING, OTHER])
    finite = pl.col("lower").is_finite() & pl.col("upper").is_finite()
    mid = (pl.when(finite).then((pl.col("lower") + pl.col("upper")) / 2)
           .when(pl.col("lower").is_finite()).then("lower").otherwise("upper"))
    shares = (bins.group_by(keys).agg(
        n=pl.col("count").sum(),
        nulls=pl.col("count").filter(pl.col("bin") == MISSING).sum(),
        others=pl.col("count").filter(pl.col("bin") == OTHER).sum(),
        numeric=pl.col("lower").is_not_null().any()))
    numeric = (bins.filter(valued & (pl.col("count") > 0))
               .with_columns(x=mid, width=pl.col("upper") - pl.col("lower"))
               .sort(*keys, "lower"))
    total = pl.col("count").sum()
    mean = (pl.col("count") * pl.col("x")).sum() / total
    cum = pl.col("count").cum_sum() / total
    moments = numeric.group_by(keys).agg(
        *(e for i, q in enumerate(quantiles) for e in _quantile(i, q, cum, total)),
        nv=total, mean=mean,
        std=((pl.col("count") * (pl.col("x") - mean) ** 2).sum() / total).sqrt())
    columns = [("mean", pl.col("mean"), pl.col("std") / pl.col("nv").sqrt()),
               ("std", pl.col("std"), pl.col("std") / (2 * pl.col("nv")).sqrt()),
               *((quantile_name(q), pl.col(f"_q{i}"), pl.col(f"_se{i}"))
                 for i, q in enumerate(quantiles))]
    wide = shares.join(moments, on=keys, how="left", nulls_equal=True)
    share_se = [((x + 0.5) / (pl.col("n") + 1)) for x in (pl.col("nulls"), pl.col("others"))]
    rows = [(name, value, se) for name, value, se in columns]
    rows += [("null_share", pl.col("nulls") / pl.col("n"),
              (share_se[0] * (1 - share_se[0]) / pl.col("n")).sqrt()),
             ("other_share", pl.when(~pl.col("numeric")).then(pl.col("others") / pl.col("n")),
              (share_se[1] * (1 - share_se[1]) / pl.col("n")).sqrt())]
    return pl.concat([wide.select(*keys, statistic=pl.lit(name),
                                  value=value.cast(pl.Float64), se=se.cast(pl.Float64))
                      for name, value, se in rows])


def _quantile(i: int, q: float, cum: pl.Expr, total: pl.Expr) -> list[pl.Expr]:
    """The ``q`` quantile of a group's bins (interpolated within its bin) and its standard
    error ``sqrt(q (1 - q) / n) / density``, as aggregations named ``_q<i>``/``_se<i>``."""
    at = cum >= q - 1e-12
    share = pl.col("count") / total
    before = (cum - share).filter(at).first()
    lower, upper = pl.col("lower").filter(at).first(), pl.col("upper").filter(at).first()
    inside = ((q - before) / share.filter(at).first()).clip(0, 1)
    width = upper - lower
    value = (pl.when(width.is_finite()).then(lower + inside * width)
             .when(lower.is_finite()).then(lower).otherwise(upper))
    density = share.filter(at).first() / width
    se = pl.when(width.is_finite() & (width > 0)).then(
        (q * (1 - q) / total).sqrt() / density).otherwise(0.0)
    return [value.alias(f"_q{i}"), se.alias(f"_se{i}")]


#: The alert metric between two samples of one distribution is about ``a x c x X`` (nats),
#: X ~ chi-square(bins - 1), c = 1/n1 + 1/n2 (the G-test's approximation, G = 2 N JS):
#: ``a`` by metric, and whether the metric is the square root of such a quantity.
_NULL_SCALE = {"kl": (0.5, False), "reverse_kl": (0.5, False), "symmetric_kl": (1.0, False),
               "psi": (1.0, False), "js_divergence": (0.125, False),
               "js_distance": (0.125, True), "hellinger": (0.125, True)}


def null_spread(metric: str, n_current: pl.Expr, n_reference: pl.Expr, bins: pl.Expr,
                log_base: float | None) -> pl.Expr:
    """Standard deviation of ``metric`` between two samples of one distribution, from the
    chi-square approximation of the G-test: the sampling noise a trend of the alert metric
    is never judged tighter than.

    Examples
    --------
    >>> frame = pl.DataFrame({"n1": [1000.0], "n2": [1000.0], "k": [20]})
    >>> round(frame.select(null_spread("js_divergence", pl.col("n1"), pl.col("n2"),
    ...                                pl.col("k"), 2.0)).item(), 5)
    0.00222
    """
    a, rooted = _NULL_SCALE[metric]
    df = (bins - 1).clip(1, None).cast(pl.Float64)
    unit = 1.0 if metric == "hellinger" or log_base is None else float(np.log(log_base))
    scale = a * (1 / n_current + 1 / n_reference) / unit
    if not rooted:
        return scale * (2 * df).sqrt()
    # sd of sqrt(scale X): sqrt(scale) x sd(sqrt(X)), sd(sqrt X)^2 = df - E[sqrt X]^2
    mean_root = df.map_batches(lambda d: pl.Series(np.sqrt(2) * np.exp(
        gammaln((d.to_numpy() + 1) / 2) - gammaln(d.to_numpy() / 2))),
        return_dtype=pl.Float64)
    return scale.sqrt() * (df - mean_root**2).clip(0, None).sqrt()


def trend_table(statistics: pl.DataFrame, earlier: pl.DataFrame, checked: pl.DataFrame,
                config: TrendsConfig) -> pl.DataFrame:
    """Bounds and traffic lights of the statistics of the windows a run checked.

    Parameters
    ----------
    statistics : pl.DataFrame
        The value of each statistic per window, this run's and the earlier ones:
        ``segment``, ``feature``, ``window``, ``statistic``, ``reference`` (null for
        profile statistics), ``value``, ``se`` (null: none).
    earlier : pl.DataFrame
        The earlier windows bounds are learned from, per window of this run:
        ``segment``, ``feature``, ``window``, ``reference`` (the earlier window's label),
        ``start`` (its start), as :func:`pipeline.bins.references.earlier_windows` gives
        them.
    checked : pl.DataFrame
        This run's windows, in time order within each series: ``segment``, ``feature``,
        ``window``, ``partial``.
    config : TrendsConfig

    Returns
    -------
    pl.DataFrame
        :data:`TREND_COLUMNS`: a row per statistic of each checked window (``checked``
        true, with bounds and light) and of each earlier window its bounds used
        (``checked`` false: the context the report plots), in time order within each
        series x statistic.
    """
    kind = ["statistic", "reference"]
    values = statistics.select(*_SERIES, "window", *kind, "value", "se")
    learned = (earlier.rename({"reference": "earlier"})
               .join(values.rename({"window": "earlier"}), on=[*_SERIES, "earlier"])
               .filter(pl.col("value").is_not_null())
               .group_by(*_SERIES, "window", *kind)
               .agg(expected=pl.col("value").median(),
                    mad=(pl.col("value") - pl.col("value").median()).abs().median(),
                    n_windows=pl.len().cast(pl.Int64)))
    spread = pl.max_horizontal(pl.col("mad") * MAD_SCALE, pl.col("se").fill_null(0.0))
    deviation = pl.col("value") - pl.col("expected")
    pull = (pl.when(pl.col("spread") > 0).then(deviation / pl.col("spread"))
            .when(deviation == 0).then(0.0)
            .otherwise(pl.lit(np.inf) * deviation.sign()))
    bounded = pl.col("n_windows").fill_null(0) >= config.min_windows
    light = (pl.when(~bounded | pl.col("partial") | pl.col("pull").is_null())
             .then(pl.lit(None, pl.String))
             .when(pl.col("pull").abs() <= config.yellow).then(pl.lit("green"))
             .when(pl.col("pull").abs() <= config.red).then(pl.lit("yellow"))
             .otherwise(pl.lit("red")))
    order = checked.select(*_SERIES, "window", "partial").with_row_index("_order")
    ours = (values.join(order, on=[*_SERIES, "window"])
            .join(learned, on=[*_SERIES, "window", *kind], how="left", nulls_equal=True)
            .with_columns(spread=pl.when(bounded).then(spread), checked=pl.lit(True))
            .with_columns(pull=pl.when(bounded).then(pull))
            .with_columns(light=light,
                          **{f"{side}_{level}": pl.col("expected") + sign * k * pl.col("spread")
                             for level, k in (("yellow", config.yellow), ("red", config.red))
                             for side, sign in (("lower", -1), ("upper", 1))}))
    # An earlier window is drawn just before the first window of this run it served.
    context = (earlier.select(*_SERIES, "window", "start", window_="reference")
               .join(order.select(*_SERIES, "window", "_order"), on=[*_SERIES, "window"])
               .group_by(*_SERIES, "window_")
               .agg(pl.col("_order").min() - 0.5, _start=pl.col("start").first())
               .rename({"window_": "window"})
               .join(order.select(*_SERIES, "window"), on=[*_SERIES, "window"], how="anti")
               .join(values, on=[*_SERIES, "window"])
               .with_columns(checked=pl.lit(False), partial=pl.lit(False)))
    return (pl.concat([ours.with_columns(pl.col("_order").cast(pl.Float64)), context],
                      how="diagonal_relaxed")
            .sort(*_SERIES, *kind, "_order", "_start", nulls_last=True)
            .select(*(pl.col(c) if c in ours.columns or c in context.columns
                      else pl.lit(None).alias(c) for c in TREND_COLUMNS))
            .with_columns(pl.col("n_windows").cast(pl.Int64), pl.col("light").cast(pl.String)))
