"""Per-example drift between two versions of a model, from logits or probabilities.

Both files hold one prediction per example, keyed by an id. The inner join on the id pairs
each example's baseline and current prediction; every per-example divergence is one
vectorised ``kl_metrics`` call over the (examples x classes) arrays, in log space when
logits are given. Per window x segment the module reports quantiles of those divergences,
the predicted-class flip rate, the per-class drift of the mean predicted distribution and
the examples that changed most. Column contracts: ``docs/models.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kl_metrics import (
    bin_contributions,
    divergences,
    kl_from_logits,
    log_softmax,
    symmetric_kl_from_logits,
)
from pipeline.errors import InputError
from pipeline.outputs import atomic_write

Kind = Literal["logits", "probabilities"]
Mode = Literal["softmax", "sigmoid"]
PerExampleMetric = Literal["kl", "reverse_kl", "symmetric_kl", "js_divergence", "js_distance"]

PER_EXAMPLE: tuple[str, ...] = ("kl", "reverse_kl", "symmetric_kl", "js_divergence", "js_distance")
STATS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "mean": pl.Expr.mean,
    "p50": lambda e: e.quantile(0.5, interpolation="linear"),
    "p95": lambda e: e.quantile(0.95, interpolation="linear"),
    "p99": lambda e: e.quantile(0.99, interpolation="linear"),
    "max": pl.Expr.max,
}
OF_MEANS: tuple[str, ...] = ("kl_of_means", "js_divergence_of_means", "js_distance_of_means")
AGGREGATES: tuple[str, ...] = (
    *(f"{m}_{s}" for m in PER_EXAMPLE for s in STATS), *OF_MEANS, "flip_rate",
)
MODELS_FILES = {
    "models": "models.parquet",
    "classes": "model_classes.parquet",
    "examples": "model_examples.parquet",
}
SCHEMA_VERSION = 1
_SHOWN_IDS = 3
_MIN_CLASSES = {"softmax": 2, "sigmoid": 1}


class ModelsConfig(BaseModel):
    """Settings of a model-output comparison (``kl-drift models``).

    ``outputs`` names either one list column holding each example's vector
    (``"logits"``) or one column per class (``["p_early", "p_late"]``); ``outputs_prefix``
    selects every column starting with it instead. Per-example metrics compare the current
    model to the baseline model: ``kl`` is KL(current ‖ baseline). Every key: docs/models.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    baseline: str = Field(description="Parquet file (or glob) of the baseline model's outputs")
    current: str = Field(description="Parquet file (or glob) of the current model's outputs")
    id_column: str = "id"
    outputs: str | list[str] | None = Field(
        None, description="a list column, or one column per class")
    outputs_prefix: str | None = Field(
        None, description="use every column whose name starts with this, one per class")
    class_names: list[str] | None = Field(
        None, description="class (or label) names; default: column names or 0..K-1")
    kind: Kind = "logits"
    mode: Mode = Field("softmax", description="softmax: multi-class; sigmoid: multi-label")
    temperature: float = Field(1.0, gt=0, description="logits are divided by it (both models)")
    base: Literal[2, "e"] = Field(2, description="unit of every metric: 2 = bits, 'e' = nats")
    eps: float = Field(
        0.0, ge=0, lt=1, description="probability floor for kind='probabilities' (0 = exact)")
    prob_tolerance: float = Field(1e-6, ge=0, description="allowed |row sum - 1|")
    timestamp: str | None = None
    period: str | None = Field(None, description="window length, e.g. '1d', '1w'")
    segments: list[str] = Field(default_factory=list)
    metric: str = Field("js_distance_mean", description="aggregate that sets the status")
    warn: float = Field(0.1, ge=0)
    critical: float = Field(0.2, ge=0)
    min_examples: int = Field(30, ge=1, description="fewer matched examples: insufficient_data")
    top_n: int = Field(20, ge=0, description="most-changed examples kept per window x segment")
    top_by: PerExampleMetric = "js_distance"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in AGGREGATES:
            raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(AGGREGATES)}")
        return value

    @field_validator("period")
    @classmethod
    def _period_is_duration(cls, value: str | None) -> str | None:
        return check_period(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelsConfig:
        if (self.outputs is None) == (self.outputs_prefix is None):
            raise ValueError("set exactly one of outputs (column or columns) and outputs_prefix")
        if self.kind == "probabilities" and self.temperature != 1.0:
            raise ValueError("temperature rescales logits: leave it at 1 for probabilities")
        if self.warn >= self.critical:
            raise ValueError(f"warn must be < critical ({self.warn} >= {self.critical})")
        check_windows(self.timestamp, self.period)
        return self

    @property
    def log_base(self) -> float | None:
        """The ``base`` argument of kl_metrics: ``None`` for nats."""
        return None if self.base == "e" else float(self.base)


def check_period(value: str | None) -> str | None:
    """Reject a ``period`` that polars cannot truncate timestamps by (e.g. ``"1 day"``)."""
    if value is not None:
        try:
            pl.select(pl.lit(datetime(2000, 1, 1)).dt.truncate(value))
        except pl.exceptions.PolarsError:
            raise ValueError(f"{value!r} is not a duration such as '1d', '12h', '1w', '1mo'"
                             ) from None
    return value


def check_windows(timestamp: str | None, period: str | None) -> None:
    """Windows need both a timestamp column and a period, or neither."""
    if (timestamp is None) != (period is None):
        raise ValueError("windows need both timestamp and period (or neither)")


@dataclass(frozen=True)
class ModelDrift:
    """Result of :func:`compare_outputs`: the three output tables and the join counts."""

    summary: pl.DataFrame
    classes: pl.DataFrame
    examples: pl.DataFrame
    per_example: pl.DataFrame
    n_baseline: int
    n_current: int
    n_matched: int
    n_unmatched_baseline: int
    n_unmatched_current: int
    warnings: tuple[str, ...]
    config: ModelsConfig


# --- per-example divergences -------------------------------------------------------------
# Every output becomes an (examples, distributions, outcomes) array: softmax gives one
# K-way distribution per example; sigmoid gives one binary distribution per label, because
# sigmoid(z) = softmax([z, 0]) (seed 002), so multi-label metrics are sums over labels.
_BINARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "logits": lambda z: np.stack([z, np.zeros_like(z)], axis=-1),
    "probabilities": lambda p: np.stack([p, 1.0 - p], axis=-1),
}
_AS_DISTRIBUTIONS: dict[str, Callable[[np.ndarray, str], np.ndarray]] = {
    "softmax": lambda values, kind: values[:, None, :],
    "sigmoid": lambda values, kind: _BINARY[kind](values),
}
# Back from distributions to one number per class: the class probability (softmax) or the
# probability of the label being on (sigmoid), and per-class sums of contributions.
_CLASS_PROBS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda d: d[:, 0, :],
    "sigmoid": lambda d: d[..., 0],
}
_PER_CLASS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda c: c[:, 0, :],
    "sigmoid": lambda c: c.sum(axis=-1),
}
# A predicted class (softmax) is the argmax; a predicted label (sigmoid) has p > 1/2.
_DECISIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda p: np.eye(p.shape[1], dtype=bool)[p.argmax(axis=1)],
    "sigmoid": lambda p: p > 0.5,
}
_DIVERGENCES = ("kl", "reverse_kl", "symmetric_kl", "js_divergence")


