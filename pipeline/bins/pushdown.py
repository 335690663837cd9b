"""Push-down binning: a profile compiled into one aggregate SQL query, so only counts leave
the database.

The query groups the source's rows by segment columns and window and counts, per feature,
how many values reach each bin edge (``count_if(x >= edge)``; DuckDB's ``count_if``,
``count(*) FILTER (WHERE ...)`` elsewhere) or equal each kept category. The client turns
those few numbers into bin counts (differences of consecutive edge counts, ``__other__`` as
the non-null values matching no category, ``__missing__`` as the rest) and assembles the
same histogram long table as :func:`pipeline.bins.binning.bin_raw`, bin for bin:

- numeric values are compared as DOUBLE PRECISION; NaN and NULL go to ``__missing__``
  (``NULLIF(x, 'NaN')``), values outside the edges to the open tails;
- categories are compared as text (booleans are ``'true'``/``'false'``, as in polars);
- windows are computed in the database as whole periods since the same origin as polars'
  ``dt.truncate`` (the Unix epoch; Monday 1970-01-05 for weeks; January 1970 for months,
  quarters and years), and turned back into window starts of the column's type here;
- segment values come back typed and are cast to text here, exactly as binning does.

Edges and categories travel as bound parameters; identifiers are quoted by the dialect
(SQLAlchemy Core). A profile with more than :data:`MAX_AGGREGATES` counts is split into
several such queries (PostgreSQL returns at most 1,664 columns).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.bins.binning import SLOT, Binned, assemble_counts, retyped_features
from pipeline.bins.layout import FeatureBins, HasLayout, feature_bins
from pipeline.bins.profile import (
    Profile,
    profile_from_stats,
    profiled_features,
    summarise_categories,
)
from pipeline.errors import ConfigError, InputError
from pipeline.labels import MISSING, OTHER, segment_column
from pipeline.read.location import Location
from pipeline.read.sources import check_scalar_columns
from pipeline.read.sql import columns_of, open_relation, run_query
from pipeline.windows import UTC, TimeSpan, check_period

#: Counts per query: PostgreSQL's limit of 1,664 result columns, less room for the keys.
MAX_AGGREGATES = 1500
_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
             "d": 86_400_000_000, "w": 7 * 86_400_000_000}
_MONDAY_US = 4 * 86_400_000_000  # 1970-01-05, where polars' weekly windows start
_EPOCH = datetime(1970, 1, 1)


def _period(period: str) -> tuple[int, int, bool]:
    """(months, microseconds, has weeks) of a polars duration the database can window."""
    months = micros = 0
    weeks = False
    for number, unit in re.findall(r"(\d+)(ns|us|ms|mo|s|m|h|d|w|q|y)", check_period(period)):
        n = int(number)
        if unit in ("mo", "q", "y"):
            months += n * {"mo": 1, "q": 3, "y": 12}[unit]
        elif unit == "ns":
            if n % 1000:
                raise ConfigError(f"input.period {period!r}: windows in a database are whole "
                                  "microseconds")
            micros += n // 1000
        else:
            micros += n * _UNITS_US[unit]
            weeks |= unit == "w"
    if months and micros:
        raise ConfigError(f"input.period {period!r}: a database source windows by months "
                          "or by a fixed duration, not both")
    if weeks and micros % _UNITS_US["w"]:
        raise ConfigError(f"input.period {period!r}: a database source windows by whole "
                          "weeks or by days/hours, not both")
    return months, micros, weeks


def _sql() -> tuple[Any, Any]:
    import sqlalchemy as sa
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql.expression import ColumnElement

    global _ELEMENTS
    if _ELEMENTS is not None:
        return sa, _ELEMENTS

    class CountIf(ColumnElement[int]):
        """count of rows where ``condition`` holds."""

        inherit_cache = True
        type = sa.BigInteger()

        def __init__(self, condition: Any) -> None:
            self.condition = condition

    @compiles(CountIf)
    def _count_filter(element: CountIf, compiler: Any, **kw: Any) -> str:
        return f"count(*) FILTER (WHERE {compiler.process(element.condition, **kw)})"

    @compiles(CountIf, "duckdb")
    def _count_if(element: CountIf, compiler: Any, **kw: Any) -> str:
        # DuckDB evaluates FILTER clauses one by one: 50x slower than count_if here.
        return f"count_if({compiler.process(element.condition, **kw)})"

    class EpochMicros(ColumnElement[Any]):
        """Microseconds since 1970-01-01 of a timestamp (UTC for time-zone-aware ones)."""

        inherit_cache = True
        type = sa.Numeric()

        def __init__(self, value: Any) -> None:
            self.value = value

    @compiles(EpochMicros)
    def _epoch(element: EpochMicros, compiler: Any, **kw: Any) -> str:
        return f"(EXTRACT(EPOCH FROM {compiler.process(element.value, **kw)}) * 1000000)"

    @compiles(EpochMicros, "duckdb")
    def _epoch_duckdb(element: EpochMicros, compiler: Any, **kw: Any) -> str:
        return f"epoch_us({compiler.process(element.value, **kw)})"

    _ELEMENTS = {"count_if": CountIf, "epoch_us": EpochMicros}
    return sa, _ELEMENTS


_ELEMENTS: dict[str, Any] | None = None


def _window_key(sa: Any, elements: dict[str, Any], column: Any, dtype: pl.DataType,
                period: str | None, name: str, source: str) -> Any:
    """The SQL expression each row's window is grouped by: the value itself without a
    period, else the number of whole periods since the origin."""
    if period is None:
        return column
    if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise InputError(f"timestamp column must be a date or timestamp to cut into periods "
                         f"in the database, found {dtype}; CAST it in a query source",
                         source=source, column=name)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC"):
        raise InputError(f"timestamp column has time zone {dtype.time_zone}; windows in a "
                         f"database are cut in UTC", source=source, column=name)
    months, micros, weeks = _period(period)
    value = sa.cast(column, sa.DateTime()) if dtype == pl.Date else column
    if months:
        index = ((sa.extract("year", value) - 1970) * 12 + sa.extract("month", value) - 1)
        return sa.func.floor(index / float(months))
    offset = _MONDAY_US if weeks else 0
    return sa.func.floor((elements["epoch_us"](value) - offset) / float(micros))


def _window_values(index: pl.Series, dtype: pl.DataType, period: str) -> pl.Series:
    """Window starts, of the timestamp column's type, from the periods-since-origin."""
    months, micros, weeks = _period(period)
    whole = pl.col("index")
    if months:
        total = whole * months
        start = pl.date(1970 + total // 12, total % 12 + 1, 1)
    else:
        offset = _MONDAY_US if weeks else 0
        start = pl.lit(_EPOCH) + pl.duration(microseconds=whole * micros + offset)
    starts = pl.DataFrame({"index": index.cast(pl.Int64)}).select(start).to_series()
    # as pipeline.bins.binning: naive UTC window starts, dates included
    return starts.cast(pl.Datetime("us")).alias("window")


def _aggregates(sa: Any, elements: dict[str, Any], spec: FeatureBins, value: Any) -> list[Any]:
    """What the database counts for one feature: its non-missing values, then how many
    reach each edge (numeric) or equal each category (categorical)."""
    count_if = elements["count_if"]
    if spec.kind == "numeric":
        tests = [value >= sa.literal(float(e), sa.Double()) for e in spec.edges]
    else:
        tests = [value == sa.literal(c, sa.String()) for c in spec.categories]
    return [sa.func.count(value), *(count_if(t) for t in tests)]


def _bin_counts(wide: pl.DataFrame, columns: list[str], spec: FeatureBins) -> np.ndarray:
    """(groups x bins) counts of one feature from its aggregate columns and the row count."""
    # count_if of a group whose values are all NULL is NULL in DuckDB, and its sums come
    # back as wide decimals: both become plain int64 counts here.
    parts = wide.select(pl.col(columns).fill_null(0).cast(pl.Int64)).to_numpy()
    present, reached = parts[:, :1], parts[:, 1:]
    rows = wide["kl_rows"].to_numpy().astype(np.int64)[:, None]
    if spec.kind == "numeric":
        at_least = np.hstack([present, reached, np.zeros_like(present)])
        counts = at_least[:, :-1] - at_least[:, 1:]
    else:
        counts = np.hstack([reached, present - reached.sum(axis=1, keepdims=True)])
    return np.hstack([counts, rows - present])


def _chunks(specs: list[FeatureBins]) -> list[list[int]]:
    """Feature indices grouped so that no query has more than MAX_AGGREGATES counts."""
    chunks: list[list[int]] = [[]]
    size = 0
    for i, spec in enumerate(specs):
        cost = spec.n_bins - 1
        if chunks[-1] and size + cost > MAX_AGGREGATES:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += cost
    return chunks


def bin_in_database(
    location: Location,
    profile: HasLayout,
    *,
    timestamp: str | None = None,
    period: str | None = None,
    segments: Sequence[str] = (),
    features: Sequence[str] | None = None,
    missing: Literal["error", "skip"] = "error",
    window_timezone: str = UTC,
) -> Binned:
    """Histograms of a database table or query against a profile, counted in the database.

    Same parameters, result and errors as :func:`pipeline.bins.binning.bin_windows`, for a
    database source (:mod:`pipeline.read.sql`) instead of a LazyFrame. A text timestamp
    cannot be cut into periods in the database: CAST it in a query source. Windows are cut
    in UTC. With a period the rows' time range (``span``, for window coverage) is measured
    in the database too, by two more small aggregate queries.

    Examples
    --------
    >>> from pipeline.read.location import parse_location
    >>> source = parse_location("duckdb:///warehouse.duckdb#features")
    >>> bin_in_database(source, profile, timestamp="ts", period="1d")  # doctest: +SKIP
    """
    if period is not None and timestamp is None:
        raise ConfigError("period is set but timestamp is not; name the timestamp column")
    if period is not None and window_timezone != UTC:
        raise ConfigError(f"input.window_timezone {window_timezone!r}: a database source cuts "
                          "its windows in UTC; set window_timezone = \"UTC\"")
    source = location.shown
    sa, elements = _sql()
    specs = feature_bins(profile.layout)
    if features is not None:
        unknown = sorted(set(features) - {f.name for f in specs})
        if unknown:
            raise InputError("not a feature of the profile", feature=unknown[0])
        specs = [f for f in specs if f.name in set(features)]
    with open_relation(location) as (connection, relation):
        schema = columns_of(relation, connection, location)
        for key in [*segments, *([timestamp] if timestamp else [])]:
            if key not in schema:
                raise InputError("column not found in the raw data; check the "
                                 "timestamp/segment settings", source=source, column=key)
        check_scalar_columns(schema, segments, source)
        absent = [f.name for f in specs if f.name not in schema]
        if absent and missing == "error":
            raise InputError(f"raw data lacks profile feature column(s) {', '.join(absent)}",
                             source=source, column=absent[0])
        changed = retyped_features(schema, profile, [f.name for f in specs
                                                     if f.name in schema])
        if changed and missing == "error":
            name, why = next(iter(changed.items()))
            raise InputError(why, source=source, feature=name)
        specs = [f for f in specs if f.name in schema and f.name not in changed]
        rows = relation.alias("rows")
        keys = [rows.c[s].label(f"kl_s{i}") for i, s in enumerate(segments)]
        if timestamp is not None:
            keys.append(_window_key(sa, elements, rows.c[timestamp], schema[timestamp],
                                    period, timestamp, source).label("kl_w"))
        values = [(_numeric_value(sa, rows.c[f.name]) if f.kind == "numeric"
                   else sa.cast(rows.c[f.name], sa.String())).label(f"kl_v{i}")
                  for i, f in enumerate(specs)]
        inner = sa.select(*keys, *values).subquery("binned")
        key_columns = [inner.c[k.name] for k in keys]
        wide: pl.DataFrame | None = None
        names: dict[int, list[str]] = {}
        for chunk in _chunks(specs) if specs else [[]]:
            aggregates = [sa.func.count().label("kl_rows")]
            for i in chunk:
                found = _aggregates(sa, elements, specs[i], inner.c[f"kl_v{i}"])
                names[i] = [f"kl_c{i}_{j}" for j in range(len(found))]
                aggregates += [a.label(n) for a, n in zip(found, names[i], strict=True)]
            query = sa.select(*key_columns, *aggregates).group_by(*key_columns)
            part = run_query(connection, query, location)
            wide = part if wide is None else wide.join(
                part.drop("kl_rows"), on=[k.name for k in keys], nulls_equal=True)
        span = (None if timestamp is None or period is None else
                _database_span(sa, elements, connection, rows, timestamp,
                               schema[timestamp] == pl.Date, location))
    assert wide is not None
    return Binned(_long(wide, specs, names, segments, timestamp, period,
                        None if timestamp is None else schema[timestamp], profile.layout),
                  span)


def _database_span(sa: Any, elements: dict[str, Any], connection: Any, rows: Any,
                   timestamp: str, days: bool, location: Location) -> TimeSpan | None:
    """The rows' time range (:class:`pipeline.windows.TimeSpan`), measured in the database:
    first and last instant, then the last instant before the last one."""
    column = rows.c[timestamp]
    micros = elements["epoch_us"](sa.cast(column, sa.DateTime()) if days else column)
    ends = run_query(connection, sa.select(sa.func.min(micros).label("first"),
                                           sa.func.max(micros).label("last"))
                     .select_from(rows), location)
    if ends["last"][0] is None:
        return None
    first, last = int(ends["first"][0]), int(ends["last"][0])
    before = run_query(connection, sa.select(sa.func.max(micros).label("previous"))
                       .select_from(rows).where(micros < last), location)["previous"][0]
    return TimeSpan(first, last, None if before is None else int(before),
                    last + _UNITS_US["d"] if days else None)


def _long(wide: pl.DataFrame, specs: list[FeatureBins], names: dict[int, list[str]],
          segments: Sequence[str], timestamp: str | None, period: str | None,
          dtype: pl.DataType | None, layout: pl.DataFrame) -> pl.DataFrame:
    """The aggregate rows as binning's counts (keys, slot, count), assembled alike."""
    private = [segment_column(s) for s in segments]
    key_columns = [wide[f"kl_s{i}"].cast(pl.String).alias(p) for i, p in enumerate(private)]
    keys = list(private)
    if timestamp is not None:
        window = wide["kl_w"]
        if period is not None and dtype is not None:
            window = _window_values(window, dtype, period)
        key_columns.append(window.alias("window"))
        keys.append("window")
    key_frame = pl.DataFrame(key_columns)
    blocks = [_bin_counts(wide, names[i], spec) for i, spec in enumerate(specs)]
    counts = np.hstack(blocks) if blocks else np.zeros((wide.height, 0), dtype=np.int64)
    rows, slots = np.nonzero(counts)
    long = pl.DataFrame({SLOT: slots.astype(np.int64), "count": counts[rows, slots]})
    frame = pl.concat([key_frame[rows], long], how="horizontal") if keys else long
    return assemble_counts(frame, private, keys, specs, layout)



def _numeric_value(sa: Any, column: Any) -> Any:
    """A numeric column as DOUBLE PRECISION with NaN as NULL (binned as ``__missing__``)."""
    return sa.func.nullif(sa.cast(column, sa.Double()), sa.cast(sa.literal("NaN"), sa.Double()))


def _nearest_fractions(levels: list[float], n: int) -> list[float]:
    """Fractions for which ``percentile_disc`` (value at 0-based index ``ceil(f n) - 1``,
    as in PostgreSQL and DuckDB) returns polars' ``quantile(level, "nearest")`` (index
    ``round(level (n - 1))``, halves away from zero)."""
    indices = [int(np.floor(level * (n - 1) + 0.5)) for level in levels]
    return [(k + 0.5) / n for k in indices]


def _database_stats(sa: Any, connection: Any, rows: Any, kinds: dict[str, str],
                    fixed: dict[str, np.ndarray], strategy: str, bins: int,
                    max_categories: int, min_category_count: int,
                    location: Location) -> dict[str, Any]:
    """What :func:`pipeline.bins.profile.profile_from_stats` needs, computed in the database
    with the same definitions as polars: finite min/max/integrality and nearest-rank
    quantiles of numeric features, top categories (by count, ties by value; at most
    ``max_categories`` with at least ``min_category_count`` rows) of the others."""
    infinity = sa.cast(sa.literal("Infinity"), sa.Double())
    finite = {}
    aggregates = [sa.func.count().label("kl_rows")]
    for i, (name, kind) in enumerate(kinds.items()):
        if kind == "numeric":
            x = _numeric_value(sa, rows.c[name])
            finite[name] = value = sa.case((sa.and_(x > -infinity, x < infinity), x))
            aggregates += [sa.func.min(value).label(f"kl_min{i}"),
                           sa.func.max(value).label(f"kl_max{i}"),
                           sa.func.count(value).label(f"kl_n{i}"),
                           sa.func.bool_and(value == sa.func.floor(value)).label(f"kl_int{i}")]
        else:
            text = sa.cast(rows.c[name], sa.String())
            seen = sa.case((text.not_in([MISSING, OTHER]), text))
            aggregates.append(sa.func.count(sa.distinct(seen)).label(f"kl_distinct{i}"))
    first = run_query(connection, sa.select(*aggregates), location).row(0, named=True)
    stats: dict[str, Any] = {"__rows": first["kl_rows"]}
    levels = [j / bins for j in range(1, bins)]
    quantiles = []
    for i, (name, kind) in enumerate(kinds.items()):
        if kind != "numeric":
            continue
        low, high = first[f"kl_min{i}"], first[f"kl_max{i}"]
        stats |= {f"{name}\0min": low, f"{name}\0max": high,
                  f"{name}\0integral": first[f"kl_int{i}"] is not False,
                  f"{name}\0q": [None] * len(levels)}
        n = int(first[f"kl_n{i}"])
        if strategy == "quantile" and name not in fixed and n:
            quantiles += [sa.func.percentile_disc(f).within_group(finite[name])
                          .label(f"kl_q{i}_{j}")
                          for j, f in enumerate(_nearest_fractions(levels, n))]
    if quantiles:
        found = run_query(connection, sa.select(*quantiles), location).row(0, named=True)
        for i, name in enumerate(kinds):
            if f"kl_q{i}_0" in found:
                stats[f"{name}\0q"] = [float(found[f"kl_q{i}_{j}"]) for j in range(len(levels))]
    for i, (name, kind) in enumerate(kinds.items()):
        if kind == "numeric":
            continue
        text = sa.cast(rows.c[name], sa.String()).label("value")
        counted = (sa.select(text, sa.func.count().label("n"),
                             sa.func.rank().over(order_by=sa.func.count().desc()).label("r"))
                   .where(text.is_not(None), text.not_in([MISSING, OTHER]))
                   .group_by(text).subquery("counted"))
        top = run_query(connection, sa.select(counted.c.value, counted.c.n)
                        .where(counted.c.r <= max_categories,
                               counted.c.n >= min_category_count), location)
        stats[f"{name}\0top"] = (top.sort(["n", "value"], descending=[True, False])
                                 .head(max_categories)["value"].to_list())
        stats[f"{name}\0distinct"] = first[f"kl_distinct{i}"]
    return stats


def _database_categories(sa: Any, connection: Any, rows: Any, kinds: dict[str, str],
                         segments: list[str], location: Location) -> list[dict[str, Any]]:
    """:func:`pipeline.bins.profile.summarise_categories` of the rows per category and
    segment, counted in the database (segments and values as text, as polars casts them)."""
    keys = [sa.cast(rows.c[s], sa.String()).label(f"kl_s{i}") for i, s in enumerate(segments)]
    finest = {}
    for name, kind in kinds.items():
        if kind != "categorical":
            continue
        value = sa.cast(rows.c[name], sa.String()).label("kl_value")
        query = sa.select(*keys, value, sa.func.count().label("kl_n")).group_by(*keys, value)
        finest[name] = run_query(connection, query, location).rename(
            {**{f"kl_s{i}": f"\0segment{i}" for i in range(len(segments))},
             "kl_value": "\0value", "kl_n": "\0n"}
        ).with_columns(pl.col("\0n").cast(pl.Int64))
    return summarise_categories(finest, segments)


def profile_in_database(
    location: Location,
    *,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    segments: Sequence[str] = (),
    strategy: Literal["quantile", "uniform"] = "quantile",
    bins: int = 20,
    max_categories: int = 1000,
    min_category_count: int = 1,
    fixed_edges: dict[str, list[float]] | None = None,
) -> Profile:
    """A baseline profile of a database table or query, computed in the database.

    The same profile :func:`pipeline.bins.profile.build_profile` builds from the same rows
    (same parameters): quantiles, extremes and top categories are aggregates in the
    database, and the baseline counts come from :func:`bin_in_database`; only those
    numbers, and the count of each category per segment (for the unseen-mass estimate,
    docs/alerts.md), leave it.
    """
    source = location.shown
    keys = list(dict.fromkeys(segments))
    sa, _ = _sql()
    with open_relation(location) as (connection, relation):
        schema = columns_of(relation, connection, location)
        check_scalar_columns(schema, keys, source)
        kinds, fixed = profiled_features(schema, features=features, exclude=exclude,
                                         segments=keys, strategy=strategy, bins=bins,
                                         max_categories=max_categories,
                                         min_category_count=min_category_count,
                                         fixed_edges=fixed_edges, source=source)
        rows = relation.alias("rows")
        stats = _database_stats(sa, connection, rows, kinds, fixed,
                                strategy, bins, max_categories, min_category_count, location)
        categories = _database_categories(sa, connection, rows, kinds, keys, location)
    return profile_from_stats(
        stats, kinds, fixed,
        lambda layout: bin_in_database(location, Profile(layout, {}), segments=keys).histograms,
        segments=keys, strategy=strategy, bins=bins, max_categories=max_categories,
        min_category_count=min_category_count, source=source, categories=categories)
