"""Categories the baseline never saw: how much mass they hold, and where it goes in a table.

A categorical baseline is a sample: categories it missed have baseline count 0 by
construction (``__other__`` of a profile holds only what the profile lumped; a category new
in the current data gets a bin with baseline 0), yet the baseline's population gives them
mass. The Good-Turing estimate of that mass is ``f1 / n``, with f1 the number of categories
seen exactly once in the n baseline rows (per segment for a segmented baseline): the
``baseline_unseen`` column of the drift table.

Tests and effects use the baseline's *unseen cells* — ``__other__`` and every other bin
except ``__missing__`` whose baseline count is 0 — merged into one cell: the estimate says
how much mass they hold together, not how it splits between categories nobody saw. That
cell gets the unseen share ``u`` of the baseline's rows, and the seen bins keep ``1 - u``
of their counts (the coverage-adjusted estimate), so the baseline total is unchanged.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.bins.layout import display_rank

#: Codes of :func:`cell_kinds`: an ordinary bin, ``__other__``, ``__missing__``.
ORDINARY, OTHER_CELL, MISSING_CELL = 0, 1, 2


def cell_kinds(labels: pl.Expr) -> pl.Expr:
    """Int8 code of each bin label: ``ORDINARY``, ``OTHER_CELL`` or ``MISSING_CELL``."""
    return display_rank(labels)


def unseen_cells(kinds: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Boolean mask of the unseen cells of each row: ``__other__``, and bins other than
    ``__missing__`` with baseline count 0 (``kinds`` from :func:`cell_kinds`).

    >>> kinds = np.array([[ORDINARY, ORDINARY, ORDINARY, OTHER_CELL, MISSING_CELL]])
    >>> unseen_cells(kinds, np.array([[5.0, 3, 0, 0, 0]])).tolist()
    [[False, False, True, True, False]]
    """
    return (kinds == OTHER_CELL) | ((baseline == 0) & (kinds != MISSING_CELL))


def with_unseen_mass(current: np.ndarray, baseline: np.ndarray, cells: np.ndarray,
                     share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts with each row's unseen cells merged into its first one, which gets the
    baseline's unseen share.

    Parameters
    ----------
    current, baseline : np.ndarray
        Counts, shape ``(rows, bins)``.
    cells : np.ndarray
        Boolean, shape ``(rows, bins)``: the unseen cells (:func:`unseen_cells`).
    share : np.ndarray
        The baseline's unseen share per row (``baseline_unseen``); NaN leaves a row as it
        is, as does a row without unseen cells.

    Returns
    -------
    tuple of np.ndarray
        New ``(current, baseline)`` of the same shape and totals; merged-away cells are 0 on
        both sides.

    Examples
    --------
    >>> cur, base = with_unseen_mass(np.array([[50.0, 40, 10]]), np.array([[60.0, 40, 0]]),
    ...                              np.array([[False, False, True]]), np.array([0.05]))
    >>> base.tolist(), cur.tolist()
    ([[57.0, 38.0, 5.0]], [[50.0, 40.0, 10.0]])
    """
    adjust = merged_rows(cells, share)
    current, baseline = current.copy(), baseline.copy()
    if not adjust.any():
        return current, baseline
    rows = np.flatnonzero(adjust)
    cur, base, mask = current[rows], baseline[rows], cells[rows]
    u = np.clip(share[rows], 0.0, 1.0)[:, None]
    first = mask.argmax(axis=1)
    merged_cur = np.where(mask, cur, 0).sum(axis=1)
    merged_base = np.where(mask, base, 0).sum(axis=1)
    base = np.where(mask, 0.0, base * (1 - u))
    cur = np.where(mask, 0.0, cur)
    index = np.arange(len(rows))
    cur[index, first] = merged_cur
    base[index, first] = merged_base * (1 - u[:, 0]) + u[:, 0] * baseline[rows].sum(axis=1)
    current[rows], baseline[rows] = cur, base
    return current, baseline


def merged_rows(cells: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows :func:`with_unseen_mass` changes: those with unseen cells and
    a known share (the others keep their counts).

    >>> merged_rows(np.array([[False, True], [False, False], [True, False]]),
    ...             np.array([0.1, 0.1, np.nan])).tolist()
    [True, False, False]
    """
    return np.isfinite(share) & cells.any(axis=1)


def visible_singletons(kinds: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Categories seen exactly once in each row's baseline, counted from its bins: every bin
    but ``__other__`` and ``__missing__`` with baseline count 1. NaN for rows whose
    baseline counts are not whole numbers (weights: no count of observations).

    Profiles record the real count (categories they lumped into ``__other__`` included);
    this serves histogram baselines, whose bins are all the categories they have.

    >>> visible_singletons(np.array([[ORDINARY, ORDINARY, ORDINARY, OTHER_CELL]]),
    ...                    np.array([[1.0, 1, 7, 1]])).tolist()
    [2.0]
    """
    counted = ((baseline == 1) & (kinds == ORDINARY)).sum(axis=1).astype(float)
    whole = (baseline == np.round(baseline)).all(axis=1)
    return np.where(whole, counted, np.nan)
