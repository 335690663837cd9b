"""Run configuration: pydantic models loaded from TOML, with one-line errors naming the key.

Every section forbids unknown keys, so a typo fails loudly instead of being ignored. The
optional sections ``[models]`` (model-output drift), ``[estimate]`` (KL estimates from
log-prob samples) and ``[joint]`` (joint drift) are ``None`` unless the file has them.
See docs/config.md for every key, its default and an example file.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.windows import MIN_COVERAGE, UTC, check_period, check_timezone

#: Metrics of the drift table, in column order; any of them can be the alert metric.
METRICS = ("kl", "reverse_kl", "symmetric_kl", "psi", "js_divergence", "js_distance",
           "hellinger")

#: Per-example metrics of a model comparison (``[models]``), current vs baseline model.
PerExampleMetric = Literal["kl", "reverse_kl", "symmetric_kl", "js_divergence", "js_distance"]
PER_EXAMPLE_METRICS: tuple[str, ...] = typing.get_args(PerExampleMetric)
OutputKind = Literal["logits", "probabilities"]
OutputMode = Literal["softmax", "sigmoid"]  # sigmoid: multi-label, one yes/no per label
#: Statistics of the per-example metrics over the examples of a window x segment.
MODEL_STATS = ("mean", "p50", "p95", "p99", "max")
#: Divergences of the mean predicted distributions of a window x segment.
OF_MEANS = ("kl_of_means", "js_divergence_of_means", "js_distance_of_means")
#: Columns of models.parquet that can set a model row's status (``models.metric``).
MODEL_METRICS = (*(f"{m}_{s}" for m in PER_EXAMPLE_METRICS for s in MODEL_STATS), *OF_MEANS,
                 "flip_rate")

# Largest possible value in bits; a threshold above it could never alert.
_METRIC_MAX_BITS = {"js_divergence": 1.0, "js_distance": 1.0}
# A glob whose every "[" opens a closed character class (fnmatch silently matches "[" literally).
_GLOB = re.compile(r"(?:[^\[]|\[!?\]?[^\]]*\])+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Keys holding paths: relative values are resolved against the config file's folder.
_PATH_KEYS = (("input", "baseline"), ("input", "current"), ("output", "dir"),
              ("schedule", "baseline_source"), ("models", "baseline"), ("models", "current"),
              ("estimate", "source"), ("export", "prometheus", "textfile"))

# Source syntax (pipeline/read/location.py): a format prefix, or an embedded database file.
_FORMAT_PREFIX = re.compile(r"^(?:parquet|csv|ndjson|delta|iceberg):(?!//)")
_FILE_DATABASE = re.compile(r"^(?:duckdb|sqlite)(?:\+\w+)?:///(?!/)")

Probability = Annotated[float, Field(gt=0, lt=1)]
Period = Annotated[str, AfterValidator(check_period)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]


class _Invalid(ValueError):
    """A cross-field check failure that names its own key (relative to the model)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Windowed(_Section):
    """Windows and segments of a row-per-record input: ``[input]``, ``[models]``, ``[estimate]``.

    ``period`` cuts the ``timestamp`` column into windows; a ``timestamp`` without ``period``
    gives one window per distinct value (e.g. a ``batch_date`` column). Windows are cut in
    ``input.window_timezone`` for every part of a run (:mod:`pipeline.windows`).
    """

    timestamp: str | None = None
    period: Period | None = None
    segments: list[str] = []

    @field_validator("segments")
    @classmethod
    def _distinct_segments(cls, value: list[str]) -> list[str]:
        repeated = [s for i, s in enumerate(value) if s in value[:i]]
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed twice; list each column once")
        return value

    @model_validator(mode="after")
    def _period_needs_timestamp(self) -> _Windowed:
        if self.period is not None and self.timestamp is None:
            raise _Invalid("period", "needs timestamp, the column to cut into periods")
        return self


