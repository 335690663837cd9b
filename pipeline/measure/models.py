"""Per-example drift between two versions of a model, from logits or probabilities.

Both files hold one prediction per example, keyed by an id. The inner join on the id pairs
each example's baseline and current prediction; every per-example divergence is one
vectorised ``kl_metrics`` call over the (examples x classes) arrays, in log space when
logits are given. Per window x segment the module reports quantiles of those divergences,
the predicted-class flip rate, the per-class drift of the mean predicted distribution and
the examples that changed most. Column contracts: ``docs/models.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from kl_metrics import bin_contributions, divergences, divergences_from_logits, log_softmax
from kl_metrics.special import expit
from pipeline.config import (
    MODEL_STATS,
    PER_EXAMPLE_METRICS,
    ModelsConfig,
    OutputKind,
    OutputMode,
)
from pipeline.errors import InputError
from pipeline.labels import (
    public_segment_columns,
    segment_column,
    segment_label_expr,
    window_label_expr,
)
from pipeline.read.sources import collect, collect_schema, describe_rows, scan_source
from pipeline.windows import (
    MIN_COVERAGE,
    UTC,
    TimeSpan,
    check_parsed,
    timestamp_expr,
    window_coverage,
    window_start_expr,
)

_MIN_CLASSES = {"softmax": 2, "sigmoid": 1}
_TIMESTAMP = "\0timestamp"  # the timestamp's values (pipeline.windows.timestamp_expr)
_WINDOW = "\0window"  # window start of each example, for coverage


def _statistic(stat: str, column: pl.Expr) -> pl.Expr:
    """``mean``, ``max``, or ``pNN``: the NN-th percentile (linear interpolation, as numpy)."""
    if stat in ("mean", "max"):
        return getattr(column, stat)()
    return column.quantile(int(stat[1:]) / 100, interpolation="linear")


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
# Multi-label outputs are one binary distribution [p, 1 - p] per label (for logits,
# sigmoid(z) = softmax([z, 0]), seed 002), and every metric is the sum over labels.
_AS_DISTRIBUTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda p: p,
    "sigmoid": lambda p: np.stack([p, 1.0 - p], axis=-1),
}
_SUM_LABELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda x: x,
    "sigmoid": lambda x: x.sum(axis=-1),
}
# Class probabilities from logits: the softmax of the row, or each label's sigmoid.
_LOGIT_PROBS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "softmax": lambda z, temperature: np.exp(log_softmax(z, temperature=temperature)),
    "sigmoid": lambda z, temperature: expit(z / temperature),
}
# A predicted class (softmax) is the argmax; a predicted label (sigmoid) has p > 1/2.
_DECISIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": lambda p: np.eye(p.shape[1], dtype=bool)[p.argmax(axis=1)],
    "sigmoid": lambda p: p > 0.5,
}
_DIVERGENCES = ("kl", "reverse_kl", "symmetric_kl", "js_divergence")


def _from_logits(current: np.ndarray, baseline: np.ndarray, mode: str, temperature: float,
                 base: float | None, eps: float) -> dict[str, np.ndarray]:
    # In log space (log-softmax / log-sigmoid), never softmax then log: exact for any logit.
    return divergences_from_logits(current, baseline, metrics=_DIVERGENCES, base=base,
                                   multilabel=mode == "sigmoid", temperature=temperature)


def _from_probabilities(current: np.ndarray, baseline: np.ndarray, mode: str,
                        temperature: float, base: float | None, eps: float
                        ) -> dict[str, np.ndarray]:
    to_dist = _AS_DISTRIBUTIONS[mode]
    found = divergences(to_dist(current), to_dist(baseline), metrics=_DIVERGENCES, base=base,
                        eps=eps)
    return {name: _SUM_LABELS[mode](value) for name, value in found.items()}


_SCORERS = {"logits": _from_logits, "probabilities": _from_probabilities}
_PROBABILITIES = {"logits": lambda v, mode, t: _LOGIT_PROBS[mode](v, t),
                  "probabilities": lambda v, mode, t: v}


def _score(current: np.ndarray, baseline: np.ndarray, *, kind: str, mode: str,
           temperature: float, base: float | None, eps: float
           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-example metrics and both sides' class probabilities, (examples, classes)."""
    metrics = _SCORERS[kind](current, baseline, mode, temperature, base, eps)
    # Rounding can leave JS a hair below 0 for identical rows; the distance is then 0.
    metrics["js_distance"] = np.sqrt(np.maximum(metrics["js_divergence"], 0.0))
    probs = _PROBABILITIES[kind]
    return metrics, probs(current, mode, temperature), probs(baseline, mode, temperature)


