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
from pydantic import ValidationError

from pipeline.errors import InputError
from pipeline.outputs import SCHEMA_VERSION, AlertsDocument

# The drift-table columns the reports read (docs/architecture.md has the full contract).
REPORT_COLUMNS = ("segment", "feature", "window", "n_baseline", "n_current", "metric", "value",
                  "warn_threshold", "critical_threshold", "p_value", "q_value", "status",
                  "reason", "top_bins", "bins")


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
    """Load ``alerts.json`` and validate it against `AlertsDocument` (docs/reports.md)."""
    _require_file(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        AlertsDocument.model_validate(doc)
        datetime.fromisoformat(doc["run"]["created_at"])  # the across-runs plot orders by it
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", source=str(path)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise InputError(f"not a valid alerts document (schema_version {SCHEMA_VERSION}): "
                         f"{where}: {first['msg']}", source=str(path)) from exc
    except ValueError as exc:
        raise InputError(f"run.created_at is not an ISO-8601 time: {exc}",
                         source=str(path)) from exc
    return doc