class _Sourced(_Section):
    """A section reading sources: ``storage_options`` for object-store URLs among them.

    Keys and values are polars' object-store options (``aws_region``, ``aws_endpoint_url``,
    ``aws_access_key_id``, ``google_service_account``, ``azure_storage_account_name``, ...).
    Without them credentials come from the standard environment and config chains. Their
    values are never logged nor written to outputs (alerts.json shows ``"***"``).
    """

    storage_options: dict[str, str | int | bool] = {}


class _InBase(_Section):
    """A section whose metrics are logarithms in ``base``: 2 (bits) or ``"e"`` (nats)."""

    base: Literal[2, "e"] = 2

    @property
    def log_base(self) -> float | None:
        """The ``base`` argument of kl_metrics: ``None`` for nats."""
        return None if self.base == "e" else float(self.base)


class InputConfig(_Windowed, _Sourced):
    """``[input]``: where the baseline and current data are and how to read them.

    ``window_timezone`` and ``min_coverage`` hold for every part of the run: ``[models]``
    and ``[estimate]`` cut and judge their windows with them too.
    """

    baseline: str | None = None
    baseline_format: Literal["auto", "profile", "histogram", "raw"] = "auto"
    current: str | None = None
    current_format: Literal["auto", "raw", "histogram"] = "auto"
    features: list[str] | None = Field(None, min_length=1)
    exclude: list[str] = []
    duplicates: Literal["error", "sum"] = "error"
    # "dask": Prefect's drift_check bins raw current files as mapped tasks on a Dask cluster.
    executor: Literal["local", "dask"] = "local"
    dask_address: str | None = None  # scheduler address; None: a local cluster per run
    window_timezone: TimeZone = UTC  # windows start at period boundaries of this zone
    min_coverage: float = Field(MIN_COVERAGE, ge=0, le=1)  # less covered: a partial window
    # segments that differ from the baseline's: compare with the pooled baseline (warned)
    pool_segments: bool = False
    # Longest wait to reach the scheduler, and again for its first worker, before failing.
    dask_timeout: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> InputConfig:
        both = [f for f in self.features or () if f in self.segments]
        if both:
            raise _Invalid("features", f"{both[0]!r} is also in input.segments; a segment "
                           "column is never checked as a feature: remove it from one list")
        if self.executor == "dask" and self.current_format == "histogram":
            raise _Invalid("executor", "'dask' bins raw current rows, and current_format is "
                           "'histogram'; set executor = 'local'")
        if self.dask_address is not None and self.executor != "dask":
            raise _Invalid("dask_address", "applies to executor = 'dask' only; set "
                           "executor = 'dask' or remove dask_address")
        return self


