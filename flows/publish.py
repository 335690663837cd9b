"""What a drift run publishes to Prefect, as plain data: artifact keys and contents, events.

No Prefect import here: `flows.flows` hands these to ``create_*_artifact`` and
``emit_event``, and the tests check them without a server.

Notifications follow the alert lifecycle of ``alerts.json`` (schema_version 2): an alert is
``new`` (its segment x feature episode starts in this run), ``ongoing`` (earlier runs already
reported the episode) or, in the top-level ``resolved`` list, ``resolved``. Only new alerts
get events of their own, so a scheduled monitor notifies once per episode. A document
without lifecycle fields (schema_version 1) counts every alert as new.

Event ids are derived from what they announce (run id, alert key, monitor name), not drawn
at random: a rerun of the same run id sends the same ids, which Prefect (and any receiver
that deduplicates on the id) recognises as the notifications it already had.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl

from pipeline.config import PrefectConfig
from pipeline.run import DEFAULT_MONITOR, SEVERITY
from pipeline.write.reports.markdown import ICONS, escape_md
from pipeline.write.reports.summary import resolved_episodes, sort_rows

#: One event per drift_check run: counts, changes, new alerts, where the report is.
RUN_COMPLETED = "kl-drift.run.completed"
#: One event per new alert, named by its status: ``kl-drift.alert.warn``/``.critical``.
ALERT_EVENT_PREFIX = "kl-drift.alert."
#: One event per resolved episode, when ``prefect.resolved_events`` is on.
RESOLVED_EVENT = "kl-drift.alert.resolved"
#: Rows kept in the table artifact (most severe first); drift.parquet has them all.
MAX_TABLE_ROWS = 1000
TABLE_COLUMNS = ("segment", "feature", "window", "status", "metric", "value", "q_value",
                 "top_bin")
#: Significant digits of the numbers shown to people (table artifact, markdown, message).
DIGITS = 4
#: New alerts listed by name in the summary markdown and the event's ``message``.
MESSAGE_ALERTS = 5
MARKDOWN_ALERTS = 50
LIFECYCLES = ("new", "ongoing", "resolved")

# uuid5 namespace of kl-drift event ids (a fixed, arbitrary UUID: never change it).
_EVENT_NAMESPACE = uuid.UUID("5a0b0a4e-3c1f-5d55-9d0e-6b1d7c2f4e11")
_NOT_KEY = re.compile(r"[^a-z0-9]+")
_MAX_KEY = 100


def artifact_key(kind: str, monitor: str) -> str:
    """Prefect artifact key of one kind of artifact of a monitor, the same for every run.

    Prefect keeps every run's artifact under one key as its version history, so the key
    names the monitor (``prefect.name`` or the deployment), never the run. Keys allow
    lowercase letters, digits and dashes only: a name that had to change gets a short hash
    of the original, so two names never share a key. Keys start with ``kl-drift``.

    >>> artifact_key("report", "kl-drift")
    'kl-drift-report'
    >>> artifact_key("drift-table", "flights-hourly")
    'kl-drift-flights-hourly-drift-table'
    >>> artifact_key("report", "Flights hourly")
    'kl-drift-flights-hourly-23713ea2-report'
    """
    cleaned = _NOT_KEY.sub("-", monitor.lower()).strip("-")[:_MAX_KEY].strip("-") or "monitor"
    if cleaned != monitor:
        cleaned += "-" + hashlib.sha256(monitor.encode()).hexdigest()[:8]
    prefix = cleaned if cleaned.startswith(DEFAULT_MONITOR) else f"{DEFAULT_MONITOR}-{cleaned}"
    return f"{prefix}-{kind}"


def round_sig(value: Any, digits: int = DIGITS) -> Any:
    """Floats rounded to ``digits`` significant digits; NaN and infinities become None.

    Other values pass through unchanged.

    >>> round_sig(0.123456789), round_sig(1.23456e-9), round_sig(12345.6), round_sig("x")
    (0.1235, 1.235e-09, 12350.0, 'x')
    """
    if not isinstance(value, float):
        return value
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _number(value: Any) -> str:
    """A number as people read it (4 significant digits), or an empty string."""
    return "" if value is None else f"{value:.{DIGITS}g}"


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
        Keys `TABLE_COLUMNS` (plus ``lifecycle`` after ``status`` when the table has it);
        ``top_bin`` is the bin contributing most to the metric. Numbers are rounded to
        4 significant digits.
    """
    top_bin = pl.col("top_bins").list.first().struct.field("bin")
    columns = list(TABLE_COLUMNS[:-1])
    if "lifecycle" in drift.columns:
        columns.insert(columns.index("status") + 1, "lifecycle")
    rows = sort_rows(drift).head(limit).select(*columns, top_bin.alias("top_bin"))
    return [{k: round_sig(v) for k, v in row.items()} for row in rows.iter_rows(named=True)]


