"""Where data lives: lazy scans of files, globs and folders, with read errors as InputError.

Polars is lazy: a bad file may only fail when the query runs, so queries on scanned data
are run through :func:`collect` / :func:`iter_batches`, which convert polars, pyarrow and OS
errors into one-line :class:`~pipeline.errors.InputError` messages naming the source.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.errors import InputError

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

_HISTOGRAM_KEYS = {"feature", "bin", "count"}
_PROFILE_KEYS = {"feature", "bin", "count", "kind", "bin_index"}
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
    the profile, by :func:`pipeline.bins.binning.bin_raw`.
    """
    return scan_source(source)


def detect_format(source: str) -> str:
    """What a Parquet source holds: ``"profile"``, ``"histogram"`` or ``"raw"``.

    Decided from its columns: a profile has ``feature``, ``bin``, ``count``, ``kind`` and
    ``bin_index``; a histogram table ``feature``, ``bin`` and ``count``; anything else is
    raw rows. Only the schema is read.

    Raises
    ------
    InputError
        Missing file, empty glob or folder, or not Parquet.
    """
    columns = set(collect_schema(scan_source(source), source).names())
    if columns >= _PROFILE_KEYS:
        return "profile"
    return "histogram" if columns >= _HISTOGRAM_KEYS else "raw"
