"""Feature drift against every configured reference, and the trends of the run's windows.

For each reference mode a feature uses (``[references]``, docs/references.md) the same
stages run: the reference histograms (the baseline, or sums of earlier windows' stored
counts, :mod:`pipeline.bins.references`) are aligned with the current ones, measured and
decided by the same rules. Each mode is decided as its own family (Benjamini-Hochberg over
its own rows, the same simulation seed), so adding a mode never changes another mode's
verdicts: a run with only ``baseline`` gives exactly what it gave before modes existed. The
rows of all modes form one drift table, one row per segment x feature x window x
``reference``.

The run's current histograms are also returned as the history keeps them
(``histograms.parquet``), and, with ``[trends]``, the trends table (trends.parquet).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.bins.align import align, segment_columns
from pipeline.bins.references import (
    Timeline,
    build_references,
    earlier_windows,
    feature_layouts,
    history_rows,
    read_earlier,
    scaled_period,
    timeline,
    window_keys,
    with_keys,
)
from pipeline.config import REFERENCE_MODES, RunConfig
from pipeline.decide.alerts import window_verdicts
from pipeline.labels import ALL, public_segment_columns
from pipeline.measure.drift import compute_drift
from pipeline.measure.trends import null_spread, trend_table, window_statistics
from pipeline.parallel import side_by_side
from pipeline.read.sources import read_errors
from pipeline.write.history import scan_decisions, scan_histograms, skipped_partition

#: Columns the modes add to the drift table, right after ``partial``.
REFERENCE_COLUMNS = {"reference": pl.String, "reference_windows": pl.List(pl.String)}
_SERIES = ["segment", "feature"]


@dataclass(frozen=True)
class History:
    """Where a run's history is, and which earlier runs count (docs/monitoring.md).

    Attributes
    ----------
    dir : Path or None
        ``<output.dir>/history``; None: no history (an in-memory check, ``pipeline.check``),
        so moving references have only this run's windows.
    run_id : str
        The run being written: its own earlier partition is not an earlier run.
    as_of : datetime
        When the run was (first) created: only runs created before it count, and it is the
        time of the run's one window when it has no windows.
    """

    dir: Path | None
    run_id: str
    as_of: datetime


@dataclass(frozen=True)
class Compared:
    """What :func:`compare` gives.

    Attributes
    ----------
    drift : pl.DataFrame
        The drift table of every mode with each window's verdict
        (:func:`pipeline.decide.alerts.window_verdicts`; segment columns under their output
        names): the run decides ``status`` with its earlier runs.
    histograms : pl.DataFrame or None
        The run's current histograms for the history (``histograms.parquet``); None when
        handed to ``on_histograms``.
    trends : pl.DataFrame or None
        trends.parquet (``[trends] enabled``), else None.
    warnings : list of str
        Run warnings: unreadable history partitions, patterns that match no feature.
    """

    drift: pl.DataFrame
    histograms: pl.DataFrame | None
    trends: pl.DataFrame | None
    warnings: list[str]


def compare(config: RunConfig, reference: pl.DataFrame, current: pl.DataFrame, *,
            reasons: Mapping[str, str], coverage: pl.DataFrame | None, history: History,
            say: Callable[[str], None], singletons: pl.DataFrame | None = None,
            on_histograms: Callable[[pl.DataFrame], object] | None = None) -> Compared:
    """Drift of every window against each reference its feature uses, decided.

    Parameters
    ----------
    config : RunConfig
    reference : pl.DataFrame
        The baseline histograms the run compares with (segments matched).
    current : pl.DataFrame
        The run's current histograms (private segment columns).
    reasons : mapping of str to str
        Why some features could not be binned (:func:`pipeline.bins.align.align`).
    coverage : pl.DataFrame, optional
        Window coverage (:func:`pipeline.windows.window_coverage`).
    history : History
    say : callable
        Progress messages.
    singletons : pl.DataFrame, optional
        The baseline profile's categories seen once (the unseen-mass estimate against the
        baseline, :func:`pipeline.measure.drift.compute_drift`); moving references count
        theirs from their own bins.
    on_histograms : callable, optional
        Called with the run's current histograms for the history as soon as they are
        built, on the thread that builds them beside the measurement (e.g. to encode them
        for the history while the windows are still measured and decided). They are handed
        over: :attr:`Compared.histograms` is then None (10^7 rows at scale are not held
        through the decisions and the writes).

    Returns
    -------
    Compared
    """
    settings = config.references
    in_current = current["feature"].unique(maintain_order=True)
    features = list(dict.fromkeys([*in_current,
                                   *reference["feature"].unique(maintain_order=True)]))
    modes = {f: settings.modes_for(f) for f in features}
    used = [m for m in REFERENCE_MODES if any(m in modes[f] for f in features)]
    moving = [m for m in used if m != "baseline"]

    def layouts_and_keys() -> tuple[pl.DataFrame, pl.DataFrame]:
        return feature_layouts(reference), window_keys(
            current, as_of=history.as_of, coverage=coverage,
            season=settings.season if "same_period" in moving else None)

    warnings = [f"references.features pattern {pattern!r} matches no feature"
                for pattern in settings.features
                if not any(fnmatch.fnmatchcase(f, pattern) for f in features)]
    lookback, max_runs = _lookback(config, moving)
    found: tuple[pl.DataFrame, pl.DataFrame] | None = None
    line = None
    if moving or config.trends.enabled:  # the windows are needed before measuring
        found = layouts, keys = layouts_and_keys()
        say("reading earlier windows from the history")
        parts, problems = ([], []) if history.dir is None else scan_histograms(
            history.dir, exclude_run_id=history.run_id, before=history.as_of,
            max_runs=max_runs)
        warnings += problems
        earlier = _read_history(parts, layouts, since=_since(keys, lookback),
                                starts=_targets(keys), warnings=warnings)
        present = in_current.to_list()
        line = timeline(current, keys, earlier,
                        present if config.trends.enabled else
                        [f for f in present if set(modes[f]) & set(moving)])

    def measured() -> list[pl.DataFrame]:
        tables = []
        for mode in used:
            wanted = [f for f in features if mode in modes[f]]
            say(f"comparing {len(wanted)} features with the {mode} reference")
            tables.append(_mode_drift(config, mode, wanted, reference, current,
                                      None if found is None else found[1], line,
                                      reasons=reasons, coverage=coverage, lookback=lookback,
                                      singletons=singletons))
        return tables

    def history_side() -> tuple[pl.DataFrame | None, pl.DataFrame]:
        layouts, keys = layouts_and_keys() if found is None else found
        rows = history_rows(current, keys, layouts)
        if on_histograms is None:
            return rows, keys
        on_histograms(rows)  # handed over: not kept beside the decisions and the writes
        return None, keys

    # the history's rows (and, unless found above, the windows they are keyed by) are built
    # beside the measurement, whose align keeps about one core busy; the measurement is
    # the first call, so its errors are the ones raised
    tables, (histories, keys) = side_by_side(measured, history_side)
    drift = public_segment_columns(_ordered(tables, keys, segment_columns(current)))
    trends = None
    if line is not None and config.trends.enabled:
        say("computing trends")
        trends = _trends(config, drift, current, keys, line, history, lookback, warnings)
    return Compared(drift, histories, trends, warnings)


def _read_history(parts: Sequence[tuple[Path, pl.LazyFrame]], layouts: pl.DataFrame, *,
                  since: datetime | None, starts: Sequence[datetime],
                  warnings: list[str]) -> pl.DataFrame | None:
    """:func:`pipeline.bins.references.read_earlier` over the history's partitions in one
    query; when one is damaged inside its pages (found only when read), partition by
    partition, skipping the damaged ones with a warning naming them."""
    if not parts:
        return None
    try:
        return read_earlier(pl.concat([scan for _, scan in parts]), layouts, since=since,
                            starts=starts)
    except read_errors():
        pass
    frames = []
    for file, scan in parts:
        try:
            frames.append(read_earlier(scan, layouts, since=since, starts=starts))
        except read_errors() as error:
            warnings.append(skipped_partition(file, error))
    return pl.concat(frames) if frames else None


def _lookback(config: RunConfig, moving: Sequence[str]) -> tuple[str | None, int | None]:
    """How far back earlier windows are used: a duration, or (without a period, for
    ``"auto"``) the number of newest earlier runs read instead."""
    setting = config.references.lookback
    if setting != "auto":
        return setting, None
    needed = max([1 if "previous" in moving else 0,
                  config.references.rolling_windows if "rolling" in moving else 0,
                  config.trends.windows if config.trends.enabled else 0, 1])
    if config.input.period is not None:
        return scaled_period(config.input.period, 2 * needed), None
    return None, 2 * needed


def _since(keys: pl.DataFrame, lookback: str | None) -> datetime | None:
    """The start of the oldest window ``previous``, ``rolling`` or trends may use."""
    first = keys["start"].min()
    if lookback is None or first is None:
        return None
    since: datetime = pl.select(pl.lit(first).dt.offset_by(f"-{lookback}")).item()
    return since


def _targets(keys: pl.DataFrame) -> list[datetime]:
    """The starts of the windows one season before the run's (``same_period``)."""
    return keys["target"].drop_nulls().unique().to_list() if "target" in keys.columns else []


