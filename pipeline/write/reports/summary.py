"""What the reports show and in which order, shared by the Markdown and HTML renderers.

Rows are ranked by severity (critical, warn, error, insufficient_data, ok) then by the alert
metric, largest first. The feature table has one row per segment x feature: its worst
window, plus how many of its windows alert.

Columns other work adds to the drift table are shown when present and skipped when absent:
``lifecycle`` (new / ongoing / resolved), ``partial`` and ``coverage`` (windows the data
cover only in part), a corrected effect with its interval (`EFFECTS`), and ``reference``
(what each window was compared with: with several references the feature table shows them
side by side).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.config import REFERENCE_MODES
from pipeline.formats import ALERTS_FILE, RESOLVED_FILE
from pipeline.measure.drift import list_rows

STATUSES = ("critical", "warn", "error", "insufficient_data", "ok")  # most severe first
ALERTING = ("critical", "warn")
PROBLEMS = ("error", "insufficient_data")
STATUS_LABELS = {"critical": "critical", "warn": "warn", "error": "error",
                 "insufficient_data": "insufficient data", "ok": "ok"}
STATUS_COLORS = {"critical": "#b91c1c", "warn": "#b45309", "error": "#6d28d9",
                 "insufficient_data": "#475569", "ok": "#15803d"}


LIFECYCLES = ("new", "ongoing", "resolved")  # alert lifecycle across runs, in badge order
ALL_WINDOWS = "all"


@dataclass(frozen=True)
class Effect:
    """Drift-table columns of an effect estimate with its interval, and how to name it."""

    value: str
    low: str
    high: str
    label: str


#: Effect columns the reports show, first match wins; extend when the statistics add others.
EFFECTS = (
    Effect("effect", "effect_low", "effect_high", "Corrected effect"),
    Effect("corrected_value", "corrected_low", "corrected_high", "Corrected effect"),
)


def effect_columns(columns: Sequence[str]) -> Effect | None:
    """The first of `EFFECTS` whose three columns a table has, or None."""
    return next((e for e in EFFECTS if {e.value, e.low, e.high} <= set(columns)), None)


def fmt_effect(row: Mapping[str, Any], effect: Effect) -> str:
    """``0.31 [0.28, 0.34]``: an effect and its interval, 3 significant digits.

    >>> fmt_effect({"e": 0.312, "lo": 0.28, "hi": None}, Effect("e", "lo", "hi", "E"))
    '0.312 [0.28, —]'
    """
    return (f"{fmt_value(row[effect.value])} [{fmt_value(row[effect.low])}, "
            f"{fmt_value(row[effect.high])}]")


def fmt_coverage(row: Mapping[str, Any]) -> str:
    """How much of a partial window the data cover (empty for a complete window).

    >>> fmt_coverage({"partial": True, "coverage": 0.42}), fmt_coverage({"partial": False})
    ('partial window: the data cover 42% of it', '')
    """
    if not row.get("partial"):
        return ""
    coverage = row.get("coverage")
    return ("partial window" if coverage is None
            else f"partial window: the data cover {coverage:.0%} of it")


#: Gives the ``bins`` lists of some drift-table rows (by row number, in the order asked).
BinsLoader = Callable[[pl.Series], pl.Series]


def bins_of(drift: pl.DataFrame) -> BinsLoader:
    """The `BinsLoader` of an in-memory drift table (no bins when it has no ``bins``)."""
    def load(rows: pl.Series) -> pl.Series:
        if "bins" not in drift.columns:
            return pl.Series("bins", [None] * rows.len())
        return list_rows(drift["bins"], rows.to_numpy())
    return load


def severity() -> pl.Expr:
    """Rank of the ``status`` column: 0 = critical ... 4 = ok; unknown statuses rank last."""
    return pl.col("status").replace_strict({s: i for i, s in enumerate(STATUSES)},
                                           default=len(STATUSES), return_dtype=pl.Int8)


def sort_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Sort drift rows most severe first, then by metric value (largest first, nulls last)."""
    keys = [k for k in ("segment", "feature", "window") if k in df.columns]
    return df.sort(severity(), pl.col("value"), *keys,
                   descending=[False, True, *[False] * len(keys)], nulls_last=True)


