"""Alert decisions: severity from the effect, significance over the run, calibration.

A row is ``warn``/``critical`` when all of these hold (docs/alerts.md):

* its **effect** — the alert metric between the populations, bias-corrected for the sample
  sizes (``effect`` column, :mod:`pipeline.measure.drift`) — reaches the feature's warn or
  critical threshold: severity means the same thing at every window size;
* its drift is **significant** after Benjamini-Hochberg FDR control over the run's tested
  rows (``q_value < fdr_q``), p from the G-test of the counts (:mod:`.significance`);
* with ``calibrated``, its G statistic is also beyond the ``null_quantile`` of its own
  null distribution at its sample sizes (``p_value <= 1 - null_quantile``): a run where many
  rows drift makes Benjamini-Hochberg lenient, and this keeps rows that noise alone
  explains from riding along;
* with ``persistence = k``, it drifted in k consecutive windows (:mod:`.state`).

Categorical rows are tested with the baseline's Good-Turing unseen mass in their unseen
cells (``baseline_unseen``, :mod:`pipeline.measure.unseen`), as their effect was measured.
Every input is the drift table's own rows: the per-bin counts are read from its ``bins``
column, so the decision does not depend on how an upstream stage ordered its arrays.
Precision is spent where it decides: only rows whose effect reaches the warn threshold get
exact small p-values (:func:`_p_values`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl

from pipeline.config import AlertsConfig
from pipeline.decide.significance import (
    DECISIVE_FACTOR,
    DRAW_ROUNDS,
    RESOLVED_EXCEEDANCES,
    TAIL_EXCEEDANCES,
    Streams,
    Tables,
    benjamini_hochberg,
    decision_threshold,
    floor_at_most,
    permutation_exceedances,
    precise_p_values,
)
from pipeline.decide.state import apply_persistence
from pipeline.labels import OTHER
from pipeline.measure.drift import list_rows
from pipeline.measure.unseen import cell_kinds, unseen_cells, with_unseen_mass
from pipeline.parallel import side_by_side


def count_tables(drift: pl.DataFrame, mask: np.ndarray) -> tuple[np.ndarray, Tables]:
    """The masked rows of a drift table that have bins, and their per-bin counts read from
    its ``bins`` column (row k of the tables is drift row ``rows[k]``).

    Categorical rows with a ``baseline_unseen`` share come with their unseen cells merged
    and given that share (:func:`pipeline.measure.unseen.with_unseen_mass`).
    """
    widths = drift["bins"].list.len().to_numpy()
    rows = np.flatnonzero(mask & (widths > 0))
    bins = (drift[["bins"]] if rows.size == drift.height
            else list_rows(drift["bins"], rows).to_frame())
    cells = pl.element().struct
    counts = bins.select(*(pl.col("bins").list.eval(cells.field(f)).explode().alias(f)
                           for f in ("current_count", "baseline_count")))
    starts = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(widths[rows], out=starts[1:])
    # read-only views of polars' buffers: copied below only if a row's counts change
    tables = Tables(counts["current_count"].to_numpy(), counts["baseline_count"].to_numpy(),
                    starts)
    if not rows.size:
        return rows, tables
    # Only rows with an unseen cell can change: __other__, or a baseline count of 0.
    share = drift["baseline_unseen"].fill_null(np.nan).to_numpy()[rows]
    lumped = bins.select(pl.col("bins").list.eval(cells.field("bin") == OTHER).list.any())
    adjust = np.flatnonzero(np.isfinite(share) & (
        lumped.to_series().to_numpy() | (np.minimum.reduceat(tables.baseline, starts[:-1]) == 0)))
    if adjust.size:
        tables = Tables(tables.current.copy(), tables.baseline.copy(), starts)
    for batch, current, baseline in tables.by_width(adjust):
        width = current.shape[1]
        labels = bins[batch].select(pl.col("bins").explode().struct.field("bin"))
        kinds = labels.select(cell_kinds(pl.col("bin"))).to_series().to_numpy()
        unseen = unseen_cells(kinds.reshape(-1, width), baseline)
        at = starts[batch][:, None] + np.arange(width)
        tables.current[at], tables.baseline[at] = with_unseen_mass(current, baseline, unseen,
                                                                   share[batch])
    return rows, tables


def decide(drift: pl.DataFrame, config: AlertsConfig) -> pl.DataFrame:
    """Fill thresholds, p/q values, ``window_status``, ``status`` and ``reason``: the
    window verdicts (:func:`window_verdicts`, whose arguments it takes) with persistence
    within the run (:func:`pipeline.decide.state.apply_persistence`).

    Returns
    -------
    pl.DataFrame
        The table of :func:`window_verdicts` with ``status`` (``ok | warn | critical |
        insufficient_data | error``, after persistence).
    """
    return apply_persistence(window_verdicts(drift, config), config.persistence)


def window_verdicts(drift: pl.DataFrame, config: AlertsConfig) -> pl.DataFrame:
    """Fill thresholds, p/q values, ``window_status`` and ``reason``: each window's own
    verdict, before persistence. A run decides ``status`` from them once, with its earlier
    runs (:func:`pipeline.decide.state.apply_state`).

    Parameters
    ----------
    drift : pl.DataFrame
        Output of :func:`pipeline.measure.drift.compute_drift`, in window order within each
        segment x feature; its ``bins`` column holds the counts the tests use.
    config : AlertsConfig
        Thresholds, FDR level, ``min_count``, calibration and persistence settings.

    Returns
    -------
    pl.DataFrame
        ``drift`` with ``warn_threshold``, ``critical_threshold`` (the feature's),
        ``p_value``, ``q_value``, ``window_status`` (``ok | warn | critical |
        insufficient_data | error``) and ``reason``; ``status`` as it came (set on rows
        decided upstream, such as errors).
    """
    n_rows = drift.height
    pending = drift["status"].is_null().to_numpy()
    n_baseline, n_current = drift["n_baseline"].to_numpy(), drift["n_current"].to_numpy()
    tested = pending & (n_baseline >= config.min_count) & (n_current >= config.min_count)

    # Pattern matching runs once per distinct feature name, not per row.
    lookup = {f: config.thresholds_for(f) for f in drift["feature"].unique().to_list()}
    warn, critical = (
        drift["feature"].replace_strict({f: t[i] for f, t in lookup.items()},
                                        return_dtype=pl.Float64).to_numpy()
        for i in (0, 1))
    # Severity comes from the effect, which never exceeds the plug-in value: rows below
    # the warn threshold cannot alert whatever their p, so only the others need precision.
    candidate = tested & (drift["effect"].fill_null(-np.inf).to_numpy() >= warn)

    p = _p_values(drift, tested, candidate, config)
    q = np.full(n_rows, np.nan)
    q[tested] = benjamini_hochberg(p[tested])
    decided = drift.with_columns(
        pl.Series("warn_threshold", warn), pl.Series("critical_threshold", critical),
        pl.Series("p_value", p, nan_to_null=True), pl.Series("q_value", q, nan_to_null=True),
    )
    return _window_statuses(decided, config, pending, tested)


def _p_values(drift: pl.DataFrame, tested: np.ndarray, candidate: np.ndarray,
              config: AlertsConfig) -> np.ndarray:
    """The p-value of every tested row, precise where it decides an alert
    (:mod:`pipeline.decide.significance`).

    Every draw comes from a stream of ``config.seed`` keyed by what the data fix, never by
    the threads: a permutation call by (0, round of this loop, draws made before, width)
    and within it by its chunk of rows; a row's importance-sampled tail by (1, its row in
    the drift table). (Streams are made on the first draw: a run whose p-values are all
    closed forms does not import numpy.random.)"""
    streams = Streams(config.seed)
    n_rows = drift.height
    p, chi_square = np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    rows, tables = count_tables(drift, tested)
    index = np.full(n_rows, -1)  # a drift row's row in the tables
    index[rows] = np.arange(rows.size)
    asymptotic, sparse = tables.asymptotic()
    p[rows] = chi_square[rows] = asymptotic

    def batches(mask: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Counts of the masked drift rows, by width (:meth:`Tables.by_width`)."""
        for chosen, current, baseline in tables.by_width(index[np.flatnonzero(mask)]):
            yield rows[chosen], current, baseline

    # Sparse candidates draw permutations in rounds (DRAW_ROUNDS) and stop as soon as their
    # draws settle them against the p that decides them: the run's BH threshold (at most
    # 1 - null_quantile with calibration), which moves as rows settle, so each round
    # starts by recomputing it. A row is settled by its draws when their confidence floor
    # is above it (or it has RESOLVED_EXCEEDANCES), by its chi-square p when that is
    # DECISIVE_FACTOR times below it, and by the importance-sampled tail after the last
    # round, or at once when its chi-square p is below it or promises fewer than
    # TAIL_EXCEEDANCES exceedances in all the draws (draws could not settle it); its p is
    # meanwhile the Monte Carlo p of the draws it made.
    unsettled = np.zeros(n_rows, dtype=bool)
    unsettled[rows[sparse]] = True
    unsettled &= candidate
    exceed = np.where(unsettled, 0.0, np.nan)
    drawn = np.zeros(n_rows, dtype=np.int64)
    beyond = 1 - config.null_quantile if config.calibrated else 1.0
    round_ = 0  # of this loop: a key of its permutation streams
    while True:
        threshold = min(decision_threshold(p[tested], config.fdr_q), beyond)
        # settled rows left out: they may hold hundreds of exceedances to sum over
        open_ = unsettled & floor_at_most(np.where(unsettled, exceed, np.nan), drawn,
                                          threshold)
        if not open_.any():
            return p
        decisive = open_ & (chi_square <= threshold / DECISIVE_FACTOR)
        p[decisive] = chi_square[decisive]
        tail_below = max(threshold, TAIL_EXCEEDANCES / DRAW_ROUNDS[-1])
        tail = open_ & ~decisive & ((drawn == DRAW_ROUNDS[-1]) | (chi_square <= tail_below))
        extend = open_ & ~decisive & ~tail

        def draw(extend: np.ndarray = extend, key: int = round_) -> None:
            """The round's permutation draws; rows reopened by a rising threshold may be a
            round behind the others."""
            for done in np.unique(drawn[extend]):
                more = DRAW_ROUNDS[np.searchsorted(DRAW_ROUNDS, done, side="right")] - done
                for chosen, current, baseline in batches(extend & (drawn == done)):
                    keyed = streams.keyed(0, key, int(done), current.shape[1])
                    exceed[chosen] += permutation_exceedances(current, baseline, more, keyed)
                    drawn[chosen] += more
            # a row that cannot be permuted (NaN exceedances) keeps its chi-square p
            p[extend] = np.where(np.isnan(exceed), chi_square,
                                 (1 + exceed) / (drawn + 1))[extend]

        def tails(tail: np.ndarray = tail, threshold: float = threshold) -> None:
            for chosen, current, baseline in batches(tail):
                p[chosen] = precise_p_values(current, baseline, draws=config.null_draws,
                                             streams=streams.keyed(1), threshold=threshold,
                                             keys=chosen)

        # disjoint rows and streams of their own: the permutations and the tails of a round
        # run side by side, each keeping the other's idle core busy
        side_by_side(draw, tails)
        unsettled &= ~(decisive | tail | (exceed >= RESOLVED_EXCEEDANCES) | np.isnan(exceed))
        round_ += 1


