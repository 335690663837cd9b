"""Joint drift: KL between the whole baseline and current distributions, from a classifier.

Per segment x window, a classifier learns to tell baseline rows (the profile's sample) from
the window's rows (a sample of at most ``joint.current_rows``). Its probability c(x) that a
row is current gives the density ratio: log p_current(x) / p_baseline(x) = logit c(x) -
log(n_current / n_baseline), the class counts being those of the data the probabilities are
calibrated on. The per-row log ratios of both samples feed
:func:`kl_metrics.kl_estimate_two_sample`: KL(current ‖ baseline) and the reverse, each with a
standard error and an interval. Everything is cross-fitted: the rows are split into
``folds`` folds and each fold is scored by a model that never saw it, so no score is
in-sample.

The model of a fold: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier:
native missing values and categories; early stopping on a held-out calibration split of the
training folds) and a linear logistic term on the numeric features (winsorised and
standardised), stacked by a logistic regression fitted on the calibration split. The
stacker is the calibration (Platt scaling, with the linear term as a second input): its
intercept absorbs the calibration split's class balance, which the prior correction
removes exactly, and its slopes only rescale the scores. Calibrated probabilities are
P(current | score), so the estimate is the KL between the two distributions of the score:
never more than the true KL (data-processing inequality), equal when the score carries all
the ratio's information. A misfit classifier therefore biases KL down, never up.

Significance: within a held-out fold, baseline and current rows are exchangeable under "no
drift" given the model (trained on other folds), so the Mann-Whitney U of the fold's scores
has its exact permutation null (normal approximation with tie correction). The p-value is
Bonferroni over the folds (``folds`` x the smallest fold p), valid whatever the dependence
between folds, and needs no refit. Explanation: permutation importance (drop of the
held-out AUC when one feature is shuffled) on rows of one held-out fold; the top two
features give a 2-D baseline-vs-current view (binned counts) for the reports.
Everything is seeded per segment x window. Column contract: docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import mannwhitneyu, norm, rankdata

from kl_metrics import kl_estimate_two_sample
from pipeline.bins.layout import FeatureBins, bin_label, feature_bins
from pipeline.bins.row_sample import SAMPLE_KEY, RowSample, feature_exprs, sample_rows
from pipeline.config import JointConfig
from pipeline.errors import ConfigError, InputError
from pipeline.labels import (
    MISSING,
    OTHER,
    public_segment_columns,
    segment_column,
    segment_label_expr,
    window_label_expr,
)
from pipeline.read.sources import collect_schema
from pipeline.windows import UTC, timestamp_expr, window_start_expr

#: Log ratios are clipped to +-this (r up to 5e8): beyond, the samples cannot support them
#: and exp() of the baseline rows' ratios would dominate the estimate.
LOG_RATIO_CAP = 20.0
_CALIBRATION_SHARE = 0.3  # of each training set: early stopping and the stacker
_WINSOR = (0.005, 0.995)  # quantiles numeric features are clipped to in the linear term
_MAX_CATEGORIES = 254  # HistGradientBoosting takes category codes below max_bins = 255
_HUGE = np.finfo(np.float64).max
_EMPTY = pl.DataFrame()

#: Columns of joint.parquet after the segment columns (docs/architecture.md).
JOINT_SCHEMA: dict[str, Any] = {
    "segment": pl.String, "window": pl.String,
    "n_baseline": pl.Int64, "n_current": pl.Int64, "current_rows": pl.Int64,
    "features": pl.List(pl.String),
    "kl": pl.Float64, "kl_stderr": pl.Float64, "kl_low": pl.Float64, "kl_high": pl.Float64,
    "reverse_kl": pl.Float64, "reverse_kl_stderr": pl.Float64,
    "reverse_kl_low": pl.Float64, "reverse_kl_high": pl.Float64,
    "level": pl.Float64, "auc": pl.Float64, "p_value": pl.Float64,
    "metric": pl.String, "value": pl.Float64,
    "warn_threshold": pl.Float64, "critical_threshold": pl.Float64,
    "status": pl.String, "reason": pl.String,
    "top_features": pl.List(pl.Struct({"feature": pl.String, "importance": pl.Float64})),
    "view": pl.Struct({"x": pl.String, "y": pl.String, "x_bins": pl.List(pl.String),
                       "y_bins": pl.List(pl.String), "baseline": pl.List(pl.Float64),
                       "current": pl.List(pl.Float64)}),
}


def _sklearn() -> tuple[Any, Any, Any]:
    """The scikit-learn classes used and threadpoolctl's limits, imported only when a joint
    check runs (scikit-learn is the optional extra ``joint``); if missing, a one-line
    ConfigError saying what to install."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ConfigError("joint: the joint drift check needs scikit-learn; install it with "
                          "pip install 'kl-drift[joint]' (or remove the [joint] section)"
                          ) from None
    return HistGradientBoostingClassifier, LogisticRegression, threadpool_limits


