"""What a drift run publishes to Prefect, as plain data: artifact keys, table rows, alert events.

No Prefect import here: `flows.flows` hands these to ``create_*_artifact`` and
``emit_event``, and the tests check them without a server.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

import polars as pl

from pipeline.write.reports.summary import sort_rows

#: Event emitted once per critical row of ``alerts.json``; automations trigger on it.
CRITICAL_EVENT = "kl-drift.alert.critical"
#: Rows kept in the table artifact (most severe first); drift.parquet has them all.
MAX_TABLE_ROWS = 1000
TABLE_COLUMNS = ("segment", "feature", "window", "status", "metric", "value", "q_value",
                 "top_bin")
_NOT_KEY = re.compile(r"[^a-z0-9]+")
_MAX_KEY = 100


def artifact_key(kind: str, run_id: str) -> str:
    """Prefect artifact key ``kl-drift-<kind>-<run id>``: lowercase letters, digits, dashes.

    Prefect rejects any other character. A run id that had to change gets a short hash of
    the original, so two run ids never share a key.

    >>> artifact_key("report", "flights-2013")
    'kl-drift-report-flights-2013'
    >>> artifact_key("report", "2013-06-01T00:00Z")
    'kl-drift-report-2013-06-01t00-00z-1a753722'
    """
    cleaned = _NOT_KEY.sub("-", run_id.lower()).strip("-")[:_MAX_KEY].strip("-") or "run"
    if cleaned != run_id:
        cleaned += "-" + hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"kl-drift-{kind}-{cleaned}"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such values become None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def drift_table_rows(drift: pl.DataFrame, *, limit: int = MAX_TABLE_ROWS) -> list[dict[str, Any]]:
    """The table artifact: one row per segment x feature x window, most severe first.

    Parameters
    ----------
    drift : polars.DataFrame
        The run's drift table (``drift.parquet``).
    limit : int
        Rows kept; the report and drift.parquet hold every row.

    Returns
    -------
    list of dict
        Keys `TABLE_COLUMNS`; ``top_bin`` is the bin contributing most to the metric.
    """
    top_bin = pl.col("top_bins").list.first().struct.field("bin")
    rows = sort_rows(drift).head(limit).select(*TABLE_COLUMNS[:-1], top_bin.alias("top_bin"))
    return [{k: _finite(v) for k, v in row.items()} for row in rows.iter_rows(named=True)]


def critical_alert_events(alerts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keyword arguments of ``prefect.events.emit_event``, one per critical alert.

    The resource id is ``kl-drift.feature.<feature>.<segment>``, so an automation can match
    every feature (``kl-drift.feature.*``) or one of them; labels carry the parts
    separately. The payload is the alert as written in ``alerts.json`` plus the run id.

    Parameters
    ----------
    alerts : mapping
        The run's ``alerts.json`` document.
    """
    run_id = str(alerts["run"]["run_id"])
    return [
        {
            "event": CRITICAL_EVENT,
            "resource": {
                "prefect.resource.id": f"kl-drift.feature.{alert['feature']}.{alert['segment']}",
                "prefect.resource.name": f"{alert['feature']} ({alert['segment']})",
                "kl-drift.feature": str(alert["feature"]),
                "kl-drift.segment": str(alert["segment"]),
                "kl-drift.window": str(alert["window"]),
            },
            "related": [{"prefect.resource.id": f"kl-drift.run.{run_id}",
                         "prefect.resource.role": "kl-drift-run"}],
            "payload": {"run_id": run_id, **alert},
        }
        for alert in alerts.get("alerts", [])
        if alert.get("status") == "critical"
    ]
