"""Artifact keys, table rows and alert events, checked without Prefect."""

from __future__ import annotations

import math
import re

import polars as pl
import pytest

from flows.publish import (
    CRITICAL_EVENT,
    TABLE_COLUMNS,
    artifact_key,
    critical_alert_events,
    drift_table_rows,
)


@pytest.mark.parametrize("run_id", ["demo", "20261124T120000Z", "Flights 2013/06",
                                    "../../etc", "été-ñ", "-", "x" * 300])
def test_artifact_keys_are_lowercase_digits_dashes(run_id: str) -> None:
    key = artifact_key("report", run_id)
    assert re.fullmatch(r"kl-drift-report-[a-z0-9]+(-[a-z0-9]+)*", key)
    assert len(key) <= 130


def test_artifact_keys_keep_clean_ids_and_never_collide() -> None:
    assert artifact_key("drift", "june-2013") == "kl-drift-drift-june-2013"
    ids = ["2013-06-01T00:00", "2013-06-01 00:00", "2013-06-01t00-00", "A", "a"]
    assert len({artifact_key("report", i) for i in ids}) == len(ids)


def drift_rows() -> pl.DataFrame:
    top = [[{"bin": "[76, inf)", "contribution": 0.1}], [], [{"bin": "JFK", "contribution": 0.2}]]
    return pl.DataFrame({
        "segment": ["all"] * 3, "feature": ["a", "b", "c"], "window": ["w1"] * 3,
        "status": ["ok", "error", "critical"], "metric": ["js_distance"] * 3,
        "value": [0.01, math.nan, 0.4], "q_value": [0.5, None, 1e-9], "top_bins": top,
        "kind": ["numeric"] * 3})


def test_table_rows_are_most_severe_first_and_json_safe() -> None:
    rows = drift_table_rows(drift_rows())
    assert [r["feature"] for r in rows] == ["c", "b", "a"]
    assert all(tuple(r) == TABLE_COLUMNS for r in rows)
    assert rows[0]["top_bin"] == "JFK" and rows[1]["top_bin"] is None
    assert rows[1]["value"] is None  # NaN is not JSON
    assert len(drift_table_rows(drift_rows(), limit=2)) == 2


def test_one_event_per_critical_alert_with_feature_and_segment_in_the_resource() -> None:
    alert = {"segment": "origin=JFK", "feature": "dest", "window": "2013-06-03T00:00:00",
             "metric": "js_distance", "value": 0.31, "q_value": 1e-8}
    alerts = {"run": {"run_id": "june"},
              "alerts": [{**alert, "status": "critical"}, {**alert, "status": "warn"}]}
    [event] = critical_alert_events(alerts)
    assert event["event"] == CRITICAL_EVENT
    assert event["resource"]["prefect.resource.id"] == "kl-drift.feature.dest.origin=JFK"
    assert event["resource"]["kl-drift.segment"] == "origin=JFK"
    assert event["payload"] == {"run_id": "june", **alert, "status": "critical"}
    assert event["related"][0]["prefect.resource.id"] == "kl-drift.run.june"