# --- rows ---------------------------------------------------------------------------------
def joint_features(profile_features: Sequence[str], config: JointConfig,
                   wanted: Sequence[str] | None = None) -> list[str]:
    """The features the classifier sees, in profile order.

    ``joint.features`` (default: ``wanted``, the run's features, else every profile feature)
    without ``joint.exclude``.

    Raises
    ------
    ConfigError
        ``joint.features`` names a feature the profile does not have, or nothing is left.
    """
    unknown = [f for f in config.features or () if f not in profile_features]
    if unknown:
        raise ConfigError(f"joint.features: {unknown[0]!r} is not a feature of the baseline "
                          f"profile (it has {', '.join(profile_features)})")
    chosen = config.features if config.features is not None else wanted
    features = [f for f in profile_features
                if (chosen is None or f in chosen) and f not in config.exclude]
    if not features:
        raise ConfigError("joint.features: no feature left for the joint check; check "
                          "joint.features and joint.exclude")
    return features


def sample_current(raw: pl.LazyFrame, layout: pl.DataFrame, features: Sequence[str], *,
                   timestamp: str | None, period: str | None, segments: Sequence[str],
                   size: int, seed: int, source: str, window_timezone: str = UTC
                   ) -> tuple[RowSample, list[str]]:
    """A sample of at most ``size`` rows of each segment x window, in one streamed pass.

    Windows are cut as binning cuts them (:mod:`pipeline.windows`) and labelled as in
    drift.parquet; text timestamps that do not parse fall in the ``__missing__`` window
    (binning the same rows for feature drift rejects them first).

    Returns the sample (groups: the segment columns, under their private names, and
    ``window``) and the features the current data lacks (left out of the check).

    Raises
    ------
    InputError
        A segment or timestamp column the current data lacks.
    """
    schema = collect_schema(raw, source)
    for column in (*segments, *([timestamp] if timestamp else [])):
        if column not in schema:
            raise InputError("column not found in the current data; check the timestamp/"
                             "segment settings", source=source, column=column)
    window = window_label_expr(None)
    if timestamp is not None:
        values, _ = timestamp_expr(timestamp, schema[timestamp], period=period,
                                   timezone=window_timezone, source=source)
        start = window_start_expr(values, period)
        window = window_label_expr(raw.select(start).collect_schema()["window"], start)
    present = [f for f in features if f in schema]
    private = [segment_column(s) for s in segments]
    query = raw.select(*(pl.col(s).cast(pl.String).alias(p)
                         for s, p in zip(segments, private, strict=True)),
                       window, *feature_exprs(layout, present))
    sample = sample_rows(query, groups=[*private, "window"], size=size, seed=seed,
                         source=source)
    return sample, [f for f in features if f not in schema]


