"""Window and segment labels, written the same way by every output table of a run.

``drift.parquet``, ``models.parquet`` and ``estimates.parquet`` key their rows by a text
``window`` (ISO-8601 start of a date/datetime window, the label as given for other types,
``"__missing__"`` for rows without a timestamp, ``"all"`` without windows) and a text
``segment`` (``"region=EU, model_version=2"``, or ``"all"`` without segment columns), so the
tables of one run join on them. Also the check of a window ``period``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

ALL = "all"
#: Reserved label for null values: a bin of nulls/NaN, or a window of rows without timestamp.
MISSING = "__missing__"
#: Reserved bin label for categories the baseline profile did not keep.
OTHER = "__other__"
# Polars duration strings: "1d", "12h", "1w", "1mo", "1d12h", ...
_PERIOD = re.compile(r"(?:\d+(?:ns|us|ms|mo|s|m|h|d|w|q|y))+")
_DATETIME = "%Y-%m-%dT%H:%M:%S"


def check_period(period: str) -> str:
    """Return ``period`` if it is a positive polars duration (``"1d"``, ``"12h"``, ``"1mo"``).

    Raises
    ------
    ValueError
        For anything else (``"1 day"``, ``"0d"``, ``""``), with an example of valid values.
    """
    if not _PERIOD.fullmatch(period) or not any(int(n) for n in re.findall(r"\d+", period)):
        raise ValueError(f"{period!r} is not a duration such as '1d', '12h', '1w', '1mo'")
    return period


def window_start_expr(timestamp: str, period: str | None) -> pl.Expr:
    """The ``window`` column of raw rows: the start of their ``period``, or the value as is.

    ``timestamp`` must be a date or datetime column when ``period`` is given.
    """
    column = pl.col(timestamp)
    return (column if period is None else column.dt.truncate(period)).alias("window")


def window_label_expr(dtype: pl.DataType | None, window: str | pl.Expr = "window") -> pl.Expr:
    """``window`` as text (see the module docstring); ``dtype`` ``None`` means no windows.

    Parameters
    ----------
    dtype : polars DataType or None
        Type of the window values; time-zone-aware datetimes keep their UTC offset.
    window : str or polars Expr
        The window values (default: the ``window`` column).
    """
    if dtype is None:
        return pl.lit(ALL).alias("window")
    column = pl.col(window) if isinstance(window, str) else window
    if isinstance(dtype, pl.Datetime):
        text = column.dt.to_string(_DATETIME + ("%:z" if dtype.time_zone else ""))
    elif isinstance(dtype, pl.Date):
        text = column.dt.to_string("%Y-%m-%d")
    else:
        text = column.cast(pl.String)
    return text.fill_null(MISSING).alias("window")


def raw_window_label_expr(timestamp: str | None, period: str | None,
                          dtype: pl.DataType | None) -> pl.Expr:
    """The text ``window`` of raw rows: :func:`window_start_expr` as a label, or ``"all"``.

    ``dtype`` is the type of the ``timestamp`` column (ignored without a timestamp).
    """
    if timestamp is None:
        return window_label_expr(None)
    return window_label_expr(dtype, window_start_expr(timestamp, period))


def segment_label_expr(columns: Sequence[str]) -> pl.Expr:
    """``segment`` as text: ``"region=EU, model_version=2"`` (null values as ``null``)."""
    if not columns:
        return pl.lit(ALL).alias("segment")
    # concat_str rather than pl.format: a column name may contain "{}".
    parts = [pl.concat_str(pl.lit(f"{name}="), pl.col(name).cast(pl.String).fill_null("null"))
             for name in columns]
    return pl.concat_str(parts, separator=", ").alias("segment")