class ProfileConfig(_Section):
    """``[profile]``: how a raw baseline is binned into a profile.

    A categorical feature keeps every baseline category with at least
    ``min_category_count`` rows, at most ``max_categories`` of them (most frequent first);
    only the rest is lumped into ``__other__``. ``top_k`` is the deprecated name of
    ``max_categories``.
    """

    strategy: Literal["quantile", "uniform"] = "quantile"
    bins: int = Field(20, ge=2, le=10_000)
    max_categories: int = Field(1000, ge=1)
    min_category_count: int = Field(1, ge=1)
    top_k: int | None = Field(None, ge=1)
    fixed_edges: dict[str, list[float]] = {}

    @model_validator(mode="after")
    def _one_category_limit(self) -> ProfileConfig:
        if self.top_k is not None and "max_categories" in self.model_fields_set:
            raise _Invalid("top_k", "deprecated name of max_categories; set only "
                           "max_categories")
        return self

    @property
    def category_limit(self) -> int:
        """Most categories kept per feature: ``max_categories`` (or the deprecated ``top_k``)."""
        return self.max_categories if self.top_k is None else self.top_k

    @field_validator("fixed_edges")
    @classmethod
    def _edges_increase(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for feature, edges in value.items():
            if len(edges) < 1 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise _Invalid(feature, "edges must be a non-empty, strictly increasing list")
        return value


class DriftConfig(_InBase):
    """``[drift]``: the alert metric and how every metric is computed."""

    metric: str = "js_distance"
    eps: float = Field(1e-6, ge=0, lt=1)
    effect_level: Probability = 0.95  # confidence level of effect_low / effect_high

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _known(value, METRICS)


class ThresholdOverride(_Section):
    """Per-feature thresholds; a key left out keeps the global value."""

    warn: float | None = Field(None, ge=0)
    critical: float | None = Field(None, ge=0)


class AlertsConfig(_Section):
    """``[alerts]``: thresholds, significance, calibration and persistence."""

    warn: float = Field(0.1, ge=0)
    critical: float = Field(0.2, ge=0)
    fdr_q: float = Field(0.01, gt=0, le=1)
    min_count: int = Field(30, ge=1)
    calibrated: bool = True
    null_quantile: Probability = 0.999
    null_draws: int = Field(2000, ge=100, le=1_000_000)
    persistence: int = Field(1, ge=1)
    # "hold": a window the data cover only partly is insufficient_data until complete
    partial_windows: Literal["hold", "alert"] = "hold"
    seed: int = Field(0, ge=0)
    features: dict[str, ThresholdOverride] = {}

    @model_validator(mode="after")
    def _consistent(self) -> AlertsConfig:
        if self.warn >= self.critical:
            raise _Invalid("warn", f"must be < alerts.critical ({self.warn} >= {self.critical})")
        for pattern, override in self.features.items():
            key = f"features.{pattern}"
            if not _GLOB.fullmatch(pattern):
                raise _Invalid(key, "not a valid glob pattern (empty, or '[' without ']')")
            warn, critical = self._thresholds(override)
            if warn >= critical:
                raise _Invalid(key, f"warn must be < critical ({warn} >= {critical})")
        return self

    def thresholds_for(self, feature: str) -> tuple[float, float]:
        """(warn, critical) for ``feature``.

        An ``[alerts.features]`` key equal to the feature name wins; otherwise the first
        glob pattern (in file order) that matches it; otherwise the global thresholds.
        """
        pattern = feature if feature in self.features else next(
            (p for p in self.features if fnmatch.fnmatchcase(feature, p)), None)
        return self._thresholds(
            ThresholdOverride() if pattern is None else self.features[pattern])

    def _thresholds(self, override: ThresholdOverride) -> tuple[float, float]:
        return (self.warn if override.warn is None else override.warn,
                self.critical if override.critical is None else override.critical)


#: What a window is compared with (docs/references.md): the baseline profile, the preceding
#: window, the summed counts of the last ``rolling_windows`` windows, or the window one
#: ``season`` earlier.
ReferenceMode = Literal["baseline", "previous", "rolling", "same_period"]
REFERENCE_MODES: tuple[str, ...] = typing.get_args(ReferenceMode)
# Fixed-length duration units in seconds (calendar units, mo/q/y, have no fixed length).
_FIXED_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
                "d": 86400.0, "w": 604800.0}


def _distinct_modes(modes: list[ReferenceMode]) -> list[ReferenceMode]:
    if not modes:
        raise ValueError("list at least one of " + ", ".join(REFERENCE_MODES))
    repeated = [m for i, m in enumerate(modes) if m in modes[:i]]
    if repeated:
        raise ValueError(f"{repeated[0]!r} is listed twice; list each mode once")
    return modes


Modes = Annotated[list[ReferenceMode], AfterValidator(_distinct_modes)]


def fixed_seconds(duration: str) -> float | None:
    """Length of a polars duration in seconds, or None when it has calendar units.

    >>> fixed_seconds("1d12h"), fixed_seconds("1mo")
    (129600.0, None)
    """
    parts = re.findall(r"(\d+)(ns|us|ms|mo|s|m|h|d|w|q|y)", duration)
    if any(unit not in _FIXED_UNITS for _, unit in parts):
        return None
    return sum(int(n) * _FIXED_UNITS[unit] for n, unit in parts)