# --- design matrix ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    """Rows as the classifier sees them: numbers, category codes (NaN = missing)."""

    specs: list[FeatureBins]

    @property
    def categorical(self) -> np.ndarray:
        return np.array([s.kind == "categorical" for s in self.specs])

    def exprs(self) -> list[pl.Expr]:
        out = []
        for spec in self.specs:
            if spec.kind == "numeric":
                out.append(pl.col(spec.name).cast(pl.Float64))
                continue
            kept = spec.categories[:_MAX_CATEGORIES]
            # profile categories by index, the rest __other__, null stays missing
            out.append(pl.col(spec.name).replace_strict(
                kept, range(len(kept)), default=len(kept), return_dtype=pl.Float64))
        return out

    def matrix(self, rows: pl.DataFrame) -> np.ndarray:
        x = rows.select(self.exprs()).to_numpy().astype(np.float64, copy=False)
        # the trees refuse infinities: keep them as the extreme values they are
        return np.nan_to_num(x, nan=np.nan, posinf=_HUGE, neginf=-_HUGE)


# --- the classifier -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Linear:
    """The linear logistic term: numeric features winsorised and standardised.

    It scores complete rows only (every numeric feature present): imputing a missing value
    would break the contrasts a linear model learns between correlated features (say air
    time against distance) and give the row an absurd score. The trees model missingness;
    the stacker is told which rows have a linear score.
    """

    model: Any
    numeric: np.ndarray  # which columns are numeric
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, numeric: np.ndarray,
            logistic: Any) -> _Linear | None:
        values = x[:, numeric]
        complete = ~np.isnan(values).any(axis=1)
        if min(y[complete].sum(), (1 - y[complete]).sum()) < 10:
            return None  # too few complete rows of a side to fit it
        values, y = values[complete], y[complete]
        low, high = np.quantile(values, _WINSOR, axis=0)
        clipped = np.clip(values, low, high)
        sd = clipped.std(axis=0)
        scaled = cls(None, numeric, low, high, clipped.mean(axis=0), np.where(sd > 0, sd, 1.0))
        model = logistic(C=1e4, max_iter=1000).fit(scaled.inputs(values), y)
        return replace(scaled, model=model)

    def inputs(self, values: np.ndarray) -> np.ndarray:
        return (np.clip(values, self.low, self.high) - self.mean) / self.sd

    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The linear score (0 where a numeric value is missing) and which rows have one."""
        values = x[:, self.numeric]
        complete = ~np.isnan(values).any(axis=1)
        score = self.model.decision_function(self.inputs(np.nan_to_num(values)))
        return np.where(complete, score, 0.0), complete.astype(np.float64)


@dataclass(frozen=True)
class _Model:
    """One fold's ratio model: trees and the linear term, stacked and calibrated."""

    trees: Any
    linear: _Linear | None
    stacker: Any
    bounds: tuple[np.ndarray, np.ndarray]  # the stacker's inputs seen in calibration
    prior_logit: float  # log(n_current / n_baseline) of the calibration split

    @staticmethod
    def stack_inputs(trees: Any, linear: _Linear | None, x: np.ndarray) -> np.ndarray:
        parts = [trees.decision_function(x)]
        if linear is not None:
            parts.extend(linear.scores(x))
        return np.column_stack(parts)

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        """log p_current(x) / p_baseline(x), clipped to +-LOG_RATIO_CAP.

        The stacker's inputs are kept within the range they had in calibration: the
        calibration map is never extrapolated.
        """
        inputs = np.clip(self.stack_inputs(self.trees, self.linear, x), *self.bounds)
        logit = self.stacker.decision_function(inputs)
        return np.clip(logit - self.prior_logit, -LOG_RATIO_CAP, LOG_RATIO_CAP)


