"""Histogram tables in the long format (docs/data-contracts.md): read and validated.

Precomputed histograms come from other systems, so every column is checked on read: types,
labels, counts, duplicate bins, and the edges of numeric bins (both or neither, no NaN,
``lower <= upper``, no two bins of one histogram overlapping). Problems are one-line
InputErrors naming the file, feature and column or bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
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
    if target is pl.Categorical:  # numbers become categories through their text
        return pl.col(name).cast(pl.String).cast(target)
    return pl.col(name).cast(target)


def read_histograms(
    source: Source,
    *,
    role: str = "current",
    duplicates: Literal["error", "sum"] = "error",
    storage_options: StorageOptions = None,
    categorical: bool = False,
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
    categorical : bool
        The label columns (``feature``, ``bin``, segment columns and a text ``window``) as
        ``pl.Categorical`` instead of Utf8: a few distinct values repeated over millions of
        rows then take 4 bytes a row instead of 16 or more (a large current table).

    Returns
    -------
    polars.DataFrame
        ``feature``, ``bin`` (Utf8), ``count`` (Float64), ``lower``/``upper`` (Float64, if
        present), ``window`` (as given, if present) and segment columns (Utf8): every other
        column. With ``categorical``, Categorical instead of Utf8.

    Raises
    ------
    InputError
        Missing required column, wrong type, negative/NaN/inf/null count, a count or a
        histogram total of 2**53 or more (also after ``duplicates="sum"``), null label,
        duplicate bins (with ``duplicates="error"``), an empty table, or malformed edges: a
        ``lower`` column without ``upper`` (or the reverse), a bin with one edge but not the
        other, a NaN edge, ``lower > upper``, or two bins of one (segments, feature,
        window) whose edges overlap (gaps are allowed: a histogram may leave empty bins
        out).
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
    label = pl.Categorical if categorical else pl.String
    targets: dict[str, type[pl.DataType]] = {
        "feature": label, "bin": label, "count": pl.Float64,
        "lower": pl.Float64, "upper": pl.Float64, **dict.fromkeys(segments, label),
        **({"window": label} if categorical and schema.get("window") == pl.String else {})}
    exprs = [_cast_expr(c, schema[c], targets[c], f"{role} column {c!r}", name)
             if c in targets else pl.col(c) for c in schema.names()]
    table = collect(query.select(exprs), name)
    if table.height == 0:
        raise InputError(f"{role} histogram table has no rows", source=name)
    _check_values(table, role, name)
    keys = [*segments, "feature", *(["window"] if "window" in table.columns else []), "bin"]
    table = _resolve_duplicates(table, keys, role, name, duplicates)
    _check_edges(table, keys[:-1], role, name)
    check_totals(table, keys[:-1], f"{role} histogram table", name)
    return table


def histogram_runs(table: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The first row of each run of consecutive rows with equal ``columns`` (int64).

    Histogram tables are usually written one histogram after another: work per histogram
    can then be done on the first rows of the runs of its key columns instead of on every
    row (a few hundred thousand instead of millions), and spread back to the rows by run.

    >>> histogram_runs(pl.DataFrame({"f": ["a", "a", "b", "a"], "w": [1, 1, 1, 1]}),
    ...                ["f", "w"]).tolist()
    [0, 2, 3]
    """
    if not columns or not table.height:
        return np.zeros(min(table.height, 1), dtype=np.int64)
    # categories are compared by their codes: integers, not text
    values = pl.col(columns).to_physical()
    changed = pl.any_horizontal(values.ne_missing(values.shift()))
    starts = table.select(changed.arg_true()).to_series().to_numpy().astype(np.int64)
    return starts if len(starts) and starts[0] == 0 else np.r_[0, starts]


def check_totals(table: pl.DataFrame, groups: list[str], what: str, source: str) -> None:
    """Every count and every histogram's total below :data:`MAX_COUNT` (2**53)."""
    # Counts are >= 0, so no histogram can reach the limit when the whole table stays below
    # it: the group-by (seconds on 10^7 rows) only runs for tables that large in total.
    if table["count"].sum() < MAX_COUNT:
        return
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