class ReferencesConfig(_Section):
    """``[references]``: what each window is compared with (docs/references.md).

    Every mode runs through the same decision rules; each row of the drift table names its
    ``reference``. Moving references (``previous``, ``rolling``, ``same_period``) come from
    the run's own current histograms and those the history keeps of earlier runs.
    """

    modes: Modes = ["baseline"]
    rolling_windows: int = Field(7, ge=1, le=1000)  # k windows summed by ``rolling``
    season: Period | None = None  # ``same_period``: how far back, e.g. "7d", "52w"
    # How far back earlier windows are looked for (and read from the history): "auto" or
    # a duration; "auto" = 2 x the windows needed x input.period (docs/references.md).
    lookback: str = "auto"
    features: dict[str, Modes] = {}

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str) -> str:
        return value if value == "auto" else check_period(value)

    @model_validator(mode="after")
    def _consistent(self) -> ReferencesConfig:
        for pattern in self.features:
            if not _GLOB.fullmatch(pattern):
                raise _Invalid(f"features.{pattern}", "not a valid glob pattern (empty, or "
                               "'[' without ']')")
        if "same_period" in self.used_modes and self.season is None:
            raise _Invalid("season", "needed by the same_period mode: how far back the "
                           "same period lies, e.g. \"7d\" or \"52w\"")
        return self

    @property
    def used_modes(self) -> tuple[str, ...]:
        """Every mode some feature uses, in :data:`REFERENCE_MODES` order."""
        used = {*self.modes, *(m for modes in self.features.values() for m in modes)}
        return tuple(m for m in REFERENCE_MODES if m in used)

    def modes_for(self, feature: str) -> tuple[str, ...]:
        """The modes ``feature`` is checked with, like :meth:`AlertsConfig.thresholds_for`:
        a ``[references.features]`` key equal to the feature name wins, then the first glob
        pattern (in file order) that matches it, else ``modes``.

        >>> ReferencesConfig(modes=["baseline"], features={"air_*": ["previous"]}
        ...                  ).modes_for("air_time")
        ('previous',)
        """
        pattern = feature if feature in self.features else next(
            (p for p in self.features if fnmatch.fnmatchcase(feature, p)), None)
        return tuple(self.modes if pattern is None else self.features[pattern])


class TrendsConfig(_Section):
    """``[trends]``: profile statistics and the alert metric per window, against bounds
    learned from the windows before (median +- k x MAD), as traffic lights
    (docs/references.md)."""

    enabled: bool = False
    windows: int = Field(28, ge=2, le=1000)  # earlier windows the bounds are learned from
    min_windows: int = Field(7, ge=2, le=1000)  # fewer earlier windows: no bounds yet
    yellow: float = Field(4.0, gt=0)  # |value - median| > yellow x spread: yellow
    red: float = Field(7.0, gt=0)  # > red x spread: red
    quantiles: list[Probability] = Field([0.05, 0.5, 0.95], max_length=9)

    @model_validator(mode="after")
    def _consistent(self) -> TrendsConfig:
        if self.yellow >= self.red:
            raise _Invalid("yellow", f"must be < trends.red ({self.yellow} >= {self.red})")
        if self.min_windows > self.windows:
            raise _Invalid("min_windows", f"must be <= trends.windows ({self.min_windows} > "
                           f"{self.windows})")
        names = [quantile_name(q) for q in self.quantiles]
        repeated = [n for i, n in enumerate(names) if n in names[:i]]
        if repeated:
            raise _Invalid("quantiles", f"{repeated[0]} is listed twice")
        return self


def quantile_name(quantile: float) -> str:
    """The statistic name of a quantile in trends.parquet.

    >>> quantile_name(0.05), quantile_name(0.999)
    ('p5', 'p99.9')
    """
    return f"p{quantile * 100:.4g}"


#: Statuses ``output.fail_on`` can list; its single words stand for these sets.
FailStatus = Literal["warn", "critical", "error", "insufficient_data"]
FAIL_ON_WORDS: dict[str, frozenset[str]] = {
    "never": frozenset(), "critical": frozenset({"critical"}),
    "warn": frozenset({"warn", "critical"}), "error": frozenset({"error"})}