def _stratified_split(y: np.ndarray, share: float, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``y`` split in two, ``share`` of each class (at least one) in the second."""
    held = []
    for label in (0, 1):
        where = np.flatnonzero(y == label)
        held.append(rng.choice(where, max(1, round(share * len(where))), replace=False))
    second = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), second), second


def _fit(x: np.ndarray, y: np.ndarray, categorical: np.ndarray, config: JointConfig,
         seed: int) -> _Model:
    """Fit one fold's ratio model on training rows ``x``, ``y`` (1 = current)."""
    trees_class, logistic, _ = _sklearn()
    rng = np.random.default_rng(seed)
    fit, cal = _stratified_split(y, _CALIBRATION_SHARE, rng)
    trees = trees_class(
        learning_rate=config.learning_rate, max_iter=config.max_iter,
        max_depth=config.max_depth, categorical_features=categorical, early_stopping=True,
        n_iter_no_change=10, random_state=seed % 2**32)
    trees.fit(x[fit], y[fit], X_val=x[cal], y_val=y[cal])
    numeric = ~categorical
    linear = _Linear.fit(x[fit], y[fit], numeric, logistic) if numeric.any() else None
    inputs = _Model.stack_inputs(trees, linear, x[cal])
    stacker = logistic(C=1e4, max_iter=1000).fit(inputs, y[cal])
    prior = math.log(y[cal].sum() / (len(cal) - y[cal].sum()))
    return _Model(trees, linear, stacker, (inputs.min(axis=0), inputs.max(axis=0)), prior)


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``y`` (ties count half)."""
    ranks = rankdata(scores)
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass(frozen=True)
class _CrossFit:
    log_ratio: np.ndarray  # every row's out-of-fold log ratio
    p_value: float
    auc: float
    importance: np.ndarray  # per feature


def _folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number per row, each class spread evenly over the folds at random."""
    fold = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):
        where = np.flatnonzero(y == label)
        fold[rng.permutation(where)] = np.arange(len(where)) % k
    return fold


def _cross_fit(x: np.ndarray, y: np.ndarray, categorical: np.ndarray, config: JointConfig,
               seed: int) -> _CrossFit:
    rng = np.random.default_rng(seed)
    fold = _folds(y, config.folds, rng)
    log_ratio = np.empty(len(y))
    p_values = []
    first: tuple[_Model, np.ndarray] | None = None
    for k in range(config.folds):
        test = fold == k
        model = _fit(x[~test], y[~test], categorical, config, seed + 1 + k)
        log_ratio[test] = model.log_ratio(x[test])
        scores, labels = log_ratio[test], y[test]
        p_values.append(mannwhitneyu(scores[labels == 1], scores[labels == 0],
                                     alternative="greater", method="asymptotic").pvalue)
        if first is None:
            first = (model, np.flatnonzero(test))
    assert first is not None  # folds >= 2
    model, held = first
    importance = _importance(model, x[held], y[held], config, rng)
    return _CrossFit(log_ratio, min(1.0, config.folds * float(np.min(p_values))),
                     _auc(log_ratio, y), importance)


def _importance(model: _Model, x: np.ndarray, y: np.ndarray, config: JointConfig,
                rng: np.random.Generator) -> np.ndarray:
    """Drop of the held-out AUC when each feature is shuffled (mean over the repeats)."""
    if len(y) > config.importance_rows:
        _, keep = _stratified_split(y, config.importance_rows / len(y), rng)
        x, y = x[keep], y[keep]
    base = _auc(model.log_ratio(x), y)
    drops = np.zeros(x.shape[1])
    shuffled = x.copy()
    for j in range(x.shape[1]):
        for _ in range(config.importance_repeats):
            shuffled[:, j] = rng.permutation(x[:, j])
            drops[j] += base - _auc(model.log_ratio(shuffled), y)
        shuffled[:, j] = x[:, j]
    return drops / config.importance_repeats


