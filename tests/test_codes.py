"""Integer codes of key columns (pipeline/bins/codes.py) against brute force: sorted distinct
values, tuples ranked in lexicographic order, and lookups, whatever the size of the code
space (small spaces take the presence table, large ones the hashing fallback)."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.bins.codes import TABLE_SPACE, combine, encode, lookup

_WIDTHS = st.sampled_from([1, 3, 7, 2**20, 2**40])


@st.composite
def _columns(draw: st.DrawFn) -> tuple[list[np.ndarray], list[int]]:
    length = draw(st.integers(1, 40))
    sizes = draw(st.lists(_WIDTHS, min_size=1, max_size=4))
    columns = [np.array(draw(st.lists(st.integers(0, min(size, 5) - 1), min_size=length,
                                      max_size=length)), dtype=np.int64) for size in sizes]
    return columns, sizes


@settings(max_examples=150, deadline=None)
@given(_columns())
def test_combine_ranks_the_tuples_in_lexicographic_order(data: tuple) -> None:
    columns, sizes = data
    tuples = list(zip(*(c.tolist() for c in columns), strict=True))
    ranks = {t: i for i, t in enumerate(sorted(set(tuples)))}
    codes, n = combine(columns, sizes, len(tuples))
    assert n == len(ranks)
    assert codes.tolist() == [ranks[t] for t in tuples]


def test_large_code_spaces_take_the_fallback_and_stay_writable() -> None:
    # 2**80 possible tuples: past the presence table, into the hashing path (whose codes
    # come from polars, read-only), then multiplied in place by the next column
    assert 2 * 3 + TABLE_SPACE < 2**40
    codes, n = combine([np.array([3, 1, 3]), np.array([2, 2, 0]), np.array([0, 0, 1])],
                       [2**40, 2**40, 2], 3)
    assert (codes.tolist(), n) == ([2, 0, 1], 3)


def test_tuple_numbers_are_int32_while_every_tuple_fits_and_int64_past_it() -> None:
    """int32 halves the fresh memory of align's 10^7 cells, but 40,000 distinct first codes
    times a width of 70,000 pass 2^31 once the first column is numbered: those take int64,
    and the ranks stay those of brute force."""
    rng = np.random.default_rng(7)
    first = rng.permutation(70_000)[:40_000]
    second = rng.integers(0, 70_000, size=40_000)
    codes, n = combine([first, second], [70_000, 70_000], 40_000)
    assert codes.dtype == np.int64
    order = np.lexsort((second, first))
    assert n == 40_000 and (codes[order] == np.arange(40_000)).all()
    small, m = combine([first % 2_000, second % 20], [2_000, 20], 40_000)
    assert small.dtype == np.int32
    _, expected = np.unique(np.c_[first % 2_000, second % 20], axis=0, return_inverse=True)
    assert m == expected.max() + 1 and (small == expected.ravel()).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["b", "a", None, "ç", "aa"]), min_size=1, max_size=30),
       st.lists(st.sampled_from(["a", "zz", None]), min_size=1, max_size=30))
def test_encode_codes_index_the_sorted_distinct_values(left: list, right: list) -> None:
    values, (first, second) = encode([pl.Series(left, dtype=pl.String),
                                      pl.Series(right, dtype=pl.String)])
    distinct = sorted({v for v in left + right if v is not None})
    assert values.to_list() == distinct + ([None] if None in left + right else [])
    assert [values[int(c)] for c in first] == left
    assert [values[int(c)] for c in second] == right


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["b", "a", None, "ç", "aa"]), min_size=1, max_size=30),
       st.lists(st.sampled_from(["a", "zz", None, "b"]), min_size=1, max_size=30),
       st.sampled_from(["first", "second", "both"]))
def test_categories_are_coded_as_the_text_they_stand_for(left: list, right: list,
                                                         which: str) -> None:
    # A categorical side (its physical codes in order of first sight, not of the text)
    # gets exactly the codes of the same text, alone or beside a text side.
    text = [pl.Series(left, dtype=pl.String), pl.Series(right, dtype=pl.String)]
    pl.Series(["zz", "ç", "b"], dtype=pl.Categorical)  # categories seen in another order
    mixed = [side.cast(pl.Categorical) if which in (name, "both") else side
             for name, side in zip(("first", "second"), text, strict=True)]
    values, codes = encode(text)
    got_values, got_codes = encode(mixed)
    assert got_values.dtype == pl.String
    assert got_values.to_list() == values.to_list()
    assert [c.tolist() for c in got_codes] == [c.tolist() for c in codes]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=12,
                unique=True),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=30))
def test_lookup_finds_each_tuple_in_the_table(table: list, keys: list) -> None:
    found = lookup(np.array(keys), np.array(table), [4, 3])
    assert found.tolist() == [table.index(k) if k in table else -1 for k in keys]
