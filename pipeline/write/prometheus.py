"""A run's verdicts as Prometheus gauges: a node-exporter textfile and a Pushgateway push.

Drift is graphed and alerted on in Grafana, so ``[export.prometheus]`` turns a run into a
small, bounded set of gauges (docs/monitoring.md#prometheus-and-grafana):

- one series per segment x feature, for its latest window (the latest complete one when
  the run has complete windows, so a day still filling up does not hide yesterday's
  verdict): the alert metric, its effect (what the thresholds judge), the thresholds, the
  q-value and the status as a number (:data:`STATUS_CODES`), plus the worst status over
  the run's windows and the start of the window shown. At most ``max_series`` series,
  most severe first; there is never one series per window, and a window's label is never
  a label (its start is a value);
- run-level counts: rows by status and alerts by lifecycle (``changes`` of alerts.json),
  for feature drift and model outputs (``part``), the series left out by the cap, and the
  run's time.

Every series carries ``monitor``. The Pushgateway grouping key is ``{job, monitor}``: each
run of a monitor replaces the metrics of its previous run (a key per run would pile up on
the Pushgateway forever). The textfile is replaced atomically (pipeline.files).
"""

from __future__ import annotations

import errno
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import PrometheusConfig
from pipeline.errors import OutputError
from pipeline.files import atomic_write_text
from pipeline.formats import SEVERITY
from pipeline.labels import MISSING
from pipeline.read.location import redact

#: A status as a gauge value: its position in the severity order (ok 0 ... critical 4).
STATUS_CODES = {status: code for code, status in enumerate(SEVERITY)}
LIFECYCLES = ("new", "ongoing", "resolved")
SERIES = ("monitor", "segment", "feature")
#: Every metric the export writes, with its help text (docs/grafana-dashboard.json queries
#: only these).
METRICS = {
    "kl_drift_value": "Alert metric (label metric) of the latest window of a segment x "
                      "feature",
    "kl_drift_effect": "Effect of that window: the alert metric between the populations "
                       "(small-sample bias removed), which the thresholds judge",
    "kl_drift_warn_threshold": "Warn threshold of the effect for that window",
    "kl_drift_critical_threshold": "Critical threshold of the effect for that window",
    "kl_drift_q_value": "Benjamini-Hochberg q-value of that window",
    "kl_drift_status": "Status of that window: 0 ok, 1 insufficient_data, 2 error, 3 warn, "
                       "4 critical",
    "kl_drift_worst_status": "Worst status over the run's windows of the segment x feature "
                             "(same codes)",
    "kl_drift_window_start_timestamp_seconds": "Start of the window the series show (Unix "
                                               "time)",
    "kl_drift_rows": "Rows of the run by part (features, models) and status",
    "kl_drift_alerts": "Alerts of the run by part and lifecycle (new, ongoing, resolved)",
    "kl_drift_series": "Segment x feature series by state: exported, or omitted by "
                       "export.prometheus.max_series",
    "kl_drift_last_run_timestamp_seconds": "When the run started (Unix time)",
}


def latest_windows(drift: pl.DataFrame, max_series: int) -> tuple[pl.DataFrame, int]:
    """One row per segment x feature, most severe first, at most ``max_series``.

    The row is the series' latest complete window (its latest window when none is complete;
    rows without a timestamp only when there is nothing else), with ``worst`` = the highest
    status code over all its windows. Returns the rows and how many series were left out.

    Examples
    --------
    >>> drift = pl.DataFrame({"segment": "all", "feature": "x", "window": ["w1", "w2", "w3"],
    ...                       "partial": [False, False, True], "value": [0.3, 0.1, 0.2],
    ...                       "status": ["critical", "ok", "insufficient_data"]})
    >>> rows, omitted = latest_windows(drift, 10)
    >>> rows.select("window", "status", "worst").rows(), omitted
    ([('w2', 'ok', 4)], 0)
    """
    code = pl.col("status").replace_strict(STATUS_CODES, default=STATUS_CODES["error"],
                                           return_dtype=pl.Int8)
    partial = (pl.col("partial").fill_null(False) if "partial" in drift.columns
               else pl.lit(False))
    # sorted so that the last row of a series is the one shown
    latest = (drift.with_columns(worst=code.max().over("segment", "feature"),
                                 _code=code, _partial=partial,
                                 _missing=pl.col("window") == MISSING)
              .sort("segment", "feature", "_missing", "_partial", "window",
                    descending=[False, False, True, True, False])
              .group_by("segment", "feature", maintain_order=True).last())
    ranked = latest.sort(["worst", "_code", "value"], descending=True, nulls_last=True)
    return ranked.head(max_series).drop("_code", "_partial", "_missing"), max(
        0, ranked.height - max_series)


def _window_start(label: str) -> float | None:
    """A window label's start as Unix time (naive labels are UTC); None for other labels."""
    try:
        start = datetime.fromisoformat(label)
    except ValueError:
        return None
    return (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()


def _gauge(name: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name], labels=list(labels))