class OutputConfig(_Section):
    """``[output]``: run folder, exit-code policy and list caps."""

    dir: str = "runs"
    run_id: str | None = Field(None, min_length=1)

    @field_validator("run_id")
    @classmethod
    def _not_history(cls, value: str | None) -> str | None:
        # The history dataset lives in output.dir next to the run folders.
        if value == "history":
            raise ValueError("'history' is reserved for the history dataset; pick another id")
        return value
    # exit 1 when a row has one of these statuses: a word ("critical": critical rows,
    # "warn": warn or critical, "error", "never") or a list of statuses
    fail_on: str | list[str] = "critical"
    max_alerts: int = Field(1000, ge=1)  # alerts and problems listed in alerts.json

    @field_validator("fail_on")
    @classmethod
    def _known_statuses(cls, value: str | list[str]) -> str | list[str]:
        words, statuses = sorted(FAIL_ON_WORDS), typing.get_args(FailStatus)
        if isinstance(value, str) and value not in FAIL_ON_WORDS:
            raise ValueError(f"{value!r}: use one of {', '.join(words)}, or a list of "
                             f"statuses ({', '.join(statuses)})")
        bad = [v for v in value if v not in statuses] if isinstance(value, list) else []
        if bad or value == []:
            raise ValueError(f"{bad[0] if bad else '[]'!r} is not a status to fail on; list "
                             f"some of {', '.join(statuses)}")
        return value

    @property
    def fail_statuses(self) -> frozenset[str]:
        """The row statuses that make the run exit 1."""
        if isinstance(self.fail_on, str):
            return FAIL_ON_WORDS[self.fail_on]
        return frozenset(self.fail_on)


class ScheduleConfig(_Section):
    """``[schedule]``: cron schedules of the deployments ``kl-drift serve`` runs.

    Cron strings are checked by Prefect when the deployments are built; ``None`` serves a
    deployment without a schedule (run on demand).
    """

    drift_cron: str | None = "0 * * * *"
    baseline_cron: str | None = None
    baseline_source: str | None = None  # raw data build_baseline profiles into input.baseline
    timezone: TimeZone = UTC

    @model_validator(mode="after")
    def _baseline_has_source(self) -> ScheduleConfig:
        if self.baseline_cron is not None and self.baseline_source is None:
            raise _Invalid("baseline_source", "needed by schedule.baseline_cron: the raw "
                           "data the scheduled build_baseline profiles")
        return self


class PrefectConfig(_Section):
    """``[prefect]``: what the Prefect flows publish and how long they may run.

    Read by ``flows/`` only (docs/deploy.md); ``kl-drift run`` without ``--prefect``
    ignores it.
    """

    name: str | None = Field(default=None, min_length=1, max_length=80)  # None: deployment
    timeout_seconds: float = Field(default=3600.0, gt=0)
    alert_events: list[Literal["warn", "critical"]] = ["warn", "critical"]
    resolved_events: bool = False
    summary_alerts: int = Field(default=20, ge=0, le=500)
    report_base_url: str | None = None

    @field_validator("report_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+", value):
            raise ValueError("must be an http(s) URL without query or fragment, e.g. "
                             "'https://drift.example.com/runs'")
        return value


class PrometheusConfig(_Section):
    """``[export.prometheus]``: the run's verdicts as Prometheus gauges, for Grafana.

    Written as a node-exporter textfile (``textfile``, replaced atomically) and/or pushed to
    a Pushgateway (``pushgateway``) under the grouping key ``{job, monitor}``, so each run
    of a monitor replaces its previous metrics. One series per segment x feature (its
    latest window), at most ``max_series`` of them, most severe first; never one per
    window. Metric names and labels: docs/monitoring.md#prometheus-and-grafana.
    """

    textfile: str | None = None  # e.g. /var/lib/prometheus/node-exporter/kl_drift.prom
    pushgateway: str | None = None  # e.g. http://pushgateway:9091
    job: str = Field("kl-drift", min_length=1)  # the Pushgateway job
    monitor: str | None = Field(None, min_length=1)  # None: prefect.name, else "kl-drift"
    max_series: int = Field(500, ge=1, le=100_000)  # segment x feature series exported
    timeout: float = Field(10.0, gt=0, le=300)  # seconds for the push

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("must end in .prom: node-exporter's textfile collector reads "
                             "only *.prom files")
        return value

    @field_validator("pushgateway")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http(s) URL without query or fragment, e.g. "
                             "'http://pushgateway:9091'")
        return value

    @model_validator(mode="after")
    def _has_target(self) -> PrometheusConfig:
        if self.textfile is None and self.pushgateway is None:
            raise _Invalid("textfile", "set textfile or pushgateway (or pass "
                           "--prometheus-textfile / --pushgateway), or remove the section")
        return self


