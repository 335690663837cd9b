"""What a run publishes (artifact keys and contents, events), checked without Prefect on
hand-made alerts.json documents with and without lifecycle fields."""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.publish import (
    ALERT_EVENT_PREFIX,
    MESSAGE_ALERTS,
    RESOLVED_EVENT,
    RUN_COMPLETED,
    TABLE_COLUMNS,
    alert_events,
    artifact_key,
    changes,
    drift_table_rows,
    report_url,
    round_sig,
    run_completed_event,
    summary_markdown,
)
from pipeline.config import PrefectConfig, load_config
from pipeline.errors import ConfigError

RUN_DIR = Path("/srv/runs/20261124T120000Z")
REPORT = "https://drift.example.com/runs/20261124T120000Z/report.html"


def feature_alert(feature: str, status: str, lifecycle: str | None, *,
                  segment: str = "origin=JFK", value: float = 0.31) -> dict[str, Any]:
    alert = {"segment": segment, "feature": feature, "window": "2013-06-03T00:00:00",
             "status": status, "metric": "js_distance", "value": value,
             "warn_threshold": 0.1, "critical_threshold": 0.2, "p_value": 1e-9,
             "q_value": 1.23456789e-8, "n_baseline": 1000.0, "n_current": 900.0,
             "top_bins": [{"bin": "LAX", "contribution": 0.1, "baseline_share": 0.2,
                           "current_share": 0.4}]}
    return alert if lifecycle is None else {**alert, "lifecycle": lifecycle}


def model_alert(status: str, lifecycle: str | None, *, segment: str = "origin=LGA"
                ) -> dict[str, Any]:
    alert = {"segment": segment, "window": "2013-07-15T00:00:00", "status": status,
             "metric": "js_distance_mean", "value": 0.1218357, "warn_threshold": 0.1,
             "critical_threshold": 0.2, "n": 1999, "flip_rate": 0.27,
             "js_distance_of_means": 0.09,
             "top_classes": [{"class": "early", "baseline_mean": 0.29, "current_mean": 0.38,
                              "js_contribution": 0.0045}], "top_examples": []}
    return alert if lifecycle is None else {**alert, "lifecycle": lifecycle}


def document(run_id: str = "20261124T120000Z") -> dict[str, Any]:
    """alerts.json (schema_version 2): 3 new, 2 ongoing, 1 resolved."""
    return {
        "schema_version": 2,
        "run": {"run_id": run_id},
        "summary": {"total": 10, "ok": 6, "warn": 1, "critical": 2, "insufficient_data": 1,
                    "error": 0},
        "alerts": [feature_alert("dest", "critical", "new"),
                   feature_alert("dep_delay", "critical", "ongoing", value=0.25),
                   feature_alert("distance", "warn", "new", value=0.15)],
        "problems": [], "warnings": [],
        "models": {"summary": {"total": 3, "ok": 1, "warn": 1, "critical": 1,
                               "insufficient_data": 0},
                   "alerts": [model_alert("critical", "ongoing", segment="origin=EWR"),
                              model_alert("warn", "new")]},
        "resolved": [{"segment": "origin=EWR", "feature": "carrier",
                      "window": "2013-06-03T00:00:00", "since": "2013-05-20T00:00:00",
                      "last_status": "warn"}],
        "changes": {"new": 3, "ongoing": 2, "resolved": 1},
    }


def without_lifecycle(doc: dict[str, Any]) -> dict[str, Any]:
    """The same run as alerts.json schema_version 1 wrote it."""
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    for alert in [*old["alerts"], *old["models"]["alerts"]]:
        del alert["lifecycle"]
    del old["resolved"], old["changes"]
    return old


def settings(**values: Any) -> PrefectConfig:
    return PrefectConfig(**values)


# --- artifact keys --------------------------------------------------------------------------

@pytest.mark.parametrize("monitor", ["kl-drift", "flights-hourly", "Flights 2013/06",
                                     "../../etc", "été-ñ", "-", "x" * 300])
def test_artifact_keys_are_lowercase_digits_dashes(monitor: str) -> None:
    key = artifact_key("report", monitor)
    assert re.fullmatch(r"kl-drift(-[a-z0-9]+)*-report", key)
    assert len(key) <= 130


def test_artifact_keys_name_the_monitor_not_the_run_and_never_collide() -> None:
    assert artifact_key("report", "kl-drift") == "kl-drift-report"
    assert artifact_key("drift-table", "flights") == "kl-drift-flights-drift-table"
    assert artifact_key("report", "kl-drift-flights") == "kl-drift-flights-report"
    names = ["Flights 2013", "flights 2013", "flights-2013", "A", "a"]
    assert len({artifact_key("report", n) for n in names}) == len(names)