def _edges_text(lower: float, upper: float) -> str:
    return f"[{lower:.17g}, {upper:.17g})"


def _check_edges(table: pl.DataFrame, histogram: list[str], role: str, source: str) -> None:
    """Numeric bin edges: both or neither, not NaN, ``lower <= upper``, and no two bins of
    one histogram (``histogram`` columns: segments, feature, window) overlapping."""
    present = [c for c in ("lower", "upper") if c in table.columns]
    if len(present) == 1:
        other = "upper" if present == ["lower"] else "lower"
        raise InputError(f"{role} histogram table has a {present[0]!r} column but no {other!r} "
                         "column; give both edges of numeric bins (or neither)",
                         source=source, column=other)
    if not present:
        return
    lower, upper = pl.col("lower"), pl.col("upper")
    problems = {
        "has one edge but not the other; give both (or neither, for a category)":
            lower.is_null() != upper.is_null(),
        "has a NaN edge": lower.is_nan() | upper.is_nan(),
        "has lower > upper": lower > upper,
    }
    for what, bad in problems.items():
        rows = table.filter(bad.fill_null(False))
        if rows.height:
            first = rows.row(0, named=True)
            raise InputError(f"{role} histogram table: {rows.height} bin(s) where each {what}, "
                             f"first bin {first['bin']!r} (lower {first['lower']}, upper "
                             f"{first['upper']})", source=source, feature=first["feature"])
    # Sorted by edges, bins are disjoint exactly when each starts where the previous ended
    # or later.
    previous = [pl.col(c).shift().over(histogram) for c in ("bin", "lower", "upper")]
    overlaps = (table.filter(lower.is_not_null())
                .sort([*histogram, "lower", "upper"], nulls_last=True)
                .with_columns(*(p.alias(f"previous_{c}") for p, c in
                                zip(previous, ("bin", "lower", "upper"), strict=True)))
                .filter(pl.col("lower") < pl.col("previous_upper")))
    if overlaps.height:
        first = overlaps.row(0, named=True)
        raise InputError(
            f"{role} histogram table: {overlaps.height} bin(s) overlap another bin of their "
            f"histogram, first bins {first['previous_bin']!r} (edges "
            f"{_edges_text(first['previous_lower'], first['previous_upper'])}) and "
            f"{first['bin']!r} (edges {_edges_text(first['lower'], first['upper'])}); a value "
            f"would count in both: fix the edges or merge the bins",
            source=source, feature=first["feature"])


def _resolve_duplicates(
    table: pl.DataFrame, keys: list[str], role: str, source: str,
    duplicates: Literal["error", "sum"],
) -> pl.DataFrame:
    if _keys_distinct(table, keys):
        return table
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


def _keys_distinct(table: pl.DataFrame, keys: list[str]) -> bool:
    """True when no two rows share their ``keys`` (segments, feature, window, bin): proved
    cheaply, else found by comparing the keys (False: maybe a duplicate)."""
    # Histograms usually come one after another with their bins in one order: then the
    # keys are distinct when the bins rise within each run of one histogram's rows (by
    # text or category code) and no histogram has two runs, which the runs' first rows
    # show: hashing 20 times fewer rows.
    heads = histogram_runs(table, keys[:-1])
    start = np.zeros(table.height, dtype=bool)
    start[heads] = True
    bins = pl.col(keys[-1]).to_physical()
    rising = table.select(((bins > bins.shift()) | pl.Series(start)).all()).item()
    return (rising and _distinct_hashes(table[heads], keys[:-1])) \
        or _distinct_hashes(table, keys)


def _distinct_hashes(table: pl.DataFrame, keys: list[str]) -> bool:
    """True when the rows' ``keys`` hash to distinct values (False: maybe a duplicate)."""
    # Distinct hashes prove distinct keys; hashing is several times cheaper than comparing
    # the text keys, which only runs when two hashes agree (a duplicate or a collision).
    # (Hashed first, then counted: polars fuses the two into a slower plan with twice the
    # memory.) Categories are hashed by their codes (one per label): half the time of
    # hashing the text they stand for.
    hashes = table.select(pl.struct(pl.col(keys).to_physical()).hash()).to_series()
    return hashes.n_unique() == table.height