def references_of(drift: pl.DataFrame) -> list[str]:
    """The references a drift table's rows were compared with, in mode order
    (``["baseline"]`` for a table from before reference modes).

    >>> references_of(pl.DataFrame({"reference": ["previous", "baseline", "previous"]}))
    ['baseline', 'previous']
    """
    if "reference" not in drift.columns:
        return ["baseline"]
    found = drift["reference"].unique().to_list()
    return sorted(found, key=lambda r: (REFERENCE_MODES.index(r)
                                        if r in REFERENCE_MODES else len(REFERENCE_MODES), r))


def reference_text(row: Mapping[str, Any]) -> str:
    """What a row was compared with, in words (``reference`` and ``reference_windows``).

    >>> reference_text({"reference": "rolling", "reference_windows": [
    ...     "2024-06-01T00:00:00", "2024-06-02T00:00:00"]})
    'compared with the 2 windows 2024-06-01 to 2024-06-02, summed'
    >>> reference_text({"reference": "baseline"})
    'compared with the baseline'
    """
    reference = row.get("reference") or "baseline"
    earlier = compact_time_labels(list(row.get("reference_windows") or []))
    if reference == "baseline":
        return "compared with the baseline"
    if not earlier:
        return f"compared with the {reference} reference (none found)"
    if reference == "rolling":
        span = earlier[0] if len(earlier) == 1 else f"{earlier[0]} to {earlier[-1]}"
        return (f"compared with the {len(earlier)} "
                f"window{'s' if len(earlier) > 1 else ''} {span}, summed")
    what = {"previous": "the previous window", "same_period": "the same period a season back"}
    return f"compared with {what.get(reference, reference)}, {earlier[0]}"


def feature_rows(drift: pl.DataFrame, by: Sequence[str] = ("segment", "feature")
                 ) -> pl.DataFrame:
    """One row per segment x feature (or per ``by`` group): its worst window, most severe first.

    Adds ``n_windows`` (windows in the group) and ``n_alerting`` (those at warn or critical),
    and, when the table has a ``lifecycle`` column, ``lifecycles``: what happened to the
    group's alert episode in this run, as a list in `LIFECYCLES` order: ``new`` when a
    window started an episode no earlier run reported, else ``ongoing`` when one continued,
    then ``resolved`` when the group had lifecycle events and its latest window with a
    verdict is ``ok`` (the episode is over). The worst window is
    picked within each group (severity, then value, then window), so only the result is
    sorted: a 500,000-row table costs a group-by, not a sort of every row.

    When the rows were compared with several references (``reference``), the worst row is
    picked over all of them (a row without a verdict, ``insufficient_data``, only when no
    reference has one: moving references have none for the first windows); ``n_windows``
    and ``n_alerting`` count windows (alerting with any reference), ``lifecycles`` joins
    those of each reference, and ``by_reference`` lists, in mode order, each reference's
    ``reference``, worst ``status``, ``value``, ``n_alerting``, ``n_windows`` and
    ``lifecycles``: the references side by side.
    """
    if len(references_of(drift)) < 2:
        return _worst_rows(drift, by)
    keys = [*by, "reference"]
    per = _worst_rows(drift, keys)
    rank = pl.col("reference").replace_strict(
        {r: i for i, r in enumerate(references_of(drift))}, return_dtype=pl.Int64)
    side = ["reference", "status", "value", "n_alerting", "n_windows",
            *(["lifecycles"] if "lifecycles" in per.columns else [])]
    sides = per.group_by(*by, maintain_order=True).agg(
        pl.struct(side).sort_by(rank).alias("by_reference"),
        *([pl.col("lifecycles").list.explode(keep_nulls=False, empty_as_null=False)
            .unique().alias("_events")]
          if "lifecycles" in per.columns else []))
    window = pl.col("window") if "window" in drift.columns else pl.lit(ALL_WINDOWS)
    windows = drift.group_by(*by).agg(
        n_windows=window.n_unique().cast(pl.UInt32),
        n_alerting=window.filter(pl.col("status").is_in(ALERTING)).n_unique().cast(pl.UInt32))
    # a reference with a verdict speaks before one without (e.g. no earlier window yet)
    verdict = pl.col("status") == "insufficient_data"
    worst = (per.sort(verdict, severity(), pl.col("value"), rank,
                      descending=[False, False, True, False], nulls_last=True)
             .group_by(*by, maintain_order=True).first()
             .drop("n_windows", "n_alerting", "lifecycles", strict=False)
             .join(windows, on=list(by), how="left", nulls_equal=True)
             .join(sides, on=list(by), how="left", nulls_equal=True))
    if "_events" in worst.columns:
        events = pl.col("_events")
        worst = worst.with_columns(lifecycles=pl.concat_list(
            pl.when(events.list.contains("new")).then(pl.lit("new"))
            .when(events.list.contains("ongoing")).then(pl.lit("ongoing")),
            pl.when(events.list.contains("resolved")).then(pl.lit("resolved")),
        ).list.drop_nulls()).drop("_events")
    return sort_rows(worst)


