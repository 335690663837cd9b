"""The run folder: its files written together, and read back (checked) for the reports.

Writing: the tables, then ``alerts.json``, each atomically. Reading: ``alerts.json`` says
which parts the run checked: feature drift (``drift.parquet``; absent only in a run without
features, whose ``summary.total`` is 0 and which has a ``models`` or ``estimates`` block),
model outputs (its ``models`` block: the three ``MODELS_FILES``) and estimates (its
``estimates`` block: ``estimates.parquet``). Problems become one-line `InputError`s naming
the file and what is wrong, so ``kl-drift report RUN_DIR`` can print them and exit 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from pipeline.errors import InputError
from pipeline.files import atomic_write_text, write_parquet
from pipeline.formats import ALERTS_FILE, DRIFT_FILE, ESTIMATES_FILE, MODELS_FILES
from pipeline.measure.models import ModelDrift
from pipeline.write.documents import SCHEMA_VERSION, AlertsDocument, dumps_json

# The columns the reports read of each table (docs/architecture.md, docs/models.md and
# docs/estimators.md have the full contracts).
REPORT_COLUMNS = ("segment", "feature", "window", "n_baseline", "n_current", "metric", "value",
                  "warn_threshold", "critical_threshold", "p_value", "q_value", "status",
                  "reason", "top_bins", "bins")
MODEL_COLUMNS = {
    "models": ("segment", "window", "n", "js_distance_mean", "js_distance_p95",
               "js_distance_max", "flip_rate", "metric", "value", "status"),
    "classes": ("segment", "window", "class", "baseline_mean", "current_mean",
                "baseline_predicted_share", "current_predicted_share"),
    "examples": ("segment", "window", "rank", "baseline_class", "current_class",
                 "baseline_probs", "current_probs"),
}
ESTIMATE_COLUMNS = ("segment", "window", "estimator", "n", "value", "stderr", "ci_low",
                    "ci_high")


@dataclass(frozen=True)
class ModelTables:
    """The model comparison of a run: its alerts.json block and its three tables."""

    block: dict[str, Any]
    summary: pl.DataFrame  # models.parquet
    classes: pl.DataFrame  # model_classes.parquet
    examples: pl.DataFrame  # model_examples.parquet


@dataclass(frozen=True)
class RunFolder:
    """Everything the reports show of a run; a part the run did not check is ``None``."""

    alerts: dict[str, Any]
    drift: pl.DataFrame | None
    models: ModelTables | None
    estimates: pl.DataFrame | None


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path.name} not found; a run folder holds the output of "
                         "`kl-drift run`", source=str(path.parent))


def read_table(path: Path, columns: tuple[str, ...], *, skip: tuple[str, ...] = ()
               ) -> pl.DataFrame:
    """Load one Parquet table of the run folder and check it has ``columns``.

    Columns in ``skip`` are checked but not loaded (the reports load a few rows of the
    drift table's large ``bins`` column themselves).
    """
    _require_file(path)
    try:
        names = list(pl.read_parquet_schema(path))
        table = pl.read_parquet(path, columns=[c for c in names if c not in skip])
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})",
                         source=str(path)) from exc
    missing = [c for c in columns if c not in names]
    if missing:
        raise InputError(f"{path.name} lacks a required column (see docs/reports.md)",
                         source=str(path), column=missing[0])
    return table


def read_drift(path: Path, *, bins: bool = True) -> pl.DataFrame:
    """Load ``drift.parquet`` (without its ``bins`` column unless ``bins``) and check it has
    the columns the reports need."""
    return read_table(path, REPORT_COLUMNS, skip=() if bins else ("bins",))


def read_run(run_dir: Path, *, bins: bool = True) -> RunFolder:
    """Read ``alerts.json`` and every table of the parts it says the run checked.

    ``bins=False`` leaves the drift table's per-bin lists on disk (`read_bins` loads the
    rows a report shows): at 500,000 rows they are most of its memory.
    """
    alerts = read_alerts(run_dir / ALERTS_FILE)
    block = alerts.get("models")
    models = None
    if block is not None:
        # The examples table also has the id column and the ranking metric, named by block.
        columns = {**MODEL_COLUMNS, "examples": (*MODEL_COLUMNS["examples"],
                                                 block["id_column"], block["top_by"])}
        models = ModelTables(block, *(read_table(run_dir / MODELS_FILES[name], columns[name])
                                      for name in ("models", "classes", "examples")))
    has_estimates = alerts.get("estimates") is not None
    features = alerts["summary"]["total"] > 0 or (block is None and not has_estimates)
    return RunFolder(
        alerts=alerts,
        drift=read_drift(run_dir / DRIFT_FILE, bins=bins) if features else None,
        models=models,
        estimates=(read_table(run_dir / ESTIMATES_FILE, ESTIMATE_COLUMNS)
                   if has_estimates else None))


def read_bins(path: Path, rows: pl.Series, *, chunk: int = 50_000) -> pl.Series:
    """The ``bins`` lists of some rows of a ``drift.parquet`` file, in the order of ``rows``.

    Reads the column ``chunk`` rows at a time, and only the chunks holding a row asked for:
    memory holds one chunk and the rows asked for, not the whole column (at 500,000 rows of
    20 bins the column alone takes about 1.5 GB in memory).
    """
    wanted = pl.DataFrame({"_row": rows.cast(pl.Int64)}).with_row_index("_order")
    parts = []
    for (first,), group in wanted.group_by(pl.col("_row") // chunk, maintain_order=True):
        part = (pl.scan_parquet(path, low_memory=True).select("bins")
                .slice(int(first) * chunk, chunk).collect())
        parts.append(group.select("_order", part["bins"].gather(group["_row"] - first * chunk)))
    if not parts:
        return pl.Series("bins", [], dtype=pl.Null)
    return pl.concat(parts).sort("_order")["bins"]


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


def write_run_outputs(run_dir: str | os.PathLike[str],
                      tables: Mapping[str, pl.DataFrame | None],
                      document: Mapping[str, Any]) -> list[Path]:
    """Write a run's Parquet tables, then its ``alerts.json``, into ``run_dir``, atomically.

    Parameters
    ----------
    run_dir : path
        The run folder.
    tables : mapping of str to DataFrame or None
        File name -> table. ``None`` deletes that file: a rerun of the same run id without
        that part must not leave a stale table behind.
    document : mapping
        The ``alerts.json`` document, written last so it never points at a table that is
        not there yet.

    Returns
    -------
    list of pathlib.Path
        The files written, ``alerts.json`` last.
    """
    folder = Path(run_dir)
    written = []
    for name, table in tables.items():
        if table is None:
            (folder / name).unlink(missing_ok=True)
        else:
            written.append(write_parquet(folder / name, table))
    return [*written, atomic_write_text(folder / ALERTS_FILE, dumps_json(document))]


def model_tables(result: ModelDrift) -> dict[str, pl.DataFrame]:
    """The run-folder files of a comparison: file name -> table (``MODELS_FILES``)."""
    tables = {"models": result.summary, "classes": result.classes, "examples": result.examples}
    return {MODELS_FILES[name]: table for name, table in tables.items()}
