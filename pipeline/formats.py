"""The table and file contracts every stage shares (docs/architecture.md).

Column names of the histogram long format, the statuses a drift or model row can have, and
the names of the files in a run folder. Constants only: no stage logic lives here.
"""

from __future__ import annotations

from pipeline.config import METRICS, MODEL_METRICS, PER_EXAMPLE_METRICS

#: Columns of the histogram long format that are not segment columns.
HISTOGRAM_COLUMNS = ("feature", "bin", "count", "lower", "upper", "window")

#: Every column of the tables a run writes (drift.parquet and its history rows,
#: models.parquet, model_classes.parquet, model_examples.parquet, estimates.parquet,
#: joint.parquet, resolved.parquet) and of
#: the histogram format. A segment column with one of these names is written as
#: ``segment:<name>`` in every table (pipeline.labels.public_segment_columns). A column
#: added to a table belongs here too (tests/test_segments.py checks it).
TABLE_COLUMNS = frozenset({
    *HISTOGRAM_COLUMNS,
    # drift.parquet (+ history)
    "segment", "coverage", "partial", "reference", "reference_windows", "kind", "n_baseline",
    "n_current", "baseline_unseen", *METRICS, "metric", "value", "effect", "effect_low",
    "effect_high", "warn_threshold", "critical_threshold", "p_value", "q_value", "status",
    "window_status", "reason", "top_bins", "bins", "lifecycle", "run_id", "created_at",
    # models.parquet, model_classes.parquet, model_examples.parquet
    "n", *MODEL_METRICS, "class", "baseline_mean", "current_mean", "kl_contribution",
    "js_contribution", "baseline_predicted_share", "current_predicted_share", "rank",
    *PER_EXAMPLE_METRICS, "baseline_class", "current_class", "baseline_probs",
    "current_probs",
    # trends.parquet, and the history's histograms.parquet
    "statistic", "checked", "expected", "spread", "lower_red", "lower_yellow", "upper_yellow",
    "upper_red", "pull", "n_windows", "light", "start", "layout",
    # estimates.parquet
    "estimator", "direction", "n_tokens", "stderr", "ci_low", "ci_high",
    *(f"k{i}{suffix}" for i in (1, 2, 3) for suffix in ("", "_stderr")),
    # joint.parquet
    "current_rows", "features", "level", "auc", "top_features", "view",
    *(f"{kl}_{suffix}" for kl in ("kl", "reverse_kl") for suffix in ("stderr", "low", "high")),
    # resolved.parquet
    "since", "last_status",
})

#: Statuses of a drift row (drift.parquet), in the order of the ``summary`` counts.
STATUSES = ("ok", "warn", "critical", "insufficient_data", "error")
#: Severity order of row statuses, least severe first (a run's ``worst_status``; the status
#: codes of the Prometheus export are the positions in it).
SEVERITY = ("ok", "insufficient_data", "error", "warn", "critical")
#: Statuses of a model-output row (models.parquet): there is no per-row ``error``.
MODEL_STATUSES = ("ok", "warn", "critical", "insufficient_data")

#: Files of a run folder.
DRIFT_FILE, ALERTS_FILE = "drift.parquet", "alerts.json"
#: Files of a model comparison (``[models]``) and of KL estimates (``[estimate]``).
MODELS_FILES = {"models": "models.parquet", "classes": "model_classes.parquet",
                "examples": "model_examples.parquet"}
ESTIMATES_FILE = "estimates.parquet"
#: Trends with dynamic bounds (``[trends]``, docs/references.md).
TRENDS_FILE = "trends.parquet"
#: The joint drift table (``[joint]``).
JOINT_FILE = "joint.parquet"
#: Every alert episode of feature drift the run resolved (alerts.json lists the first ones).
RESOLVED_FILE = "resolved.parquet"
#: Its columns, all text: the series, the ok window that closed the episode, the episode's
#: first drifting window and its last alert status (as alerts.json's ``resolved`` entries).
RESOLVED_COLUMNS = ("segment", "feature", "reference", "window", "since", "last_status")
#: The baseline profile a run built from raw baseline rows.
PROFILE_FILE = "baseline_profile.parquet"
