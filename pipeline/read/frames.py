"""In-memory tables as sources: what the Python API reads instead of a file.

A :class:`Frame` is a polars LazyFrame with a name for messages and ``alerts.json``. Every
reader of :mod:`pipeline.read.sources` accepts one where it accepts a source string, so a
DataFrame in a notebook is profiled, binned and checked by exactly the code that reads
files. :func:`as_frame` takes what notebooks hold: polars DataFrames and LazyFrames, pandas
DataFrames (non-default indexes, e.g. a ``DatetimeIndex``, become columns) and pyarrow
Tables; pandas is only used when the caller already imported it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import polars as pl

from pipeline.errors import InputError


@dataclass(frozen=True, eq=False)
class Frame:
    """An in-memory table read like a source.

    Attributes
    ----------
    data : polars.LazyFrame
        The rows (raw rows or a histogram table, told apart by their columns as for files).
    name : str
        How messages and ``alerts.json`` name it, e.g. ``"current polars DataFrame
        (1,000 rows)"``.
    """

    data: pl.LazyFrame
    name: str


def _rows(height: int) -> str:
    return f" ({height:,} row{'s' * (height != 1)})"


def as_frame(data: object, role: str) -> Frame:
    """Wrap an in-memory table as a :class:`Frame` named after its ``role``.

    Parameters
    ----------
    data : polars.DataFrame, polars.LazyFrame, pandas.DataFrame or pyarrow.Table
        The table. A LazyFrame stays lazy (nothing is read until the run scans it).
    role : str
        ``"baseline"`` or ``"current"``: the start of the frame's name.

    Raises
    ------
    TypeError
        ``data`` is none of these types (a source string goes to
        :mod:`pipeline.read.sources` instead).
    InputError
        A pandas frame that cannot be converted (e.g. an object column mixing types).

    Examples
    --------
    >>> import polars as pl
    >>> as_frame(pl.DataFrame({"x": [1.0, 2.0]}), "current").name
    'current polars DataFrame (2 rows)'
    """
    if isinstance(data, pl.LazyFrame):
        return Frame(data, f"{role} polars LazyFrame")
    if isinstance(data, pl.DataFrame):
        return Frame(data.lazy(), f"{role} polars DataFrame" + _rows(data.height))
    # pyarrow and pandas only matter when the caller already imported them (start-up)
    arrow = sys.modules.get("pyarrow")
    if arrow is not None and isinstance(data, arrow.Table):
        return Frame(pl.DataFrame(pl.from_arrow(data)).lazy(),
                     f"{role} pyarrow Table" + _rows(data.num_rows))
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        name = f"{role} pandas DataFrame" + _rows(len(data))
        import pyarrow  # pandas data is converted through Arrow

        try:
            frame = pl.from_pandas(data, include_index=True)
        except (pyarrow.ArrowException, pl.exceptions.PolarsError, TypeError,
                ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InputError(f"cannot convert it to a polars table ({first}); give each "
                             "column one type", source=name) from error
        return Frame(frame.lazy(), name)
    raise TypeError(f"{role}: expected a polars or pandas DataFrame, a polars LazyFrame, a "
                    f"pyarrow Table or a source string, got {type(data).__name__}")