def _mode_drift(config: RunConfig, mode: str, features: list[str], reference: pl.DataFrame,
                current: pl.DataFrame, keys: pl.DataFrame | None, line: Timeline | None, *,
                reasons: Mapping[str, str], coverage: pl.DataFrame | None,
                lookback: str | None, singletons: pl.DataFrame | None) -> pl.DataFrame:
    """The decided drift rows of ``features`` against ``mode``'s reference (``keys`` and
    ``line``: the windows and their timeline, needed by the moving modes only)."""
    subset = _of_features(current, features)
    if mode == "baseline":
        aligned = align(_of_features(reference, features), subset, reasons=reasons,
                        coverage=coverage)
        drift = compute_drift(aligned, config.drift, singletons=singletons).with_columns(
            reference=pl.lit(mode), reference_windows=pl.lit(None, pl.List(pl.String)))
    else:
        assert keys is not None and line is not None  # found whenever a mode is moving
        settings = config.references
        refs = build_references(current, keys, line, mode=mode, features=features,
                                rolling_windows=settings.rolling_windows,
                                season=settings.season, lookback=lookback, baseline=reference)
        seen = set(current["feature"].unique())
        absent = [f for f in features if f not in seen]
        extra = _per_window(reference, absent, keys, segment_columns(current))
        aligned = align(pl.concat([refs.histograms, extra], how="diagonal_relaxed"),
                        subset, reasons=reasons, coverage=coverage, by_window=True)
        drift = _without_reference(compute_drift(aligned, config.drift), refs.windows, mode,
                                   current["feature"].unique())
    del aligned  # the dense arrays: not needed to decide, and 10^7 cells at scale
    columns = drift.columns
    at = columns.index("partial") + 1
    drift = drift.select(*columns[:at], *REFERENCE_COLUMNS,
                         *(c for c in columns[at:] if c not in REFERENCE_COLUMNS))
    return window_verdicts(drift, config.alerts)