class ExportConfig(_Section):
    """``[export]``: where a run's results go besides its run folder."""

    prometheus: PrometheusConfig | None = None


class ModelsConfig(_Windowed, _Sourced, _InBase):
    """``[models]``: per-example drift between two models' outputs (``kl-drift models``).

    ``outputs`` names either one list column holding each example's vector (``"logits"``)
    or one column per class (``["p_early", "p_late"]``); ``outputs_prefix`` selects every
    column starting with it instead. Per-example metrics compare the current model to the
    baseline model: ``kl`` is KL(current ‖ baseline). Every key: docs/models.md.
    """

    baseline: str
    current: str
    id_column: str = "id"
    outputs: str | list[str] | None = None
    outputs_prefix: str | None = None
    class_names: list[str] | None = None  # default: column names, or "0".."K-1"
    kind: OutputKind = "logits"
    mode: OutputMode = "softmax"
    temperature: float = Field(1.0, gt=0)  # logits of both models are divided by it
    eps: float = Field(0.0, ge=0, lt=1)  # probability floor (0 = exact)
    prob_tolerance: float = Field(1e-6, ge=0)  # allowed |row sum - 1|
    metric: str = "js_distance_mean"
    warn: float = Field(0.1, ge=0)
    critical: float = Field(0.2, ge=0)
    min_examples: int = Field(30, ge=1)
    top_n: int = Field(20, ge=0)
    top_by: PerExampleMetric = "js_distance"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _known(value, MODEL_METRICS)

    @model_validator(mode="after")
    def _consistent(self) -> ModelsConfig:
        if (self.outputs is None) == (self.outputs_prefix is None):
            raise _Invalid("outputs", "set exactly one of outputs (a list column, or one "
                           "column per class) and outputs_prefix")
        if self.kind == "probabilities" and self.temperature != 1.0:
            raise _Invalid("temperature", "rescales logits: leave it at 1 for probabilities")
        if self.warn >= self.critical:
            raise _Invalid("warn", f"must be < models.critical ({self.warn} >= "
                           f"{self.critical})")
        return self


class EstimateConfig(_Windowed, _Sourced, _InBase):
    """``[estimate]``: KL estimates from log-prob samples (``kl-drift estimate``).

    Samples are drawn from Q; ``logq`` and ``logp`` name their log-probabilities under Q
    and under the reference P (natural log). Every key: docs/estimators.md.
    """

    source: str
    logq: str = "logq"
    logp: str = "logp"
    estimator: Literal["k1", "k2", "k3"] = "k3"
    direction: Literal["forward", "reverse"] = "forward"  # KL(Q ‖ P) or KL(P ‖ Q)
    level: Probability = 0.95
    base: Literal[2, "e"] = "e"
    sequence_id: str | None = None
    per: Literal["token", "sequence"] = "token"
    densities: bool = False  # allow log values > 0 (continuous log-densities)

    @model_validator(mode="after")
    def _sequence_has_id(self) -> EstimateConfig:
        if self.per == "sequence" and self.sequence_id is None:
            raise _Invalid("sequence_id", "required with per = 'sequence': the column naming "
                           "sequences")
        return self


