"""Atomic, idempotent writes into a run folder, and names that are safe to use as paths.

Also the run folder's machine-readable outputs: its Parquet tables and ``alerts.json``
(schema in docs/reports.md, validated by :class:`AlertsDocument`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

_UMASK = os.umask(0)
os.umask(_UMASK)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, *, max_length: int = 80) -> str:
    """Turn any data-derived string (feature name, run id) into one safe path component.

    Path separators, ``..``, control and non-ASCII characters are replaced, so the result
    can never leave the folder it is joined to. A name that had to change gets a short hash
    of the original appended, so two different names never collide.

    >>> safe_filename("dep_delay")
    'dep_delay'
    >>> safe_filename("../../etc/passwd")
    'etc_passwd-3754d6cb'
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_name).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:max_length].strip("._-")
    cleaned = cleaned or "unnamed"
    if cleaned != name:
        cleaned += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then rename it into place.

    Readers see the old file or the new one, never a partial one; a failed write leaves
    the old file untouched and no temp file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def tool_version() -> str:
    """The installed kl-drift version, for run metadata (``0+unknown`` from a source tree)."""
    try:
        return importlib.metadata.version("kl-drift")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def write_parquet(path: str | os.PathLike[str], frame: pl.DataFrame) -> Path:
    """Write ``frame`` to ``path`` as Parquet, atomically."""
    return atomic_write(path, frame.write_parquet)


# --- alerts.json -------------------------------------------------------------------------

DRIFT_FILE, ALERTS_FILE = "drift.parquet", "alerts.json"
#: Files of a model comparison (``[models]``) and of KL estimates (``[estimate]``).
MODELS_FILES = {"models": "models.parquet", "classes": "model_classes.parquet",
                "examples": "model_examples.parquet"}
ESTIMATES_FILE = "estimates.parquet"
SCHEMA_VERSION = 1
STATUSES = ("ok", "warn", "critical", "insufficient_data", "error")
#: Statuses of a model-output row (models.parquet): there is no per-row ``error``.
MODEL_STATUSES = ("ok", "warn", "critical", "insufficient_data")
_ALERT_FIELDS = ("segment", "feature", "window", "status", "metric", "value", "warn_threshold",
                 "critical_threshold", "p_value", "q_value", "n_baseline", "n_current",
                 "top_bins")
_PROBLEM_FIELDS = ("segment", "feature", "window", "status", "reason")


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
            out[key] = json_safe(item)
        if reasons:
            out["null_reasons"] = {**out.get("null_reasons", {}), **reasons}
        return out
    if isinstance(value, list | tuple):
        # Bare numbers in lists have no key to explain: wrap each list item on its own.
        return [None if isinstance(v, float) and not math.isfinite(v) else json_safe(v)
                for v in value]
    return value


def dumps_json(document: Any) -> str:
    """Serialise ``document`` as strict JSON (no NaN/Infinity), after :func:`json_safe`."""
    return json.dumps(json_safe(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def count_statuses(table: pl.DataFrame | None, statuses: tuple[str, ...]) -> dict[str, int]:
    """``{"total": rows, status: rows with it, ...}`` of a table's ``status`` column."""
    counts = {} if table is None else dict(table["status"].value_counts().iter_rows())
    return {"total": 0 if table is None else table.height,
            **{s: counts.get(s, 0) for s in statuses}}


def alerting_rows(table: pl.DataFrame) -> pl.DataFrame:
    """The ``warn``/``critical`` rows: critical first, then larger ``value`` first."""
    return (table.filter(pl.col("status").is_in(["warn", "critical"]))
            .sort([pl.col("status") == "warn", "value"], descending=[False, True],
                  nulls_last=True))


def alerts_document(drift: pl.DataFrame | None, run: Mapping[str, Any],
                    warnings: list[str] | None = None, *,
                    models: Mapping[str, Any] | None = None,
                    estimates: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
    models, estimates : mapping, optional
        The ``models`` block (:func:`pipeline.models.models_block`) and the ``estimates``
        block (:func:`pipeline.estimate.estimates_block`); left out when ``None``.

    Returns
    -------
    dict
        JSON-safe: alerts most severe first (critical, then warn; larger value first),
        problems (error, insufficient_data) in table order.
    """
    alerts, problems = [], []
    if drift is not None:
        alerts = alerting_rows(drift).select(_ALERT_FIELDS).to_dicts()
        problems = (drift.filter(pl.col("status").is_in(["error", "insufficient_data"]))
                    .select(_PROBLEM_FIELDS).to_dicts())
    blocks = {"models": models, "estimates": estimates}
    return json_safe({
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "summary": count_statuses(drift, STATUSES),
        "alerts": alerts,
        "problems": problems,
        "warnings": list(warnings or []),
        **{name: dict(block) for name, block in blocks.items() if block is not None},
    })


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Explained(_Strict):
    null_reasons: dict[str, str] = {}


class TopBin(_Explained):
    """One of the bins contributing most to an alert's metric."""

    bin: str
    contribution: float | None
    baseline_share: float | None
    current_share: float | None


class Alert(_Explained):
    """A ``warn`` or ``critical`` row."""

    segment: str
    feature: str
    window: str
    status: Literal["warn", "critical"]
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


def _check_alerts(summary: _Counts, alerts: list[Any]) -> None:
    """The alerts list holds exactly the summary's warn and critical rows."""
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
    alerts: list[ModelAlert]
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


class AlertsDocument(_Strict):
    """Schema of ``alerts.json`` (schema_version 1); ``model_validate`` checks a file."""

    schema_version: Literal[1]
    run: RunInfo
    summary: Summary
    alerts: list[Alert]
    problems: list[Problem]
    warnings: list[str] = []
    models: ModelsBlock | None = None
    estimates: EstimatesBlock | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AlertsDocument:
        _check_alerts(self.summary, self.alerts)
        if len(self.problems) != self.summary.error + self.summary.insufficient_data:
            raise ValueError("summary error + insufficient_data does not match problems")
        return self