def _from_logits(current: np.ndarray, baseline: np.ndarray, temperature: float,
                 base: float | None, eps: float
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    # Log-probabilities first, never softmax then log: exact for any logit range.
    lc = log_softmax(current, temperature=temperature)
    lb = log_softmax(baseline, temperature=temperature)
    # The JS mixture stays in log space: log m = logaddexp(log p, log q) - log 2.
    log_mix = np.logaddexp(lc, lb) - math.log(2.0)
    metrics = {
        "kl": kl_from_logits(lc, lb, base=base),
        "reverse_kl": kl_from_logits(lb, lc, base=base),
        "symmetric_kl": symmetric_kl_from_logits(lc, lb, base=base),
        "js_divergence": 0.5 * (kl_from_logits(lc, log_mix, base=base)
                                + kl_from_logits(lb, log_mix, base=base)),
    }
    return metrics, np.exp(lc), np.exp(lb)


def _from_probabilities(current: np.ndarray, baseline: np.ndarray, temperature: float,
                        base: float | None, eps: float
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    metrics = divergences(current, baseline, metrics=_DIVERGENCES, base=base, eps=eps)
    return metrics, current, baseline


_SCORERS = {"logits": _from_logits, "probabilities": _from_probabilities}


def _score(current: np.ndarray, baseline: np.ndarray, *, kind: str, mode: str,
           temperature: float, base: float | None, eps: float
           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-example metrics and both sides' class probabilities, (examples, classes)."""
    to_dist = _AS_DISTRIBUTIONS[mode]
    metrics, pc, pb = _SCORERS[kind](
        to_dist(current, kind), to_dist(baseline, kind), temperature, base, eps)
    summed = {name: np.asarray(metrics[name]).sum(axis=1) for name in _DIVERGENCES}
    summed["js_distance"] = np.sqrt(summed["js_divergence"])
    return summed, _CLASS_PROBS[mode](pc), _CLASS_PROBS[mode](pb)


def per_example_metrics(
    baseline: np.ndarray,
    current: np.ndarray,
    *,
    kind: Kind = "logits",
    mode: Mode = "softmax",
    temperature: float = 1.0,
    base: float | None = 2.0,
    eps: float = 0.0,
) -> dict[str, np.ndarray]:
    """Divergences between two models' outputs, one value per example (row).

    Parameters
    ----------
    baseline, current : ndarray, shape (n_examples, n_classes)
        Logits or probabilities of the same examples under the two models.
    kind, mode, temperature, base, eps
        As in :class:`ModelsConfig`.

    Returns
    -------
    dict of str to ndarray, shape (n_examples,)
        ``kl`` = KL(current ‖ baseline), ``reverse_kl``, ``symmetric_kl``,
        ``js_divergence`` and ``js_distance``. In sigmoid mode each is the sum over labels
        of the binary divergences (``js_distance`` is the square root of that sum).
    """
    if kind == "probabilities" and temperature != 1.0:
        raise ValueError("temperature rescales logits: leave it at 1 for probabilities")
    metrics, _, _ = _score(np.asarray(current, dtype=np.float64),
                           np.asarray(baseline, dtype=np.float64), kind=kind, mode=mode,
                           temperature=temperature, base=base, eps=eps)
    return metrics


# --- reading and validating one side ----------------------------------------------------
def _scan(frame: pl.DataFrame | pl.LazyFrame, source: str) -> pl.LazyFrame:
    lazy = frame.lazy()
    try:
        lazy.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"cannot read the file: {first_line}", source=source) from None
    return lazy


def describe_rows(ids: pl.Series, mask: np.ndarray) -> str:
    """``'3 rows (id 7, 9, 12)'``, ``'40 rows (id 7, 9, 12, ...)'``: flagged rows by their id."""
    bad = ids.filter(pl.Series(mask))
    shown = ", ".join(str(v) for v in bad.head(_SHOWN_IDS).to_list())
    more = ", ..." if bad.len() > _SHOWN_IDS else ""
    return f"{bad.len()} row{'s' * (bad.len() != 1)} ({ids.name} {shown}{more})"


@dataclass(frozen=True)
class _Outputs:
    """Where the output vector lives and what its classes are called."""

    columns: list[str]
    is_list: bool
    class_names: list[str] | None

    @property
    def label(self) -> str:
        first, last = self.columns[0], self.columns[-1]
        return first if first == last else f"{first}..{last}"

    def expr(self) -> pl.Expr:
        vector = pl.col(self.columns[0]) if self.is_list else pl.concat_list(self.columns)
        return vector.cast(pl.List(pl.Float64)).alias("__outputs")


def _resolve_outputs(schema: pl.Schema, config: ModelsConfig) -> _Outputs:
    """Output columns from the baseline schema; the current file must have the same ones."""
    if config.outputs_prefix is not None:
        columns = [c for c in schema.names() if c.startswith(config.outputs_prefix)]
        if not columns:
            raise InputError(f"no column starts with {config.outputs_prefix!r}; columns are "
                             f"{', '.join(schema.names())}", source=config.baseline)
        names = config.class_names or [c.removeprefix(config.outputs_prefix) for c in columns]
        return _Outputs(columns, False, names)
    if isinstance(config.outputs, str):
        return _Outputs([config.outputs], True, config.class_names)
    return _Outputs(list(config.outputs), False, config.class_names or list(config.outputs))


def _check_schema(schema: pl.Schema, needed: list[str], outputs: _Outputs, source: str) -> None:
    for column in needed:
        if column not in schema:
            raise InputError(f"missing column; columns are {', '.join(schema.names())}",
                             source=source, column=column)
    for column in outputs.columns:
        dtype = schema[column]
        inner = dtype.inner if isinstance(dtype, pl.List | pl.Array) else None
        numeric = (inner if outputs.is_list else dtype)
        if numeric is None or not numeric.is_numeric():
            expected = "a list of numbers per row" if outputs.is_list else "numeric"
            raise InputError(f"has type {dtype}; expected {expected}", source=source,
                             column=column)


# Each check: (bad cells, the values to quote, what is wrong and how to fix it).
Check = Callable[[np.ndarray, "ModelsConfig"], tuple[np.ndarray, np.ndarray, str]]


def _non_finite(values: np.ndarray, config: ModelsConfig) -> tuple[np.ndarray, np.ndarray, str]:
    return ~np.isfinite(values), values, "hold null, NaN or inf outputs (e.g. {}): fix or drop them"


def _outside_unit(values: np.ndarray, config: ModelsConfig
                  ) -> tuple[np.ndarray, np.ndarray, str]:
    tol = config.prob_tolerance
    return ((values < -tol) | (values > 1 + tol), values,
            "hold probabilities outside [0, 1] (e.g. {}); for scores or logits set kind = 'logits'")


def _not_summing_to_one(values: np.ndarray, config: ModelsConfig
                        ) -> tuple[np.ndarray, np.ndarray, str]:
    sums = values.sum(axis=1, keepdims=True)
    # Multi-label probabilities are independent: only softmax rows must sum to 1.
    bad = (np.abs(sums - 1.0) > config.prob_tolerance) & (config.mode == "softmax")
    return bad, sums, (f"do not sum to 1 within prob_tolerance={config.prob_tolerance:g} "
                       "(e.g. sum {}): renormalise them, or set mode = 'sigmoid' for multi-label")


_VALUE_CHECKS: dict[str, tuple[Check, ...]] = {
    "logits": (_non_finite,),
    "probabilities": (_non_finite, _outside_unit, _not_summing_to_one),
}


def _load_side(lazy: pl.LazyFrame, outputs: _Outputs, context: list[str],
               config: ModelsConfig, source: str) -> tuple[pl.DataFrame, np.ndarray]:
    """One query for the side's ids, context and output vectors, then every value check."""
    frame = lazy.select(config.id_column, *context, outputs.expr()).collect()
    if frame.height == 0:
        raise InputError("has no rows", source=source)
    ids = frame[config.id_column]
    if ids.null_count():
        raise InputError(f"{ids.null_count()} rows have a null id", source=source,
                         column=config.id_column)
    duplicated = ids.is_duplicated()
    if duplicated.any():
        raise InputError(f"ids must be unique: {describe_rows(ids, duplicated.to_numpy())} "
                         "repeat an id; deduplicate the file", source=source,
                         column=config.id_column)
    lengths = frame["__outputs"].list.len()
    missing = lengths.is_null().to_numpy()
    if missing.any():
        raise InputError(f"{describe_rows(ids, missing)} have null outputs: fix or drop them",
                         source=source, column=outputs.label)
    n_classes = lengths.mode().max()
    ragged = (lengths != n_classes).to_numpy()
    if ragged.any():
        raise InputError(f"{describe_rows(ids, ragged)} hold a different number of outputs than "
                         f"the other rows ({n_classes})", source=source, column=outputs.label)
    if n_classes < _MIN_CLASSES[config.mode]:
        raise InputError(f"{n_classes} outputs per row; {config.mode} mode needs at least "
                         f"{_MIN_CLASSES[config.mode]} (one score per row: mode = 'sigmoid')",
                         source=source, column=outputs.label)
    values = frame["__outputs"].list.to_array(n_classes).to_numpy().astype(np.float64)
    for check in _VALUE_CHECKS[config.kind]:
        bad, shown, what = check(values, config)
        if bad.any():
            rows = bad.any(axis=1)
            # Name the first offending class column when there is one per class.
            column = (outputs.columns[int(np.argmax(bad[rows][0]))]
                      if not outputs.is_list and bad.shape[1] > 1 else outputs.label)
            what = what.format(f"{shown[bad][0]:.9g}")
            raise InputError(f"{describe_rows(ids, rows)} {what}", source=source, column=column)
    if config.kind == "probabilities":
        values = np.clip(values, 0.0, 1.0)  # within tolerance of [0, 1]: rounding only
    return frame.drop("__outputs").with_row_index("__row"), values


# --- windows and segments ---------------------------------------------------------------
def window_expr(timestamp: str | None, period: str | None, dtype: pl.DataType | None) -> pl.Expr:
    """The ``window`` label: ISO-8601 start of the ``period`` bucket, or 'all'."""
    if timestamp is None or period is None:
        return pl.lit("all").alias("window")
    column = pl.col(timestamp).dt.truncate(period)
    formats = {pl.Datetime: "%Y-%m-%dT%H:%M:%S", pl.Date: "%Y-%m-%d"}
    fmt = next((f for kind, f in formats.items() if isinstance(dtype, kind)), "%Y-%m-%dT%H:%M:%S")
    return column.dt.to_string(fmt).alias("window")


def segment_expr(segments: list[str]) -> pl.Expr:
    """The ``segment`` label: ``"origin=EWR, carrier=AA"``, or ``"all"``."""
    if not segments:
        return pl.lit("all").alias("segment")
    parts = [pl.format(f"{name}={{}}", pl.col(name).cast(pl.String).fill_null("null"))
             for name in segments]
    return pl.concat_str(parts, separator=", ").alias("segment")


# --- the comparison ---------------------------------------------------------------------
def _status_expr(config: ModelsConfig) -> pl.Expr:
    value = pl.col(config.metric)
    return (
        pl.when(pl.col("n") < config.min_examples).then(pl.lit("insufficient_data"))
        .when(value >= config.critical).then(pl.lit("critical"))
        .when(value >= config.warn).then(pl.lit("warn"))
        .otherwise(pl.lit("ok"))
    )


def _class_table(summary: pl.DataFrame, keys: list[str], names: list[str],
                 config: ModelsConfig) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """Per-class drift of the mean predicted distribution, and the of-means totals."""
    k = len(names)
    means = {side: summary.select(f"__{side}{j}" for j in range(k)).to_numpy()
             for side in ("b", "c")}
    shares = {side: summary.select(f"__{side}d{j}" for j in range(k)).to_numpy()
              for side in ("b", "c")}
    to_dist = _AS_DISTRIBUTIONS[config.mode]
    current, baseline = to_dist(means["c"], "probabilities"), to_dist(means["b"], "probabilities")
    contributions = {
        metric: _PER_CLASS[config.mode](bin_contributions(
            current, baseline, metric=metric, base=config.log_base, eps=config.eps))
        for metric in ("kl", "js_divergence")
    }
    classes = summary.select(keys).join(pl.DataFrame({"class": names}), how="cross").with_columns(
        pl.Series("baseline_mean", means["b"].ravel()),
        pl.Series("current_mean", means["c"].ravel()),
        pl.Series("kl_contribution", contributions["kl"].ravel()),
        pl.Series("js_contribution", contributions["js_divergence"].ravel()),
        pl.Series("baseline_predicted_share", shares["b"].ravel()),
        pl.Series("current_predicted_share", shares["c"].ravel()),
    )
    js = contributions["js_divergence"].sum(axis=1)
    totals = {"kl_of_means": contributions["kl"].sum(axis=1), "js_divergence_of_means": js,
              "js_distance_of_means": np.sqrt(np.maximum(js, 0.0))}
    return classes, totals


def _unmatched_warning(baseline: pl.DataFrame, current: pl.DataFrame, id_column: str,
                       n_matched: int) -> tuple[str, ...]:
    notes = []
    for side, this, other in (("baseline", baseline, current), ("current", current, baseline)):
        alone = this.join(other.select(id_column), on=id_column, how="anti")[id_column]
        if alone.len():
            other_side = "current" if side == "baseline" else "baseline"
            notes.append(f"{alone.len()} {side} ids have no {other_side} row (e.g. "
                         f"{id_column} {alone[0]})")
    if not notes:
        return ()
    return (f"{'; '.join(notes)}: compared on the {n_matched} matched ids",)


def compare_outputs(
    baseline: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    config: ModelsConfig,
) -> ModelDrift:
    """Compare two models' outputs example by example.

    Parameters
    ----------
    baseline, current : polars DataFrame or LazyFrame
        One row per example: the id column, the outputs and the optional timestamp and
        segment columns (taken from ``current``, or from ``baseline`` if only it has them).
    config : ModelsConfig
        ``config.baseline`` and ``config.current`` only name the inputs in messages.

    Returns
    -------
    ModelDrift
        Aggregates per window x segment (``summary``), per-class drift (``classes``), the
        ``top_n`` most-changed examples (``examples``) and every matched example's metrics.

    Raises
    ------
    InputError
        Missing columns, empty inputs, null or duplicate ids, no common id, unequal class
        counts, and non-finite or invalid outputs: one line naming file, column and ids.
    """
    lazy = {"baseline": _scan(baseline, config.baseline),
            "current": _scan(current, config.current)}
    sources = {"baseline": config.baseline, "current": config.current}
    schemas = {side: frame.collect_schema() for side, frame in lazy.items()}
    outputs = _resolve_outputs(schemas["baseline"], config)
    wanted = [c for c in (config.timestamp, *config.segments) if c is not None]
    context = {"current": [c for c in wanted if c in schemas["current"]]}
    context["baseline"] = [c for c in wanted if c not in context["current"]]
    for side, schema in schemas.items():
        _check_schema(schema, [config.id_column, *outputs.columns, *context[side]], outputs,
                      sources[side])
    id_types = {side: schema[config.id_column] for side, schema in schemas.items()}
    if id_types["baseline"] != id_types["current"]:
        raise InputError(f"id types differ: {id_types['baseline']} in the baseline, "
                         f"{id_types['current']} in the current file; cast one of them",
                         column=config.id_column)
    loaded = {side: _load_side(lazy[side], outputs, context[side], config, sources[side])
              for side in lazy}
    (b_frame, b_values), (c_frame, c_values) = loaded["baseline"], loaded["current"]
    if b_values.shape[1] != c_values.shape[1]:
        raise InputError(f"the baseline has {b_values.shape[1]} classes and the current file "
                         f"{c_values.shape[1]}: both models must score the same classes",
                         column=outputs.label)
    names = outputs.class_names or [str(j) for j in range(b_values.shape[1])]
    if len(names) != b_values.shape[1]:
        raise InputError(f"{len(names)} class_names for {b_values.shape[1]} outputs",
                         column=outputs.label)

    id_column = config.id_column
    joined = c_frame.join(b_frame, on=id_column, how="inner", suffix="_baseline",
                          maintain_order="left")
    if joined.height == 0:
        raise InputError(f"no {id_column!r} value is in both files "
                         f"({b_frame.height} baseline and {c_frame.height} current rows)",
                         column=id_column)
    metrics, pc, pb = _score(c_values[joined["__row"].to_numpy()],
                             b_values[joined["__row_baseline"].to_numpy()],
                             kind=config.kind, mode=config.mode, temperature=config.temperature,
                             base=config.log_base, eps=config.eps)
    dc, db = _DECISIONS[config.mode](pc), _DECISIONS[config.mode](pb)
    ts_dtype = {**schemas["baseline"], **schemas["current"]}.get(config.timestamp or "")
    if ts_dtype is not None and not ts_dtype.is_temporal():
        raise InputError(f"has type {ts_dtype}, not a date or datetime; cast it or drop "
                         "period", column=config.timestamp)
    keys = [*config.segments, "segment", "window"]

    def label(prefix: str) -> pl.Expr:
        return pl.concat_str([pl.when(pl.col(f"__{prefix}d{j}")).then(pl.lit(name))
                              for j, name in enumerate(names)], separator=",", ignore_nulls=True)

    wide = {f"__{side}{j}": probs[:, j] for side, probs in (("b", pb), ("c", pc))
            for j in range(len(names))}
    wide |= {f"__{side}d{j}": dec[:, j] for side, dec in (("b", db), ("c", dc))
             for j in range(len(names))}
    per_example = (
        joined.select(id_column, *config.segments, segment_expr(config.segments),
                      window_expr(config.timestamp, config.period, ts_dtype))
        .with_columns(*(pl.Series(m, metrics[m]) for m in PER_EXAMPLE), **{
            name: pl.Series(values) for name, values in wide.items()})
        .with_columns(baseline_class=label("b"), current_class=label("c"))
    )
    summary = (
        per_example.lazy().group_by(keys).agg(
            pl.len().alias("n"),
            *(fn(pl.col(m)).alias(f"{m}_{s}") for m in PER_EXAMPLE for s, fn in STATS.items()),
            (pl.col("baseline_class") != pl.col("current_class")).mean().alias("flip_rate"),
            pl.col(*wide).mean(),
        ).sort(keys).collect()
    )
    classes, totals = _class_table(summary, keys, names, config)
    summary = summary.select(pl.exclude(*wide)).with_columns(
        *(pl.Series(name, values) for name, values in totals.items())
    ).with_columns(
        metric=pl.lit(config.metric), value=pl.col(config.metric),
        warn_threshold=pl.lit(config.warn), critical_threshold=pl.lit(config.critical),
        status=_status_expr(config),
    )
    prob_lists = {f"{side}_probs": pl.concat_list(f"__{s}{j}" for j in range(len(names)))
                  for side, s in (("baseline", "b"), ("current", "c"))}
    examples = (
        per_example.filter(
            pl.col(config.top_by).rank("ordinal", descending=True).over(keys) <= config.top_n)
        .with_columns(**prob_lists)
        .sort([*keys, config.top_by], descending=[False] * len(keys) + [True],
              maintain_order=True)
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over(keys).cast(pl.UInt32))
        .select(*keys, "rank", id_column, *PER_EXAMPLE, "baseline_class", "current_class",
                *prob_lists)
    )
    return ModelDrift(
        summary=summary, classes=classes, examples=examples,
        per_example=per_example.select(pl.exclude(*wide)),
        n_baseline=b_frame.height, n_current=c_frame.height, n_matched=joined.height,
        n_unmatched_baseline=b_frame.height - joined.height,
        n_unmatched_current=c_frame.height - joined.height,
        warnings=_unmatched_warning(b_frame, c_frame, id_column, joined.height),
        config=config,
    )


def compare_models(config: ModelsConfig) -> ModelDrift:
    """Read ``config.baseline`` and ``config.current`` (Parquet) and compare them."""
    return compare_outputs(pl.scan_parquet(config.baseline), pl.scan_parquet(config.current),
                           config)


# --- outputs ----------------------------------------------------------------------------
_SEVERITY = {"critical": 0, "warn": 1}
_TOP_IN_BLOCK = 3


def _json_safe(value: Any, key: str, reasons: dict[str, str]) -> Any:
    """Replace non-finite floats by None (noting why under the field name), recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v, k, reasons) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v, key, reasons) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        reasons[key] = ("infinite: a class has probability 0 under one model; set eps > 0 to "
                        "bound KL" if math.isinf(value) else "not a number")
        return None
    return value


def models_block(result: ModelDrift) -> dict[str, Any]:
    """The ``models`` entry of ``alerts.json``: counts, warnings and every warn/critical row.

    Each alert carries its three largest per-class JS contributions and its three
    most-changed examples. Non-finite numbers become ``null`` with a ``null_reasons`` entry.
    """
    config, summary = result.config, result.summary
    keys = [*config.segments, "segment", "window"]
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
                                      config.top_by, "baseline_class", "current_class")
                            .sort_by("rank").alias("top_examples"))
    )
    alerts = (
        summary.filter(pl.col("status").is_in(list(_SEVERITY)))
        .join(top_classes, on=keys, how="left", nulls_equal=True)
        .join(top_examples, on=keys, how="left", nulls_equal=True)
        .sort(pl.col("status").replace_strict(_SEVERITY), -pl.col("value"))
        .select(*keys, "status", "metric", "value", "warn_threshold", "critical_threshold", "n",
                "flip_rate", "js_distance_of_means", "top_classes", "top_examples")
    )
    counts = dict(summary["status"].value_counts().iter_rows())
    reasons: dict[str, str] = {}
    block = _json_safe({
        "schema_version": SCHEMA_VERSION,
        "inputs": {"baseline": config.baseline, "current": config.current},
        "kind": config.kind, "mode": config.mode, "temperature": config.temperature,
        "base": config.base, "metric": config.metric, "warn_threshold": config.warn,
        "critical_threshold": config.critical,
        "n_baseline": result.n_baseline, "n_current": result.n_current,
        "n_matched": result.n_matched, "n_unmatched_baseline": result.n_unmatched_baseline,
        "n_unmatched_current": result.n_unmatched_current, "warnings": list(result.warnings),
        "summary": {"total": summary.height, **{s: counts.get(s, 0) for s in (
            "ok", "warn", "critical", "insufficient_data")}},
        "alerts": alerts.to_dicts(),
        "files": dict(MODELS_FILES),
    }, "", reasons)
    return block | ({"null_reasons": reasons} if reasons else {})


def write_model_outputs(result: ModelDrift, run_dir: str | Path) -> dict[str, Any]:
    """Write ``models.parquet``, ``model_classes.parquet`` and ``model_examples.parquet``.

    Each file is written atomically into ``run_dir``. Returns :func:`models_block`.
    """
    tables = {"models": result.summary, "classes": result.classes, "examples": result.examples}
    for name, table in tables.items():
        atomic_write(Path(run_dir) / MODELS_FILES[name], table.write_parquet)
    return models_block(result)