class JointConfig(_Section):
    """``[joint]``: drift of the features' joint distribution (docs/joint-drift.md).

    Per segment x window, gradient-boosted trees learn to tell a sample of baseline rows
    (kept with the profile: ``sample_rows``) from a sample of the window's rows; their
    out-of-fold, calibrated probabilities give the density ratio, hence KL(current ‖
    baseline) with an interval and a p-value. ``warn``/``critical`` apply to that KL in the
    run's base (``drift.base``); q-values use ``alerts.fdr_q`` over the run's joint rows.
    """

    sample_rows: int = Field(50_000, ge=100, le=10_000_000)  # baseline rows per segment
    current_rows: int = Field(50_000, ge=100, le=10_000_000)  # rows per window
    features: list[str] | None = Field(None, min_length=1)
    exclude: list[str] = []
    warn: float = Field(0.05, ge=0)
    critical: float = Field(0.2, ge=0)
    min_rows: int = Field(200, ge=10)
    folds: int = Field(5, ge=2, le=20)
    level: Probability = 0.95
    max_iter: int = Field(300, ge=1, le=10_000)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_depth: int = Field(3, ge=1, le=16)
    importance_repeats: int = Field(3, ge=1, le=100)
    importance_rows: int = Field(10_000, ge=100)
    view_bins: int = Field(10, ge=2, le=50)
    threads: int = Field(1, ge=1, le=1024)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> JointConfig:
        if self.warn >= self.critical:
            raise _Invalid("warn", f"must be < joint.critical ({self.warn} >= {self.critical})")
        if self.min_rows < 5 * self.folds:
            raise _Invalid("min_rows", f"must be at least 5 x joint.folds ({5 * self.folds}): "
                           "every fold needs rows of both sides")
        return self


class RunConfig(_Section):
    """The whole configuration of a run (one TOML file)."""

    input: InputConfig = InputConfig()
    profile: ProfileConfig = ProfileConfig()
    drift: DriftConfig = DriftConfig()
    alerts: AlertsConfig = AlertsConfig()
    output: OutputConfig = OutputConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    prefect: PrefectConfig = PrefectConfig()
    references: ReferencesConfig = ReferencesConfig()
    trends: TrendsConfig = TrendsConfig()
    export: ExportConfig = ExportConfig()
    models: ModelsConfig | None = None
    estimate: EstimateConfig | None = None
    joint: JointConfig | None = None

    @model_validator(mode="after")
    def _season_fits_period(self) -> RunConfig:
        season, period = self.references.season, self.input.period
        if season is None or period is None or "same_period" not in self.references.used_modes:
            return self
        season_s, period_s = fixed_seconds(season), fixed_seconds(period)
        if season_s is not None and period_s is not None and (
                season_s < period_s or season_s % period_s):
            raise _Invalid("references.season", f"{season!r} is not a whole number of "
                           f"input.period windows ({period!r}), so no window starts one "
                           "season earlier; use a multiple such as "
                           f"{_multiple(period)!r}")
        return self

    @model_validator(mode="after")
    def _thresholds_reachable(self) -> RunConfig:
        top_bits = _METRIC_MAX_BITS.get(self.drift.metric)
        if top_bits is not None:
            scale = 1.0 if self.drift.base == 2 else math.log(2)
            top = top_bits * (math.sqrt(scale) if self.drift.metric == "js_distance" else scale)
            if self.alerts.critical > top:
                raise _Invalid("alerts.critical", f"{self.alerts.critical} is above the largest "
                               f"possible {self.drift.metric} ({top:.4g} in base "
                               f"{self.drift.base}); no row could ever be critical")
        return self

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of this config, ``output.run_id`` left out.

        Two runs with the same settings share a hash whatever their run ids.
        """
        data = self.model_dump(mode="json", exclude={"output": {"run_id"}})
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _multiple(period: str, times: int = 7) -> str:
    """``period`` repeated ``times`` times, as a duration: ``_multiple("12h") == "84h"``."""
    return re.sub(r"\d+", lambda m: str(int(m.group()) * times), period)


def _known(value: str, names: tuple[str, ...]) -> str:
    if value not in names:
        raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(names)}")
    return value


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load and validate a run configuration.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file. Relative paths in it (``input.baseline``, ``input.current``,
        ``output.dir``, ``models.baseline``, ``models.current``, ``estimate.source``,
        ``schedule.baseline_source``, ``export.prometheus.textfile``) are resolved against
        the file's folder. ``None``:
        defaults only.
    overrides : mapping, optional
        Values that win over the file (e.g. CLI flags): dotted keys (``"alerts.warn"``) or
        nested mappings (``{"alerts": {"warn": 0.05}}``). ``None`` values are ignored.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        One line naming the file and the key path, e.g.
        ``config 'run.toml': unknown key 'alerts.wran' (did you mean 'alerts.warn'?)``.
    """
    where = f"config {str(path)!r}: " if path is not None else "config: "
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(Path(path), where)
    for key, value in (overrides or {}).items():
        _merge(data, key.split("."), value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(where + "; ".join(_describe(e) for e in exc.errors()[:3])) from None


def _read_toml(path: Path, where: str) -> dict[str, Any]:
    import tomllib  # only with a config file: 0.003 s of every run and profile

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}file not found; pass an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}cannot read the file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}invalid TOML: {exc}") from None
    for *sections, key in _PATH_KEYS:
        table: Any = data
        for section in sections:
            table = table.get(section) if isinstance(table, dict) else None
        value = table.get(key) if isinstance(table, dict) else None
        if isinstance(value, str) and value:
            table[key] = _resolved(value, path.parent)
    return data


