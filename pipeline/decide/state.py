"""Decisions across windows and runs: persistence, partial windows, and alert lifecycles.

``window_status`` is each window's own verdict (:mod:`pipeline.decide.alerts`). This module
turns it into the ``status`` a run reports, on one timeline per series (segment x feature for
feature drift, segment for model outputs) that joins the windows earlier runs decided (each
window's latest decision, :func:`previous_points`) with this run's:

* persistence: a drifting window (``window_status`` warn or critical) alerts only as the
  ``persistence``-th consecutive drifting window of its series, counting windows that
  earlier runs decided;
* partial windows (``partial`` true) are held back as ``insufficient_data``: they neither
  break nor extend a streak, and are judged when a later run sees them complete;
* lifecycle of alerting rows: an *episode* is a maximal streak of drifting windows. An
  alert is ``new`` when it is the first alert of an episode no earlier run reported,
  ``resolved`` when its episode has ended (an ``ok`` window followed it), else ``ongoing``.
  The episodes this run closed (their first ``ok`` window decided by this run, not by an
  earlier one) are listed once, for "resolved" notifications.

The timeline orders windows by their start when the labels are times, else by first
appearance (earlier runs first, then row order within a run). Without windows (label
``all``) each run is one point of the timeline. Earlier runs never include the run being
written, so rerunning a run id gives the same decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.labels import ALL

ALERTING = ("warn", "critical")
LIFECYCLES = ("new", "ongoing", "resolved")
#: Columns of the earlier decisions :func:`previous_points` reads, besides the series.
DECISION_COLUMNS = {"window": pl.String, "window_status": pl.String, "status": pl.String,
                    "partial": pl.Boolean, "run_order": pl.Int64, "row_order": pl.Int64}
_POINT_COLUMNS = ("window", "window_status", "status", "partial", "first_run", "first_pos")
# Window labels written by pipeline.labels: times with or without offset, dates.
_LABEL_FORMATS = (("%Y-%m-%dT%H:%M:%S%:z", None), ("%Y-%m-%dT%H:%M:%S", "UTC"))


@dataclass(frozen=True)
class StateResult:
    """What :func:`apply_state` gives.

    Attributes
    ----------
    table : pl.DataFrame
        The input table with ``status``, ``reason`` and ``lifecycle`` (null on rows that
        do not alert) set.
    resolved : list of dict
        One entry per episode this run closed: the series columns, ``window`` (the ok
        window that closed it), ``since`` (its first drifting window) and ``last_status``
        (its last alert).
    """

    table: pl.DataFrame
    resolved: list[dict[str, Any]]


def _point(run_order: pl.Expr) -> pl.Expr:
    """A window's identity on the timeline: its label, or one point per run without windows."""
    return (pl.when(pl.col("window") == ALL).then(pl.format("all@{}", run_order))
            .otherwise("window"))