def report_url(run_dir: Path, base_url: str | None = None) -> str:
    """Where people open the run's report.html.

    A ``file://`` URI of the report in the run folder, or, for teams serving their run
    folders over HTTP, ``<base_url>/<run folder name>/report.html``.

    >>> report_url(Path("/srv/runs/20261124T120000Z"), "https://drift.example.com/runs/")
    'https://drift.example.com/runs/20261124T120000Z/report.html'
    >>> report_url(Path("/srv/runs/week 27"))
    'file:///srv/runs/week%2027/report.html'
    """
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{quote(run_dir.name)}/report.html"
    return (run_dir.resolve() / "report.html").as_uri()


def run_alerts(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every alert of a run, feature drift, joint drift and model outputs alike, critical
    first.

    Each is the alert as in ``alerts.json`` plus ``kind`` (``"feature"``, ``"joint"`` or
    ``"model"``; joint and model alerts get ``feature: None``) and ``lifecycle`` (``"new"``
    when the document has none).

    >>> doc = {"alerts": [{"status": "warn", "feature": "a", "lifecycle": "ongoing"}],
    ...        "models": {"alerts": [{"status": "critical"}]},
    ...        "joint": {"alerts": [{"status": "warn", "lifecycle": "new"}]}}
    >>> [(a["kind"], a["feature"], a["lifecycle"]) for a in run_alerts(doc)]
    [('model', None, 'new'), ('feature', 'a', 'ongoing'), ('joint', None, 'new')]
    """
    models = (document.get("models") or {}).get("alerts", [])
    joint = (document.get("joint") or {}).get("alerts", [])
    entries = [*({"kind": "feature", **a} for a in document.get("alerts", [])),
               *({"kind": "joint", "feature": None, **a} for a in joint),
               *({"kind": "model", "feature": None, **a} for a in models)]
    for entry in entries:
        entry["lifecycle"] = entry.get("lifecycle") or "new"
    return sorted(entries, key=lambda a: a["status"] != "critical")  # stable: value order kept


def resolved_alerts(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The episodes this run resolved (``alerts.json`` ``resolved``), with ``kind``."""
    return [{"kind": "feature" if r.get("feature") is not None else "model", **r}
            for r in document.get("resolved", [])]


def changes(document: Mapping[str, Any]) -> dict[str, int]:
    """``{"new": n, "ongoing": n, "resolved": n}``: the document's ``changes``, or counted
    from its alerts when it has none (every alert new).

    >>> changes({"alerts": [{"status": "warn"}, {"status": "critical"}]})
    {'new': 2, 'ongoing': 0, 'resolved': 0}
    """
    if "changes" in document:
        return {k: int(document["changes"].get(k, 0)) for k in LIFECYCLES}
    alerts = run_alerts(document)
    return {"new": sum(a["lifecycle"] == "new" for a in alerts),
            "ongoing": sum(a["lifecycle"] == "ongoing" for a in alerts),
            "resolved": len(resolved_alerts(document))}


def worst_status(document: Mapping[str, Any]) -> str:
    """Most severe status with a row in the run (feature, joint or model), ``ok`` for none.

    >>> worst_status({"summary": {"total": 3, "ok": 2, "error": 1},
    ...               "models": {"summary": {"total": 1, "ok": 0, "warn": 1}}})
    'warn'
    """
    summaries = [document.get("summary", {}),
                 *((document.get(part) or {}).get("summary", {}) for part in ("models", "joint"))]
    present = {s for summary in summaries for s, n in summary.items() if s != "total" and n}
    return max(present & set(SEVERITY), key=SEVERITY.index, default="ok")


def _worst(alerts: Sequence[Mapping[str, Any]]) -> str:
    return max((a["status"] for a in alerts), key=SEVERITY.index, default="none")


_SUBJECTS = {"model": "model outputs", "joint": "joint distribution"}


def _subject(alert: Mapping[str, Any]) -> str:
    """What an alert is about: its feature, ``model outputs`` or ``joint distribution``."""
    return alert["feature"] if alert["kind"] == "feature" else _SUBJECTS[alert["kind"]]


def _where(alert: Mapping[str, Any]) -> str:
    return f"{_subject(alert)} ({alert['segment']}), window {alert['window']}"


def _top(alert: Mapping[str, Any]) -> str | None:
    """The bin (feature alert), class (model alert) or feature (joint alert) contributing
    most."""
    tops = alert.get("top_bins") or alert.get("top_classes") or alert.get("top_features") or [{}]
    return tops[0].get("bin", tops[0].get("class", tops[0].get("feature")))


def _brief(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert in the run-completed payload: its key, verdict and top bin or class."""
    return {"kind": alert["kind"], "segment": alert["segment"], "feature": alert["feature"],
            "window": alert["window"], "status": alert["status"],
            "lifecycle": alert["lifecycle"], "metric": alert["metric"],
            "value": alert["value"], "q_value": alert.get("q_value"), "top": _top(alert)}


def _slack_text(text: object) -> str:
    """Data in a chat message: ``&``, ``<``, ``>`` as entities (no mentions or links)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _message(monitor: str, run_id: str, counts: Mapping[str, int],
             new: Sequence[Mapping[str, Any]], worst: str, report: str) -> str:
    """The run in a few lines of plain text, ready for a chat webhook."""
    by_status = ", ".join(f"{n} {s}" for s in ("critical", "warn")
                          if (n := sum(a["status"] == s for a in new)))
    head = (f"{counts['new']} new alert{'s' if counts['new'] != 1 else ''}"
            + (f" ({by_status})" if by_status else ""))
    lines = [_slack_text(f"kl-drift {monitor}, run {run_id}: {head}, {counts['ongoing']} "
                         f"ongoing, {counts['resolved']} resolved; worst status {worst}")]
    lines += [_slack_text(f"• {a['status']} {_where(a)}: {a['metric']} {_number(a['value'])}")
              for a in new[:MESSAGE_ALERTS]]
    if len(new) > MESSAGE_ALERTS:
        lines.append(f"• …and {len(new) - MESSAGE_ALERTS} more new alerts")
    lines.append(f"Report: {report}")
    return "\n".join(lines)


def event_id(*parts: str) -> uuid.UUID:
    """Deterministic event id: uuid5 of the parts (the same parts give the same id).

    >>> event_id("kl-drift.alert.warn", "m", "run-1") == event_id("kl-drift.alert.warn", "m",
    ...                                                             "run-1")
    True
    """
    return uuid.uuid5(_EVENT_NAMESPACE, "\x1f".join(parts))


def _related(monitor: str, run_id: str) -> list[dict[str, str]]:
    return [{"prefect.resource.id": f"kl-drift.run.{run_id}",
             "prefect.resource.role": "kl-drift-run"},
            {"prefect.resource.id": f"kl-drift.monitor.{monitor}",
             "prefect.resource.role": "kl-drift-monitor", "prefect.resource.name": monitor}]


def run_completed_event(document: Mapping[str, Any], *, monitor: str, run_dir: Path,
                        report: str, settings: PrefectConfig) -> dict[str, Any]:
    """Keyword arguments of ``prefect.events.emit_event`` for the run's summary event.

    Parameters
    ----------
    document : mapping
        The run's ``alerts.json``.
    monitor : str
        The monitor's name (``prefect.name`` or the deployment name).
    run_dir : Path
        The run folder.
    report : str
        Where report.html opens (`report_url`).
    settings : PrefectConfig
        ``summary_alerts`` caps the new and resolved alerts listed in the payload.

    Returns
    -------
    dict
        ``event`` `RUN_COMPLETED`; ``resource`` ``kl-drift.run.<run id>`` with labels
        ``kl-drift.monitor``, ``kl-drift.worst-status`` (any row), ``kl-drift.new-status``
        (worst new alert, ``none`` without one) and ``kl-drift.changed`` (``"true"`` when
        an alert is new or an episode resolved), for automations to match; ``payload``
        (docs/deploy.md); ``id`` derived from the monitor, run id and payload, so a rerun
        with the same outcome repeats the id.
    """
    run_id = str(document["run"]["run_id"])
    alerts = run_alerts(document)
    new = [a for a in alerts if a["lifecycle"] == "new"]
    resolved = resolved_alerts(document)
    counts = changes(document)
    worst, cap = worst_status(document), settings.summary_alerts
    _, resolved_omitted, _ = resolved_episodes(document, cap) or ([], 0, "")
    payload = {
        "monitor": monitor, "run_id": run_id, "run_dir": str(run_dir.resolve()),
        "report": report, "worst_status": worst, "new_status": _worst(new),
        "summary": document.get("summary"),
        "models_summary": (document.get("models") or {}).get("summary"),
        "joint_summary": (document.get("joint") or {}).get("summary"),
        "changes": counts,
        "new_alerts": [_brief(a) for a in new[:cap]],
        "new_alerts_omitted": max(len(new) - cap, 0),
        # past output.max_alerts, alerts.json counts the episodes it does not list
        "resolved": resolved[:cap], "resolved_omitted": resolved_omitted,
        "message": _message(monitor, run_id, counts, new, worst, report),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return {
        "event": RUN_COMPLETED,
        "resource": {"prefect.resource.id": f"kl-drift.run.{run_id}",
                     "prefect.resource.name": f"{monitor} run {run_id}",
                     "kl-drift.monitor": monitor, "kl-drift.worst-status": worst,
                     "kl-drift.new-status": payload["new_status"],
                     "kl-drift.changed": str(bool(counts["new"] or counts["resolved"])).lower()},
        "related": _related(monitor, run_id),
        "payload": payload,
        "id": event_id(RUN_COMPLETED, monitor, run_id, digest.hexdigest()),
    }


def _alert_resource(entry: Mapping[str, Any], monitor: str, status: str) -> dict[str, str]:
    """``kl-drift.feature.<feature>.<segment>``, ``kl-drift.model.<segment>`` or
    ``kl-drift.joint.<segment>``, labelled."""
    segment, window = str(entry["segment"]), str(entry["window"])
    if entry["kind"] == "feature":
        feature = str(entry["feature"])
        resource = {"prefect.resource.id": f"kl-drift.feature.{feature}.{segment}",
                    "prefect.resource.name": f"{feature} ({segment})",
                    "kl-drift.feature": feature}
    else:
        resource = {"prefect.resource.id": f"kl-drift.{entry['kind']}.{segment}",
                    "prefect.resource.name": f"{_subject(entry)} ({segment})"}
    reference = {"kl-drift.reference": str(entry["reference"])} if entry.get("reference") else {}
    return {**resource, "kl-drift.kind": str(entry["kind"]), "kl-drift.segment": segment,
            "kl-drift.window": window, **reference, "kl-drift.status": status,
            "kl-drift.monitor": monitor}


def _alert_key(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """What identifies an alert (or resolved episode) among a run's events: kind, segment,
    feature, window, and its reference unless it is the baseline (whose ids are those of
    runs from before reference modes)."""
    reference = entry.get("reference") or "baseline"
    return (str(entry["kind"]), str(entry["segment"]), str(entry["feature"] or ""),
            str(entry["window"]), *(() if reference == "baseline" else (reference,)))


def alert_events(document: Mapping[str, Any], *, monitor: str, report: str,
                 settings: PrefectConfig) -> list[dict[str, Any]]:
    """Keyword arguments of ``prefect.events.emit_event``, one per new alert (and resolved
    episode), for automations that page per alert.

    New alerts whose status is in ``settings.alert_events`` give ``kl-drift.alert.<status>``
    events, feature, joint and model-output alerts alike; ongoing alerts give none. With
    ``settings.resolved_events``, each resolved episode gives a `RESOLVED_EVENT`. The
    resource is ``kl-drift.feature.<feature>.<segment>`` (``kl-drift.model.<segment>`` for
    model outputs, ``kl-drift.joint.<segment>`` for joint drift), labelled with kind,
    feature, segment, window, reference (feature drift), status and monitor; the payload is
    the entry as in ``alerts.json`` plus ``kind``, ``run_id``, ``monitor`` and ``report``.
    The id is derived from event name, monitor, run id and the alert's key (with its
    reference: one window alerting against two references gives two events).
    """
    run_id = str(document["run"]["run_id"])
    wanted = set(settings.alert_events)
    chosen = [(f"{ALERT_EVENT_PREFIX}{a['status']}", a["status"], a)
              for a in run_alerts(document) if a["lifecycle"] == "new" and a["status"] in wanted]
    if settings.resolved_events:
        chosen += [(RESOLVED_EVENT, "resolved", r) for r in resolved_alerts(document)]
    return [
        {
            "event": name,
            "resource": _alert_resource(entry, monitor, status),
            "related": _related(monitor, run_id),
            "payload": {"run_id": run_id, "monitor": monitor, "report": report, **entry},
            "id": event_id(name, monitor, run_id, *_alert_key(entry)),
        }
        for name, status, entry in chosen
    ]


def markdown_url(url: str) -> str:
    """A URL safe inside a Markdown link target (no spaces or parentheses).

    >>> markdown_url("file:///runs/week 27 (retry)/report.html")
    'file:///runs/week%2027%20%28retry%29/report.html'
    """
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def summary_markdown(document: Mapping[str, Any], *, monitor: str, report: str) -> str:
    """The head of the markdown artifact: what changed since the previous run.

    Counts (new, ongoing, resolved), a link to report.html, a table of the new alerts
    (at most `MARKDOWN_ALERTS`, numbers to 4 significant digits) and the resolved
    episodes. Data-derived text is escaped (`pipeline.write.reports.markdown.escape_md`).
    """
    run_id = str(document["run"]["run_id"])
    counts = changes(document)
    new = [a for a in run_alerts(document) if a["lifecycle"] == "new"]
    resolved = resolved_alerts(document)
    lines = [f"## kl-drift {escape_md(monitor)}: run {escape_md(run_id)}", "",
             f"**{counts['new']} new · {counts['ongoing']} ongoing · {counts['resolved']} "
             f"resolved** since the previous run; worst status "
             f"{escape_md(worst_status(document))}. "
             f"[Open report.html]({markdown_url(report)})", ""]
    if new:
        lines += ["### New alerts", "",
                  "| Status | Kind | Feature | Segment | Window | Metric | Value | q | Top |",
                  "|:--|:--|:--|:--|:--|:--|--:|--:|:--|"]
        lines += [
            "| " + " | ".join([
                f"{ICONS.get(a['status'], '')} {escape_md(a['status'])}", a["kind"],
                escape_md(_subject(a)), escape_md(a["segment"]),
                escape_md(a["window"]), escape_md(a["metric"]), _number(a["value"]),
                _number(a.get("q_value")), escape_md(_top(a) or "")]) + " |"
            for a in new[:MARKDOWN_ALERTS]]
        if len(new) > MARKDOWN_ALERTS:
            lines.append(f"\n…and {len(new) - MARKDOWN_ALERTS} more new alerts in alerts.json.")
        lines.append("")
    if resolved:
        lines += ["### Resolved", "", "| Kind | Feature | Segment | Window | Since | Last status |",
                  "|:--|:--|:--|:--|:--|:--|"]
        lines += ["| " + " | ".join([
            r["kind"], escape_md(r.get("feature") or "model outputs"),
            escape_md(r.get("segment", "")), escape_md(r.get("window", "")),
            escape_md(r.get("since", "")), escape_md(r.get("last_status", ""))]) + " |"
            for r in resolved[:MARKDOWN_ALERTS]]
        _, more, listing = resolved_episodes(document, MARKDOWN_ALERTS) or ([], 0, "")
        if more:
            lines.append(f"\n…and {more} more resolved episodes in {listing}.")
        lines.append("")
    return "\n".join(lines)