def _window_statuses(drift: pl.DataFrame, config: AlertsConfig, pending: np.ndarray,
                     tested: np.ndarray) -> pl.DataFrame:
    """``window_status`` and ``reason``: the verdict of each window on its own.

    ``status`` is filled from it by :func:`pipeline.decide.state.apply_state`.
    """
    value, effect, p, q = pl.col("value"), pl.col("effect"), pl.col("p_value"), pl.col("q_value")
    beyond = 1 - config.null_quantile
    level = (pl.when(effect >= pl.col("critical_threshold")).then(pl.lit("critical"))
             .when(effect >= pl.col("warn_threshold")).then(pl.lit("warn"))
             .otherwise(pl.lit("ok")))
    too_few = [pl.when(pl.col(n) < config.min_count)
               .then(pl.format(f"{n}={{}} < min_count={config.min_count}", pl.col(n)))
               for n in ("n_current", "n_baseline")]
    significant = (q < config.fdr_q).fill_null(False)
    above_noise = (p <= beyond).fill_null(False) if config.calibrated else pl.lit(True)
    drifting = (pl.col("_level") != "ok") & significant & above_noise
    threshold = pl.when(pl.col("_level") == "critical").then("critical_threshold") \
        .otherwise("warn_threshold")
    window_status = (
        pl.when(~pl.col("_pending")).then("status")
        .when(~pl.col("_tested")).then(pl.lit("insufficient_data"))
        .when(drifting).then("_level")
        .otherwise(pl.lit("ok"))
    )
    reason = (
        pl.when(~pl.col("_pending")).then("reason")
        .when(~pl.col("_tested")).then(pl.concat_str(too_few, separator="; ", ignore_nulls=True))
        .when((pl.col("_level") != "ok") & ~significant)
        .then(pl.format("above {} threshold {} but not significant (q={} >= fdr_q={})",
                        "_level", threshold.round_sig_figs(3), q.round_sig_figs(2),
                        pl.lit(config.fdr_q)))
        .when((pl.col("_level") != "ok") & ~above_noise)
        .then(pl.format("significant over the run (q={}) but within the noise of its own "
                        "sample sizes: p={} > 1 - null_quantile={}", q.round_sig_figs(2),
                        p.round_sig_figs(2), pl.lit(round(beyond, 12))))
        .when((pl.col("_level") == "ok") & (value >= pl.col("warn_threshold")))
        .then(pl.format("value {} reaches the warn threshold {} but the effect corrected for "
                        "sample size is {} (interval {} to {})", value.round_sig_figs(3),
                        pl.col("warn_threshold").round_sig_figs(3), effect.round_sig_figs(3),
                        pl.col("effect_low").round_sig_figs(3),
                        pl.col("effect_high").round_sig_figs(3)))
    )
    # computed beside the columns they need (taken by name: an expression or a select over
    # the whole table, its bins included, would copy it)
    needed = ["status", "reason", "value", "effect", "effect_low", "effect_high", "n_current",
              "n_baseline", "warn_threshold", "critical_threshold", "p_value", "q_value"]
    verdicts = (drift[needed]
                .with_columns(pl.Series("_pending", pending), pl.Series("_tested", tested),
                              _index=pl.int_range(pl.len(), dtype=pl.UInt32))
                .with_columns(_level=level))
    # reasons are formatted only on the few rows that can have one
    explained = verdicts.filter(~pl.col("_pending") | ~pl.col("_tested")
                                | (pl.col("_level") != "ok")
                                | (value >= pl.col("warn_threshold")))
    verdicts = verdicts.select("_index", window_status=window_status).join(
        explained.select("_index", reason=reason), on="_index", how="left",
        maintain_order="left")
    return drift.with_columns(verdicts.drop("_index").get_columns())
