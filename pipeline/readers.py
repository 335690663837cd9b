"""Lazy scans of histogram and raw Parquet tables, with every read error turned into InputError.

Polars is lazy: a bad file may only fail when the query runs, so queries on scanned data
are run through :func:`collect` / :func:`iter_batches`, which convert polars, pyarrow and OS
errors into one-line :class:`~pipeline.errors.InputError` messages naming the source.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.errors import InputError

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: columns of the histogram long format that are not segment columns
HISTOGRAM_COLUMNS = ("feature", "bin", "count", "lower", "upper", "window")
_REQUIRED = ("feature", "bin", "count")
_GLOB_CHARS = frozenset("*?[")
_SHOWN_ROWS = 3  # offending row ids named in a message


def describe_source(source: Source) -> str:
    """The source as a short string for messages: a path, a glob or ``"a, b, ..."``."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    paths = [os.fspath(p) for p in source]
    return ", ".join(paths[:3]) + (f", ... ({len(paths)} files)" if len(paths) > 3 else "")


def describe_rows(ids: pl.Series, mask: np.ndarray) -> str:
    """``'3 rows (id 7, 9, 12)'``, ``'40 rows (id 7, 9, 12, ...)'``: flagged rows by their id."""
    bad = ids.filter(pl.Series(mask))
    shown = ", ".join(str(v) for v in bad.head(_SHOWN_ROWS).to_list())
    more = ", ..." if bad.len() > _SHOWN_ROWS else ""
    return f"{bad.len()} row{'s' * (bad.len() != 1)} ({ids.name} {shown}{more})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_error(error: BaseException, source: str) -> InputError:
    """The InputError to raise for an exception met while reading ``source``."""
    return InputError(f"cannot read it as Parquet: {_first_line(error)}", source=source)


#: errors polars, pyarrow and the OS raise for unreadable or malformed data
READ_ERRORS = (pl.exceptions.PolarsError, pa.ArrowException, OSError)


def collect(query: pl.LazyFrame, source: str) -> pl.DataFrame:
    """Run ``query``; a read or data error becomes an InputError naming ``source``."""
    try:
        return query.collect()
    except READ_ERRORS as error:
        raise read_error(error, source) from error


def collect_schema(query: pl.LazyFrame, source: str) -> pl.Schema:
    """The schema of ``query``, with errors converted as in :func:`collect`."""
    try:
        return query.collect_schema()
    except READ_ERRORS as error:
        raise read_error(error, source) from error


def iter_batches(query: pl.LazyFrame, source: str, *, rows: int) -> Iterator[pl.DataFrame]:
    """Stream ``query`` in DataFrames of about ``rows`` rows, converting errors as above.

    Memory stays bounded by the batch size, whatever the size of the data.
    """
    try:
        yield from query.collect_batches(chunk_size=rows)
    except READ_ERRORS as error:
        raise read_error(error, source) from error


def _check_path(path: str) -> str:
    """Reject a missing file, an empty glob or a folder without Parquet files; return the
    pattern to scan (a folder becomes a recursive ``*.parquet`` glob, which skips marker
    files such as ``_SUCCESS`` while keeping hive partitioning)."""
    if _GLOB_CHARS & set(path):
        if not glob.glob(path, recursive=True):
            raise InputError("no file matches this glob; check the pattern", source=path)
        return path
    if os.path.isdir(path):
        pattern = os.path.join(path, "**", "*.parquet")
        if not glob.glob(pattern, recursive=True):
            raise InputError("folder holds no .parquet files", source=path)
        return pattern
    if not os.path.isfile(path):
        raise InputError("file not found; check the path", source=path)
    return path


def source_files(source: str | os.PathLike[str]) -> list[str]:
    """The Parquet files a file, glob or folder source reads, sorted (e.g. to map one task
    per file). Raises the same one-line InputError as :func:`scan_source` for a missing
    path or an empty glob or folder."""
    return sorted(glob.glob(_check_path(os.fspath(source)), recursive=True))


def scan_source(source: Source) -> pl.LazyFrame:
    """Lazily scan a Parquet file, a glob, a list of files, or a (hive-partitioned) folder.

    Parameters
    ----------
    source : str, path or sequence of them
        A file, a glob (``data/*.parquet``, ``**`` allowed), a folder (read recursively;
        ``key=value`` sub-folders become columns), or a list of files.

    Returns
    -------
    polars.LazyFrame
        Nothing is read yet except the file footers (the schema is checked here).

    Raises
    ------
    InputError
        Missing path, empty glob or folder, empty list, or a file that is not Parquet.
    """
    name = describe_source(source)
    if isinstance(source, str | os.PathLike):
        paths: str | list[str] = _check_path(os.fspath(source))
    else:
        paths = [_check_path(os.fspath(p)) for p in source]
        if not paths:
            raise InputError("empty list of input files; give at least one Parquet file")
    try:
        query = pl.scan_parquet(paths, hive_partitioning=True)
    except READ_ERRORS as error:
        raise read_error(error, name) from error
    collect_schema(query, name)
    return query


def scan_raw(source: Source) -> pl.LazyFrame:
    """Lazily scan a raw table (feature columns, optional timestamp and segment columns).

    Same sources and errors as :func:`scan_source`; the columns are checked later, against
    the profile, by :func:`pipeline.binning.bin_raw`.
    """
    return scan_source(source)


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

    Returns
    -------
    polars.DataFrame
        ``feature``, ``bin`` (Utf8), ``count`` (Float64), ``lower``/``upper`` (Float64, if
        present), ``window`` (as given, if present) and segment columns (Utf8): every other
        column.

    Raises
    ------
    InputError
        Missing required column, wrong type, negative/NaN/inf/null count, null label,
        duplicate bins (with ``duplicates="error"``) or an empty table.
    """
    name = describe_source(source)
    query = scan_source(source)
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
    return _resolve_duplicates(table, keys, role, name, duplicates)


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