# --- the 2-D view -------------------------------------------------------------------------
def _view_axis(spec: FeatureBins, baseline: np.ndarray, current: np.ndarray, bins: int
               ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bin labels and bin codes of both sides for one axis of the view.

    Numeric: quantile bins of the baseline (open tails); categorical: the ``bins - 1``
    categories most frequent in the baseline, then ``__other__``. ``__missing__`` last.
    Bins empty on both sides are dropped.
    """
    if spec.kind == "numeric":
        finite = baseline[np.isfinite(baseline)]
        levels = np.linspace(0, 1, bins + 1)[1:-1]
        # edges rounded to 3 significant digits: readable labels, same picture
        edges = (np.unique([float(f"{e:.3g}") for e in np.quantile(finite, levels)])
                 if finite.size else np.empty(0))
        bounds = np.concatenate([[-np.inf], edges, [np.inf]]).tolist()
        labels = [bin_label(lo, hi) for lo, hi in itertools.pairwise(bounds)]

        def codes(v: np.ndarray) -> np.ndarray:
            return np.searchsorted(edges, v, side="right")
    else:
        names = [*spec.categories[:_MAX_CATEGORIES], OTHER]
        valid = baseline[~np.isnan(baseline)].astype(np.int64)
        seen = np.bincount(valid, minlength=len(names))
        top = [int(c) for c in np.argsort(-seen, kind="stable")[:bins - 1] if seen[c] > 0]
        labels = [*(names[c] for c in top), OTHER]
        lookup = np.full(len(names), len(top))
        lookup[top] = np.arange(len(top))

        def codes(v: np.ndarray) -> np.ndarray:
            return lookup[np.nan_to_num(v).astype(np.int64)]
    missing = len(labels)
    b, c = (np.where(np.isnan(v), missing, codes(v)) for v in (baseline, current))
    labels.append(MISSING)
    used = np.union1d(b, c)
    remap = np.full(len(labels), -1)
    remap[used] = np.arange(len(used))
    return [labels[i] for i in used], remap[b], remap[c]


def _view(specs: list[FeatureBins], pair: tuple[int, int], baseline: np.ndarray,
          current: np.ndarray, bins: int) -> dict[str, Any]:
    """Binned 2-D counts of both sides on a feature pair (row-major: x bins, then y)."""
    axes = [_view_axis(specs[j], baseline[:, j], current[:, j], bins) for j in pair]
    (x_bins, bx, cx), (y_bins, by, cy) = axes
    cells = len(x_bins) * len(y_bins)
    return {"x": specs[pair[0]].name, "y": specs[pair[1]].name, "x_bins": x_bins,
            "y_bins": y_bins,
            "baseline": np.bincount(bx * len(y_bins) + by, minlength=cells).astype(float).tolist(),
            "current": np.bincount(cx * len(y_bins) + cy, minlength=cells).astype(float).tolist()}


# --- per segment x window -----------------------------------------------------------------
def _group_seed(seed: int, key: str) -> int:
    """A seed of its own for each segment x window, whatever else the run checks."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _check(design: _Design, baseline: np.ndarray, current: np.ndarray,
           config: JointConfig, seed: int, base: float | None) -> dict[str, Any]:
    """The measured columns of one segment x window with enough rows."""
    x = np.vstack([baseline, current])
    y = np.concatenate([np.zeros(len(baseline), np.int64), np.ones(len(current), np.int64)])
    fitted = _cross_fit(x, y, design.categorical, config, seed)
    lam_current, lam_baseline = fitted.log_ratio[y == 1], fitted.log_ratio[y == 0]
    z = float(norm.ppf(0.5 + config.level / 2))
    row: dict[str, Any] = {"auc": fitted.auc, "p_value": fitted.p_value}
    for name, direction in (("kl", "forward"), ("reverse_kl", "reverse")):
        est = kl_estimate_two_sample(lam_current, lam_baseline, direction=direction,
                                     base=base)
        value, stderr = float(est.value), float(est.stderr)
        row |= {name: value, f"{name}_stderr": stderr, f"{name}_low": value - z * stderr,
                f"{name}_high": value + z * stderr}
    order = np.argsort(-fitted.importance, kind="stable")
    row["top_features"] = [{"feature": design.specs[j].name,
                            "importance": float(fitted.importance[j])} for j in order]
    if len(order) >= 2:
        row["view"] = _view(design.specs, (int(order[0]), int(order[1])), baseline, current,
                            config.view_bins)
    return row


