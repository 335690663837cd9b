"""Where data lives: lazy scans of files, globs, folders, object stores, lakehouse tables and
databases, with read errors as one-line InputErrors naming the source.

A source is one string (:mod:`pipeline.read.location`): a local or object-store file, glob
or folder of Parquet, CSV or NDJSON; a Delta Lake or Iceberg table; or a database table or
query. Local files are listed here, once each by real path (a symlink loop such as
``latest -> .`` cannot make a file count twice), and their schemas are checked against each
other: numeric columns whose type differs between files are widened (Int64 and Float64 read
as Float64), so are timestamps stored with different units (read as microseconds); other
differences and hive folder keys that a file also holds as a column are errors naming both
files or both places. A file's name is never a glob: ``cur[1].parquet`` is that file.

Polars is lazy: a bad file may only fail when the query runs, so queries on scanned data
are run through :func:`collect` / :func:`iter_batches`, which convert polars, pyarrow and OS
errors into one-line :class:`~pipeline.errors.InputError` messages naming the source.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import polars as pl

from pipeline.errors import InputError
from pipeline.read.frames import Frame
from pipeline.read.location import Location, parse_location, redact

#: A source string or path, a list of local files, or an in-memory table (the Python API).
Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Frame
StorageOptions = Mapping[str, str | int | bool] | None

_HISTOGRAM_KEYS = {"feature", "bin", "count"}
_GLOB_CHARS = frozenset("*?[")
_SHOWN_ROWS = 3  # offending row ids named in a message
_FILE = "\0file"  # private column naming each row's file, for listing object stores
_SUFFIXES = {"parquet": (".parquet",), "csv": (".csv",), "ndjson": (".ndjson", ".jsonl")}
_FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "ndjson": "NDJSON", "delta": "a Delta table",
                 "iceberg": "an Iceberg table", "sql": "a database table"}
_HIVE_KEY = re.compile(r"^([^=/]+)=([^/]*)$")
_UNREACHABLE = re.compile(r"connect error|connection refused|dns error|failed to lookup|"
                          r"timed out|connection reset|could not connect|name or service",
                          re.IGNORECASE)
_DENIED = re.compile(r"\b403\b|forbidden|access ?denied|invalidaccesskeyid|signaturedoesnotmatch|"
                     r"expiredtoken|unauthori[sz]ed|\b401\b|credential",
                     re.IGNORECASE)
_ABSENT = re.compile(r"\b404\b|nosuchkey|nosuchbucket|no such file|object at location .* not "
                     r"found", re.IGNORECASE)
_TYPE_CLASH = re.compile(r"data type mismatch for column (\S+): incoming: (\S+) != target: (\S+)")
#: Scan casts that widen numbers across files (ints to wider ints or floats, floats up) and
#: bring timestamps of any unit to microseconds.
_WIDEN = pl.ScanCastOptions(integer_cast=["upcast", "allow-float"], float_cast="upcast",
                            datetime_cast=["upcast", "nanosecond-downcast"])


def describe_source(source: Source) -> str:
    """The source as a short string for messages: a path, a glob or ``"a, b, ..."``, with
    passwords and tokens in URLs masked; an in-memory table by its name."""
    if isinstance(source, Frame):
        return source.name
    if isinstance(source, str | os.PathLike):
        return redact(os.fspath(source))
    paths = [redact(os.fspath(p)) for p in source]
    return ", ".join(paths[:3]) + (f", ... ({len(paths)} files)" if len(paths) > 3 else "")


def describe_rows(ids: pl.Series, mask: np.ndarray) -> str:
    """``'3 rows (id 7, 9, 12)'``, ``'40 rows (id 7, 9, 12, ...)'``: flagged rows by their id."""
    bad = ids.filter(pl.Series(mask))
    shown = ", ".join(str(v) for v in bad.head(_SHOWN_ROWS).to_list())
    more = ", ..." if bad.len() > _SHOWN_ROWS else ""
    return f"{bad.len()} row{'s' * (bad.len() != 1)} ({ids.name} {shown}{more})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return redact(lines[0]) if lines else type(error).__name__


def read_error(error: BaseException, source: str, what: str = "Parquet") -> InputError:
    """The InputError to raise for an exception met while reading ``source``.

    The message says what failed — the endpoint cannot be reached, access was denied (check
    the credentials; they are never printed), the object is absent, files disagree on a
    column's type — or that the data cannot be read as ``what`` (``"Parquet"``, ``"CSV"``,
    ...).
    """
    text = str(error)
    source = redact(source)
    if isinstance(error, ConnectionError) or _UNREACHABLE.search(text):
        return InputError(f"cannot reach the storage endpoint ({_first_line(error)}); check "
                          "the URL, the endpoint and the network", source=source)
    if isinstance(error, PermissionError) or _DENIED.search(text):
        return InputError("access denied; check the credentials (storage_options or the "
                          "standard environment variables) and the permissions",
                          source=source)
    clash = _TYPE_CLASH.search(text)
    if clash:
        column, incoming, target = clash.groups()
        return InputError(f"files disagree on the type of this column ({target} in one, "
                          f"{incoming} in another) and the types cannot be widened; "
                          f"write one type", source=source, column=column)
    if isinstance(error, FileNotFoundError) or _ABSENT.search(text):
        return InputError(f"not found ({_first_line(error)}); check the path", source=source)
    return InputError(f"cannot read it as {what}: {_first_line(error)}", source=source)


def read_errors() -> tuple[type[Exception], ...]:
    """The errors polars, pyarrow and the OS raise for unreadable or malformed data.

    pyarrow's only when something imported it (lakehouse readers): a run that never
    needs pyarrow does not pay for importing it.
    """
    pyarrow = sys.modules.get("pyarrow")
    arrow = () if pyarrow is None else (pyarrow.ArrowException,)
    return (pl.exceptions.PolarsError, OSError, *arrow)


def collect(query: pl.LazyFrame, source: str) -> pl.DataFrame:
    """Run ``query``; a read or data error becomes an InputError naming ``source``."""
    try:
        return query.collect()
    except read_errors() as error:
        raise read_error(error, source) from error


def collect_schema(query: pl.LazyFrame, source: str) -> pl.Schema:
    """The schema of ``query``, with errors converted as in :func:`collect`."""
    try:
        return query.collect_schema()
    except read_errors() as error:
        raise read_error(error, source) from error


#: Rows per streamed batch: bounds memory, amortises per-batch overhead.
BATCH_ROWS = 500_000
#: Features read per pass over raw rows: polars plans a select in time superlinear in its
#: expressions (2,000 features: 8.6 s in one select, 0.7 s in selects of 100), so wide tables
#: take one pass per this many features, each reading only its own columns.
FEATURES_PER_PASS = 100


#: How streamed queries run: without polars' common-subplan elimination, which computes a
#: plan used more than once (the select under a sampled pass's slices) once, whole, holding
#: every row of it: a 50M x 20 profile peaked at 7.5 GB instead of 1 GB.
_STREAMED = pl.QueryOptFlags(comm_subplan_elim=False)


def iter_batches(query: pl.LazyFrame, source: str, *,
                 rows: int | None = None) -> Iterator[pl.DataFrame]:
    """Stream ``query`` in DataFrames of about ``rows`` rows (default :data:`BATCH_ROWS`),
    converting errors as above.

    Memory stays bounded by the batch size, whatever the size of the data.
    """
    try:
        yield from query.collect_batches(chunk_size=rows or BATCH_ROWS, optimizations=_STREAMED)
    except read_errors() as error:
        raise read_error(error, source) from error


# -- listing local files ---------------------------------------------------------------------

def _kept(paths: Sequence[str]) -> list[str]:
    """Files listed once by real path (the shortest path naming each), sorted."""
    chosen: dict[str, str] = {}
    for path in sorted(paths, key=lambda p: (p.count(os.sep), p)):
        chosen.setdefault(os.path.realpath(path), path)
    return sorted(chosen.values())


def _walk(root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Data files below ``root``, following symlinks but entering each real folder once."""
    found, seen, stack = [], set(), [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            raise InputError("cannot list this folder: permission denied; grant read and "
                             "execute permission", source=folder) from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry.path)
            elif entry.name.lower().endswith(suffixes) and entry.is_file():
                found.append(entry.path)
    return _kept(found)


