"""The run's machine-readable summary: the ``alerts.json`` document and its schema.

:func:`alerts_document` builds it from the decided drift table and the model, estimate and
joint blocks; :class:`AlertsDocument` is its pydantic schema (docs/reports.md), used to validate a
run folder before the reports are rendered from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.config import EstimateConfig, JointConfig, TrendsConfig, quantile_name
from pipeline.formats import (
    ESTIMATES_FILE,
    JOINT_FILE,
    MODEL_STATUSES,
    MODELS_FILES,
    STATUSES,
    TRENDS_FILE,
)

if TYPE_CHECKING:  # imported by runs that compare models, not by every run
    from pipeline.measure.models import ModelDrift

#: 2: alert lifecycles (``lifecycle``, ``changes``, ``resolved``) and capped lists
#: (``omitted``); version 1 documents are still read.
SCHEMA_VERSION = 2
_ALERT_FIELDS = ("segment", "feature", "window", "reference", "reference_windows", "status",
                 "lifecycle", "metric", "value", "warn_threshold", "critical_threshold",
                 "p_value", "q_value", "n_baseline", "n_current", "top_bins")
_PROBLEM_FIELDS = ("segment", "feature", "window", "reference", "status", "reason")
# Fields of a trend flag (a yellow or red light) in the trends block.
_FLAG_FIELDS = ("segment", "feature", "statistic", "reference", "window", "light", "value",
                "expected", "lower_yellow", "upper_yellow", "lower_red", "upper_red", "pull",
                "n_windows")
_LIFECYCLE_RANK = {"new": 0, "ongoing": 1, "resolved": 2}


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that JSON can hold: non-finite floats become ``None``.

    Each dict that had a non-finite number gets ``"null_reasons": {field: why}``, so a
    reader can tell an infinite KL (``eps = 0`` with an empty baseline bin) from a
    missing value.
    """
    if isinstance(value, Mapping):
        out, reasons = {}, {}
        for key, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                reasons[key] = f"{item} is not representable in JSON"
                item = None
            elif isinstance(item, _CONTAINERS):  # scalars are kept without a call
                item = json_safe(item)
            out[key] = item
        if reasons:
            out["null_reasons"] = {**out.get("null_reasons", {}), **reasons}
        return out
    if isinstance(value, list | tuple):
        # Bare numbers in lists have no key to explain: wrap each list item on its own.
        return [None if isinstance(v, float) and not math.isfinite(v) else
                json_safe(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


_CONTAINERS = (Mapping, list, tuple)


def dumps_json(document: Any) -> str:
    """Serialise ``document`` as strict JSON (no NaN/Infinity), after :func:`json_safe`.

    A document that is JSON already (as :func:`alerts_document` builds them) is written as
    it is: json_safe would only copy it.
    """
    try:
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError):  # a non-finite number, or a mapping that is no dict
        return json.dumps(json_safe(document), indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"


def count_statuses(table: pl.DataFrame | None, statuses: tuple[str, ...]) -> dict[str, int]:
    """``{"total": rows, status: rows with it, ...}`` of a table's ``status`` column."""
    counts = {} if table is None else dict(table["status"].value_counts().iter_rows())
    return {"total": 0 if table is None else table.height,
            **{s: counts.get(s, 0) for s in statuses}}


def alerting_rows(table: pl.DataFrame) -> pl.DataFrame:
    """The ``warn``/``critical`` rows: new alerts first, then critical before warn, then
    ongoing before resolved, then larger ``value`` first.

    Without a ``lifecycle`` column every alert counts as new.
    """
    if "lifecycle" not in table.columns:
        table = table.with_columns(lifecycle=pl.lit(None, pl.String))
    rank = pl.col("lifecycle").replace_strict(_LIFECYCLE_RANK, default=0,
                                              return_dtype=pl.Int8)
    return (table.filter(pl.col("status").is_in(["warn", "critical"]))
            .sort([rank > 0, pl.col("status") == "warn", rank, "value"],
                  descending=[False, False, False, True], nulls_last=True))


def lifecycle_changes(alerts: pl.DataFrame, resolved: list[Any]) -> dict[str, int]:
    """``{"new": alerts new, "ongoing": alerts ongoing, "resolved": episodes closed}``."""
    counts = (dict(alerts["lifecycle"].value_counts().iter_rows())
              if "lifecycle" in alerts.columns else {})
    return {"new": counts.get("new", 0), "ongoing": counts.get("ongoing", 0),
            "resolved": len(resolved)}


def _capped(rows: pl.DataFrame, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` rows as dicts, and how many were left out."""
    return rows.head(limit).to_dicts(), max(rows.height - limit, 0)


def alerts_document(drift: pl.DataFrame | None, run: Mapping[str, Any],
                    warnings: list[str] | None = None, *,
                    resolved: list[dict[str, Any]] | None = None,
                    trends: Mapping[str, Any] | None = None,
                    models: Mapping[str, Any] | None = None,
                    estimates: Mapping[str, Any] | None = None,
                    joint: Mapping[str, Any] | None = None,
                    max_rows: int = 1000) -> dict[str, Any]:
    """The ``alerts.json`` document of a run.

    Parameters
    ----------
    drift : pl.DataFrame or None
        Drift table with final ``status`` (see docs/architecture.md); ``None`` for a run
        without feature drift (``summary`` is then all zeros).
    run : mapping
        The ``run`` section: run_id, created_at, tool_version, inputs, config_hash, metric,
        base, config.
    warnings : list of str, optional
        Run-level notes, e.g. threshold patterns that matched no feature.
    resolved : list of dict, optional
        Alert episodes this run closed (:class:`pipeline.decide.state.StateResult`).
    trends : mapping, optional
        The ``trends`` block (:func:`trends_block`); left out when ``None``.
    models, estimates, joint : mapping, optional
        The ``models`` block (:func:`pipeline.measure.models.models_block`), the ``estimates``
        block (:func:`pipeline.measure.estimate.estimates_block`) and the ``joint`` block
        (:func:`joint_block`); left out when ``None``.

    max_rows : int
        At most this many alerts, problems and resolved episodes are listed (new alerts
        first); ``omitted`` counts the rest, which drift.parquet (the alerts and problems)
        and resolved.parquet (the episodes) hold.

    Returns
    -------
    dict
        JSON-safe: alerts in :func:`alerting_rows` order, problems (error,
        insufficient_data) in table order.
    """
    alerts: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    resolved = list(resolved or [])
    omitted = {"alerts": 0, "problems": 0, "resolved": max(len(resolved) - max_rows, 0)}
    changes = {"new": 0, "ongoing": 0, "resolved": len(resolved)}
    if drift is not None:
        # the listed fields taken first: filtering and sorting the whole table would copy
        # every column (the bins lists too) of its alerting rows
        listed = _with_reference(drift.select(
            c for c in dict.fromkeys((*_ALERT_FIELDS, *_PROBLEM_FIELDS)) if c in drift.columns))
        alerting = alerting_rows(listed)
        changes = lifecycle_changes(alerting, resolved)
        alerts, omitted["alerts"] = _capped(alerting.select(_ALERT_FIELDS), max_rows)
        problems, omitted["problems"] = _capped(
            listed.filter(pl.col("status").is_in(["error", "insufficient_data"]))
            .select(_PROBLEM_FIELDS), max_rows)
    blocks = {"trends": trends, "models": models, "estimates": estimates, "joint": joint}
    return json_safe({
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "summary": count_statuses(drift, STATUSES),
        "changes": changes,
        "alerts": alerts,
        "resolved": resolved[:max_rows],
        "problems": problems,
        "omitted": omitted,
        "warnings": list(warnings or []),
        **{name: dict(block) for name, block in blocks.items() if block is not None},
    })


def _with_reference(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows of a drift table from before reference modes: each compared with the baseline."""
    if "reference" in rows.columns:
        return rows
    return rows.with_columns(reference=pl.lit("baseline"),
                             reference_windows=pl.lit(None, pl.List(pl.String)))


def trends_block(trends: pl.DataFrame, config: TrendsConfig, *, max_rows: int = 1000
                 ) -> dict[str, Any]:
    """The ``trends`` block of ``alerts.json``: settings, lights of the run's windows by
    colour, and the yellow and red flags (red first, then by how far out).

    Trends never change a row's status or the exit code. Schema: :class:`TrendsBlock`.
    """
    checked = trends.filter(pl.col("checked"))
    counts = dict(checked["light"].fill_null("none").value_counts().iter_rows())
    flags = (checked.filter(pl.col("light").is_in(["yellow", "red"]))
             .sort(pl.col("light") != "red", pl.col("pull").abs(),
                   descending=[False, True], nulls_last=True))
    listed, omitted = _capped(flags.select(_FLAG_FIELDS), max_rows)
    return json_safe({
        "statistics": sorted(checked["statistic"].unique().to_list()),
        "quantiles": [quantile_name(q) for q in config.quantiles],
        "windows": config.windows, "min_windows": config.min_windows,
        "yellow": config.yellow, "red": config.red,
        "summary": {light: counts.get(light, 0) for light in ("green", "yellow", "red",
                                                             "none")},
        "flags": listed, "omitted": omitted, "files": {"trends": TRENDS_FILE},
    })


_TOP_IN_BLOCK = 3  # classes and examples per model alert


def models_block(result: ModelDrift, resolved: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    """The ``models`` block of ``alerts.json``: counts, warnings and every warn/critical row.

    Each alert carries its three largest per-class JS contributions and its three
    most-changed examples (ids as strings, ``value`` = their ``top_by`` metric). Non-finite
    numbers become ``null`` with a ``null_reasons`` entry (:func:`json_safe`).
    Schema: :class:`ModelsBlock`.
    """
    config, summary = result.config, result.summary
    keys = ["segment", "window"]  # the labels: segment columns may have been renamed
    top_classes = (
        result.classes.filter(
            pl.col("js_contribution").rank("ordinal", descending=True).over(keys)
            <= _TOP_IN_BLOCK)
        .group_by(keys).agg(pl.struct("class", "baseline_mean", "current_mean",
                                      "js_contribution")
                            .sort_by("js_contribution", descending=True).alias("top_classes"))
    )
    top_examples = (
        result.examples.filter(pl.col("rank") <= _TOP_IN_BLOCK)
        .group_by(keys).agg(pl.struct(pl.col(config.id_column).cast(pl.String).alias("id"),
                                      pl.col(config.top_by).alias("value"), "baseline_class",
                                      "current_class")
                            .sort_by("rank").alias("top_examples"))
    )
    alerts = (
        alerting_rows(summary)
        .join(top_classes, on=keys, how="left", nulls_equal=True, maintain_order="left")
        .join(top_examples, on=keys, how="left", nulls_equal=True, maintain_order="left")
        .select("segment", "window", "status", "lifecycle", "metric", "value",
                "warn_threshold", "critical_threshold", "n", "flip_rate",
                "js_distance_of_means", "top_classes", "top_examples")
    )
    return json_safe({
        "inputs": {"baseline": config.baseline, "current": config.current},
        "id_column": config.id_column, "kind": config.kind, "mode": config.mode,
        "temperature": config.temperature, "base": config.base, "metric": config.metric,
        "top_by": config.top_by, "warn_threshold": config.warn,
        "critical_threshold": config.critical,
        "n_baseline": result.n_baseline, "n_current": result.n_current,
        "n_matched": result.n_matched, "n_unmatched_baseline": result.n_unmatched_baseline,
        "n_unmatched_current": result.n_unmatched_current, "warnings": list(result.warnings),
        "summary": count_statuses(summary, MODEL_STATUSES),
        "changes": lifecycle_changes(alerts, resolved or []),
        "alerts": alerts.to_dicts(),
        "resolved": list(resolved or []),
        "files": dict(MODELS_FILES),
    })


def estimates_block(table: pl.DataFrame, config: EstimateConfig) -> dict[str, Any]:
    """The ``estimates`` block of ``alerts.json``: settings and every row of the table.

    Estimates have no thresholds: they never alert and do not change a run's exit code.
    Schema: :class:`EstimatesBlock`.
    """
    rows = table.select("segment", "window", "n", "n_tokens", "value", "stderr", "ci_low",
                        "ci_high")
    return json_safe({
        "inputs": {"source": config.source}, "estimator": config.estimator,
        "direction": config.direction, "level": config.level, "base": config.base,
        "per": config.per, "rows": rows.to_dicts(), "files": {"estimates": ESTIMATES_FILE},
    })


_TOP_FEATURES = 3  # features listed per joint alert


def joint_block(table: pl.DataFrame, config: JointConfig, *, base: int | str,
                resolved: list[dict[str, Any]] | None = None,
                warnings: list[str] | None = None) -> dict[str, Any]:
    """The ``joint`` block of ``alerts.json``: settings, counts and every warn/critical row,
    with the same lifecycle fields as the ``models`` block, and the untested rows.

    Each alert carries its interval, AUC, p/q and its three most important features.
    Schema: :class:`JointBlock`.
    """
    alerts = (alerting_rows(table)
              .with_columns(pl.col("top_features").list.head(_TOP_FEATURES))
              .select("segment", "window", "status", "lifecycle", "metric", "value",
                      "warn_threshold", "critical_threshold", "kl_low", "kl_high",
                      "reverse_kl", "auc", "p_value", "q_value", "n_baseline", "n_current",
                      "top_features"))
    problems = (table.filter(pl.col("status").is_in(["error", "insufficient_data"]))
                .select("segment", "window", "status", "reason"))
    return json_safe({
        "base": base, "level": config.level, "metric": "kl",
        "warn_threshold": config.warn, "critical_threshold": config.critical,
        "features": table["features"].explode().unique(maintain_order=True).drop_nulls()
        .to_list(),
        "warnings": list(warnings or []),
        "summary": count_statuses(table, STATUSES),
        "changes": lifecycle_changes(alerts, resolved or []),
        "alerts": alerts.to_dicts(),
        "resolved": list(resolved or []),
        "problems": problems.to_dicts(),
        "files": {"joint": JOINT_FILE},
    })


class _Strict(BaseModel):
    # validators built on first use: a run writes alerts.json without reading one back
    # (0.007 s of every run for the 24 models)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)


class _Explained(_Strict):
    null_reasons: dict[str, str] = {}


class TopBin(_Explained):
    """One of the bins contributing most to an alert's metric."""

    bin: str
    contribution: float | None
    baseline_share: float | None
    current_share: float | None


Lifecycle = Literal["new", "ongoing", "resolved"]


class Alert(_Explained):
    """A ``warn`` or ``critical`` row."""

    segment: str
    feature: str
    window: str
    reference: str = "baseline"  # what the window was compared with (docs/references.md)
    reference_windows: list[str] | None = None  # the earlier windows summed, if any
    status: Literal["warn", "critical"]
    lifecycle: Lifecycle | None = None
    metric: str
    value: float | None
    warn_threshold: float | None
    critical_threshold: float | None
    p_value: float | None = Field(ge=0, le=1)
    q_value: float | None = Field(ge=0, le=1)
    n_baseline: float = Field(ge=0)
    n_current: float = Field(ge=0)
    top_bins: list[TopBin]


class Problem(_Strict):
    """An ``error`` or ``insufficient_data`` row and why."""

    segment: str
    feature: str
    window: str
    reference: str = "baseline"
    status: Literal["error", "insufficient_data"]
    reason: str


class _Counts(_Strict):
    """Row counts by status; ``total`` is their sum."""

    total: int = Field(ge=0)

    @model_validator(mode="after")
    def _adds_up(self) -> _Counts:
        if self.total != sum(n for name, n in self if name != "total"):
            raise ValueError("total must equal the sum of the status counts")
        return self


class Summary(_Counts):
    """Rows of drift.parquet by status."""

    ok: int = Field(ge=0)
    warn: int = Field(ge=0)
    critical: int = Field(ge=0)
    insufficient_data: int = Field(ge=0)
    error: int = Field(ge=0)


class ModelSummary(_Counts):
    """Rows of models.parquet by status."""

    ok: int = Field(ge=0)
    warn: int = Field(ge=0)
    critical: int = Field(ge=0)
    insufficient_data: int = Field(ge=0)


class Changes(_Strict):
    """Alerts by lifecycle since the previous run, and the episodes this run closed."""

    new: int = Field(ge=0)
    ongoing: int = Field(ge=0)
    resolved: int = Field(ge=0)


class Resolved(_Strict):
    """An alert episode this run closed: its first drifting window, the ok window that ended
    it, and its last alert status."""

    segment: str
    feature: str | None = None  # absent for model-output episodes
    reference: str | None = None  # feature drift: the reference of the episode's series
    window: str
    since: str | None
    last_status: Literal["warn", "critical"] | None


class Omitted(_Strict):
    """Entries left out of the capped lists (drift.parquet holds every row, resolved.parquet
    every resolved episode)."""

    alerts: int = Field(0, ge=0)
    problems: int = Field(0, ge=0)
    resolved: int = Field(0, ge=0)


def _check_alerts(summary: _Counts, alerts: list[Any], omitted: int = 0) -> None:
    """The alerts list holds the summary's warn and critical rows (but those omitted)."""
    listed = sum(getattr(summary, status) for status in ("warn", "critical"))
    if len(alerts) + omitted != listed:
        raise ValueError("summary warn + critical does not match the alerts list")
    if not omitted:
        for status in ("warn", "critical"):
            if sum(a.status == status for a in alerts) != getattr(summary, status):
                raise ValueError(f"summary.{status} does not match the alerts list")


class RunInfo(_Strict):
    """Run metadata: identity, inputs and the effective configuration."""

    run_id: str
    created_at: str
    tool_version: str
    inputs: dict[str, str | None]
    config_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    metric: str
    base: int | str
    config: dict[str, Any]


class ModelClass(_Explained):
    """A class (or label) of a model-output alert and its share of the mean distributions' JS."""

    class_name: str = Field(alias="class")
    baseline_mean: float | None
    current_mean: float | None
    js_contribution: float | None


class ModelExample(_Explained):
    """One of the examples whose prediction changed most."""

    id: str
    value: float | None
    baseline_class: str
    current_class: str


class ModelAlert(_Explained):
    """A ``warn`` or ``critical`` row of models.parquet."""

    segment: str
    window: str
    status: Literal["warn", "critical"]
    lifecycle: Lifecycle | None = None
    metric: str
    value: float | None
    warn_threshold: float
    critical_threshold: float
    n: int = Field(ge=0)
    flip_rate: float | None = Field(ge=0, le=1)
    js_distance_of_means: float | None
    top_classes: list[ModelClass]
    top_examples: list[ModelExample]


class ModelsBlock(_Strict):
    """Model-output drift of the run (``[models]``; docs/models.md)."""

    inputs: dict[str, str]
    id_column: str
    kind: Literal["logits", "probabilities"]
    mode: Literal["softmax", "sigmoid"]
    temperature: float
    base: int | str
    metric: str
    top_by: str
    warn_threshold: float
    critical_threshold: float
    n_baseline: int = Field(ge=0)
    n_current: int = Field(ge=0)
    n_matched: int = Field(ge=0)
    n_unmatched_baseline: int = Field(ge=0)
    n_unmatched_current: int = Field(ge=0)
    warnings: list[str]
    summary: ModelSummary
    changes: Changes | None = None
    alerts: list[ModelAlert]
    resolved: list[Resolved] = []
    files: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> ModelsBlock:
        _check_alerts(self.summary, self.alerts)
        return self


class EstimateRow(_Explained):
    """One row of estimates.parquet: a KL estimate of one window x segment."""

    segment: str
    window: str
    n: int = Field(ge=0)
    n_tokens: int = Field(ge=0)
    value: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None


class EstimatesBlock(_Strict):
    """KL estimates from log-prob samples (``[estimate]``; docs/estimators.md)."""

    inputs: dict[str, str]
    estimator: Literal["k1", "k2", "k3"]
    direction: Literal["forward", "reverse"]
    level: float = Field(gt=0, lt=1)
    base: int | str
    per: Literal["token", "sequence"]
    rows: list[EstimateRow]
    files: dict[str, str]


Light = Literal["green", "yellow", "red"]


class TrendFlag(_Explained):
    """A statistic of a window outside the yellow (or red) bounds of its earlier windows."""

    segment: str
    feature: str
    statistic: str
    reference: str | None  # the alert metric's reference; null for profile statistics
    window: str
    light: Literal["yellow", "red"]
    value: float | None
    expected: float | None
    lower_yellow: float | None
    upper_yellow: float | None
    lower_red: float | None
    upper_red: float | None
    pull: float | None
    n_windows: int = Field(ge=0)


class TrendCounts(_Strict):
    """Lights of the run's windows by colour; ``none``: no bounds yet, or partial."""

    green: int = Field(ge=0)
    yellow: int = Field(ge=0)
    red: int = Field(ge=0)
    none: int = Field(ge=0)


class TrendsBlock(_Strict):
    """Trends with dynamic bounds (``[trends]``; docs/references.md)."""

    statistics: list[str]
    quantiles: list[str]
    windows: int = Field(ge=1)
    min_windows: int = Field(ge=1)
    yellow: float
    red: float
    summary: TrendCounts
    flags: list[TrendFlag]
    omitted: int = Field(ge=0)
    files: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> TrendsBlock:
        if len(self.flags) + self.omitted != self.summary.yellow + self.summary.red:
            raise ValueError("summary yellow + red does not match the flags")
        return self


class JointFeature(_Explained):
    """A feature of a joint alert and its permutation importance (drop of held-out AUC)."""

    feature: str
    importance: float | None


class JointAlert(_Explained):
    """A ``warn`` or ``critical`` row of joint.parquet."""

    segment: str
    window: str
    status: Literal["warn", "critical"]
    lifecycle: Lifecycle | None = None
    metric: Literal["kl"]
    value: float | None
    warn_threshold: float
    critical_threshold: float
    kl_low: float | None
    kl_high: float | None
    reverse_kl: float | None
    auc: float | None = Field(ge=0, le=1)
    p_value: float | None = Field(ge=0, le=1)
    q_value: float | None = Field(ge=0, le=1)
    n_baseline: int = Field(ge=0)
    n_current: int = Field(ge=0)
    top_features: list[JointFeature]


class JointProblem(_Strict):
    """A joint row that was not tested, and why."""

    segment: str
    window: str
    status: Literal["error", "insufficient_data"]
    reason: str


class JointBlock(_Strict):
    """Joint drift of the run (``[joint]``; docs/joint-drift.md)."""

    base: int | str
    level: float = Field(gt=0, lt=1)
    metric: Literal["kl"]
    warn_threshold: float
    critical_threshold: float
    features: list[str]
    warnings: list[str]
    summary: Summary
    changes: Changes | None = None
    alerts: list[JointAlert]
    resolved: list[Resolved] = []
    problems: list[JointProblem]
    files: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> JointBlock:
        _check_alerts(self.summary, self.alerts)
        if len(self.problems) != self.summary.error + self.summary.insufficient_data:
            raise ValueError("summary error + insufficient_data does not match problems")
        return self


class AlertsDocument(_Strict):
    """Schema of ``alerts.json`` (schema_version 2; version 1 files, without lifecycles or
    caps, are read too); ``model_validate`` checks a file."""

    schema_version: Literal[1, 2]
    run: RunInfo
    summary: Summary
    changes: Changes | None = None
    alerts: list[Alert]
    resolved: list[Resolved] = []
    problems: list[Problem]
    omitted: Omitted = Omitted()
    warnings: list[str] = []
    trends: TrendsBlock | None = None
    models: ModelsBlock | None = None
    estimates: EstimatesBlock | None = None
    joint: JointBlock | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AlertsDocument:
        _check_alerts(self.summary, self.alerts, self.omitted.alerts)
        if (len(self.problems) + self.omitted.problems
                != self.summary.error + self.summary.insufficient_data):
            raise ValueError("summary error + insufficient_data does not match problems")
        if (self.changes is not None
                and len(self.resolved) + self.omitted.resolved != self.changes.resolved):
            raise ValueError("changes.resolved does not match the resolved list")
        return self
