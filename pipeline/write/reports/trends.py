"""What the reports show of trends.parquet (docs/references.md), shared by both renderers.

The Trends section lists the segment x feature x statistic series whose lights in this run
are yellow or red, most severe first (red, then by how far out), and draws each with its
bounds; the rest is counted. Every string here is plain text: the renderers escape it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from pipeline.write.reports.summary import compact_time_labels, fmt_value

#: Lights, most severe first, with their display names.
LIGHT_LABELS = {"red": "red", "yellow": "yellow", "green": "green"}
_SERIES = ("segment", "feature", "statistic", "reference")


def statistic_label(statistic: str, reference: str | None) -> str:
    """``mean``, or ``js_distance vs previous`` for the alert metric of a reference.

    >>> statistic_label("js_distance", "previous"), statistic_label("p50", None)
    ('js_distance vs previous', 'p50')
    """
    return statistic if reference is None else f"{statistic} vs {reference}"


def flagged_series(trends: pl.DataFrame, limit: int) -> tuple[pl.DataFrame, int]:
    """The series with a yellow or red light in this run, most severe first.

    Parameters
    ----------
    trends : pl.DataFrame
        trends.parquet.
    limit : int
        Most series returned.

    Returns
    -------
    (pl.DataFrame, int)
        One row per series (``segment``, ``feature``, ``statistic``, ``reference``,
        ``light`` its worst light, ``window`` and ``pull`` of its worst window, ``n_red``,
        ``n_yellow``), and how many series were flagged in all.

    Examples
    --------
    >>> trends = pl.DataFrame({"segment": "all", "feature": ["a", "a", "b"],
    ...     "statistic": "mean", "reference": None, "window": ["w1", "w2", "w1"],
    ...     "checked": True, "light": ["green", "yellow", "red"], "pull": [1.0, 5.0, -9.0]})
    >>> rows, total = flagged_series(trends, 5)
    >>> rows.select("feature", "light", "window").rows(), total
    ([('b', 'red', 'w1'), ('a', 'yellow', 'w2')], 2)
    """
    flags = trends.filter(pl.col("checked") & pl.col("light").is_in(["yellow", "red"]))
    rank = (pl.col("light") != "red").cast(pl.Int8)
    worst = (flags.with_columns(_rank=rank, _far=pl.col("pull").abs())
             .sort("_rank", "_far", descending=[False, True], nulls_last=True)
             .group_by(_SERIES, maintain_order=True)
             .agg(pl.col("light", "window", "pull").first(),
                  n_red=(pl.col("light") == "red").sum(),
                  n_yellow=(pl.col("light") == "yellow").sum()))
    return worst.head(limit), worst.height


def series_of(trends: pl.DataFrame, row: Mapping[str, Any]) -> pl.DataFrame:
    """The windows of one series (``row`` names it), in time order: the earlier windows the
    bounds were learned from, then this run's."""
    match = [pl.col(c).eq_missing(row[c]) for c in _SERIES]
    return trends.filter(*match)


def counts(trends: pl.DataFrame) -> dict[str, int]:
    """Lights of this run's windows by colour, ``none`` for windows without bounds.

    >>> counts(pl.DataFrame({"checked": [True, True, False], "light": ["red", None, None]}))
    {'red': 1, 'yellow': 0, 'green': 0, 'none': 1}
    """
    values = dict(trends.filter(pl.col("checked"))["light"].fill_null("none")
                  .value_counts().iter_rows())
    return {light: int(values.get(light, 0)) for light in (*LIGHT_LABELS, "none")}


def flag_text(row: Mapping[str, Any]) -> str:
    """One flag in words: ``mean 187 in 2013-07-15, red (bounds 150–170, 9.1 spreads out)``.

    >>> flag_text({"statistic": "mean", "reference": None, "value": 187.0,
    ...            "window": "2013-07-15", "light": "red", "lower_red": 150.0,
    ...            "upper_red": 170.0, "pull": 9.14})
    'mean 187 in 2013-07-15: red, outside 150 to 170 (9.14 spreads from the median)'
    """
    level = "red" if row["light"] == "red" else "yellow"
    bounds = (f"outside {fmt_value(row[f'lower_{level}'])} to "
              f"{fmt_value(row[f'upper_{level}'])}")
    return (f"{statistic_label(row['statistic'], row['reference'])} {fmt_value(row['value'])} "
            f"in {compact_time_labels([row['window']])[0]}: {row['light']}, {bounds} "
            f"({fmt_value(abs(row['pull']) if row['pull'] is not None else None)} spreads from "
            "the median)")