def _window_start(label: pl.Expr) -> pl.Expr:
    """The UTC start of a window from its label, or null when the label is not a time."""
    return pl.coalesce(
        *(label.str.to_datetime(fmt, time_zone=zone, time_unit="us", strict=False)
          .dt.convert_time_zone("UTC") for fmt, zone in _LABEL_FORMATS),
        label.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"))


def previous_points(decisions: pl.LazyFrame, series: Sequence[str]) -> pl.LazyFrame:
    """Earlier runs' decisions as timeline points: each window's latest decision.

    Parameters
    ----------
    decisions : pl.LazyFrame
        Every earlier run's rows: the ``series`` columns and :data:`DECISION_COLUMNS`
        (``run_order`` ranks runs oldest first; ``row_order`` is the row's position in its
        run within its series). :func:`pipeline.write.history.scan_decisions` gives them.
    series : sequence of str

    Returns
    -------
    pl.LazyFrame
        One row per series x window (x run, without windows): the series columns,
        ``window``, ``window_status``, ``status`` and ``partial`` of its latest decision,
        ``first_run`` and ``first_pos`` of its first appearance.
    """
    by = [*series, "_point"]
    latest = pl.col("run_order").arg_max()
    return (
        decisions.with_columns(_point=_point(pl.col("run_order")))
        .group_by(by)
        .agg(pl.col("window").first(),
             *(pl.col(c).get(latest) for c in ("window_status", "status", "partial")),
             first_run=pl.col("run_order").min(),
             first_pos=pl.col("row_order").get(pl.col("run_order").arg_min()))
        .select(*series, *_POINT_COLUMNS)
    )


def apply_persistence(drift: pl.DataFrame, persistence: int) -> pl.DataFrame:
    """Fill ``status`` from ``window_status`` within one run: :func:`apply_state` without
    earlier runs."""
    return apply_state(drift, None, persistence=persistence).table


def apply_state(current: pl.DataFrame, previous: pl.DataFrame | None, *, persistence: int,
                hold_partial: bool = True,
                series: Sequence[str] = ("segment", "feature")) -> StateResult:
    """Decide ``status``, ``reason`` and ``lifecycle`` of this run's rows.

    Parameters
    ----------
    current : pl.DataFrame
        This run's rows, in window order within each series: the ``series`` columns,
        ``window``, ``window_status``, ``reason`` and optionally ``partial`` and
        ``coverage``.
    previous : pl.DataFrame or None
        Earlier runs' points (:func:`previous_points`, collected); ``None`` for none.
    persistence : int
        Consecutive drifting windows needed before one alerts (1: every one).
    hold_partial : bool
        Hold partial windows back (``insufficient_data``) instead of judging them.
    series : sequence of str
        The columns identifying a series.

    Returns
    -------
    StateResult

    Examples
    --------
    >>> rows = pl.DataFrame({"segment": "all", "feature": "x", "window": ["w1", "w2", "w3"],
    ...                      "window_status": ["warn", "warn", "ok"], "reason": None})
    >>> result = apply_state(rows, None, persistence=2)
    >>> result.table.select("status", "lifecycle").rows()
    [('ok', None), ('warn', 'new'), ('ok', None)]
    >>> result.resolved
    [{'segment': 'all', 'feature': 'x', 'window': 'w3', 'since': 'w1', 'last_status': 'warn'}]
    """
    keys = list(series)
    partial = ((pl.col("partial").fill_null(False) if "partial" in current.columns
                else pl.lit(False)) & hold_partial)
    # the few columns used, taken by name: a select over the whole table would copy it
    used = [*keys, "window", "window_status",
            *(c for c in ("partial", "reason", "coverage") if c in current.columns)]
    ours = current[used].with_row_index("_row").select(
        *keys, "window", "window_status", "_row", _partial=partial,
        _point=_point(pl.lit(-1)),
        _pos=pl.int_range(pl.len(), dtype=pl.Int64).over(keys))
    if previous is None or previous.height == 0:
        previous = pl.DataFrame(schema={**{k: ours.schema[k] for k in keys},
                                        **dict.fromkeys(_POINT_COLUMNS, pl.String),
                                        "partial": pl.Boolean, "first_run": pl.Int64,
                                        "first_pos": pl.Int64})
    earlier = previous.with_columns(
        _point=_point(pl.col("first_run")), _partial=pl.col("partial").fill_null(False)
        & hold_partial)
    this_run = int(earlier["first_run"].max() or 0) + 1  # type: ignore[arg-type]
    # A window this run checks again takes this run's verdict and keeps its place.
    ours = ours.join(earlier.select(*keys, "_point", "first_run", "first_pos",
                                    _was="window_status", _was_status="status"),
                     on=[*keys, "_point"], how="left", nulls_equal=True)
    others = earlier.join(ours.select(*keys, "_point"), on=[*keys, "_point"], how="anti",
                          nulls_equal=True)
    timeline = pl.concat([
        ours.select(*keys, "window", "window_status", "_row", "_partial", "_was",
                    "_was_status", _status=pl.lit(None, pl.String),
                    _first_run=pl.col("first_run").fill_null(this_run),
                    _first_pos=pl.coalesce("first_pos", "_pos")),
        others.select(*keys, "window", "window_status", _row=pl.lit(None, pl.UInt32),
                      _partial="_partial", _was=pl.lit(None, pl.String),
                      _was_status=pl.lit(None, pl.String), _status="status",
                      _first_run="first_run", _first_pos="first_pos"),
    ], how="vertical_relaxed")
    # Only series with a drifting window (now or earlier) need a timeline: elsewhere no
    # window is held back, alerts or closes an episode, and the status is the window's.
    # One integer per series, and each label's start parsed once: the timeline is sorted and
    # grouped by numbers, not by the series' strings and labels of every row.
    series_id = pl.struct(keys).rank("dense")
    drifted = pl.any_horizontal(pl.col(c).is_in(ALERTING)
                                for c in ("window_status", "_was_status", "_status"))
    timeline = timeline.filter(~pl.col("_partial")).filter(drifted.any().over(series_id))
    labels = timeline.select(pl.col("window").unique())
    starts = labels.with_columns(_start=_window_start(pl.col("window")))
    judged = _judge(
        timeline.with_columns(_series=series_id)
        .join(starts, on="window", how="left", nulls_equal=True)
        .sort(["_series", "_start", "_first_run", "_first_pos"], nulls_last=True),
        "_series", persistence)
    held = pl.col("window_status").is_in(ALERTING) & (pl.col("_streak") < persistence)
    # the decisions in row order, computed beside the few columns they need and then put
    # on the rows: a join or a new expression on the whole table would copy its every column
    decisions = (
        current[used].with_columns(_row=pl.int_range(pl.len(), dtype=pl.UInt32),
                                   _partial=partial)
        .join(judged, on="_row", how="left", maintain_order="left")
        .with_columns(
            status=pl.when(pl.col("_partial")).then(pl.lit("insufficient_data"))
            .otherwise(pl.coalesce("_status", "window_status")),
            reason=pl.when(pl.col("_partial")).then(_partial_reason(current))
            .when(held).then(pl.format(
                f"{{}} drift in {{}} of {persistence} required consecutive windows",
                "window_status", "_streak"))
            # a drifting window has no reason of its own: one held back earlier is cleared
            .when(pl.col("window_status").is_in(ALERTING)).then(pl.lit(None, pl.String))
            .otherwise("reason"),
            lifecycle=pl.when(~pl.col("_partial")).then("_lifecycle"))
    )
    resolved = (decisions.filter(pl.col("_since").is_not_null())
                .select(*keys, "window", since="_since", last_status="_last_status")
                .to_dicts())
    return StateResult(current.with_columns(decisions.select("status", "reason", "lifecycle")),
                       resolved)


def _judge(timeline: pl.DataFrame, series: str, persistence: int) -> pl.DataFrame:
    """Streak, status and lifecycle of this run's points along each series' timeline
    (``timeline`` sorted by the integer column ``series``, then along the timeline).

    Earlier points (``_row`` null) keep the status they were reported with. An episode is
    closed by the first ``ok`` window after it (windows without a verdict in between,
    ``insufficient_data`` or ``error``, neither close nor continue it).
    """
    drifting = pl.col("window_status").is_in(ALERTING)
    decided = pl.col("window_status").is_in(("ok", *ALERTING))
    # a spell (one number over all series) starts at each window that is not drifting and
    # at each series' first: an episode's drifting windows share the spell before them.
    # Spells are runs of consecutive rows numbered up by one, and nearly every window is a
    # spell of its own: sums within a spell are running sums less the sum before it, and a
    # spell's values are gathered by its number (window functions over that many groups
    # cost 50 times more).
    spell = (~drifting | (pl.col(series) != pl.col(series).shift()).fill_null(True)).cum_sum()
    alerting = pl.col("_status").is_in(ALERTING)
    ours = pl.col("_row").is_not_null()
    # The episode of the last decided window before each point, if it was drifting.
    before = (pl.when(decided).then(pl.when(drifting).then("_spell").otherwise(-1))
              .shift().forward_fill().over(series))
    points = (
        timeline.with_columns(_spell=spell.set_sorted())
        .with_columns(_streak=_spell_count(drifting))
        .with_columns(_status=pl.when(ours & drifting & (pl.col("_streak") < persistence))
                      .then(pl.lit("ok"))
                      .when(ours).then("window_status")
                      .otherwise("_status"),
                      _before=before)
    )
    closing = (pl.col("window_status") == "ok") & (pl.col("_before") >= 0)
    closers = points.filter(closing).select("_row", "_was", _spell="_before")
    episodes = points.group_by("_spell", maintain_order=True).agg(
        _alerted=alerting.any(),
        # reported by an earlier run: one of its points, or one this run checks again
        _reported=((alerting & ~ours) | pl.col("_was_status").is_in(ALERTING)).any(),
        _since=pl.col("window").filter(drifting).first(),
        _last_status=pl.col("_status").filter(alerting).last(),
    ).with_columns(_closed=pl.col("_spell").is_in(closers["_spell"].implode()))
    first = points["_spell"].min()
    of_points = episodes.select(
        pl.col("_reported", "_closed").gather(points["_spell"] - first))
    # an ok window an earlier run already decided closed its episode then: said once
    resolved = closers.hstack(
        episodes.select(pl.col("_alerted", "_since", "_last_status")
                        .gather(closers["_spell"] - first))
    ).filter(pl.col("_row").is_not_null() & pl.col("_alerted")
             & (pl.col("_was").fill_null("") != "ok"))
    first_alert = _spell_count(alerting & ours) == 1
    return (
        points.hstack(of_points)
        .filter(ours)
        .select("_row", "_streak", "_status",
                _lifecycle=pl.when(alerting & ~pl.col("_reported") & first_alert)
                .then(pl.lit("new"))
                .when(alerting & pl.col("_closed")).then(pl.lit("resolved"))
                .when(alerting).then(pl.lit("ongoing")))
        .join(resolved.select("_row", "_since", "_last_status"), on="_row", how="left")
    )


def _spell_count(counted: pl.Expr) -> pl.Expr:
    """How many rows of its spell, up to and including this one, are ``counted``."""
    total = counted.cast(pl.Int64).cum_sum()
    starts = (pl.col("_spell") != pl.col("_spell").shift()).fill_null(True)
    return total - pl.when(starts).then(total - counted.cast(pl.Int64)).forward_fill()


def _partial_reason(current: pl.DataFrame) -> pl.Expr:
    share = (pl.format("{}%", (pl.col("coverage") * 100).round(0).cast(pl.Int64))
             if "coverage" in current.columns else pl.lit("part"))
    return pl.format("partial window: the data cover {} of it; judged when complete "
                     "(alerts.partial_windows = 'alert' judges it now)", share)