# --- table artifact ------------------------------------------------------------------------

def significant(value: float, digits: int) -> float:
    """Independent reference: round to `digits` significant digits via the exponent."""
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@given(st.floats(min_value=1e-300, max_value=1e300) | st.floats(max_value=-1e-300,
                                                                 min_value=-1e300))
def test_round_sig_keeps_four_significant_digits(value: float) -> None:
    assert round_sig(value) == pytest.approx(significant(value, 4), rel=1e-12)


def drift_rows(**extra: list[Any]) -> pl.DataFrame:
    top = [[{"bin": "[76, inf)", "contribution": 0.1}], [], [{"bin": "JFK", "contribution": 0.2}]]
    return pl.DataFrame({
        "segment": ["all"] * 3, "feature": ["a", "b", "c"], "window": ["w1"] * 3,
        "status": ["ok", "error", "critical"], "metric": ["js_distance"] * 3,
        "value": [0.0123456789, math.nan, 0.398765432], "q_value": [0.5, None, 1.23456789e-9],
        "top_bins": top, "kind": ["numeric"] * 3, **extra})


def test_table_rows_are_most_severe_first_rounded_and_json_safe() -> None:
    rows = drift_table_rows(drift_rows())
    assert [r["feature"] for r in rows] == ["c", "b", "a"]
    assert all(tuple(r) == TABLE_COLUMNS for r in rows)
    assert rows[0]["top_bin"] == "JFK" and rows[1]["top_bin"] is None
    assert rows[1]["value"] is None  # NaN is not JSON
    assert (rows[0]["value"], rows[0]["q_value"], rows[2]["value"]) == (0.3988, 1.235e-09, 0.01235)
    assert len(drift_table_rows(drift_rows(), limit=2)) == 2
    json.dumps(rows, allow_nan=False)


def test_table_rows_show_the_lifecycle_when_the_drift_table_has_it() -> None:
    rows = drift_table_rows(drift_rows(lifecycle=[None, None, "new"]))
    assert list(rows[0])[3:5] == ["status", "lifecycle"] and rows[0]["lifecycle"] == "new"


# --- report link ---------------------------------------------------------------------------

def test_report_url_is_a_file_uri_or_under_the_base_url(tmp_path: Path) -> None:
    run_dir = tmp_path / "week 27"
    assert report_url(run_dir) == (run_dir / "report.html").as_uri()
    assert Path(report_url(run_dir).removeprefix("file://").replace("%20", " ")) == (
        run_dir / "report.html")
    assert report_url(run_dir, "https://h.example/runs") == (
        "https://h.example/runs/week%2027/report.html")
    assert report_url(run_dir, "https://h.example/runs/") == report_url(
        run_dir, "https://h.example/runs")


# --- per-alert events ----------------------------------------------------------------------

def test_events_only_for_new_alerts_feature_and_model_alike() -> None:
    events = alert_events(document(), monitor="flights", report=REPORT, settings=settings())
    seen = sorted((e["event"], e["resource"]["prefect.resource.id"]) for e in events)
    assert seen == [("kl-drift.alert.critical", "kl-drift.feature.dest.origin=JFK"),
                    ("kl-drift.alert.warn", "kl-drift.feature.distance.origin=JFK"),
                    ("kl-drift.alert.warn", "kl-drift.model.origin=LGA")]
    dest = next(e for e in events if e["resource"].get("kl-drift.feature") == "dest")
    assert dest["payload"] == {"run_id": "20261124T120000Z", "monitor": "flights",
                               "report": REPORT, "kind": "feature",
                               **feature_alert("dest", "critical", "new")}
    assert dest["resource"]["kl-drift.monitor"] == "flights"
    assert dest["resource"]["kl-drift.status"] == "critical"
    assert {r["prefect.resource.id"] for r in dest["related"]} == {
        "kl-drift.run.20261124T120000Z", "kl-drift.monitor.flights"}
    model = next(e for e in events if e["resource"]["kl-drift.kind"] == "model")
    assert model["payload"]["feature"] is None and "kl-drift.feature" not in model["resource"]


def test_alert_event_statuses_and_resolved_events_are_configurable() -> None:
    only_critical = alert_events(document(), monitor="m", report=REPORT,
                                 settings=settings(alert_events=["critical"]))
    assert [e["event"] for e in only_critical] == ["kl-drift.alert.critical"]
    assert alert_events(document(), monitor="m", report=REPORT,
                        settings=settings(alert_events=[])) == []
    with_resolved = alert_events(document(), monitor="m", report=REPORT,
                                 settings=settings(alert_events=[], resolved_events=True))
    [resolved] = with_resolved
    assert resolved["event"] == RESOLVED_EVENT
    assert resolved["resource"]["prefect.resource.id"] == "kl-drift.feature.carrier.origin=EWR"
    assert resolved["payload"]["since"] == "2013-05-20T00:00:00"


