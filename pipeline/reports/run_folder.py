"""Read and check a run folder's ``drift.parquet`` and ``alerts.json`` for the reports.

Problems become one-line `InputError`s naming the file and what is wrong, so
``kl-drift report RUN_DIR`` can print them and exit 2.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import InputError

DRIFT_FILE = "drift.parquet"
ALERTS_FILE = "alerts.json"
SCHEMA_VERSION = 1
# The drift-table columns the reports read (docs/architecture.md has the full contract).
REPORT_COLUMNS = ("segment", "feature", "window", "n_baseline", "n_current", "metric", "value",
                  "warn_threshold", "critical_threshold", "p_value", "q_value", "status",
                  "reason", "top_bins", "bins")
SUMMARY_KEYS = ("total", "ok", "warn", "critical", "insufficient_data", "error")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path.name} not found; a run folder holds the output of "
                         "`kl-drift run`", source=str(path.parent))


def read_drift(path: Path) -> pl.DataFrame:
    """Load ``drift.parquet`` and check it has the columns the reports need."""
    _require_file(path)
    try:
        drift = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})",
                         source=str(path)) from exc
    missing = [c for c in REPORT_COLUMNS if c not in drift.columns]
    if missing:
        raise InputError("drift table lacks a required column (see docs/reports.md)",
                         source=str(path), column=missing[0])
    return drift


def read_alerts(path: Path) -> dict[str, Any]:
    """Load ``alerts.json`` and check the parts the reports use (see docs/reports.md)."""
    _require_file(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", source=str(path)) from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        version = doc.get("schema_version") if isinstance(doc, dict) else None
        raise InputError(f"expected an alerts document with schema_version {SCHEMA_VERSION}, "
                         f"got {version!r}", source=str(path))
    run, summary = doc.get("run"), doc.get("summary")
    if not isinstance(run, dict) or not isinstance(run.get("run_id"), str):
        raise InputError("'run' must be an object with a string 'run_id'", source=str(path))
    try:
        datetime.fromisoformat(str(run.get("created_at")))
    except ValueError as exc:
        raise InputError(f"'run.created_at' is not an ISO-8601 time: {run.get('created_at')!r}",
                         source=str(path)) from exc
    if not isinstance(summary, dict) or not all(
            isinstance(summary.get(k), int) for k in SUMMARY_KEYS):
        raise InputError(f"'summary' must give an integer count for each of {SUMMARY_KEYS}",
                         source=str(path))
    return doc
