"""Blocks of rows measured side by side on the machine's cores, on threads.

numpy's array loops and random draws and polars' queries release the GIL, so threads give
the run the second core that a single Python thread leaves idle, without copying arrays to
other processes. The number of threads is polars' own pool size (``POLARS_MAX_THREADS``
limits both): one setting caps the run's cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import polars as pl

T = TypeVar("T")
R = TypeVar("R")


def threads() -> int:
    """Threads a stage may run at once: polars' thread pool size (``POLARS_MAX_THREADS``)."""
    return max(1, pl.thread_pool_size())


def in_parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function(item)`` of every item, on up to :func:`threads` threads, in the items'
    order; on the calling thread when there is one item or one thread. An exception raised
    by any call is raised here.

    >>> in_parallel(lambda n: n * n, [1, 2, 3])
    [1, 4, 9]
    """
    if len(items) <= 1 or threads() == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(threads(), len(items))) as pool:
        return list(pool.map(function, items))


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """The result of each call without arguments (e.g. a ``functools.partial``), the calls
    run on threads (:func:`in_parallel`), in the calls' order.

    >>> from functools import partial
    >>> side_by_side(partial(sum, [1, 2]), partial(max, 3, 4))
    [3, 4]
    """
    return in_parallel(_called, calls)


def _called(call: Callable[[], Any]) -> Any:
    return call()


def in_background(function: Callable[..., R], *args: Any) -> Future[R]:
    """``function(*args)`` started now on a thread of its own, for a later stage to wait
    for; the thread ends with the call, whether or not anything waits.

    >>> in_background(max, 3, 4).result()
    4
    """
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)


def row_blocks(rows: int, *, parts: int | None = None, smallest: int = 1) -> list[slice]:
    """``rows`` cut into ``parts`` (default :func:`threads`) consecutive blocks of about
    equal size, none smaller than ``smallest`` unless it is the only one (fewer blocks when
    there are few rows; none for no rows).

    >>> row_blocks(10, parts=2)
    [slice(0, 5, None), slice(5, 10, None)]
    >>> row_blocks(10, parts=2, smallest=6)
    [slice(0, 10, None)]
    """
    parts = max(1, min(parts or threads(), rows // max(smallest, 1)))
    bounds = np.linspace(0, rows, parts + 1).round().astype(int).tolist() if rows else []
    return [slice(a, b) for a, b in pairwise(bounds)]
