"""Integer codes for key columns: equal values get equal codes, in sort order.

Joins and group-bys on text keys hash every row's text; encoding each key column once (an
Enum cast is a lookup of every value) and then working on integer tuples is several times
faster and narrower at millions of long rows (:mod:`pipeline.bins.align`,
:func:`pipeline.bins.references.history_rows`).
"""

from __future__ import annotations

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
    values = pl.concat([_text(c.unique()) for c in columns]).unique().sort(nulls_last=True)
    if values.dtype == pl.String:  # an Enum cast is a fast lookup of every text value
        known = values.drop_nulls()
        codes = [c.cast(pl.Enum(known)).to_physical() for c in columns]
        # int32: half the memory of int64 (the physical type is as narrow as the values)
        return values, [(c.fill_null(len(known)) if c.null_count() else c).to_numpy()
                        .astype(np.int32) for c in codes]
    lookup = pl.DataFrame({"value": values, "code": np.arange(values.len())})
    return values, [pl.DataFrame({"value": c}).join(lookup, on="value", how="left",
                                                    nulls_equal=True, maintain_order="left")
                    ["code"].to_numpy() for c in columns]


def _text(column: pl.Series) -> pl.Series:
    """``column``, categories as their text (an Enum cast of the column is then a lookup of
    its few categories' codes, not of every row's text)."""
    return column.cast(pl.String) if isinstance(column.dtype, pl.Categorical | pl.Enum) \
        else column


def dense_codes(key: np.ndarray, space: int) -> tuple[np.ndarray, int]:
    """Codes ``0..n-1`` of the distinct values of ``key`` (ints in ``[0, space)``), in their
    order, and ``n``."""
    if space <= 2 * len(key) + TABLE_SPACE:
        seen = np.zeros(space + 1, dtype=bool)
        seen[key] = True
        rank = np.cumsum(seen) - 1
        return rank[key], int(rank[-1]) + 1
    values, (codes,) = encode([pl.Series(key)])
    # a copy: polars' arrays are read-only, and callers build on the codes in place
    return codes.astype(np.int64), values.len()


def combine(columns: Sequence[np.ndarray], sizes: Sequence[int],
            length: int) -> tuple[np.ndarray, int]:
    """Dense codes of the tuples of ``columns`` (codes below ``sizes``), in lexicographic
    order, and their number."""
    key, size = np.zeros(length, dtype=np.int64), 1
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