def _resolved(source: str, folder: Path) -> str:
    """A source with its relative local path made relative to ``folder``: plain paths,
    ``csv:``-style prefixed paths and embedded database files (``duckdb:///wh.duckdb#t``);
    URLs and absolute paths are left as they are (source syntax: pipeline.read.location)."""
    prefix = _FORMAT_PREFIX.match(source)
    if prefix:
        return prefix.group(0) + _resolved(source[prefix.end():], folder)
    embedded = _FILE_DATABASE.match(source)
    if embedded:
        rest = source[embedded.end():]
        return embedded.group(0) + (rest if rest.startswith(":memory:") else
                                    str(folder.resolve() / rest))
    if "://" in source or Path(source).is_absolute():
        return source
    return str(folder / source)


def _merge(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``data[k1][k2]... = value``, merging nested mappings, skipping ``None``."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            _merge(data, [*keys, str(sub_key)], sub_value)
        return
    *parents, last = keys
    for key in parents:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config: {'.'.join(keys)}: {key!r} is not a table")
    data[last] = value


def _describe(error: Any) -> str:
    """One pydantic error as ``key.path: message``."""
    loc = [str(part) for part in error["loc"]]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Invalid):
        return f"{_key([*loc, *cause.key.split('.', 1)])}: {cause}"
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], _field_names(loc[:-1]), n=1)
        hint = f" (did you mean '{_key([*loc[:-1], close[0]])}'?)" if close else ""
        return f"unknown key '{key}'{hint}"
    if error["type"] == "missing":
        return f"{key}: required"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = repr(error.get("input"))
    if shown in message or len(shown) > 60:
        return f"{key}: {message}"
    return f"{key}: {message} (got {shown})"


def _key(parts: list[str]) -> str:
    """A TOML-style dotted key, quoting parts that are not bare keys (e.g. globs)."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


def _field_names(loc: list[str]) -> list[str]:
    """Field names valid under ``loc`` (for 'did you mean' hints)."""
    model: type[BaseModel] | None = RunConfig
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        model, is_mapping = _model_of(field.annotation)
        if is_mapping:
            next(parts, None)  # the mapping key, e.g. a glob pattern
    return list(model.model_fields) if model is not None else []


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The BaseModel inside ``X | None`` or ``dict[str, X]``, and whether it was a mapping."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return _model_of(typing.get_args(annotation)[1])[0], True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, is_mapping = _model_of(arg)
            if model is not None:
                return model, is_mapping
        return None, False
    return (annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None), False
