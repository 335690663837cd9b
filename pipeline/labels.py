"""Window and segment labels and segment column names, the same in every output table.

``drift.parquet``, ``models.parquet`` and ``estimates.parquet`` key their rows by a text
``window`` (ISO-8601 start of a date/datetime window, the label as given for other types,
``"__missing__"`` for rows without a timestamp, ``"all"`` without windows) and a text
``segment`` (``"region=EU, model_version=2"``, or ``"all"`` without segment columns), so the
tables of one run join on them. Windows themselves are cut by :mod:`pipeline.windows`.

Segment columns are the user's; inside a run they carry private names
(:func:`segment_column`), so that no user name (``status``, ``window``, ``count``, ...) can
collide with a column kl-drift uses itself. Tables are written with
:func:`public_segment_columns`: each segment column under its own name, or under
``segment:<name>`` when that name is a column of a table kl-drift writes
(:data:`pipeline.formats.TABLE_COLUMNS`), the same in every table of a run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import polars as pl

from pipeline.formats import TABLE_COLUMNS

ALL = "all"
#: Reserved label for null values: a bin of nulls/NaN, or a window of rows without timestamp.
MISSING = "__missing__"
#: Reserved bin label for categories the baseline profile did not keep.
OTHER = "__other__"
#: Prefix of the private name of a segment column inside a run.
SEGMENT_PREFIX = "\0segment:"
#: Prefix of a segment column written under another name because its own is taken.
RENAMED_PREFIX = "segment:"
_DATETIME = "%Y-%m-%dT%H:%M:%S"


def segment_column(name: str) -> str:
    """The private name of the user's segment column ``name`` (idempotent).

    >>> segment_column("status") == "\\0segment:status"
    True
    """
    return name if name.startswith(SEGMENT_PREFIX) else SEGMENT_PREFIX + name


def segment_name(column: str) -> str:
    """The user's name of a segment column (from a private name or the user's own).

    >>> segment_name(segment_column("status"))
    'status'
    """
    return column.removeprefix(SEGMENT_PREFIX)


def segment_columns_of(columns: Sequence[str]) -> list[str]:
    """The private segment columns among ``columns``, in order."""
    return [c for c in columns if c.startswith(SEGMENT_PREFIX)]


def output_names(segments: Sequence[str], taken: Collection[str]) -> dict[str, str]:
    """The names segment columns are written under, by user name.

    A segment column keeps its name unless that name is in ``taken`` (the table's other
    columns); it is then written as ``segment:<name>``, with more ``segment:`` prefixes
    while that is taken too or is another segment column's name. Deterministic, so a
    reader finds the columns again from the segment names alone.

    >>> output_names(["origin", "status"], {"status", "value"})
    {'origin': 'origin', 'status': 'segment:status'}
    """
    users = [segment_name(s) for s in segments]
    names: dict[str, str] = {}
    for name in users:
        written = name
        while written in taken or written in names.values() or (
                written != name and written in users):
            written = RENAMED_PREFIX + written
        names[name] = written
    return names


def public_segment_columns(table: pl.DataFrame) -> pl.DataFrame:
    """``table`` with its private segment columns renamed for output: :func:`output_names`
    with every column name of kl-drift's tables taken (:data:`TABLE_COLUMNS`, and the
    table's own columns), so a segment column has one name in every table of a run.

    >>> table = pl.DataFrame({segment_column("n"): ["x"], segment_column("region"): ["EU"],
    ...                       "status": ["ok"]})
    >>> public_segment_columns(table).columns
    ['segment:n', 'region', 'status']
    """
    private = segment_columns_of(table.columns)
    others = {*TABLE_COLUMNS, *(c for c in table.columns if c not in private)}
    written = output_names(private, others)
    return table.rename({c: written[segment_name(c)] for c in private})


def private_segment_columns(table: pl.DataFrame, segments: Sequence[str]) -> pl.DataFrame:
    """``table`` with the user's segment columns ``segments`` given their private names."""
    return table.rename({s: segment_column(s) for s in segments})


def window_label_expr(dtype: pl.DataType | None, window: str | pl.Expr = "window") -> pl.Expr:
    """``window`` as text (see the module docstring); ``dtype`` ``None`` means no windows.

    Parameters
    ----------
    dtype : polars DataType or None
        Type of the window values. Aware datetimes are written with their UTC offset
        (``2024-06-01T00:00:00+02:00``), naive ones (UTC windows, see
        :mod:`pipeline.windows`) without one, dates as ``2024-06-01``.
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


def segment_label_expr(columns: Sequence[str]) -> pl.Expr:
    """``segment`` as text: ``"region=EU, model_version=2"`` (null values as ``null``).

    ``columns`` are segment columns (private or user names); the label has the user names.
    """
    if not columns:
        return pl.lit(ALL).alias("segment")
    # concat_str rather than pl.format: a column name may contain "{}".
    parts = [pl.concat_str(pl.lit(f"{segment_name(name)}="),
                           pl.col(name).cast(pl.String).fill_null("null"))
             for name in columns]
    return pl.concat_str(parts, separator=", ").alias("segment")
