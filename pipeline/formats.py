"""The table and file contracts every stage shares (docs/architecture.md).

Column names of the histogram long format, the statuses a drift or model row can have, and
the names of the files in a run folder. Constants only: no stage logic lives here.
"""

from __future__ import annotations

#: Columns of the histogram long format that are not segment columns.
HISTOGRAM_COLUMNS = ("feature", "bin", "count", "lower", "upper", "window")

#: Statuses of a drift row (drift.parquet), in the order of the ``summary`` counts.
STATUSES = ("ok", "warn", "critical", "insufficient_data", "error")
#: Statuses of a model-output row (models.parquet): there is no per-row ``error``.
MODEL_STATUSES = ("ok", "warn", "critical", "insufficient_data")

#: Files of a run folder.
DRIFT_FILE, ALERTS_FILE = "drift.parquet", "alerts.json"
#: Files of a model comparison (``[models]``) and of KL estimates (``[estimate]``).
MODELS_FILES = {"models": "models.parquet", "classes": "model_classes.parquet",
                "examples": "model_examples.parquet"}
ESTIMATES_FILE = "estimates.parquet"
#: The baseline profile a run built from raw baseline rows.
PROFILE_FILE = "baseline_profile.parquet"