def _glob_root(pattern: str) -> str:
    """The folder a glob starts from: its leading components without glob characters."""
    parts = pattern.split(os.sep)
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)),
                                    len(parts))]]
    return os.sep.join(fixed) or "."


def _local_files(location: Location) -> tuple[list[str], str | None]:
    """The files a local file/glob/folder source reads, and the folder hive keys start at.

    Raises
    ------
    InputError
        A missing path, an unreadable folder, an empty folder or glob.
    """
    path, fmt = location.path, location.format
    suffixes = _SUFFIXES[fmt]
    if os.path.isdir(path):
        files = _walk(path, suffixes)
        if not files:
            raise InputError(f"folder holds no {'/'.join(suffixes)} files", source=path)
        return files, path
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise InputError("file not found (a broken link?); check the path", source=path)
        if not os.access(path, os.R_OK):
            raise InputError("cannot read this file: permission denied", source=path)
        return [path], None
    if _GLOB_CHARS & set(path):
        root = _glob_root(path)
        files = _kept([p for p in glob.glob(path, recursive=True) if os.path.isfile(p)])
        if not files:
            if os.path.isdir(root) and not os.access(root, os.R_OK | os.X_OK):
                raise InputError("cannot list this folder: permission denied; grant read and "
                                 "execute permission", source=root)
            raise InputError("no file matches this glob; check the pattern (write [*], [?] "
                             "or [[] for a literal *, ? or [)", source=path)
        return files, root
    raise InputError("file not found; check the path", source=path)