def test_event_ids_are_deterministic_per_run_and_alert() -> None:
    def ids(doc: dict[str, Any], monitor: str = "m") -> list[uuid.UUID]:
        chosen = settings(resolved_events=True)
        return [e["id"] for e in alert_events(doc, monitor=monitor, report=REPORT,
                                              settings=chosen)]

    first = ids(document())
    assert first == ids(document())  # a rerun of the same run id: the same ids
    assert len(set(first)) == len(first) == 4
    assert not set(first) & set(ids(document("next-run")))
    assert not set(first) & set(ids(document(), monitor="other"))


def test_a_document_without_lifecycle_counts_every_alert_as_new() -> None:
    old = without_lifecycle(document())
    assert changes(old) == {"new": 5, "ongoing": 0, "resolved": 0}
    events = alert_events(old, monitor="m", report=REPORT, settings=settings())
    assert sorted(e["event"].removeprefix(ALERT_EVENT_PREFIX) for e in events) == [
        "critical", "critical", "critical", "warn", "warn"]
    assert all(e["payload"]["lifecycle"] == "new" for e in events)


# --- the run-completed event ---------------------------------------------------------------

def test_run_completed_event_summarises_the_run_for_automations() -> None:
    event = run_completed_event(document(), monitor="flights", run_dir=RUN_DIR, report=REPORT,
                                settings=settings())
    assert event["event"] == RUN_COMPLETED
    assert event["resource"] == {
        "prefect.resource.id": "kl-drift.run.20261124T120000Z",
        "prefect.resource.name": "flights run 20261124T120000Z", "kl-drift.monitor": "flights",
        "kl-drift.worst-status": "critical", "kl-drift.new-status": "critical",
        "kl-drift.changed": "true"}
    payload = event["payload"]
    assert payload["changes"] == {"new": 3, "ongoing": 2, "resolved": 1}
    assert payload["summary"]["critical"] == 2 and payload["models_summary"]["warn"] == 1
    assert (payload["run_dir"], payload["report"]) == (str(RUN_DIR), REPORT)
    assert [(a["kind"], a["feature"], a["status"]) for a in payload["new_alerts"]] == [
        ("feature", "dest", "critical"), ("feature", "distance", "warn"), ("model", None, "warn")]
    assert payload["new_alerts"][0] == {
        "kind": "feature", "segment": "origin=JFK", "feature": "dest",
        "window": "2013-06-03T00:00:00", "status": "critical", "lifecycle": "new",
        "metric": "js_distance", "value": 0.31, "q_value": 1.23456789e-8, "top": "LAX"}
    assert payload["new_alerts"][2]["top"] == "early"
    assert payload["resolved"][0]["feature"] == "carrier"
    assert payload["new_alerts_omitted"] == payload["resolved_omitted"] == 0
    json.dumps(payload, allow_nan=False)


def test_run_completed_message_is_short_rounded_and_chat_safe() -> None:
    doc = document()
    doc["alerts"][0]["feature"] = "<!channel> & co"
    message = run_completed_event(doc, monitor="flights", run_dir=RUN_DIR, report=REPORT,
                                  settings=settings())["payload"]["message"]
    lines = message.splitlines()
    assert lines[0] == ("kl-drift flights, run 20261124T120000Z: 3 new alerts (1 critical, "
                        "2 warn), 2 ongoing, 1 resolved; worst status critical")
    assert lines[1] == ("• critical &lt;!channel&gt; &amp; co (origin=JFK), window "
                        "2013-06-03T00:00:00: js_distance 0.31")
    assert lines[3] == ("• warn model outputs (origin=LGA), window 2013-07-15T00:00:00: "
                        "js_distance_mean 0.1218")
    assert lines[-1] == f"Report: {REPORT}" and "<" not in message


def test_new_alerts_are_capped_in_the_payload_and_the_message() -> None:
    doc = document()
    doc["alerts"] = [feature_alert(f"f{i}", "warn", "new") for i in range(12)]
    doc["models"]["alerts"] = []
    payload = run_completed_event(doc, monitor="m", run_dir=RUN_DIR, report=REPORT,
                                  settings=settings(summary_alerts=10))["payload"]
    assert len(payload["new_alerts"]) == 10 and payload["new_alerts_omitted"] == 2
    lines = payload["message"].splitlines()
    assert len(lines) == 1 + MESSAGE_ALERTS + 2
    assert lines[-2] == f"• …and {12 - MESSAGE_ALERTS} more new alerts"


