"""Time windows: one time zone for every part of a run, window starts, and window coverage.

``[input]``, ``[models]`` and ``[estimate]`` cut their timestamp column into windows with the
functions of this module, so the same instants give the same windows however they are
stored and whichever part of the run reads them:

- naive datetimes are UTC, aware datetimes are instants in their own zone, ISO-8601 text is
  parsed (with its offset; text without one is UTC), and dates are whole days of the window
  time zone;
- with a ``period`` the instants are converted to ``window_timezone`` and each window starts
  at a period boundary there (local midnight for days and weeks; daylight-saving changes are
  handled by polars, so a window may last 23 or 25 hours). Windows of the UTC zone are naive
  datetimes, those of any other zone aware ones, which is how their labels
  (:func:`pipeline.labels.window_label_expr`) show or omit the UTC offset;
- the *coverage* of a window is the share of its span that the data's time range covers
  (:class:`TimeSpan`, :func:`window_coverage`), so partial first and last windows can be told
  from full ones.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Literal

import polars as pl

from pipeline.errors import InputError

#: The default window time zone.
UTC = "UTC"
#: Default ``min_coverage``: a window less than half covered by the data is partial.
MIN_COVERAGE = 0.5
# Polars duration strings: "1d", "12h", "1w", "1mo", "1d12h", ...
_PERIOD = re.compile(r"(?:\d+(?:ns|us|ms|mo|s|m|h|d|w|q|y))+")
_UNIT: Literal["us"] = "us"


def check_period(period: str) -> str:
    """Return ``period`` if it is a positive polars duration (``"1d"``, ``"12h"``, ``"1mo"``).

    Raises
    ------
    ValueError
        For anything else (``"1 day"``, ``"0d"``, ``""``), with an example of valid values.

    Examples
    --------
    >>> check_period("1w")
    '1w'
    """
    if not _PERIOD.fullmatch(period) or not any(int(n) for n in re.findall(r"\d+", period)):
        raise ValueError(f"{period!r} is not a duration such as '1d', '12h', '1w', '1mo'")
    return period


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA time zone (``"UTC"``, ``"Europe/Paris"``).

    Raises
    ------
    ValueError
        For an unknown zone, with examples of valid names.

    Examples
    --------
    >>> check_timezone("Europe/Paris")
    'Europe/Paris'
    """
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}, e.g. 'UTC', 'Europe/Paris'") from None
    return name


def _in_zone(instants: pl.Expr, timezone: str) -> pl.Expr:
    """Aware instants converted to ``timezone``; the UTC zone is kept as naive datetimes."""
    converted = instants.dt.convert_time_zone(timezone)
    if timezone == UTC:
        converted = converted.dt.replace_time_zone(None)
    return converted.dt.cast_time_unit(_UNIT)


def timestamp_expr(column: str, dtype: pl.DataType, *, period: str | None,
                   timezone: str = UTC, source: str | None = None
                   ) -> tuple[pl.Expr, pl.Expr | None]:
    """The values windows are cut from, and for ISO text the values that fail to parse.

    Parameters
    ----------
    column : str
        The timestamp column.
    dtype : polars DataType
        Its type in the data.
    period : str or None
        The window length. With a period the values are instants in ``timezone``: datetimes
        (naive ones are UTC) converted to it, ISO-8601 text parsed (text without an offset is
        UTC), dates taken as the start of that day in ``timezone``. Without a period,
        datetimes are converted the same way and any other value (dates, text such as a
        batch name) is kept as it is: it is the window label.
    timezone : str
        IANA zone of the windows; ``"UTC"`` windows are naive datetimes.
    source : str, optional
        The file named in errors.

    Returns
    -------
    (polars Expr, polars Expr or None)
        The values (named ``column``), and for text timestamps with a period an expression
        that is the text of every value that does not parse (null elsewhere): pass the
        collected values to :func:`check_parsed`.

    Raises
    ------
    InputError
        A period on a column that is not a datetime, a date or text.

    Examples
    --------
    >>> from datetime import datetime
    >>> rows = pl.DataFrame({"t": ["2024-03-31T01:30:00+01:00", "2024-03-31T00:30:00Z"]})
    >>> values, _ = timestamp_expr("t", pl.String, period="1d", timezone="Europe/Paris")
    >>> rows.select(values)["t"].to_list() == [datetime(2024, 3, 31, 1, 30,
    ...     tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))] * 2
    True
    """
    value = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        aware = value if dtype.time_zone else value.dt.replace_time_zone(UTC)
        return _in_zone(aware, timezone).alias(column), None
    if period is None:
        return value, None
    if dtype == pl.String:
        parsed = value.str.to_datetime(time_zone=UTC, strict=False)
        unparsed = pl.when(parsed.is_null() & value.is_not_null()).then(value)
        return _in_zone(parsed, timezone).alias(column), unparsed.alias(column)
    if dtype == pl.Date:
        # Noon of the day in the zone, truncated: the day's first instant even where
        # midnight does not exist (a DST change at midnight).
        noon = value.cast(pl.Datetime(_UNIT)).dt.offset_by("12h")
        local = noon.dt.replace_time_zone(None if timezone == UTC else timezone,
                                          non_existent="null")
        return local.dt.truncate("1d").alias(column), None
    raise InputError(f"timestamp column must be a datetime, a date or ISO-8601 text to cut "
                     f"into periods, found {dtype}", source=source, column=column)


def check_parsed(unparsed: pl.Series, column: str, source: str | None) -> None:
    """Raise a one-line InputError naming the first value of ``unparsed`` that is not null.

    ``unparsed`` is the second expression of :func:`timestamp_expr`, collected.
    """
    bad = unparsed.drop_nulls()
    if len(bad):
        raise InputError(f"{len(bad)} timestamp value(s) are not ISO-8601 text, first "
                         f"{bad[0]!r}; fix them or store a datetime column",
                         source=source, column=column)