def measure_joint(baseline: RowSample, current: RowSample, layout: pl.DataFrame,
                  features: Sequence[str], config: JointConfig, *,
                  base: float | None = 2.0) -> pl.DataFrame:
    """Joint drift of every segment x window of ``current`` against its baseline rows.

    Parameters
    ----------
    baseline : RowSample
        Baseline rows (the profile's sample), grouped by the profile's segment columns;
        pooled here to those of ``current`` (a segment column of ``current`` it lacks is
        compared with the baseline pooled over it, as ``input.pool_segments`` does).
    current : RowSample
        Current rows grouped by segment columns and ``window`` (:func:`sample_current`).
    layout : polars.DataFrame
        The profile's bin layout: feature kinds and the categories codes refer to.
    features : sequence of str
        Features the classifier uses (:func:`joint_features`; all in both samples).
    config : JointConfig
    base : float, optional
        Log base of the KL values and thresholds (the run's ``drift.base``); None: nats.

    Returns
    -------
    polars.DataFrame
        One row per segment x window: the segment columns (their own names, or
        ``segment:<name>`` for a name the run's tables use), then :data:`JOINT_SCHEMA`, with
        ``p_value`` but not yet ``q_value`` (:func:`pipeline.decide.joint.decide_joint`).
        ``status`` is null for rows that were tested, ``insufficient_data`` (fewer than
        ``min_rows`` rows on a side) or ``error`` (no baseline rows for the segment)
        otherwise, with a ``reason``.

    Raises
    ------
    ConfigError
        scikit-learn is not installed.
    """
    _, _, threadpool_limits = _sklearn()
    segments = [g for g in current.groups if g != "window"]
    # segments the baseline sample lacks are compared with its pool over the others
    kept = [g for g in segments if g in baseline.groups]
    at = [segments.index(g) for g in kept]
    design = _Design([s for s in feature_bins(layout) if s.name in features])
    pooled = baseline.pooled(kept).collect()
    by_segment = (pooled.partition_by(kept, as_dict=True, include_key=False) if kept
                  else {(): pooled})
    groups = current.collect().partition_by([*segments, "window"], as_dict=True,
                                            include_key=False)
    totals = current.totals.rename({"rows": "current_rows"})
    rows = []
    with threadpool_limits(limits=config.threads):
        for values, here in sorted(groups.items(), key=lambda item: str(item[0])):
            key = dict(zip([*segments, "window"], values, strict=True))
            there = by_segment.get(tuple(values[i] for i in at), _EMPTY)
            rows.append(_one_group(key, there, here, design, config, base))
    out = pl.DataFrame(rows, schema={**dict.fromkeys(segments, pl.String), **JOINT_SCHEMA})
    labelled = out.with_columns(segment_label_expr(segments))
    table = (labelled.drop("current_rows")
             .join(totals, on=[*segments, "window"], how="left", nulls_equal=True)
             .select(out.columns).sort(["segment", "window"]))
    return public_segment_columns(table)


def _one_group(key: dict[str, Any], there: pl.DataFrame, here: pl.DataFrame,
               design: _Design, config: JointConfig, base: float | None) -> dict[str, Any]:
    """One segment x window: its baseline rows ``there``, current rows ``here``."""
    names = [s.name for s in design.specs]
    row: dict[str, Any] = {**key, "n_baseline": there.height, "n_current": here.height,
                           "features": names, "level": config.level, "metric": "kl",
                           "warn_threshold": config.warn,
                           "critical_threshold": config.critical}
    if there.height == 0:
        return row | {"status": "error", "reason": "no baseline rows for this segment in the "
                      "profile's sample"}
    short = [f"{side}={n} < min_rows={config.min_rows}" for side, n in
             (("n_current", here.height), ("n_baseline", there.height)) if n < config.min_rows]
    if short:
        return row | {"status": "insufficient_data", "reason": "; ".join(short)}
    seed = _group_seed(config.seed, repr(sorted(key.items())))
    measured = _check(design, design.matrix(there.sort(SAMPLE_KEY)),
                      design.matrix(here.sort(SAMPLE_KEY)), config, seed, base)
    return row | measured | {"value": measured["kl"]}
