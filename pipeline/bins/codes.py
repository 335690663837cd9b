"""Integer codes for key columns: equal values get equal codes, in sort order.

Joins and group-bys on text keys hash every row's text; encoding each key column once (an
Enum cast is a lookup of every value; a categorical column is coded through its physical
codes, so only its few categories are looked up as text) and then working on integer tuples
is several times faster and narrower at millions of long rows (:mod:`pipeline.bins.align`,
:func:`pipeline.bins.references.history_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

#: Below this many possible values (or twice the number of codes), distinct values are found
#: with a presence table instead of hashing.
TABLE_SPACE = 1 << 16


def encode(columns: Sequence[pl.Series]) -> tuple[pl.Series, list[np.ndarray]]:
    """The distinct values of ``columns`` together, sorted (nulls last), and each column's
    integer codes into them: equal values of two sides get equal codes.

    >>> values, codes = encode([pl.Series(["b", None, "a"]), pl.Series(["c", "b"])])
    >>> values.to_list(), [c.tolist() for c in codes]
    (['a', 'b', 'c', None], [[1, 3, 0], [2, 1]])

    Categorical columns are coded by their text, with text columns or alone:

    >>> values, codes = encode([pl.Series(["b", "a"], dtype=pl.Categorical),
    ...                         pl.Series(["c", "b"])])
    >>> values.to_list(), [c.tolist() for c in codes]
    (['a', 'b', 'c'], [[1, 0], [2, 1]])
    """
    # categories stand for their text: a categorical side matches a text side
    distinct = [_distinct(c) for c in columns]
    values = pl.concat([_text(d) for d in distinct]).unique().sort(nulls_last=True)
    if values.dtype == pl.String:  # an Enum cast is a fast lookup of every text value
        known = values.drop_nulls()
        return values, [_text_codes(c, d, known) for c, d in zip(columns, distinct, strict=True)]
    lookup = pl.DataFrame({"value": values, "code": np.arange(values.len())})
    return values, [pl.DataFrame({"value": c}).join(lookup, on="value", how="left",
                                                    nulls_equal=True, maintain_order="left")
                    ["code"].to_numpy() for c in columns]


def _categorical(column: pl.Series) -> bool:
    return isinstance(column.dtype, pl.Categorical | pl.Enum)


def _distinct(column: pl.Series) -> pl.Series:
    """The distinct values of ``column``; of a categorical one, found on its physical codes
    (integers: several times faster than on the categories)."""
    if _categorical(column):
        return column.to_physical().unique().cat.to(column.dtype)
    return column.unique()


def _text(column: pl.Series) -> pl.Series:
    """``column``, categories as their text."""
    return column.cast(pl.String) if _categorical(column) else column


def _text_codes(column: pl.Series, distinct: pl.Series, known: pl.Series) -> np.ndarray:
    """int32 codes of ``column`` (text or categories, whose ``distinct`` values are known)
    into the sorted texts ``known``; nulls get ``len(known)``. (int32: half the memory of
    int64.)"""
    if not _categorical(column):
        codes = column.cast(pl.Enum(known)).to_physical()
        return (codes.fill_null(len(known)) if codes.null_count() else codes).to_numpy() \
            .astype(np.int32)
    # a categorical column is coded through a table indexed by its physical codes: only its
    # few distinct categories are looked up as text, its rows are one array gather. (The
    # table has one entry per category of the column's mapping: never more than the mapping.)
    physical, present = column.to_physical(), distinct.drop_nulls()
    known_codes = present.to_physical().to_numpy()
    table = np.zeros(int(known_codes.max(initial=0)) + 2, dtype=np.int32)
    table[known_codes] = present.cast(pl.String).cast(pl.Enum(known)).to_physical().to_numpy()
    table[-1] = len(known)  # nulls
    if physical.null_count():
        physical = physical.fill_null(len(table) - 1)
    return table[physical.to_numpy()]


def dense_codes(key: np.ndarray, space: int) -> tuple[np.ndarray, int]:
    """Codes ``0..n-1`` of the distinct values of ``key`` (ints in ``[0, space)``), in their
    order, and ``n``."""
    dtype = np.int32 if key.dtype == np.int32 else np.int64  # int32 keys (combine) stay int32
    if space <= 2 * len(key) + TABLE_SPACE:
        seen = np.zeros(space + 1, dtype=bool)
        seen[key] = True
        rank = np.cumsum(seen, dtype=dtype) - 1
        return rank[key], int(rank[-1]) + 1
    values, (codes,) = encode([pl.Series(key)])
    # a copy: polars' arrays are read-only, and callers build on the codes in place
    return codes.astype(dtype), values.len()


def combine(columns: Sequence[np.ndarray], sizes: Sequence[int],
            length: int) -> tuple[np.ndarray, int]:
    """Dense codes of the tuples of ``columns`` (codes below ``sizes``), in lexicographic
    order, and their number; int32 when every tuple's number fits (half the fresh memory
    of int64 at millions of rows), else int64."""
    key: np.ndarray = np.zeros(length,
                               dtype=np.int32 if math.prod(sizes) < 2**31 else np.int64)
    size = 1
    for column, width in zip(columns, sizes, strict=True):
        if size * width > 2 * length + TABLE_SPACE:
            key, size = dense_codes(key, size)
        key *= width
        key += column
        size *= width
    return dense_codes(key, size)


def lookup(keys: np.ndarray, table: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Index of each row of ``keys`` in the rows of ``table`` (distinct tuples of codes
    below ``sizes``), -1 where absent."""
    both = np.concatenate([table, keys])
    dense, n = combine(list(both.T), sizes, len(both))
    where = np.full(n, -1)
    where[dense[:len(table)]] = np.arange(len(table))
    return where[dense[len(table):]]