def _of_features(histograms: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """The rows of ``features``: the table itself when it has no others (filtering would
    copy every row of a large current table)."""
    if histograms["feature"].unique().is_in(features).all():
        return histograms
    return histograms.filter(pl.col("feature").is_in(features))


def _per_window(reference: pl.DataFrame, features: list[str], keys: pl.DataFrame,
                segments: list[str]) -> pl.DataFrame:
    """The baseline histograms of ``features`` (absent from the current data) repeated for
    every current window, so that they get the same error rows as with the baseline."""
    rows = reference.filter(pl.col("feature").is_in(features))
    if rows.is_empty():
        return rows
    windows = keys.select(*segments, *(["window"] if "window" in keys.columns else []))
    shared = [c for c in segment_columns(rows) if c in segments]
    return (windows.join(rows, on=shared, how="inner", nulls_equal=True) if shared
            else windows.join(rows, how="cross"))


def _without_reference(drift: pl.DataFrame, windows: pl.DataFrame, mode: str,
                       present: pl.Series) -> pl.DataFrame:
    """``reference``, ``reference_windows`` and, for windows without a reference, the
    status ``insufficient_data`` with the reason (instead of align's "no baseline")."""
    joined = drift.join(windows.rename({"reason": "_why"}), on=[*_SERIES, "window"],
                        how="left", nulls_equal=True, maintain_order="left")
    none = pl.col("reference_windows").is_null() & pl.col("feature").is_in(present.implode())
    why = (pl.when(pl.col("n_current") > 0).then(pl.col("_why"))
           .otherwise(pl.lit("no current data for this segment and window")))
    return joined.with_columns(
        reference=pl.lit(mode),
        status=pl.when(none).then(pl.lit("insufficient_data")).otherwise("status"),
        window_status=pl.when(none).then(pl.lit("insufficient_data")).otherwise("window_status"),
        reason=pl.when(none).then(why).otherwise("reason"),
    ).drop("_why")


def _ordered(tables: list[pl.DataFrame], keys: pl.DataFrame,
             segments: list[str]) -> pl.DataFrame:
    """The modes' rows as one table: by segment, feature, window, then mode (the rows of
    one window side by side). One mode keeps align's order as it is."""
    if len(tables) == 1:
        return tables[0]
    windows = keys.select("label", *(["window"] if "window" in keys.columns else []))
    rank = (windows.unique("label").sort(windows.columns[-1], nulls_last=True)
            .select(window="label", _window=pl.int_range(pl.len())))
    mode = pl.col("reference").replace_strict(
        {m: i for i, m in enumerate(REFERENCE_MODES)}, return_dtype=pl.Int64)
    return (pl.concat(tables, how="vertical_relaxed")
            .join(rank, on="window", how="left")
            .sort(*segments, "feature", "_window", mode, nulls_last=True, maintain_order=True)
            .drop("_window"))


def _trends(config: RunConfig, drift: pl.DataFrame, current: pl.DataFrame,
            keys: pl.DataFrame, line: Timeline, history: History, lookback: str | None,
            warnings: list[str]) -> pl.DataFrame:
    """trends.parquet: the profile statistics and the alert metric of every window of the
    run, against bounds learned from the windows before (:mod:`pipeline.measure.trends`)."""
    settings = config.trends
    on = [c for c in keys.columns if c in current.columns]
    checked = (with_keys(current.select(*on, "feature").unique(), keys)
               .select(*_SERIES, window="label", start="start", partial="partial")
               .sort(*_SERIES, "start", nulls_last=True))
    earlier = earlier_windows(checked, line, count=settings.windows, lookback=lookback)
    profile = window_statistics(line.bins, settings.quantiles).with_columns(
        reference=pl.lit(None, pl.String))
    metric = config.drift.metric
    bins = pl.col("bins").list.eval(
        ((pl.element().struct.field("baseline_count")
          + pl.element().struct.field("current_count")) > 0).sum()).list.first()
    ours = drift.filter(pl.col("value").is_not_null()).select(
        *_SERIES, "window", "reference", value="value",
        se=null_spread(metric, pl.col("n_current"), pl.col("n_baseline"), bins,
                       config.drift.log_base))
    past = _earlier_values(history, earlier, warnings).with_columns(se=pl.lit(None, pl.Float64))
    values = (pl.concat([ours, past.join(ours, on=[*_SERIES, "window", "reference"],
                                         how="anti")], how="vertical_relaxed")
              .with_columns(statistic=pl.lit(metric)))
    statistics = pl.concat([profile, values], how="diagonal_relaxed")
    return trend_table(statistics, earlier, checked, settings)


def _earlier_values(history: History, earlier: pl.DataFrame,
                    warnings: list[str]) -> pl.DataFrame:
    """The alert metric of the earlier windows the trends' bounds use, from the history
    (each window's latest value per reference)."""
    empty = pl.DataFrame(schema={"segment": pl.String, "feature": pl.String,
                                 "window": pl.String, "reference": pl.String,
                                 "value": pl.Float64})
    if history.dir is None:
        return empty
    decisions, problems = scan_decisions(
        history.dir, exclude_run_id=history.run_id, before=history.as_of,
        series=("segment", "feature", "reference"), extra=("value", "created_at"))
    warnings += problems
    if decisions is None or earlier.is_empty():
        return empty
    runs = pl.format("run of {}", pl.col("created_at").dt.to_string("%Y-%m-%dT%H:%M:%SZ"))
    wanted = earlier.select(*_SERIES, window="reference").unique()
    return (decisions.with_columns(window=pl.when(pl.col("window") == ALL).then(runs)
                                   .otherwise("window"))
            .join(wanted.lazy(), on=[*_SERIES, "window"], how="semi")
            .filter(pl.col("run_order") == pl.col("run_order").max()
                    .over([*_SERIES, "reference", "window"]))
            .select(*empty.columns)
            .collect(engine="streaming"))
