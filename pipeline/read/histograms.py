"""Histogram tables in the long format (docs/data-contracts.md): read and validated.

Precomputed histograms come from other systems, so every column is checked on read: types,
labels, counts, duplicate bins. Problems are one-line InputErrors naming the file, feature
and column.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from pipeline.errors import InputError
from pipeline.formats import HISTOGRAM_COLUMNS
from pipeline.read.sources import (
    Source,
    StorageOptions,
    collect,
    collect_schema,
    describe_source,
    scan_source,
)

_REQUIRED = ("feature", "bin", "count")
#: Counts from 2**53 on are no longer exact integers in float64 (and overflow the draw sizes
#: of the simulated null): larger counts, or totals, are refused.
MAX_COUNT = 2.0**53


def _cast_expr(
    name: str, dtype: pl.DataType, target: type[pl.DataType], what: str, source: str
) -> pl.Expr:
    """``col(name).cast(target)``, or an InputError when the column cannot be cast."""
    numeric_target = target is pl.Float64
    if numeric_target and not (dtype.is_numeric() or dtype == pl.Null):
        raise InputError(f"{what} must be numeric, found {dtype}; write numbers, not text",
                         source=source, column=name)
    if not numeric_target and dtype.is_nested():
        raise InputError(f"{what} must be text or a scalar, found {dtype}",
                         source=source, column=name)
    return pl.col(name).cast(target)


def read_histograms(
    source: Source,
    *,
    role: str = "current",
    duplicates: Literal["error", "sum"] = "error",
    storage_options: StorageOptions = None,
) -> pl.DataFrame:
    """Read and validate a histogram table in the long format of ``docs/architecture.md``.

    Parameters
    ----------
    source : str, path or sequence of them
        Anything :func:`scan_source` accepts.
    role : str
        ``"baseline"`` or ``"current"``: named in error messages.
    duplicates : {"error", "sum"}
        What to do with several rows for the same (segments, feature, window, bin):
        stop with an error naming the first one, or add their counts.
    storage_options : mapping, optional
        Object-store options for URL sources (see :func:`scan_source`).

    Returns
    -------
    polars.DataFrame
        ``feature``, ``bin`` (Utf8), ``count`` (Float64), ``lower``/``upper`` (Float64, if
        present), ``window`` (as given, if present) and segment columns (Utf8): every other
        column.

    Raises
    ------
    InputError
        Missing required column, wrong type, negative/NaN/inf/null count, a count or a
        histogram total of 2**53 or more (also after ``duplicates="sum"``), null label,
        duplicate bins (with ``duplicates="error"``) or an empty table.
    """
    name = describe_source(source)
    query = scan_source(source, storage_options=storage_options)
    schema = collect_schema(query, name)
    missing = [c for c in _REQUIRED if c not in schema]
    if missing:
        raise InputError(
            f"{role} histogram table lacks required column(s) {', '.join(missing)}; "
            f"found {', '.join(schema.names()) or 'no columns'}",
            source=name, column=missing[0])
    segments = [c for c in schema.names() if c not in HISTOGRAM_COLUMNS]
    targets: dict[str, type[pl.DataType]] = {
        "feature": pl.String, "bin": pl.String, "count": pl.Float64,
        "lower": pl.Float64, "upper": pl.Float64, **dict.fromkeys(segments, pl.String)}
    exprs = [_cast_expr(c, schema[c], targets[c], f"{role} column {c!r}", name)
             if c in targets else pl.col(c) for c in schema.names()]
    table = collect(query.select(exprs), name)
    if table.height == 0:
        raise InputError(f"{role} histogram table has no rows", source=name)
    _check_values(table, role, name)
    keys = [*segments, "feature", *(["window"] if "window" in table.columns else []), "bin"]
    table = _resolve_duplicates(table, keys, role, name, duplicates)
    check_totals(table, keys[:-1], f"{role} histogram table", name)
    return table


def check_totals(table: pl.DataFrame, groups: list[str], what: str, source: str) -> None:
    """Every count and every histogram's total below :data:`MAX_COUNT` (2**53)."""
    totals = table.group_by(groups).agg(pl.col("count").sum()).filter(
        pl.col("count") >= MAX_COUNT)
    if totals.height:
        first = totals.row(0, named=True)
        raise InputError(f"{what} has counts adding up to {first['count']:.6g} or more for "
                         f"feature {first['feature']!r}; counts and their totals must stay "
                         f"below 2**53 (about 9.0e15): rescale the weights",
                         source=source, column="count")


def _check_values(table: pl.DataFrame, role: str, source: str) -> None:
    """Null labels and counts that are not finite and >= 0."""
    for column in ("feature", "bin"):
        nulls = table[column].null_count()
        if nulls:
            raise InputError(f"{role} histogram table has {nulls} row(s) with a null {column} "
                             f"label; fill or drop them", source=source, column=column)
    count = pl.col("count")
    bad = table.filter(count.is_null() | ~count.is_finite() | (count < 0))
    if bad.height:
        first = bad.row(0, named=True)
        raise InputError(
            f"{role} histogram table has {bad.height} row(s) whose count is not a finite "
            f"number >= 0, first feature {first['feature']!r} bin {first['bin']!r} "
            f"count {first['count']}",
            source=source, column="count")


def _resolve_duplicates(
    table: pl.DataFrame, keys: list[str], role: str, source: str,
    duplicates: Literal["error", "sum"],
) -> pl.DataFrame:
    dup = table.filter(pl.struct(keys).is_duplicated())
    if dup.height == 0:
        return table
    if duplicates == "error":
        first = ", ".join(f"{k}={v!r}" for k, v in dup.select(keys).row(0, named=True).items())
        raise InputError(f"{role} histogram table has {dup.height} rows sharing their "
                         f"(segments, feature, window, bin) with another row, first {first}; "
                         f"pass duplicates='sum' to add them", source=source)
    others = [pl.col(c).first() for c in table.columns if c not in (*keys, "count")]
    return (table.group_by(keys, maintain_order=True)
            .agg(pl.col("count").sum(), *others)
            .select(table.columns))