def _hive_keys(path: str, root: str | None) -> dict[str, str]:
    """``key=value`` folders between ``root`` and the file, as {key: value}."""
    folder = os.path.dirname(path)
    if root is None or not folder:  # a bare file name has no folders polars would read
        return {}
    relative = os.path.relpath(folder, root)
    return {m.group(1): m.group(2) for part in relative.split(os.sep)
            if (m := _HIVE_KEY.match(part))}


def _check_hive_keys(fmt: str, path: str, keys: dict[str, str], schema: pl.Schema) -> None:
    """A folder key that the file also holds as a column must agree with every row: polars
    would silently replace the rows' own values by the folder's."""
    for key, value in keys.items():
        if key not in schema:
            continue
        own = (_scan_files(fmt, [path], hive=False, options=None)
               .select(pl.col(key).cast(pl.String).unique()).collect().to_series())
        other = [v for v in own.to_list() if v != value]
        if other:
            raise InputError(f"the folder key {key}={value} disagrees with the file's own "
                             f"{key!r} column (value {other[0]!r}); rename one of them or "
                             f"move the file", source=path, column=key)


def _scan_files(fmt: str, files: str | list[str], *, hive: bool,
                options: StorageOptions, schema: Mapping[str, pl.DataType] | None = None,
                file_column: str | None = None) -> pl.LazyFrame:
    """Scan files with polars; a list is taken literally, a string may be a glob."""
    storage = dict(options) if options else None
    if fmt == "csv":
        return pl.scan_csv(files, storage_options=storage, schema=schema, try_parse_dates=True,
                           glob=isinstance(files, str), include_file_paths=file_column)
    if fmt == "ndjson":
        return pl.scan_ndjson(files, storage_options=storage, schema=schema,
                              include_file_paths=file_column)
    return pl.scan_parquet(files, hive_partitioning=hive, storage_options=storage,
                           glob=isinstance(files, str), schema=schema,
                           cast_options=_WIDEN if schema is not None else None,
                           include_file_paths=file_column)


def _file_schema(fmt: str, path: str) -> pl.Schema:
    try:
        # a list: the path is the file's name, not a glob
        return _scan_files(fmt, [path], hive=False, options=None).collect_schema()
    except read_errors() as error:
        raise read_error(error, path, _FORMAT_NAMES[fmt]) from error