def per_example_metrics(
    baseline: np.ndarray,
    current: np.ndarray,
    *,
    kind: OutputKind = "logits",
    mode: OutputMode = "softmax",
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


def _resolve_outputs(schemas: dict[str, pl.Schema], config: ModelsConfig) -> _Outputs:
    """Output columns and class names; with a prefix both files must match the same columns."""
    if config.outputs_prefix is not None:
        prefix = config.outputs_prefix
        found = {side: [c for c in schema.names() if c.startswith(prefix)]
                 for side, schema in schemas.items()}
        columns = found["baseline"]
        if not columns or columns != found["current"]:
            raise InputError(f"the columns starting with {prefix!r} must be the same, in the same "
                             f"order, in both files: baseline {found['baseline']}, current "
                             f"{found['current']}", column=prefix)
        names = config.class_names or [c.removeprefix(prefix) for c in columns]
        return _Outputs(columns, False, names)
    assert config.outputs is not None  # exactly one of outputs, outputs_prefix (validated)
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


def _context_exprs(schema: pl.Schema, context: list[str], config: ModelsConfig,
                   window_timezone: str, source: str) -> list[pl.Expr]:
    """The side's timestamp values and segment columns, under private names."""
    exprs = []
    for column in context:
        if column == config.timestamp:
            values, unparsed = timestamp_expr(column, schema[column], period=config.period,
                                              timezone=window_timezone, source=source)
            exprs.append(values.alias(_TIMESTAMP))
            if unparsed is not None:
                exprs.append(unparsed.alias("\0unparsed"))
        if column in config.segments:
            exprs.append(pl.col(column).alias(segment_column(column)))
    return exprs


def _load_side(lazy: pl.LazyFrame, outputs: _Outputs, context: list[pl.Expr],
               config: ModelsConfig, source: str) -> tuple[pl.DataFrame, np.ndarray]:
    """One query for the side's ids, context and output vectors, then every value check."""
    frame = collect(lazy.select(config.id_column, *context, outputs.expr()), source)
    if frame.height == 0:
        raise InputError("has no rows", source=source)
    if "\0unparsed" in frame.columns:
        check_parsed(frame["\0unparsed"], str(config.timestamp), source)
        frame = frame.drop("\0unparsed")
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
    assert isinstance(n_classes, int)  # list lengths, none null (checked above)
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
            # np.any, not bad.any: numpy types the method's reduction as maybe a scalar
            rows: np.ndarray = np.any(bad, axis=1)
            # Name the first offending class column when there is one per class.
            column = (outputs.columns[int(np.argmax(bad[rows][0]))]
                      if not outputs.is_list and bad.shape[1] > 1 else outputs.label)
            what = what.format(f"{shown[bad][0]:.9g}")
            raise InputError(f"{describe_rows(ids, rows)} {what}", source=source, column=column)
    if config.kind == "probabilities":
        values = np.clip(values, 0.0, 1.0)  # within tolerance of [0, 1]: rounding only
    return frame.drop("__outputs").with_row_index("__row"), values


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
    means = {side: summary.select(_wide(side, j) for j in range(k)).to_numpy() for side in "bc"}
    shares = {side: summary.select(_wide(side, j, True) for j in range(k)).to_numpy()
              for side in "bc"}
    to_dist = _AS_DISTRIBUTIONS[config.mode]
    current, baseline = to_dist(means["c"]), to_dist(means["b"])
    contributions = {
        metric: _SUM_LABELS[config.mode](bin_contributions(
            current, baseline, metric, base=config.log_base, eps=config.eps))
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


@dataclass(frozen=True)
class _Sides:
    """Both inputs, loaded and checked: frames (id, context, ``__row``) and output arrays."""

    baseline: pl.DataFrame
    current: pl.DataFrame
    baseline_values: np.ndarray
    current_values: np.ndarray
    class_names: list[str]
    span: TimeSpan | None  # time range of the side holding the timestamps (with a period)


def _read_sides(baseline: pl.DataFrame | pl.LazyFrame, current: pl.DataFrame | pl.LazyFrame,
                config: ModelsConfig, window_timezone: str) -> _Sides:
    """Schema checks on both sides first (cheap), then one query and the value checks each."""
    lazy = {"baseline": baseline.lazy(), "current": current.lazy()}
    sources = {"baseline": config.baseline, "current": config.current}
    schemas = {side: collect_schema(frame, sources[side]) for side, frame in lazy.items()}
    outputs = _resolve_outputs(schemas, config)
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
    (b_frame, b_values), (c_frame, c_values) = (
        _load_side(lazy[side], outputs, _context_exprs(schemas[side], context[side], config,
                                                       window_timezone, sources[side]),
                   config, sources[side]) for side in lazy)
    span = None
    if config.period is not None:
        side, frame = (("current", c_frame) if _TIMESTAMP in c_frame.columns
                       else ("baseline", b_frame))
        span = TimeSpan.of(frame[_TIMESTAMP],
                           days=schemas[side][str(config.timestamp)] == pl.Date)
    k = b_values.shape[1]
    if c_values.shape[1] != k:
        raise InputError(f"the baseline has {k} classes and the current file "
                         f"{c_values.shape[1]}: both models must score the same classes",
                         column=outputs.label)
    names = outputs.class_names or [str(j) for j in range(k)]
    if len(names) != k:
        raise InputError(f"{len(names)} class_names for {k} outputs", column=outputs.label)
    return _Sides(b_frame, c_frame, b_values, c_values, names, span)


def _wide(side: str, j: int, decision: bool = False) -> str:
    """Internal column of class j: mean-able probability, or 0/1 decision."""
    return f"__{side}{'d' * decision}{j}"


def _per_example(joined: pl.DataFrame, sides: _Sides, config: ModelsConfig) -> pl.DataFrame:
    """Keys, id, the five metrics, predicted classes and wide per-class columns per example.

    Every metric comes from one vectorised call over the matched (examples x classes) rows.
    """
    metrics, pc, pb = _score(sides.current_values[joined["__row"].to_numpy()],
                             sides.baseline_values[joined["__row_baseline"].to_numpy()],
                             kind=config.kind, mode=config.mode, temperature=config.temperature,
                             base=config.log_base, eps=config.eps)
    decide = _DECISIONS[config.mode]
    per_class = {side: (probs, decide(probs)) for side, probs in (("b", pb), ("c", pc))}
    wide = {_wide(side, j, is_decision): values[:, j]
            for side, pair in per_class.items()
            for is_decision, values in zip((False, True), pair, strict=True)
            for j in range(len(sides.class_names))}

    def predicted(side: str) -> pl.Expr:
        # The predicted classes as text: the argmax, or the labels that are on (sigmoid).
        return pl.concat_str([pl.when(pl.col(_wide(side, j, True))).then(pl.lit(name))
                              for j, name in enumerate(sides.class_names)],
                             separator=",", ignore_nulls=True)

    segments = [segment_column(s) for s in config.segments]
    if config.timestamp is None:
        windows = [window_label_expr(None)]
    else:
        start = window_start_expr(_TIMESTAMP, config.period)
        windows = [window_label_expr(joined.schema[_TIMESTAMP], start), start.alias(_WINDOW)]
    return (
        joined.select(config.id_column, pl.col(segments).cast(pl.String),
                      segment_label_expr(segments), *windows)
        .with_columns(*(pl.Series(m, metrics[m]) for m in PER_EXAMPLE_METRICS),
                      **{name: pl.Series(values) for name, values in wide.items()})
        .with_columns(baseline_class=predicted("b"), current_class=predicted("c"))
    )


def _top_examples(per_example: pl.DataFrame, keys: list[str], k: int,
                  config: ModelsConfig) -> pl.DataFrame:
    """The ``top_n`` examples with the largest ``top_by`` per window x segment."""
    by = config.top_by
    probs = {f"{name}_probs": pl.concat_list(_wide(side, j) for j in range(k))
             for name, side in (("baseline", "b"), ("current", "c"))}
    return (
        per_example.filter(pl.col(by).rank("ordinal", descending=True).over(keys) <= config.top_n)
        .sort([*keys, by], descending=[False] * len(keys) + [True], maintain_order=True)
        .select(*keys, pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).over(keys).alias("rank"),
                config.id_column, *PER_EXAMPLE_METRICS, "baseline_class", "current_class",
                **probs)
    )


def _coverage(per_example: pl.DataFrame, sides: _Sides, config: ModelsConfig,
              min_coverage: float) -> pl.DataFrame:
    """``window`` (label), ``coverage`` and ``partial`` of each window of the comparison."""
    if _WINDOW not in per_example.columns:
        return pl.DataFrame({"window": per_example["window"].unique()}).with_columns(
            coverage=pl.lit(None, dtype=pl.Float64), partial=pl.lit(False))
    starts = per_example[_WINDOW].alias("window")
    return window_coverage(starts, sides.span, config.period, min_coverage).with_columns(
        window_label_expr(starts.dtype))


def compare_outputs(
    baseline: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    config: ModelsConfig,
    *,
    window_timezone: str = UTC,
    min_coverage: float = MIN_COVERAGE,
) -> ModelDrift:
    """Compare two models' outputs example by example.

    Parameters
    ----------
    baseline, current : polars DataFrame or LazyFrame
        One row per example: the id column, the outputs and the optional timestamp and
        segment columns (taken from ``current``, or from ``baseline`` if only it has them).
    config : ModelsConfig
        ``config.baseline`` and ``config.current`` only name the inputs in messages.
    window_timezone : str
        IANA zone windows are cut in (``input.window_timezone``; :mod:`pipeline.windows`).
    min_coverage : float
        Windows covered less than this by the timestamps' range are ``partial``.

    Returns
    -------
    ModelDrift
        Aggregates per window x segment (``summary``, with the ``coverage`` and ``partial``
        of each window after ``window``), per-class drift (``classes``), the ``top_n``
        most-changed examples (``examples``) and every matched example's metrics. Segment
        columns have their own names, or ``segment:<name>`` when the table has a column of
        that name (:func:`pipeline.labels.public_segment_columns`).

    Raises
    ------
    InputError
        Missing columns, empty inputs, null or duplicate ids, no common id, unequal class
        counts, and non-finite or invalid outputs: one line naming file, column and ids.
    """
    sides = _read_sides(baseline, current, config, window_timezone)
    id_column, k = config.id_column, len(sides.class_names)
    joined = sides.current.join(sides.baseline, on=id_column, how="inner", suffix="_baseline",
                                maintain_order="left")
    if joined.height == 0:
        raise InputError(f"no {id_column!r} value is in both files ({sides.baseline.height} "
                         f"baseline and {sides.current.height} current rows)", column=id_column)
    per_example = _per_example(joined, sides, config)
    wide = [_wide(side, j, d) for side in "bc" for d in (False, True) for j in range(k)]
    keys = [*(segment_column(s) for s in config.segments), "segment", "window"]
    summary = (
        per_example.lazy().group_by(keys).agg(
            pl.len().alias("n"),
            *(_statistic(s, pl.col(m)).alias(f"{m}_{s}")
              for m in PER_EXAMPLE_METRICS for s in MODEL_STATS),
            (pl.col("baseline_class") != pl.col("current_class")).mean().alias("flip_rate"),
            pl.col(wide).mean(),
        ).sort(keys).collect()
    )
    classes, totals = _class_table(summary, keys, sides.class_names, config)
    coverage = _coverage(per_example, sides, config, min_coverage)
    summary = summary.join(coverage, on="window", how="left", maintain_order="left").select(
        *keys, "coverage", "partial", pl.exclude(*keys, "coverage", "partial"))
    summary = summary.drop(wide).with_columns(**{
        name: pl.Series(values) for name, values in totals.items()}).with_columns(
        metric=pl.lit(config.metric), value=pl.col(config.metric),
        warn_threshold=pl.lit(config.warn), critical_threshold=pl.lit(config.critical),
        status=_status_expr(config),
    )
    n_base, n_cur, n_matched = sides.baseline.height, sides.current.height, joined.height
    return ModelDrift(
        summary=public_segment_columns(summary), classes=public_segment_columns(classes),
        examples=public_segment_columns(_top_examples(per_example, keys, k, config)),
        per_example=public_segment_columns(per_example.drop(*wide, _WINDOW, strict=False)),
        n_baseline=n_base, n_current=n_cur, n_matched=n_matched,
        n_unmatched_baseline=n_base - n_matched, n_unmatched_current=n_cur - n_matched,
        warnings=_unmatched_warning(sides.baseline, sides.current, id_column, n_matched),
        config=config,
    )


def compare_models(config: ModelsConfig, *, window_timezone: str = UTC,
                   min_coverage: float = MIN_COVERAGE) -> ModelDrift:
    """Scan ``config.baseline`` and ``config.current`` (Parquet file, glob or folder) and
    compare them with :func:`compare_outputs`."""
    options = config.storage_options
    return compare_outputs(scan_source(config.baseline, storage_options=options),
                           scan_source(config.current, storage_options=options), config,
                           window_timezone=window_timezone, min_coverage=min_coverage)