def test_run_completed_id_repeats_for_the_same_outcome_only() -> None:
    def event_id(doc: dict[str, Any]) -> uuid.UUID:
        return run_completed_event(doc, monitor="m", run_dir=RUN_DIR, report=REPORT,
                                   settings=settings())["id"]

    assert event_id(document()) == event_id(document())
    escalated = document()
    escalated["alerts"][2]["status"] = "critical"
    assert event_id(escalated) != event_id(document())
    assert event_id(document("other")) != event_id(document())


def test_a_quiet_run_has_no_new_status_and_no_change() -> None:
    doc = document()
    for alert in [*doc["alerts"], *doc["models"]["alerts"]]:
        alert["lifecycle"] = "ongoing"
    doc["resolved"], doc["changes"] = [], {"new": 0, "ongoing": 5, "resolved": 0}
    event = run_completed_event(doc, monitor="m", run_dir=RUN_DIR, report=REPORT,
                                settings=settings())
    assert event["resource"]["kl-drift.new-status"] == "none"
    assert event["resource"]["kl-drift.changed"] == "false"
    assert event["resource"]["kl-drift.worst-status"] == "critical"
    assert event["payload"]["message"].startswith("kl-drift m, run 20261124T120000Z: 0 new "
                                                  "alerts, 5 ongoing, 0 resolved")
    assert alert_events(doc, monitor="m", report=REPORT, settings=settings()) == []


# --- markdown artifact head ----------------------------------------------------------------

def test_summary_markdown_lists_new_and_resolved_escaped_and_rounded() -> None:
    doc = document()
    doc["alerts"][0]["feature"] = "a|b <script>"
    text = summary_markdown(doc, monitor="flights", report="file:///runs/x (1)/report.html")
    assert "**3 new · 2 ongoing · 1 resolved**" in text
    assert "[Open report.html](file:///runs/x%20%281%29/report.html)" in text
    assert "a\\|b &lt;script&gt;" in text and "<script>" not in text
    new_rows = [line for line in text.splitlines() if line.startswith("| 🔴") or
                line.startswith("| 🟠")]
    assert len(new_rows) == 3  # dep_delay and the EWR model alert are ongoing
    assert "| 1.235e-08 |" in new_rows[0] and "| 0.1218 |" in new_rows[-1]
    assert "### Resolved" in text and "| feature | carrier | origin=EWR |" in text


def test_resolved_episodes_left_out_of_alerts_json_are_counted_and_pointed_to() -> None:
    """alerts.json lists the first ``output.max_alerts`` episodes: the summary event and the
    artifact count the others from ``changes`` and name resolved.parquet."""
    doc = document()
    doc["changes"] = {**doc["changes"], "resolved": 4}
    doc["omitted"] = {"alerts": 0, "problems": 0, "resolved": 3}
    payload = run_completed_event(doc, monitor="m", run_dir=RUN_DIR, report=REPORT,
                                  settings=settings(summary_alerts=1))["payload"]
    assert len(payload["resolved"]) == 1 and payload["resolved_omitted"] == 3
    text = summary_markdown(doc, monitor="m", report=REPORT)
    assert "**3 new · 2 ongoing · 4 resolved**" in text
    assert "…and 3 more resolved episodes in resolved.parquet." in text
    assert "more resolved episodes" not in summary_markdown(document(), monitor="m",
                                                            report=REPORT)


# --- the [prefect] config section ----------------------------------------------------------

def test_prefect_section_defaults_and_strictness(tmp_path: Path) -> None:
    defaults = load_config(None).prefect
    assert (defaults.name, defaults.timeout_seconds, defaults.alert_events,
            defaults.resolved_events, defaults.summary_alerts, defaults.report_base_url) == (
        None, 3600.0, ["warn", "critical"], False, 20, None)
    path = tmp_path / "run.toml"
    path.write_text('[prefect]\nname = "flights"\ntimeout_seconds = 600\n'
                    'alert_events = ["critical"]\nreport_base_url = "https://h.example/runs"\n')
    chosen = load_config(path).prefect
    assert (chosen.name, chosen.timeout_seconds, chosen.alert_events) == (
        "flights", 600.0, ["critical"])
    with pytest.raises(ConfigError, match=r"unknown key 'prefect\.timeout' \(did you mean "
                                          r"'prefect\.timeout_seconds'\?\)"):
        load_config(None, {"prefect.timeout": 5})
    for key, value in [("timeout_seconds", 0), ("alert_events", ["ok"]),
                       ("report_base_url", "file:///srv/runs"), ("summary_alerts", -1)]:
        with pytest.raises(ConfigError, match=rf"^config: prefect\.{key}"):
            load_config(None, {f"prefect.{key}": value})
