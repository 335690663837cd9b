"""Is a window's drift real or sampling noise: G-test p-values and Benjamini-Hochberg q-values.

p-values: the two-sample G-test of homogeneity of the 2 x k table (current, baseline). The
exact reference is the permutation null: with the bins' totals fixed, the current sample is
a random subset of the pooled rows (multivariate hypergeometric), which holds at any sample
size. :func:`pipeline.decide.alerts.decide` spends precision only where a p-value decides
an alert (docs/alerts.md):

* every row gets the asymptotic chi-square p (:func:`chi_square_p`); where every expected
  cell count is at least 5 (Cochran's rule) that is its p, as for rows that cannot alert
  whatever their p (effect below the warn threshold), which only count in
  Benjamini-Hochberg over the run;
* sparse candidates draw permutations (:func:`permutation_exceedances`) in rounds
  (``DRAW_ROUNDS``: 25, 50, 100, 200, 500 draws in all), each row only while its draws
  cannot yet settle it; its p is the Monte Carlo p ``(1 + #{G_sim >= G}) / (B + 1)`` of
  the B draws it made. Before each round the p that decides a row (the run's BH threshold,
  at most ``1 - null_quantile`` with calibration) is recomputed, and a row is settled by
  its draws when their Clopper-Pearson lower bound (:func:`floor_at_most`, risk
  ``FLOOR_RISK`` shared by the five looks) is above that p or when ``RESOLVED_EXCEEDANCES``
  of them reach G; by its chi-square p when that is ``DECISIVE_FACTOR`` times below it (the
  chi-square tail of a sparse table is at most ~20x too small in every battery run);
  and by the permutation tail by importance sampling (:func:`precise_p_values`) when its
  chi-square p is below that p (draws could only settle it by showing its p many times
  its chi-square p) or promises fewer than ``TAIL_EXCEEDANCES`` exceedances in all the
  draws (they would not settle it either), or after the last round. The tail draws until
  it is ``TAIL_MARGIN`` standard errors from that p, and within ``TAIL_PRECISION`` below
  it;
* tables too large to permute (a total of 10^9 or more, e.g. weighted counts near 2^63) or
  to enumerate keep the chi-square p: no draws, so no overflow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from kl_metrics import g_terms
from kl_metrics.special import chdtrc, log_factorial, xlogy
from pipeline.parallel import in_parallel

#: Smallest expected cell count for which the chi-square approximation is trusted.
MIN_EXPECTED = 5.0
#: Permutation draws a sparse candidate has made after each round: a row draws the next
#: round only while its draws cannot yet tell its p from the threshold that decides it.
DRAW_ROUNDS = (25, 50, 100, 200, 500)
#: A sparse candidate whose chi-square p promises fewer exceedances than this in all of
#: ``DRAW_ROUNDS[-1]`` draws gets the importance-sampled tail at once: draws settle a row only
#: once several reach its G (4 of 500 at the thresholds of large runs), so such rows would
#: mostly draw every round and then get the tail anyway.
TAIL_EXCEEDANCES = 2.0
#: Simulated G values at or above the observed one that settle a row for good (its p is
#: then above ~0.02 whatever the round, Besag-Clifford's stopping rule).
RESOLVED_EXCEEDANCES = 10
#: An unresolved chi-square p this many times below the decision threshold decides alone
#: (the chi-square tail of a sparse table is at most ~20x too small in every battery run).
DECISIVE_FACTOR = 1000.0
#: Risk that a row whose exact p is at or below the threshold stops drawing: shared by the
#: looks of ``DRAW_ROUNDS`` (Bonferroni), each at ``FLOOR_RISK / len(DRAW_ROUNDS)``.
FLOOR_RISK = 1e-3
#: Permutations need totals below numpy's hypergeometric limit; larger tables are asymptotic.
MAX_PERMUTED_TOTAL = 10**9 - 1
#: Cells (bins x support) of one row's importance sampler; larger rows are asymptotic.
MAX_TILTED_CELLS = 1 << 20
#: Relative standard error at which the importance-sampled p stops drawing.
TAIL_PRECISION = 0.15
#: Standard errors between an importance-sampled p and the threshold that decides its row
#: before it stops drawing (about the one-sided risk FLOOR_RISK of a normal estimate).
TAIL_MARGIN = 3.0
#: Importance draws come in rounds of this share of ``null_draws`` (at most 8 x null_draws).
_TAIL_ROUND = 4
# Share of importance draws from the untilted null (keeps every weight bounded).
_DEFENSIVE = 0.1
# A bin's support is cut where its binomial probability is below exp(-_LOG_CUT) = 1e-100 by
# the Chernoff bound: far under any p that decides an alert, whatever the tilt.
_LOG_CUT = 230.0
# Cells per block of rows (rows x bins, or x support), bounding memory to tens of MB.
_CHUNK_CELLS = 1 << 20
# Cells per block of tilted tables (rows x bins x support): several blocks for the threads.
_TILTED_CELLS = 1 << 18
# Cells per chunk of permuted tables (draws x rows x bins): one random stream each and one
# unit of a thread's work, small enough that a round's chunks spread over the threads.
_DRAWN_CELLS = 1 << 18
# Relative tolerance: equal tables must count as ties despite rounding.
_TIE = 1e-9
# Whole counts up to which functions of counts (k log k, log k!) are read from a table (8 MB).
_TABLED = 1 << 20


@dataclass(frozen=True)
class Streams:
    """Independent random streams of one seed, each named by a key of whole numbers: the
    draws of a key are the same whichever thread makes them, in whatever order, and
    whatever else is drawn (``np.random.SeedSequence(seed, spawn_key=key)``).

    >>> streams = Streams(0).keyed(3)
    >>> bool(streams(1).random() == Streams(0, (3, 1))().random() != streams(2).random())
    True
    """

    seed: int
    key: tuple[int, ...] = ()

    def __call__(self, *key: int) -> np.random.Generator:
        """The generator of the stream ``self.key + key``."""
        sequence = np.random.SeedSequence(self.seed, spawn_key=(*self.key, *key))
        return np.random.Generator(np.random.PCG64(sequence))

    def keyed(self, *key: int) -> Streams:
        """The streams whose keys start with ``self.key + key``."""
        return Streams(self.seed, (*self.key, *key))


@dataclass(frozen=True)
class Tables:
    """The 2 x k tables (current, baseline) of many rows, k varying by row, as flat arrays:
    row i's bins are the cells ``starts[i]:starts[i + 1]`` (every row has a bin).

    One pass over the flat cells tests every row (:meth:`asymptotic`), whatever its width;
    simulations take rectangular batches of a few rows (:meth:`by_width`).
    """

    current: np.ndarray
    baseline: np.ndarray
    starts: np.ndarray

    @classmethod
    def of_rows(cls, current: np.ndarray, baseline: np.ndarray) -> Tables:
        """The tables of rectangular counts, shape ``(rows, bins)``."""
        rows, width = current.shape
        return cls(np.ascontiguousarray(current, dtype=float).ravel(),
                   np.ascontiguousarray(baseline, dtype=float).ravel(),
                   np.arange(rows + 1, dtype=np.int64) * width)

    def __len__(self) -> int:
        return self.starts.size - 1

    def by_width(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, current, baseline)`` of the given rows, one batch per width (increasing),
        rows in the given order; counts of shape ``(len(rows), width)``."""
        widths = np.diff(self.starts)[rows]
        for width in np.unique(widths):
            chosen = rows[widths == width]
            cells = self.starts[chosen][:, None] + np.arange(width)
            yield chosen, self.current[cells], self.baseline[cells]

    def asymptotic(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the chi-square p of its G-test (:func:`kl_metrics.g_test`), and whether
        an expected cell count is below ``MIN_EXPECTED`` (Cochran's rule fails)."""
        p, sparse = np.empty(len(self)), np.empty(len(self), dtype=bool)
        # blocks of rows bound the temporaries whatever the number of rows, on threads
        bounds = np.unique(np.append(
            np.searchsorted(self.starts, np.arange(0, self.starts[-1], _CHUNK_CELLS)), len(self)))
        blocks = [slice(int(first), int(last)) for first, last in pairwise(bounds)]
        largest = np.max(self.current, initial=0) + np.max(self.baseline, initial=0)
        x_log_x = _OfWholeCounts(_x_log_x, int(min(largest, _TABLED - 1)))
        for rows, (block_p, block_sparse) in zip(
                blocks, in_parallel(functools.partial(self._asymptotic, x_log_x=x_log_x), blocks),
                strict=True):
            p[rows], sparse[rows] = block_p, block_sparse
        return p, sparse

    def _asymptotic(self, rows: slice, *,
                    x_log_x: _OfWholeCounts) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`asymptotic` of a block of rows (``x_log_x``: k log k, tabled up to the
        largest cell total or ``_TABLED``).

        The G of a table of whole counts with a total below ``_TABLED`` is
        ``2 (sum f(c) + f(b) - f(c + b) - f(n_c) - f(n_b) + f(N))``, f(k) = k log k read
        from it: three reads a cell instead of :func:`kl_metrics.g_terms`' two logarithms
        (half the time), within 1e-9 of it at 10^5 observations (the terms are of the
        size of N log N). Other tables (weighted counts, totals up to 2^63) take g_terms,
        whose terms are never negative: no cancellation. A row's G depends on its counts
        alone."""
        starts = self.starts[rows.start:rows.stop + 1]
        cells = slice(int(starts[0]), int(starts[-1]))
        current, baseline = self.current[cells], self.baseline[cells]
        at, widths = starts[:-1] - starts[0], np.diff(starts)
        n_current = np.add.reduceat(current, at)
        n_baseline = np.add.reduceat(baseline, at)
        total = current + baseline
        whole = np.logical_and.reduceat((current == np.rint(current))
                                        & (baseline == np.rint(baseline)), at)
        tabled = whole & (n_current + n_baseline < _TABLED)  # its cells are in x_log_x
        statistic = np.empty(at.size)
        if tabled.any():
            chosen = slice(None) if tabled.all() else np.repeat(tabled, widths)
            first = np.cumsum(widths[tabled]) - widths[tabled]
            terms = x_log_x(current[chosen])
            terms += x_log_x(baseline[chosen])
            terms -= x_log_x(total[chosen])
            sizes = n_current[tabled], n_baseline[tabled]
            # rounding of terms of N log N may leave a G of 0 a little below it
            statistic[tabled] = np.maximum(2 * (
                np.add.reduceat(terms, first) - xlogy(sizes[0], sizes[0])
                - xlogy(sizes[1], sizes[1]) + xlogy(sizes[0] + sizes[1], sizes[0] + sizes[1])),
                0.0)
        if not tabled.all():
            chosen = np.repeat(~tabled, widths)
            widths_left = widths[~tabled]
            statistic[~tabled] = np.add.reduceat(g_terms(
                current[chosen], baseline[chosen], np.repeat(n_current[~tabled], widths_left),
                np.repeat(n_baseline[~tabled], widths_left)),
                np.cumsum(widths_left) - widths_left)
        dof = np.add.reduceat(total > 0, at, dtype=np.int64) - 1
        p = np.where(dof > 0, chdtrc(np.maximum(dof, 1), statistic), 1.0)
        smallest = np.minimum.reduceat(np.where(total > 0, total, np.inf), at)
        sparse = (np.minimum(n_current, n_baseline)
                  * (smallest / (n_current + n_baseline)) < MIN_EXPECTED)
        return p, sparse


def chi_square_p(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Asymptotic p of the G-test of each row (:func:`kl_metrics.g_test`)."""
    return Tables.of_rows(current, baseline).asymptotic()[0]


def is_sparse(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Rows with an expected cell count below ``MIN_EXPECTED`` (Cochran's rule fails).

    >>> is_sparse(np.array([[30.0, 20, 50], [0, 0, 26]]),
    ...           np.array([[40.0, 40, 20], [700, 280, 5]])).tolist()
    [False, True]
    """
    return Tables.of_rows(current, baseline).asymptotic()[1]


def g_statistic(current: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """G of each table along the last axis (:func:`kl_metrics.g_test`), unchecked."""
    n_current = current.sum(axis=-1, keepdims=True)
    n_baseline = baseline.sum(axis=-1, keepdims=True)
    return g_terms(current, baseline, n_current, n_baseline).sum(axis=-1)


def permutation_exceedances(current: np.ndarray, baseline: np.ndarray, draws: int,
                            streams: Streams) -> np.ndarray:
    """Per row, how many of ``draws`` permuted tables have a G at or above the observed one;
    NaN for rows that cannot be permuted (totals of 10^9 or more, or an empty side).

    Counts are rounded to whole observations. A permuted current row is drawn bin by bin:
    hypergeometric from the pooled rows not yet placed, so the bins' totals and both sample
    sizes stay fixed. The Monte Carlo p ``(1 + exceedances) / (draws + 1)`` is a valid
    p-value for any number of draws. The permutable rows are drawn in chunks of consecutive
    rows (about ``_DRAWN_CELLS`` draws x bins), chunk c from the stream ``streams(c)``, on
    threads: the counts depend on the rows and ``streams``, not on the threads.
    """
    cur, total = np.rint(current), np.rint(current + baseline)
    exceed = np.full(len(cur), np.nan)
    rows = np.flatnonzero(_permutable(cur, total))
    exceed[rows] = _permutation_exceedances(cur[rows], total[rows], draws, streams)
    return exceed


def _permutable(current: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Rows of whole-number counts that numpy's hypergeometric draws can permute."""
    n_current, size = current.sum(axis=1), total.sum(axis=1)
    return np.asarray((size <= MAX_PERMUTED_TOTAL) & (n_current >= 1) & (size - n_current >= 1))


def floor_at_most(exceed: np.ndarray, drawn: np.ndarray, threshold: float) -> np.ndarray:
    """Whether the lower confidence bound (Clopper-Pearson, risk ``FLOOR_RISK /
    len(DRAW_ROUNDS)``: one look of the sequential draws) of an exact p from ``exceed`` of
    ``drawn`` Monte Carlo draws at or above the observed statistic is at most ``threshold``
    in (0, 1]; False where ``exceed`` is NaN (not permuted).

    The bound is 0 without exceedances, else the risk's quantile of
    ``Beta(exceed, drawn - exceed + 1)``, whose distribution function at ``threshold`` is
    ``P(Binomial(drawn, threshold) >= exceed)``: the bound is at most ``threshold`` exactly
    when that binomial tail is at least the risk, a finite sum, no quantile to find
    (``1 - sum_{i < exceed} pmf(i)``, ``exceed`` terms: under 10 for the rows it settles).

    >>> floor_at_most(np.array([0.0, 3.0, 3.0, np.nan]), np.array([100.0, 1000.0, 100.0, 0.0]),
    ...               0.00012).tolist()  # the bounds of 3 in 1,000 and in 100: 0.00011, 0.0011
    [True, True, False, False]
    """
    exceed, drawn = np.broadcast_arrays(exceed, drawn)
    rows = np.flatnonzero(exceed > 0)
    counts, n = exceed[rows].astype(np.int64), drawn[rows]
    term = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    trials = np.repeat(n, counts)
    logs = log_factorial(np.arange(int(n.max(initial=0)) + 1.0))
    trials_int = trials.astype(np.int64)
    log_pmf = (logs[trials_int] - logs[term] - logs[trials_int - term]
               + xlogy(term, threshold) + xlogy(trials - term, 1 - threshold))
    below = np.bincount(np.repeat(np.arange(rows.size), counts), np.exp(log_pmf),
                        minlength=rows.size)
    at_most = exceed == 0
    at_most[rows] = 1 - below >= FLOOR_RISK / len(DRAW_ROUNDS)
    return at_most


def precise_p_values(current: np.ndarray, baseline: np.ndarray, *, draws: int,
                     streams: Streams, threshold: float | None = None,
                     keys: np.ndarray | None = None) -> np.ndarray:
    """Permutation p-values by importance sampling (:func:`permutation_tail`); the
    chi-square p for tables too large to enumerate. The rows' tilted laws and saddlepoints
    are found together, in arrays of blocks of rows (``_TiltedTables``); then each row
    draws from its own stream. Blocks run on threads; a row's p depends on its counts, its
    stream and ``threshold`` only, not on the other rows or the threads.

    Parameters
    ----------
    current, baseline : np.ndarray
        Counts, shape ``(rows, bins)``; weighted counts are rounded to observations.
    draws : int
        Importance draws of each row, at least (rows below ``threshold``) and at most 8x.
    streams : Streams
        Row i draws from ``streams(keys[i])``.
    threshold : float, optional
        The p that decides the rows (:func:`permutation_tail`).
    keys : np.ndarray, optional
        Each row's stream key (whole numbers, default: its position).

    Returns
    -------
    np.ndarray
        p-values in (0, 1], shape ``(rows,)``.

    Examples
    --------
    >>> current = np.array([[0.0, 0, 0, 2, 10, 14]])  # rare bins dominate a small window
    >>> baseline = np.array([[400.0, 300, 200, 80, 15, 5]])
    >>> p = precise_p_values(current, baseline, draws=2000, streams=Streams(0))
    >>> bool(1e-37 < p[0] < 1e-34)  # the chi-square p, 1.9e-34, is too large here
    True
    """
    p = chi_square_p(current, baseline).copy()
    cur, total = np.rint(current), np.rint(current + baseline)
    rows = np.flatnonzero(_permutable(cur, total))
    keys = np.arange(len(p)) if keys is None else keys
    tail = _tails(cur[rows], total[rows], draws=draws,
                  rngs=lambda row: streams(int(keys[rows[row]])), threshold=threshold)
    p[rows] = np.where(np.isnan(tail), p[rows], tail)
    return p


def decision_threshold(p: np.ndarray, fdr_q: float) -> float:
    """The largest p that Benjamini-Hochberg at level ``fdr_q`` declares significant among
    ``p`` (all tested rows), and at least ``fdr_q / m``: a row with a smaller p is
    significant whatever the others.

    >>> decision_threshold(np.array([0.001, 0.02, 0.5, 0.9]), 0.05)
    0.02
    """
    m = p.size
    # only a p at most fdr_q can pass (k / m <= 1), and those are the smallest: their ranks
    # among all m are their ranks among themselves (a sort of them, not of every row, each
    # of a run's draw rounds)
    ranked = np.sort(p[p <= fdr_q])
    passing = np.flatnonzero(ranked <= fdr_q * np.arange(1, ranked.size + 1) / m)
    return float(max(ranked[passing[-1]] if passing.size else 0.0, fdr_q / max(m, 1)))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` (kept), shifted by the maximum; -inf for all -inf.

    (scipy.special.logsumexp does the same with several times the overhead per call.)
    """
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - top).sum(axis=axis, keepdims=True)) + top


def _permutation_exceedances(current: np.ndarray, total: np.ndarray, draws: int,
                             streams: Streams) -> np.ndarray:
    """Per row, how many of ``draws`` permuted tables have a G at or above the observed one.

    A permuted current row is drawn bin by bin: hypergeometric from the rows not yet
    placed, so the bins' totals and both sample sizes stay fixed. With the margins fixed,
    ``G = 2 (D - C)`` where ``D = sum_j f(x_j) + f(t_j - x_j)``, ``f(k) = k log k``, and C
    depends on the margins only: a draw's D is summed bin by bin as it is drawn, f of whole
    counts read from a table, and compared with the observed table's D summed the same way
    (equal tables give equal sums). Chunk c of the rows draws from ``streams(c)``, on a
    thread of its own.
    """
    statistic = g_statistic(current, total - current)
    width = current.shape[1]
    x_log_x = _OfWholeCounts(_x_log_x, int(total.max(initial=0)))

    def exceedances(keyed: tuple[int, np.ndarray]) -> np.ndarray:
        key, chunk = keyed
        rng = streams(key)
        left = np.broadcast_to(current[chunk].sum(axis=1), (draws, chunk.size)).astype(np.int64)
        pool = total[chunk].sum(axis=1).astype(np.int64)
        observed, simulated = np.zeros(chunk.size), np.zeros((draws, chunk.size))
        for j in range(width):
            column = total[chunk, j].astype(np.int64)
            pool = pool - column
            taken = rng.hypergeometric(column, pool, left) if j < width - 1 else left
            left = left - taken
            observed += x_log_x(current[chunk, j]) + x_log_x(column - current[chunk, j])
            simulated += x_log_x(taken) + x_log_x(column - taken)
        # G's relative tie tolerance, and the rounding of D (terms up to N log N) as a tie
        slack = (statistic[chunk] * _TIE + 1e-12) / 2 + 1e-13 * observed
        return (simulated >= observed - slack).sum(axis=0)

    chunks = list(enumerate(_chunks(np.arange(len(current)), draws * width, _DRAWN_CELLS)))
    return np.concatenate([np.zeros(0), *in_parallel(exceedances, chunks)])


class _OfWholeCounts:
    """A function of whole counts ``0..largest``, read from a table of its values when
    ``largest`` is below ``_TABLED`` (one evaluation per count instead of one per cell),
    computed above."""

    def __init__(self, function: Callable[[np.ndarray], np.ndarray], largest: int) -> None:
        self.function = function
        self.table = function(np.arange(largest + 1.0)) if largest < _TABLED else None

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        if self.table is None:
            return self.function(counts.astype(float))
        return self.table[counts.astype(np.intp)]


def _x_log_x(k: np.ndarray) -> np.ndarray:
    return xlogy(k, k)


def permutation_tail(current: np.ndarray, total: np.ndarray, *, draws: int,
                     rng: np.random.Generator, threshold: float | None = None) -> float | None:
    """P(G >= observed G) under the permutation null of one table, by importance sampling.

    Given the bins' totals t_j, the current counts are independent Binomial(t_j, n1/N)
    conditioned on their sum n1, and G is a sum of one function h_j per bin. Draws come from
    the exponentially tilted law ``P(x) exp(s G(x) + tau sum x)`` (bins stay independent),
    with (s, tau) at the saddlepoint where the tilted means of G and of the sum are the
    observed G and n1, mixed with the untilted law (``_DEFENSIVE``). The bin with the
    widest tilted law takes the count that makes the sum n1, so every draw is a table with
    the right margins; each weighs ``P(x | n1) / proposal(x)``. Draws come in rounds of
    ``draws / 4`` until the estimate is ``TAIL_MARGIN`` standard errors from ``threshold``
    and, when below it (or without a threshold), ``draws`` are made and the relative
    standard error is ``TAIL_PRECISION``; at most 8 x ``draws``. Precision goes where it
    decides: a p clearly above the threshold stops early, one near it draws more. The p
    returned is at least the probability of the observed table itself (a lower bound of
    the tail).

    Parameters
    ----------
    current, total : np.ndarray
        Integer-valued current and pooled counts of one table, shape ``(bins,)``.
    draws : int
        Draws made at least (p below the threshold); at most 8x.
    rng : np.random.Generator
    threshold : float, optional
        The p that decides the row's alert; None: as far below any threshold.

    Returns
    -------
    float or None
        The tail probability in (0, 1]; None when the table is too large to enumerate
        (more than ``MAX_TILTED_CELLS`` bin x count cells).
    """
    tail = _tails(current[None], total[None], draws=draws, rngs=lambda _: rng,
                  threshold=threshold)[0]
    return None if np.isnan(tail) else float(tail)


def _tails(current: np.ndarray, total: np.ndarray, *, draws: int,
           rngs: Callable[[int], np.random.Generator], threshold: float | None) -> np.ndarray:
    """:func:`permutation_tail` of each row of integer counts (NaN: too large), row i
    drawing from ``rngs(i)``. The tilted laws of a batch of rows of similar widths are
    built, their saddlepoints found and their draws weighed in arrays of its rows
    (:meth:`_TiltedTables.tails`); batches run on threads, each holding its own arrays."""
    def batch_tails(batch: tuple[np.ndarray, Callable[[], _TiltedTables]]) -> np.ndarray:
        rows, tables = batch
        return tables().tails(draws, [rngs(row) for row in rows.tolist()], threshold)

    tail = np.full(len(current), np.nan)
    batches = _TiltedTables.batches(current, total)
    for (rows, _), tails in zip(batches, in_parallel(batch_tails, batches), strict=True):
        tail[rows] = tails
    return tail


class _TiltedTables:
    """Tables of similar widths as independent binomial bins on their supports, in arrays of
    shape ``(rows, bins, support)``, and their tilting. A row's bins with a total of 0 come
    last (a support {0} of probability 1, adding nothing); cells past a bin's support have
    probability 0."""

    def __init__(self, observed: np.ndarray, total: np.ndarray, low: np.ndarray,
                 high: np.ndarray) -> None:
        n1, size = observed.sum(axis=1), total.sum(axis=1)
        self.n1, self.low, self.high = n1, low, high
        x = low[..., None] + np.arange(int((high - low).max()) + 1)
        self.valid = x <= high[..., None]
        x = np.where(self.valid, x, low[..., None])
        log_k = _OfWholeCounts(log_factorial, int(total.max()))
        log_choose = log_k(total)[..., None] - log_k(x) - log_k(total[..., None] - x)
        x = self.x = x.astype(float)
        theta = (n1 / size)[:, None, None]
        t = total[..., None].astype(float)
        # empty bins (x = t = 0) get any expected count: their terms are 0
        expected1 = np.where(t > 0, n1[:, None, None] * t / size[:, None, None], 1.0)
        expected2 = np.where(t > 0, (size - n1)[:, None, None] * t / size[:, None, None], 1.0)
        self.h = 2 * (xlogy(x, x / expected1) + xlogy(t - x, (t - x) / expected2))
        log_p = log_choose + x * np.log(theta) + (t - x) * np.log1p(-theta)
        self.log_p = np.where(self.valid, log_p, -np.inf)
        theta = theta[:, 0, 0]
        # the sum of the bins is Binomial(N, theta): P(sum = n1)
        self.log_margin = (log_factorial(size) - log_factorial(n1) - log_factorial(size - n1)
                           + n1 * np.log(theta) + (size - n1) * np.log1p(-theta))
        at = (np.arange(len(total))[:, None], np.arange(total.shape[1]), observed - low)
        self.statistic = self.h[at].sum(axis=1)
        self.log_observed = self.log_p[at].sum(axis=1) - self.log_margin
        self.bins = (total > 0).sum(axis=1)

    @classmethod
    def batches(cls, current: np.ndarray, total: np.ndarray) -> list[tuple[
            np.ndarray, Callable[[], _TiltedTables]]]:
        """The rows of integer counts within ``MAX_TILTED_CELLS``, as ``(rows, tables)``
        in blocks of about ``_TILTED_CELLS`` cells in the given order (bounding memory), each
        block in batches of widths within a factor 2 (bounding the padding): each bin on
        its support cut where its probability is below ``exp(-_LOG_CUT)`` (always holding
        the observed count). ``tables()`` builds a batch's tables (on the thread that draws
        them)."""
        # a row's nonzero bins first, in their order
        order = np.argsort(total == 0, axis=1, kind="stable")
        observed = np.take_along_axis(current, order, axis=1).astype(np.int64)
        total = np.take_along_axis(total, order, axis=1).astype(np.int64)
        n1, size = observed.sum(axis=1)[:, None], total.sum(axis=1)[:, None]
        low = np.maximum(0, n1 - (size - total))
        high = np.minimum(total, n1)
        with np.errstate(divide="ignore", invalid="ignore"):  # empty bins: support {0}
            low, high = _likely_range(total, n1 / size, low, high)
        low, high = np.minimum(low, observed), np.maximum(high, observed)
        widths = (high - low).max(axis=1, initial=0) + 1
        rows = np.flatnonzero((total > 0).sum(axis=1) * widths <= MAX_TILTED_CELLS)
        cells = np.cumsum(widths[rows] * total.shape[1])
        batches: list[tuple[np.ndarray, Callable[[], _TiltedTables]]] = []
        for block in np.split(rows, np.flatnonzero(np.diff(cells // _TILTED_CELLS)) + 1):
            size_class = np.log2(widths[block]).astype(np.int64)
            block = block[np.argsort(size_class, kind="stable")]
            batches += [(chunk, functools.partial(cls, observed[chunk], total[chunk],
                                                  low[chunk], high[chunk]))
                        for chunk in np.split(block,
                                              np.flatnonzero(np.diff(np.sort(size_class))) + 1)
                        if chunk.size]
        return batches

    def _exponents(self, s: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """``log P(x) + s h(x) + tau x`` of every cell, each row at its own ``(s, tau)``."""
        exponent = s[:, None, None] * self.h
        with np.errstate(invalid="ignore"):
            exponent += self.log_p
        exponent += tau[:, None, None] * self.x
        return exponent

    def tilted(self, s: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Log-probabilities of each bin's tilted law, each row at its own ``(s, tau)``."""
        exponent = self._exponents(s, tau)
        exponent -= _logsumexp(exponent, axis=2)
        return exponent

    def _moments(self, point: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row at ``point`` = (s, tau): the objective sum(log Z) - s G - tau n1, its
        gradient and Hessian (tilted moments)."""
        s, tau = point[:, 0], point[:, 1]
        q = self._exponents(s, tau)
        top = np.max(q, axis=2, keepdims=True)  # finite: every bin has a cell
        q -= top
        q = np.exp(q, out=q)
        z = q.sum(axis=2, keepdims=True)
        q /= z
        # moments summed without temporaries of the cells' size
        mean_h = np.einsum("ijk,ijk->ij", q, self.h)[..., None]
        mean_x = np.einsum("ijk,ijk->ij", q, self.x)[..., None]
        dh, dx = self.h - mean_h, self.x - mean_x
        dh *= q
        hh, hx = np.einsum("ijk,ijk->i", dh, self.h - mean_h), np.einsum("ijk,ijk->i", dh, dx)
        dx *= np.sqrt(q)
        xx = np.einsum("ijk,ijk->i", dx, dx)
        hessian = np.stack([np.stack([hh, hx], axis=1), np.stack([hx, xx], axis=1)], axis=1)
        gradient = np.stack([mean_h.sum(axis=(1, 2)) - self.statistic,
                             mean_x.sum(axis=(1, 2)) - self.n1], axis=1)
        log_z = (np.log(z) + top).sum(axis=(1, 2))
        return log_z - s * self.statistic - tau * self.n1, gradient, hessian

    def _rows(self, rows: np.ndarray) -> _TiltedTables:
        """The tables of the given rows (arrays indexed, not recomputed)."""
        part = object.__new__(_TiltedTables)
        part.__dict__.update({k: v[rows] for k, v in self.__dict__.items()})
        return part

    def saddlepoint(self) -> np.ndarray:
        """Per row, (s, tau) minimising the convex sum(log Z) - s G - tau n1 with s >= 0:
        damped Newton steps, every row at once (each row its own steps and stop). The
        sampler is unbiased for any (s, tau); this only makes it efficient, so a few
        iterations suffice."""
        point = np.zeros((len(self.n1), 2))
        value, gradient, hessian = self._moments(point)
        active = np.arange(len(self.n1))
        for _ in range(50):
            if not active.size:
                break
            p, g, h = point[active], gradient[active], hessian[active]
            # at s = 0 with the tilted mean of G already above the observed one, only tau moves
            only_tau = ~((p[:, 0] > 0) | (g[:, 0] < 0))
            det = h[:, 0, 0] * h[:, 1, 1] - h[:, 0, 1] ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.stack([(h[:, 0, 1] * g[:, 1] - h[:, 1, 1] * g[:, 0]) / det,
                                 (h[:, 0, 1] * g[:, 0] - h[:, 0, 0] * g[:, 1]) / det], axis=1)
                tau_step = np.where(h[:, 1, 1] > 0, -g[:, 1] / h[:, 1, 1], 0.0)
            step[only_tau] = np.stack([np.zeros(only_tau.sum()), tau_step[only_tau]], axis=1)
            # a singular Hessian ends the row's search
            keep = only_tau | (det > 0)
            active, p, step = active[keep], p[keep], step[keep]
            # stop at the boundary s = 0
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(p[:, 0] + step[:, 0] < 0, p[:, 0] / -step[:, 0], 1.0)
            step *= scale[:, None]
            searching, accepted = np.arange(active.size), np.zeros(active.size, dtype=bool)
            for _ in range(30):
                candidate = p[searching] + step[searching]
                new = self._rows(active[searching])._moments(candidate)
                better = new[0] <= value[active[searching]] + 1e-12 * np.abs(
                    value[active[searching]])
                done, rows = searching[better], active[searching[better]]
                point[rows], value[rows] = candidate[better], new[0][better]
                gradient[rows], hessian[rows] = new[1][better], new[2][better]
                accepted[done] = True
                searching = searching[~better]
                if not searching.size:
                    break
                step[searching] /= 2
            # a row whose line search failed stops where it is
            active = active[accepted]
            p, g = point[active], gradient[active]
            # at the boundary s = 0 only tau is free (the tilted mean of G already exceeds G)
            s_done = ((p[:, 0] == 0) & (g[:, 0] >= 0)) | (
                np.abs(g[:, 0]) <= 1e-3 * np.maximum(1.0, self.statistic[active]))
            converged = s_done & (np.abs(g[:, 1])
                                  <= 1e-3 * np.maximum(1.0, self.n1[active]) ** 0.5)
            active = active[~converged]
        return point

    def tails(self, draws: int, rngs: list[np.random.Generator],
              threshold: float | None) -> np.ndarray:
        """The importance-sampled tail (:func:`permutation_tail`) of each row, row i drawing
        from ``rngs[i]`` from its laws at its saddlepoint and untilted. The rows still
        drawing draw a round each, in turn (each from its own stream, as alone), and their
        weights and stops are computed together."""
        point = self.saddlepoint()
        log_q = np.stack([self.tilted(np.zeros(len(point)), np.zeros(len(point))),
                          self.tilted(point[:, 0], point[:, 1])])
        probabilities = np.exp(log_q)
        q = probabilities[1]
        mean = (q * self.x).sum(axis=2, keepdims=True)
        widest = np.argmax((q * (self.x - mean) ** 2).sum(axis=2), axis=1)
        # both laws of every bin of every row, drawn from by inversion all at once
        laws = _Inversion(probabilities)
        mixture = np.array([_DEFENSIVE, 1 - _DEFENSIVE])
        rows, bins, _ = self.h.shape
        size = max(1, draws // _TAIL_ROUND)
        total_weight, total_square, spent = np.zeros(rows), np.zeros(rows), np.zeros(rows)
        active, drawn = np.arange(rows), 0
        while active.size and drawn < 8 * draws:
            drawn += size
            # rows in groups of about _CHUNK_CELLS draws x bins, bounding the temporaries
            for group in _chunks(active, size * bins, _CHUNK_CELLS):
                # a row's uniforms, one call of its own stream per round: the law of each
                # draw (tilted or not) and a count of each nonzero bin, as it draws alone
                uniforms = np.zeros((group.size, size, bins))
                tilted = np.empty((group.size, size), dtype=np.int64)
                for j, i in enumerate(group.tolist()):
                    drawn_here = rngs[i].random((size, 1 + int(self.bins[i])))
                    tilted[j] = drawn_here[:, 0] >= _DEFENSIVE
                    uniforms[j, :, :self.bins[i]] = drawn_here[:, 1:]
                # the flat law of each cell of log_q (laws, rows, bins); bins past a row's
                # nonzero ones (support {0}) take offset 0 whatever the uniform
                offsets = laws.draw(((tilted * rows + group[:, None]) * bins)[..., None]
                                    + np.arange(bins), uniforms)
                w = self.weights(group, offsets, log_q, widest, mixture)
                total_weight[group] += w.sum(axis=1)
                total_square[group] += (w**2).sum(axis=1)
            spent[active] = drawn
            mean = total_weight[active] / drawn
            error = np.sqrt(np.maximum(total_square[active] / drawn - mean**2, 0.0) / drawn)
            gap = mean - (np.inf if threshold is None else threshold)  # None: below any
            above = gap >= TAIL_MARGIN * error
            below = ((-gap >= TAIL_MARGIN * error)
                     & (drawn >= draws) & (mean > 0) & (error <= TAIL_PRECISION * mean))
            active = active[~(above | below)]
        return np.minimum(1.0, np.maximum(total_weight / spent, np.exp(self.log_observed)))

    def weights(self, active: np.ndarray, offsets: np.ndarray, log_q: np.ndarray,
                widest: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        """Importance weight of each draw of the ``active`` rows, shape ``(rows, draws)``
        (0 unless its G reaches the row's observed one), from the support offsets of their
        bins, shape ``(rows, draws, bins)``: the row's widest bin takes the count that makes
        the sum n1."""
        rows, draws, bins = offsets.shape
        width = self.h.shape[2]
        widest = widest[active]
        determined = (np.arange(rows)[:, None], np.arange(draws), widest[:, None])
        offsets[determined] = 0
        rest = (self.n1[active] - self.low[active].sum(axis=1))[:, None] - offsets.sum(axis=2)
        ok = (rest >= 0) & (rest < width)
        offsets[determined] = np.where(ok, rest, 0)
        # each draw's cells in the flat arrays of all rows (rows, bins, support)
        cells = (active[:, None, None] * bins + np.arange(bins)) * width + offsets
        ok &= self.valid.take(cells[determined])
        hit = ok & (self.h.take(cells).sum(axis=2)
                    >= self.statistic[active, None] * (1 - _TIE) - 1e-12)
        # only the draws that reach G carry a weight
        cells, row = cells[hit], np.nonzero(hit)[0]
        log_target = self.log_p.take(cells).sum(axis=1) - self.log_margin[active][row]
        free = np.arange(bins) != widest[row, None]
        log_proposal = _logsumexp(
            np.stack([np.where(free, lq.take(cells), 0.0).sum(axis=1) for lq in log_q])
            + np.log(mixture)[:, None], axis=0)[0]
        weights = np.zeros(hit.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            weights[hit] = np.exp(log_target - log_proposal)
        return weights


class _Inversion:
    """Draws from many discrete laws on ``0..width - 1`` at once, by inversion: the draw of
    law l for a uniform u is the smallest k with ``F_l(k) > u``. A guide table (Chen and
    Asau) narrows each search to the cells whose ``F * width`` has the floor of
    ``u * width``, bisected together: a few passes over all the draws, not a call per law.
    The draw depends on the law's cells and u alone (not on the other laws, nor on cells of
    probability 0 after the law's last), so a row padded in a batch draws as alone.

    >>> laws = _Inversion(np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]))
    >>> laws.draw(np.array([0, 0, 1, 1, 1]), np.array([0.49, 0.5, 0.05, 0.15, 0.95])).tolist()
    [0, 1, 0, 1, 2]
    """

    def __init__(self, probabilities: np.ndarray) -> None:
        width = probabilities.shape[-1]
        cdf = np.cumsum(probabilities.reshape(-1, width), axis=1)
        cdf /= cdf[:, -1:]  # x / x is exactly 1: the last cell of a law is never passed
        self.width, self.cdf = width, cdf.ravel()
        # guide[l, m]: cells of law l whose floor(F * width) is below m, m = 0..width. F and
        # u are scaled alike and rounding is monotone, so for u of floor m the draw lies in
        # guide[l, m]..guide[l, m + 1]
        floors = (cdf * width).astype(np.int64)
        slots = width + 2
        counted = np.bincount(((np.arange(len(cdf)) * slots)[:, None] + floors + 1).ravel(),
                              minlength=len(cdf) * slots).reshape(-1, slots)
        self.guide = np.cumsum(counted, axis=1)[:, :width + 1].ravel()

    def draw(self, laws: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """The draw of each law in ``laws`` (indices, any shape) for its uniform in [0, 1)."""
        # u * width < width for every double u below 1: no slot past the guide's last
        at = (uniforms * self.width).astype(np.int64)
        at += laws * (self.width + 1)
        low = self.guide[at]
        at += 1
        high = self.guide[at]
        # bisect the draws whose slot holds cells, each within its own bounds
        searched, = np.nonzero((low < high).ravel())
        left, right = low.reshape(-1)[searched], high.reshape(-1)[searched]
        first, u = laws.reshape(-1)[searched] * self.width, uniforms.reshape(-1)[searched]
        drawn = low.reshape(-1)  # the slot's first cell, unless bisected below
        while searched.size:
            middle = (left + right) // 2
            above = self.cdf[first + middle] > u
            right = np.where(above, middle, right)
            left = np.where(above, left, middle + 1)
            done = left == right
            drawn[searched[done]] = left[done]
            kept = ~done
            searched, left, right, first, u = (a[kept] for a in (searched, left, right, first, u))
        return drawn.reshape(low.shape)


def _likely_range(total: np.ndarray, theta: float | np.ndarray, low: np.ndarray,
                  high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The counts x in [low, high] of Binomial(total, theta) whose Chernoff bound
    ``exp(-total * KL(x / total || theta))`` on the probability reaches ``exp(-_LOG_CUT)``:
    an interval around the mean, found by bisection from each side."""
    def rate(x: np.ndarray) -> np.ndarray:
        a = x / total
        return total * (xlogy(a, a / theta) + xlogy(1 - a, (1 - a) / (1 - theta)))

    mean = np.clip(np.rint(total * theta).astype(np.int64), low, high)
    bounds = []
    for outer in (low, high):  # the rate falls towards the mean from either end
        far, near = outer.copy(), mean.copy()  # rate(far) may exceed the cut, rate(near) not
        inside = rate(far) <= _LOG_CUT
        while (np.abs(near - far) > 1).any():
            mid = (far + near) // 2
            ok = rate(mid) <= _LOG_CUT
            near, far = np.where(ok, mid, near), np.where(ok, far, mid)
        bounds.append(np.where(inside, outer, near))
    return bounds[0], bounds[1]


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values: ``q_i = min over p_j >= p_i of p_j m / rank_j`` (at most
    the largest p, so at most 1).

    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.empty(m)
    q[order] = np.minimum.accumulate(scaled[::-1])[::-1]  # the last is p_max <= 1
    return q


def _chunks(rows: np.ndarray, cells_per_row: int, cells: int) -> list[np.ndarray]:
    """``rows`` cut into consecutive chunks of about ``cells`` cells (at least a row)."""
    size = max(1, cells // max(cells_per_row, 1))
    return [rows[i:i + size] for i in range(0, rows.size, size)]