def _widened(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    """The type both columns are read as, when numbers (or nulls) can be widened, or
    timestamps of one time zone stored with different units."""
    if a == b:
        return a
    if isinstance(a, pl.Datetime) and isinstance(b, pl.Datetime):
        return pl.Datetime("us", a.time_zone) if a.time_zone == b.time_zone else None
    numeric = (a.is_numeric() or a == pl.Null) and (b.is_numeric() or b == pl.Null)
    if not numeric or a.is_decimal() or b.is_decimal():
        return None
    frames = [pl.DataFrame(schema={"x": a}), pl.DataFrame(schema={"x": b})]
    return pl.concat(frames, how="vertical_relaxed").schema["x"]


def _unified_schema(fmt: str, files: list[str], root: str | None
                    ) -> dict[str, pl.DataType] | None:
    """One schema for every file: numeric types widened; None when the files agree.

    Raises
    ------
    InputError
        A file lacking a column another has, types that cannot be widened, or a hive
        folder key that a file also holds as a column.
    """
    merged: dict[str, pl.DataType] | None = None
    first = files[0]
    changed = False
    for path in files:
        schema = _file_schema(fmt, path)
        _check_hive_keys(fmt, path, _hive_keys(path, root), schema)
        if merged is None:
            merged = dict(schema)
            continue
        for name in merged:
            if name not in schema:
                raise InputError(f"lacks column {name!r} that {first!r} has; give every file "
                                 f"the same columns", source=path, column=name)
        for name, dtype in schema.items():
            if name not in merged:
                raise InputError(f"lacks column {name!r} that {path!r} has; give every file "
                                 f"the same columns", source=first, column=name)
            wide = _widened(merged[name], dtype)
            if wide is None:
                raise InputError(f"column type {dtype} here but {merged[name]} in {first!r}; "
                                 f"write one type in every file", source=path, column=name)
            changed |= wide != merged[name] or wide != dtype
            merged[name] = wide
    return merged if changed else None


def _remote_pattern(location: Location) -> str:
    """The URL polars scans: a file or glob as given, a folder as a recursive glob."""
    path = location.path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if _GLOB_CHARS & set(path) or (not path.endswith("/") and "." in last):
        return path
    return path.rstrip("/") + "/**/*" + _SUFFIXES[location.format][0]


def _scan_location(location: Location, options: StorageOptions) -> pl.LazyFrame:
    storage = dict(options) if options else None
    if location.format == "delta":
        try:
            from deltalake.exceptions import DeltaError
        except ImportError:
            raise InputError("reading a Delta table needs the lakehouse extra: pip install "
                             "'kl-drift[lakehouse]'", source=location.shown) from None
        try:
            table = pl.scan_delta(location.path, storage_options=storage)
            table.collect_schema()  # a folder that is no Delta table fails here
        except DeltaError as error:
            raise read_error(error, location.shown, _FORMAT_NAMES["delta"]) from error
        return table
    if location.format == "iceberg":
        return pl.scan_iceberg(location.path, storage_options=storage)
    if location.format == "sql":
        from pipeline.read.sql import read_sql  # optional dependency: the [sql] extra

        return read_sql(location).lazy()
    if location.remote:
        # hive keys in the path count for a single file too (e.g. one file per Dask task)
        return _scan_files(location.format, _remote_pattern(location), hive=True,
                           options=options)
    files, root = _local_files(location)
    # A single file's path may hold hive keys too (e.g. one file per Dask task).
    schema = _unified_schema(location.format, files, root or os.sep)
    return _scan_files(location.format, files, hive=True, options=None, schema=schema)


def source_files(source: str | os.PathLike[str], *,
                 storage_options: StorageOptions = None) -> list[str]:
    """The files a file, glob or folder source reads, sorted, each once (e.g. to map one
    task per file). Object-store sources are listed by polars on this machine; each path
    can then be read on any machine with the same credentials.

    Raises
    ------
    InputError
        As :func:`scan_source`; also for a Delta, Iceberg or database source (not files).
    """
    location = parse_location(source)
    if not location.is_files:
        raise InputError("not a file, glob or folder source, so it cannot be split by file",
                         source=location.shown)
    if not location.remote:
        return _local_files(location)[0]
    pattern = _remote_pattern(location)
    if pattern == location.path and not _GLOB_CHARS & set(pattern):
        return [pattern]
    listed = _scan_files(location.format, pattern, hive=False, options=storage_options,
                         file_column=_FILE).select(_FILE).unique()
    files = collect(listed, location.shown).to_series().sort().to_list()
    if not files:
        raise InputError("no file matches this URL", source=location.shown)
    return files


def scan_source(source: Source, *, storage_options: StorageOptions = None) -> pl.LazyFrame:
    """Lazily scan a source: files (Parquet, CSV, NDJSON; local or object store), a Delta or
    Iceberg table, a database table or query, or a list of local files.

    Parameters
    ----------
    source : str, path or sequence of them
        A source string (:mod:`pipeline.read.location`): a file, a glob (``data/*.parquet``,
        ``**`` allowed), a folder (read recursively; ``key=value`` sub-folders become
        columns), an object-store URL of any of these, ``delta:``/``iceberg:`` tables, a
        ``URL#table`` database source; a list of local files; or an in-memory table
        (:class:`pipeline.read.frames.Frame`), returned as it is once its schema is known.
    storage_options : mapping, optional
        Object-store options (``aws_region``, ``aws_endpoint_url``, keys ...) passed to
        polars; without them credentials come from the standard environment chains.

    Returns
    -------
    polars.LazyFrame
        Nothing is read yet except the file footers (the schema is checked here). A
        database source is read whole: bin raw rows with push-down instead
        (:mod:`pipeline.bins.pushdown`), so that only counts leave the database.

    Raises
    ------
    InputError
        Missing path, empty glob or folder, empty list, unreadable data, files whose
        columns disagree, an unreachable endpoint or denied access: one line naming the
        source.

    Examples
    --------
    >>> scan_source("data/flights_current.parquet").collect_schema()["origin"]
    String
    """
    name = describe_source(source)
    if isinstance(source, Frame):
        query, what = source.data, "a table"
    elif isinstance(source, str | os.PathLike):
        location = parse_location(source)
        what = _FORMAT_NAMES[location.format]
        try:
            query = _scan_location(location, storage_options)
        except read_errors() as error:
            raise read_error(error, name, what) from error
    else:
        locations = [parse_location(p) for p in source]
        if not locations:
            raise InputError("empty list of input files; give at least one Parquet file")
        files = [f for loc in locations for f in _local_files(loc)[0]]
        fmt = locations[0].format
        what = _FORMAT_NAMES[fmt]
        schema = _unified_schema(fmt, files, None) if len(files) > 1 else None
        query = _scan_files(fmt, _kept(files), hive=False, options=None, schema=schema)
    try:
        query.collect_schema()
    except read_errors() as error:
        raise read_error(error, name, what) from error
    return query


def scan_raw(source: Source, *, storage_options: StorageOptions = None) -> pl.LazyFrame:
    """Lazily scan a raw table (feature columns, optional timestamp and segment columns).

    Same sources and errors as :func:`scan_source`; the columns are checked later, against
    the profile, by :func:`pipeline.bins.binning.bin_raw`.
    """
    return scan_source(source, storage_options=storage_options)


def source_schema(source: str | Frame, *, storage_options: StorageOptions = None
                  ) -> pl.Schema:
    """The columns and types of a source, reading as little as possible (file footers, a
    table's metadata, a database's column types, an in-memory table's schema)."""
    if isinstance(source, Frame):
        return collect_schema(source.data, source.name)
    location = parse_location(source)
    if location.format == "sql":
        from pipeline.read.sql import sql_schema

        return sql_schema(location)
    return collect_schema(scan_source(source, storage_options=storage_options),
                          describe_source(source))


#: Footer key of a kl-drift profile file (pipeline.bins.profile writes it).
PROFILE_METADATA_KEY = "kl_drift.profile"


def is_profile_file(source: str | Frame) -> bool:
    """Whether ``source`` is one local Parquet file written as a kl-drift profile (its
    footer says so; columns alone cannot: raw rows may have the same names)."""
    if isinstance(source, Frame) or not os.path.isfile(source):
        return False
    try:
        return PROFILE_METADATA_KEY in pl.read_parquet_metadata(source)
    except read_errors():
        return False


def classify_columns(columns: set[str]) -> str:
    """``"histogram"`` or ``"raw"`` from a table's column names (a profile is recognised by
    its footer, :func:`is_profile_file`)."""
    return "histogram" if columns >= _HISTOGRAM_KEYS else "raw"


def ambiguous_columns(schema: Mapping[str, pl.DataType]) -> list[str]:
    """Columns that make a table with ``feature``, ``bin`` and ``count`` look like raw rows:
    floating-point columns other than ``count``, ``lower`` and ``upper`` (a histogram
    table's other columns are a window and text or integer segment labels)."""
    return [name for name, dtype in schema.items()
            if dtype.is_float() and name not in ("count", "lower", "upper")]


def detect_format(source: str | Frame, *, storage_options: StorageOptions = None) -> str:
    """What a source holds: ``"profile"``, ``"histogram"`` or ``"raw"``.

    A profile is a Parquet file whose footer says so; otherwise a table with ``feature``,
    ``bin`` and ``count`` columns is a histogram table, anything else raw rows. Only the
    footer and schema are read. Raw rows that happen to have these columns are taken for
    a histogram table: set ``input.current_format``/``baseline_format`` then.

    Raises
    ------
    InputError
        Missing file, empty glob or folder, or unreadable data.
    """
    if is_profile_file(source):
        return "profile"
    return classify_columns(set(source_schema(source, storage_options=storage_options)))


def check_scalar_columns(schema: Mapping[str, pl.DataType], columns: Sequence[str],
                         source: str, what: str = "segment") -> None:
    """A segment (or timestamp) column must hold scalars: lists and structs cannot be cast
    to text labels; the error names the column and its type."""
    for name in columns:
        dtype = schema.get(name)
        if dtype is not None and dtype.is_nested():
            raise InputError(f"{what} column has type {dtype}; a {what} column must hold "
                             f"scalars (text, numbers, dates), not lists or structs",
                             source=redact(source), column=name)
