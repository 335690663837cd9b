"""pipeline.parallel: blocks of rows on threads, results in order, errors raised."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.parallel import in_parallel, row_blocks, threads


@given(st.integers(0, 10_000), st.integers(1, 8), st.integers(1, 500))
def test_row_blocks_cover_the_rows_once_in_order(rows: int, parts: int, smallest: int) -> None:
    blocks = row_blocks(rows, parts=parts, smallest=smallest)
    covered = [i for block in blocks for i in range(rows)[block]]
    assert covered == list(range(rows))
    assert len(blocks) <= parts
    sizes = [b.stop - b.start for b in blocks]
    assert all(size >= 1 for size in sizes)
    if len(blocks) > 1:
        assert min(sizes) >= smallest
        assert max(sizes) - min(sizes) <= 1


def test_in_parallel_keeps_the_order_and_uses_threads() -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if two calls run at once

    def wait(item: int) -> tuple[int, str]:
        barrier.wait()
        return item, threading.current_thread().name

    if threads() < 2:
        pytest.skip("one core: nothing runs side by side")  # the CI machine has two
    results = in_parallel(wait, [1, 2])
    assert [item for item, _ in results] == [1, 2]
    assert len({name for _, name in results}) == 2


def test_in_parallel_raises_the_first_error() -> None:
    def fail(item: int) -> int:
        if item == 3:
            raise ValueError("row block 3")
        return item

    with pytest.raises(ValueError, match="row block 3"):
        in_parallel(fail, [1, 2, 3, 4])


def test_polars_max_threads_of_1_runs_on_the_calling_thread() -> None:
    code = ("import threading; from pipeline.parallel import in_parallel, threads; "
            "print(threads(), {n for n in in_parallel(lambda _: threading.current_thread().name,"
            " [1, 2, 3])})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "POLARS_MAX_THREADS": "1"}).stdout
    assert out.split(maxsplit=1) == ["1", "{'MainThread'}\n"]