def _worst_rows(drift: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """:func:`feature_rows` over ``by`` groups whose rows share one reference."""
    ties = [k for k in ("segment", "feature", "window") if k in drift.columns and k not in by]
    extra = []
    if "lifecycle" in drift.columns:
        events = pl.col("lifecycle")
        status = pl.col("status").sort_by("window") if "window" in drift.columns else pl.col(
            "status")
        last_verdict = status.filter(status.is_in(("ok", *ALERTING))).last()
        extra.append(pl.concat_list(
            # The episode's start: new (no earlier run reported it) or ongoing...
            pl.when((events == "new").any()).then(pl.lit("new"))
            .when((events == "ongoing").any()).then(pl.lit("ongoing")),
            # ...and whether it is over: it had events and its latest verdict is ok.
            pl.when(events.is_not_null().any() & (last_verdict == "ok"))
            .then(pl.lit("resolved")),
        ).list.drop_nulls().alias("lifecycles"))
    picked = (
        drift.with_row_index("_worst")
        .group_by(*by, maintain_order=True)
        .agg(pl.col("_worst").sort_by([severity(), pl.col("value"), *ties],
                                      descending=[False, True, *[False] * len(ties)],
                                      nulls_last=True).first(),
             *extra, n_windows=pl.len(), n_alerting=pl.col("status").is_in(ALERTING).sum())
    )
    worst = drift[picked["_worst"]].hstack(picked.drop(*by, "_worst"))
    return sort_rows(worst)


def feature_counts(rows: pl.DataFrame) -> dict[str, int]:
    """The headline: features checked, and those alerting in at least one segment or window.

    ``rows`` are the :func:`feature_rows` of a drift table (a feature's worst window over
    its segments is the worst of its rows' windows). ``{"features": M, "drifted": N,
    "critical": features whose worst window is critical, "warn": the rest of the N}``.

    >>> drift = pl.DataFrame({"segment": ["a", "b", "a"], "feature": ["x", "x", "y"],
    ...                       "window": "w", "status": ["warn", "critical", "ok"],
    ...                       "value": [0.2, 0.3, 0.0]})
    >>> feature_counts(feature_rows(drift))
    {'features': 2, 'drifted': 1, 'critical': 1, 'warn': 0}
    """
    worst = rows.group_by("feature").agg(severity().min().alias("rank"))
    ranks = dict(worst.group_by("rank").len().iter_rows())
    counts = {s: ranks.get(STATUSES.index(s), 0) for s in ALERTING}
    return {"features": worst.height, "drifted": sum(counts.values()), **counts}


@dataclass(frozen=True)
class FeatureSummary:
    """What report.md and report.html show of a drift table, computed once for both
    (:func:`summarize`).

    Attributes
    ----------
    drift : pl.DataFrame
        The drift table without ``bins`` (the rows shown load theirs), with ``_row`` (the
        row number in the table) and ``reference`` (``baseline`` for a table from before
        reference modes).
    rows : pl.DataFrame
        :func:`feature_rows` of it, with ``rank`` (:func:`severity`).
    counts : dict
        :func:`feature_counts`.
    problems : pl.DataFrame
        :func:`problem_rows`.
    windows : dict
        :func:`window_labels`.
    n_features, n_segments, n_windows, n_partial : int
        Distinct features, segments and windows, and partial windows (rows).
    """

    drift: pl.DataFrame
    rows: pl.DataFrame
    counts: dict[str, int]
    problems: pl.DataFrame
    windows: dict[str, str]
    n_features: int
    n_segments: int
    n_windows: int
    n_partial: int

    @property
    def shape(self) -> str:
        """``"M features × S segments × W windows"`` (segments and windows when several)."""
        parts = [f"{self.n_features} features"]
        parts += [f"{n} {noun}" for noun, n in (("segments", self.n_segments),
                                                ("windows", self.n_windows)) if n > 1]
        return " × ".join(parts)


def summarize(drift: pl.DataFrame) -> FeatureSummary:
    """The :class:`FeatureSummary` of a drift table.

    >>> drift = pl.DataFrame({"segment": "all", "feature": ["x", "x", "y"],
    ...                       "window": ["w1", "w2", "w1"], "status": ["ok", "warn", "ok"],
    ...                       "value": [0.0, 0.2, 0.1], "reason": None})
    >>> summary = summarize(drift)
    >>> summary.rows.select("feature", "window", "n_alerting").rows(), summary.counts
    ([('x', 'w2', 1), ('y', 'w1', 0)], {'features': 2, 'drifted': 1, 'critical': 0, 'warn': 1})
    """
    # bins dropped and columns added without a copy: the table's columns are shared
    table = drift.drop("bins", strict=False).with_row_index("_row")
    if "reference" not in table.columns:  # a run from before reference modes
        table = table.with_columns(reference=pl.lit("baseline"))
    rows = feature_rows(table).with_columns(rank=severity())
    return FeatureSummary(
        drift=table, rows=rows, counts=feature_counts(rows), problems=problem_rows(table),
        windows=window_labels(table), n_features=table["feature"].n_unique(),
        n_segments=table["segment"].n_unique(), n_windows=table["window"].n_unique(),
        n_partial=(int(table["partial"].fill_null(False).sum())
                   if "partial" in table.columns else 0))


def problem_rows(drift: pl.DataFrame) -> pl.DataFrame:
    """Every ``error`` / ``insufficient_data`` window, errors first."""
    return sort_rows(drift.filter(pl.col("status").is_in(PROBLEMS)))


def resolved_episodes(alerts: Mapping[str, Any],
                      shown: int) -> tuple[list[Any], int, str] | None:
    """The first ``shown`` of alerts.json's resolved episodes (``None`` for a run without
    the list), how many more the run resolved (the list is capped at ``output.max_alerts``,
    ``omitted.resolved`` counting the rest) and the file listing them all: resolved.parquet
    when the list was capped, else alerts.json.

    >>> resolved_episodes({"resolved": [{"feature": "a"}, {"feature": "b"}],
    ...                    "omitted": {"resolved": 2}}, 1)
    ([{'feature': 'a'}], 3, 'resolved.parquet')
    """
    listed = alerts.get("resolved")
    if listed is None:
        return None
    omitted = int((alerts.get("omitted") or {}).get("resolved", 0))
    return (listed[:shown], max(len(listed) - shown, 0) + omitted,
            RESOLVED_FILE if omitted else ALERTS_FILE)


def status_counts(alerts: Mapping[str, Any]) -> dict[str, int]:
    """Counts per status from ``alerts["summary"]`` (or a block's), most severe first.

    Only the statuses the summary has: a ``models`` block has no ``error``.
    """
    summary = alerts["summary"]
    return {s: int(summary[s]) for s in STATUSES if s in summary}


def thresholds_text(drift: pl.DataFrame) -> str:
    """The thresholds in effect: one pair, or the range when they vary by feature/window."""
    warn, critical = drift["warn_threshold"].drop_nulls(), drift["critical_threshold"].drop_nulls()
    if warn.is_empty() or critical.is_empty():
        return "none"
    if warn.n_unique() == 1 and critical.n_unique() == 1:
        return f"warn {warn[0]:.3g}, critical {critical[0]:.3g}"
    thresholds = pl.col("warn_threshold", "critical_threshold")
    (low_warn, low_critical), (high_warn, high_critical) = (
        drift.select(thresholds.min()).row(0), drift.select(thresholds.max()).row(0))
    return (f"warn {low_warn:.3g}–{high_warn:.3g}, critical "
            f"{low_critical:.3g}–{high_critical:.3g} (per feature / calibrated)")


def thresholds_vary(rows: pl.DataFrame) -> bool:
    """Whether the rows have different thresholds, so a table needs a thresholds column."""
    pairs = rows.select(pl.struct("warn_threshold", "critical_threshold").n_unique())
    return pairs.item() > 1


def unit(base: object) -> str:
    """``"bits"`` for base 2, ``"nats"`` for base e."""
    return "bits" if base == 2 else "nats"


def run_facts(drift: pl.DataFrame | None, alerts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Run metadata as (label, value) pairs of plain, unescaped text.

    The feature metric and thresholds only when the run checked features (``drift``).
    """
    run = alerts["run"]
    base = run.get("base", "e")
    inputs = run.get("inputs") or {}
    metric = [] if drift is None else [
        ("Metric", f"{run.get('metric', '')} (base {base}, {unit(base)})"),
        ("Thresholds", thresholds_text(drift))]
    return [
        ("Run id", str(run.get("run_id", ""))),
        ("Created", str(run.get("created_at", ""))),
        *[(f"{name.capitalize()} input", "—" if path is None else str(path))
          for name, path in inputs.items()],
        *metric,
        ("Config hash", str(run.get("config_hash", ""))[:12]),
        ("Tool version", str(run.get("tool_version", ""))),
    ]


def fmt_value(value: float | None) -> str:
    """A metric value with 3 significant digits; an em dash when missing."""
    return "—" if value is None else f"{value:.3g}"


def fmt_p(value: float | None) -> str:
    """A p- or q-value with 2 significant digits."""
    return "—" if value is None else f"{value:.2g}"


def fmt_share(value: float | None) -> str:
    """A share of rows as a percentage."""
    return "—" if value is None else f"{value:.1%}"


def fmt_count(value: float | None) -> str:
    """A row count (weights allowed) with thousands separators."""
    return "—" if value is None else f"{value:,.0f}"


def compact_time_labels(labels: Sequence[str]) -> list[str]:
    """Window or run labels, shortened when all are ISO-8601 times.

    ``2024-06-01T00:00:00+00:00`` becomes ``2024-06-01`` when every label is a midnight,
    else ``2024-06-01 13:00``; labels that are not times are returned unchanged.
    """
    try:
        times = [datetime.fromisoformat(label) for label in labels]
    except ValueError:
        return list(labels)
    midnight = all(t.hour == t.minute == t.second == 0 for t in times)
    return [t.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M") for t in times]


def window_labels(drift: pl.DataFrame) -> dict[str, str]:
    """Display label of every window of the run (see `compact_time_labels`)."""
    windows = drift["window"].drop_nulls().unique().sort().to_list()
    return dict(zip(windows, compact_time_labels(windows), strict=True))