def window_start_expr(values: str | pl.Expr, period: str | None) -> pl.Expr:
    """The ``window`` column: the start of the ``period`` holding each value, or the value.

    ``values`` are those of :func:`timestamp_expr` (a column name or an expression).

    Examples
    --------
    >>> from datetime import datetime
    >>> rows = pl.DataFrame({"t": [datetime(2013, 7, 3, 9)]})
    >>> rows.select(window_start_expr("t", "1w"))["window"][0]  # weeks start on Monday
    datetime.datetime(2013, 7, 1, 0, 0)
    """
    value = pl.col(values) if isinstance(values, str) else values
    return (value if period is None else value.dt.truncate(period)).alias("window")


@dataclass(frozen=True)
class TimeSpan:
    """The time range of some data, as microseconds since the epoch (UTC).

    The data cover ``[first, end)``: from the first instant to one *tick* after the last,
    the tick being the spacing of the last two distinct instants (hourly rows ending at
    23:00 cover the day up to midnight). Dates cover their whole last day. Spans of
    disjoint parts of the data (batches, files) combine with :meth:`merge` into the span of
    the whole.

    Attributes
    ----------
    first, last : int
        Earliest and latest instant.
    previous : int or None
        Latest instant before ``last`` (None: a single distinct instant).
    day_end : int or None
        For dates: the end of the last day (in the window time zone), else None.
    """

    first: int
    last: int
    previous: int | None
    day_end: int | None

    @classmethod
    def of(cls, values: pl.Series, *, days: bool = False) -> TimeSpan | None:
        """The span of the datetimes ``values`` (from :func:`timestamp_expr`); None if all
        are null. ``days``: each value is the start of a whole day (a date column)."""
        instants = values.drop_nulls()
        if instants.is_empty():
            return None
        epoch = instants.dt.epoch(_UNIT)
        last = int(epoch.max())  # type: ignore[arg-type]
        before = epoch.filter(epoch < last)
        previous = None if before.is_empty() else int(before.max())  # type: ignore[arg-type]
        day_end = None
        if days:
            ends = instants.filter(epoch == last).head(1).dt.offset_by("1d").dt.epoch(_UNIT)
            day_end = int(ends[0])
        return cls(int(epoch.min()), last, previous, day_end)  # type: ignore[arg-type]

    @property
    def end(self) -> int | None:
        """End of the covered range (exclusive); None when no tick is known."""
        if self.day_end is not None:
            return self.day_end
        return None if self.previous is None else 2 * self.last - self.previous

    def merge(self, other: TimeSpan | None) -> TimeSpan:
        """The span of the union of the data of ``self`` and ``other``."""
        if other is None:
            return self
        tops = sorted({v for v in (self.last, self.previous, other.last, other.previous)
                       if v is not None})
        ends = [e for e in (self.day_end, other.day_end) if e is not None]
        return TimeSpan(min(self.first, other.first), tops[-1],
                        tops[-2] if len(tops) > 1 else None, max(ends) if ends else None)


def merge_spans(*spans: TimeSpan | None) -> TimeSpan | None:
    """The span of the union of several parts' data (None parts have no timestamps)."""
    found = [s for s in spans if s is not None]
    if not found:
        return None
    merged = found[0]
    for span in found[1:]:
        merged = merged.merge(span)
    return merged


def window_coverage(windows: pl.Series, span: TimeSpan | None, period: str | None,
                    min_coverage: float) -> pl.DataFrame:
    """The share of each window's span that the data's time range covers.

    Parameters
    ----------
    windows : polars Series
        Window starts (from :func:`window_start_expr`), any order, repeats allowed.
    span : TimeSpan or None
        The time range of the data the windows were cut from.
    period : str or None
        The window length; windows end one ``period`` after they start (in the window time
        zone, so calendar months and DST days have their real length).
    min_coverage : float
        A window covered less than this is ``partial``.

    Returns
    -------
    polars.DataFrame
        One row per distinct window: ``window`` (as given), ``coverage`` (Float64 in [0, 1];
        null when unknown: no period, windows that are not datetimes, a null window, or
        data with a single distinct instant) and ``partial`` (Boolean, coverage below
        ``min_coverage``; false when coverage is unknown). Windows between the first and
        the last are fully covered by construction: the data's range is one interval.

    Examples
    --------
    >>> from datetime import datetime
    >>> hours = pl.Series("t", [datetime(2024, 1, 1, h) for h in (6, 7, 8)])
    >>> days = hours.dt.truncate("1d").alias("window")
    >>> window_coverage(days, TimeSpan.of(hours), "1d", 0.5)["coverage"].to_list()
    [0.125]
    """
    frame = pl.DataFrame({"window": windows}).unique(maintain_order=True)
    end = None if span is None else span.end
    if period is None or end is None or not isinstance(windows.dtype, pl.Datetime):
        coverage = pl.lit(None, dtype=pl.Float64)
    else:
        assert span is not None
        start = pl.col("window").dt.epoch(_UNIT)
        stop = pl.col("window").dt.offset_by(period).dt.epoch(_UNIT)
        covered = (pl.min_horizontal(stop, pl.lit(end)) - pl.max_horizontal(start,
                                                                            pl.lit(span.first)))
        coverage = (covered.clip(lower_bound=0) / (stop - start)).cast(pl.Float64)
    return frame.with_columns(coverage=coverage).with_columns(
        partial=(pl.col("coverage") < min_coverage).fill_null(False))