def metric_families(drift: pl.DataFrame | None, alerts: Mapping[str, Any], *, monitor: str,
                    max_series: int, models: pl.DataFrame | None = None) -> list[Metric]:
    """The gauges of one run (see the module docstring).

    Parameters
    ----------
    drift : polars.DataFrame or None
        The decided drift table; ``None`` for a run without feature drift.
    alerts : mapping
        The run's alerts.json document (its ``changes``, ``run.created_at``, ``models``).
    monitor : str
        The ``monitor`` label of every series.
    max_series : int
        Most segment x feature series exported.
    models : polars.DataFrame, optional
        The model-output rows (models.parquet), counted by status.
    """
    metric = str(alerts["run"].get("metric") or "value")
    # the metric and its effect carry the metric's name; the other gauges need not
    valued = {name: _gauge(name, (*SERIES, "metric"))
              for name in ("kl_drift_value", "kl_drift_effect")}
    per_series = {name: _gauge(name, SERIES) for name in (
        "kl_drift_warn_threshold", "kl_drift_critical_threshold", "kl_drift_q_value",
        "kl_drift_status", "kl_drift_worst_status", "kl_drift_window_start_timestamp_seconds")}
    rows = _gauge("kl_drift_rows", ("monitor", "part", "status"))
    lifecycles = _gauge("kl_drift_alerts", ("monitor", "part", "lifecycle"))
    series = _gauge("kl_drift_series", ("monitor", "state"))
    shown, omitted = (pl.DataFrame(), 0) if drift is None else latest_windows(drift, max_series)
    for row in shown.iter_rows(named=True):
        labels = [monitor, row["segment"], row["feature"]]
        samples: dict[str, float | None] = {
            "kl_drift_warn_threshold": row["warn_threshold"],
            "kl_drift_critical_threshold": row["critical_threshold"],
            "kl_drift_q_value": row["q_value"],
            "kl_drift_status": STATUS_CODES.get(row["status"], STATUS_CODES["error"]),
            "kl_drift_worst_status": row["worst"],
            "kl_drift_window_start_timestamp_seconds": _window_start(row["window"])}
        for name, column in (("kl_drift_value", "value"), ("kl_drift_effect", "effect")):
            if row.get(column) is not None:  # an error row has none: no sample, not a 0
                valued[name].add_metric([*labels, metric], row[column])
        for name, sample in samples.items():
            if sample is not None:
                per_series[name].add_metric(labels, sample)
    parts = {"features": (drift, alerts.get("changes")),
             "models": (models, (alerts.get("models") or {}).get("changes"))}
    for part, (table, changes) in parts.items():
        if table is None:
            continue
        counts = dict(table.group_by("status").len().iter_rows())
        for status in SEVERITY:
            rows.add_metric([monitor, part, status], counts.get(status, 0))
        for lifecycle in LIFECYCLES:
            lifecycles.add_metric([monitor, part, lifecycle], (changes or {}).get(lifecycle, 0))
    series.add_metric([monitor, "exported"], shown.height)
    series.add_metric([monitor, "omitted"], omitted)
    started = _gauge("kl_drift_last_run_timestamp_seconds", ("monitor",))
    started.add_metric([monitor], datetime.fromisoformat(alerts["run"]["created_at"])
                       .timestamp())
    return [*valued.values(), *per_series.values(), rows, lifecycles, series, started]


class _Families(Collector):
    """A registry entry that yields prepared metric families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _auth(url: str) -> tuple[str, Callable[..., Callable[[], None]]]:
    """The gateway URL without credentials, and the handler that sends them (basic auth
    from ``user:password@`` in the URL, never logged: messages show :func:`redact`)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    user, password = parts.username, parts.password or ""
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return bare, handler


def export_metrics(drift: pl.DataFrame | None, alerts: Mapping[str, Any],
                   settings: PrometheusConfig, *, monitor: str,
                   models: pl.DataFrame | None = None) -> None:
    """Write the run's gauges to ``settings.textfile`` and/or push them to
    ``settings.pushgateway`` (grouping key ``{job, monitor}``: the monitor's previous
    metrics are replaced).

    Raises
    ------
    OutputError
        The textfile cannot be written, or the Pushgateway cannot be reached or refuses
        the push: one line naming it (credentials masked).
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Families(metric_families(drift, alerts, monitor=monitor,
                                                max_series=settings.max_series,
                                                models=models)))
    if settings.textfile is not None:
        atomic_write_text(settings.textfile, generate_latest(registry).decode("utf-8"))
    if settings.pushgateway is not None:
        gateway, handler = _auth(settings.pushgateway)
        try:
            push_to_gateway(gateway, job=settings.job, registry=registry,
                            grouping_key={"monitor": monitor}, timeout=settings.timeout,
                            handler=handler)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise OutputError(getattr(error, "errno", None) or errno.EIO,
                              f"cannot push metrics to the Pushgateway "
                              f"{redact(settings.pushgateway)!r} ({reason}); check "
                              "export.prometheus.pushgateway (the run folder is written)"
                              ) from error
