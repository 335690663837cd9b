"""Atomic, idempotent writes into a run folder, and names that are safe to use as paths.

Also the run folder's machine-readable outputs: ``drift.parquet`` and ``alerts.json``
(schema in docs/architecture.md, validated by :class:`AlertsDocument`).
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
SCHEMA_VERSION = 1
STATUSES = ("ok", "warn", "critical", "insufficient_data", "error")
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


def alerts_document(drift: pl.DataFrame, run: Mapping[str, Any],
                    warnings: list[str] | None = None) -> dict[str, Any]:
    """The ``alerts.json`` document of a decided drift table.

    Parameters
    ----------
    drift : pl.DataFrame
        Drift table with final ``status`` (see docs/architecture.md).
    run : mapping
        The ``run`` section: run_id, created_at, tool_version, inputs, config_hash, metric,
        base, config.
    warnings : list of str, optional
        Run-level notes, e.g. threshold patterns that matched no feature.

    Returns
    -------
    dict
        JSON-safe: alerts most severe first (critical, then warn; larger value first),
        problems (error, insufficient_data) in table order.
    """
    counts = dict(drift["status"].value_counts().iter_rows())
    summary = {"total": drift.height, **{s: counts.get(s, 0) for s in STATUSES}}
    alerts = (
        drift.filter(pl.col("status").is_in(["warn", "critical"]))
        .sort([pl.col("status") == "warn", "value"], descending=[False, True], nulls_last=True)
        .select(_ALERT_FIELDS)
    )
    problems = drift.filter(pl.col("status").is_in(["error", "insufficient_data"]))
    return json_safe({
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "summary": summary,
        "alerts": alerts.to_dicts(),
        "problems": problems.select(_PROBLEM_FIELDS).to_dicts(),
        "warnings": list(warnings or []),
    })


def write_run_outputs(run_dir: str | os.PathLike[str], drift: pl.DataFrame,
                      document: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``drift.parquet`` and ``alerts.json`` into ``run_dir``, each atomically.

    The drift table goes first, so ``alerts.json`` never points at a table that is not
    there yet; rewriting a run folder replaces both files.
    """
    folder = Path(run_dir)
    return (write_parquet(folder / DRIFT_FILE, drift),
            atomic_write_text(folder / ALERTS_FILE, dumps_json(document)))


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


class Summary(_Strict):
    """Row counts by status."""

    total: int = Field(ge=0)
    ok: int = Field(ge=0)
    warn: int = Field(ge=0)
    critical: int = Field(ge=0)
    insufficient_data: int = Field(ge=0)
    error: int = Field(ge=0)

    @model_validator(mode="after")
    def _adds_up(self) -> Summary:
        if self.total != sum(getattr(self, s) for s in STATUSES):
            raise ValueError("summary.total must equal the sum of the status counts")
        return self


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


class AlertsDocument(_Strict):
    """Schema of ``alerts.json`` (schema_version 1); ``model_validate`` checks a file."""

    schema_version: Literal[1]
    run: RunInfo
    summary: Summary
    alerts: list[Alert]
    problems: list[Problem]
    warnings: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> AlertsDocument:
        for status in ("warn", "critical"):
            if sum(a.status == status for a in self.alerts) != getattr(self.summary, status):
                raise ValueError(f"summary.{status} does not match the alerts list")
        if len(self.problems) != self.summary.error + self.summary.insufficient_data:
            raise ValueError("summary error + insufficient_data does not match problems")
        return self
