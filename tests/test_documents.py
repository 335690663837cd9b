"""pipeline.write.documents: alerts.json order, caps, counts, JSON safety and its schema.

The expected documents are written out by hand from the rules in docs/reports.md (new alerts
first, then critical before warn, ongoing before resolved, larger value first; lists capped
at ``max_rows`` with ``omitted`` counting the rest), not computed by the code under test.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from pipeline.write.documents import AlertsDocument, alerts_document, dumps_json, json_safe
from tests.report_data import make_alerts, make_drift

# feature, status, lifecycle, value
ROWS = [("f1", "critical", "ongoing", 0.5), ("f2", "warn", "new", 0.2),
        ("f3", "critical", "new", 0.3), ("f4", "critical", "new", 0.4),
        ("f5", "warn", "resolved", 0.9), ("f6", "warn", "ongoing", 0.25),
        ("f7", "ok", None, 0.01), ("f8", "insufficient_data", None, None),
        ("f9", "error", None, None)]
RESOLVED = [{"segment": "all", "feature": "f0", "window": "2024-06-08", "since": "2024-06-01",
             "last_status": "warn"}]


@pytest.fixture(scope="module")
def drift() -> pl.DataFrame:
    n = len(ROWS)
    return pl.DataFrame({
        "segment": ["all"] * n, "feature": [r[0] for r in ROWS], "window": ["w"] * n,
        "status": [r[1] for r in ROWS], "lifecycle": [r[2] for r in ROWS],
        "metric": ["js_distance"] * n, "value": [r[3] for r in ROWS],
        "warn_threshold": [0.1] * n, "critical_threshold": [0.2] * n,
        "p_value": [0.001] * n, "q_value": [0.002] * n, "n_baseline": [1000.0] * n,
        "n_current": [500.0] * n, "top_bins": [[]] * n,
        "reason": [None] * 7 + ["too few rows", "feature 'f9' not in the baseline"],
    }, schema_overrides={"top_bins": pl.List(pl.Struct({
        "bin": pl.String, "contribution": pl.Float64, "baseline_share": pl.Float64,
        "current_share": pl.Float64}))})


def _document(drift: pl.DataFrame, max_rows: int = 1000) -> dict[str, Any]:
    run = make_alerts(make_drift(1, 1, seed=0))["run"]
    document = alerts_document(drift, run, resolved=RESOLVED, max_rows=max_rows)
    AlertsDocument.model_validate(document)
    return document


def test_alerts_are_listed_new_first_then_by_severity_lifecycle_and_value(
        drift: pl.DataFrame) -> None:
    document = _document(drift)
    assert [a["feature"] for a in document["alerts"]] == ["f4", "f3", "f2", "f1", "f6", "f5"]
    assert [p["feature"] for p in document["problems"]] == ["f8", "f9"]
    assert document["summary"] == {"total": 9, "ok": 1, "warn": 3, "critical": 3,
                                   "insufficient_data": 1, "error": 1}
    assert document["changes"] == {"new": 3, "ongoing": 2, "resolved": 1}
    assert document["omitted"] == {"alerts": 0, "problems": 0, "resolved": 0}


@pytest.mark.parametrize(("max_rows", "alerts", "problems", "omitted"), [
    (2, ["f4", "f3"], ["f8", "f9"], {"alerts": 4, "problems": 0, "resolved": 0}),
    (1, ["f4"], ["f8"], {"alerts": 5, "problems": 1, "resolved": 0}),
])
def test_lists_are_capped_and_omitted_counts_the_rest(drift: pl.DataFrame, max_rows: int,
                                                      alerts: list[str], problems: list[str],
                                                      omitted: dict[str, int]) -> None:
    document = _document(drift, max_rows)
    assert [a["feature"] for a in document["alerts"]] == alerts
    assert [p["feature"] for p in document["problems"]] == problems
    assert document["omitted"] == omitted


def test_resolved_episodes_are_capped_in_their_order_and_all_counted(
        drift: pl.DataFrame) -> None:
    episodes = [{**RESOLVED[0], "feature": f"r{i}"} for i in range(5)]
    run = make_alerts(make_drift(1, 1, seed=0))["run"]
    document = alerts_document(drift, run, resolved=episodes, max_rows=2)
    AlertsDocument.model_validate(document)
    assert [r["feature"] for r in document["resolved"]] == ["r0", "r1"]
    assert document["omitted"]["resolved"] == 3 and document["changes"]["resolved"] == 5
    uncapped = alerts_document(drift, run, resolved=episodes, max_rows=5)
    assert len(uncapped["resolved"]) == 5 and uncapped["omitted"]["resolved"] == 0
    # a document whose list and counts disagree is refused
    for broken in ({**document, "omitted": {**document["omitted"], "resolved": 2}},
                   {**document, "resolved": document["resolved"][:1]}):
        with pytest.raises(ValidationError, match="resolved"):
            AlertsDocument.model_validate(broken)


def test_documents_that_do_not_add_up_are_rejected(drift: pl.DataFrame) -> None:
    document = _document(drift)
    wrong_total = {**document, "summary": {**document["summary"], "total": 8}}
    one_alert_lost = {**document, "alerts": document["alerts"][1:]}
    capped = _document(drift, 2)
    miscounted = {**capped, "omitted": {**capped["omitted"], "alerts": 3}}  # 2 + 3 != 6
    for broken in (wrong_total, one_alert_lost, miscounted):
        with pytest.raises(ValidationError):
            AlertsDocument.model_validate(broken)


def test_non_finite_numbers_become_null_with_a_reason() -> None:
    value = {"a": math.inf, "b": [math.nan, 1.0, {"c": -math.inf}], "d": 2.0}
    safe = json_safe(value)
    assert safe["a"] is None and safe["b"][:2] == [None, 1.0] and safe["d"] == 2.0
    assert safe["b"][2]["c"] is None and set(safe["b"][2]["null_reasons"]) == {"c"}
    assert set(safe["null_reasons"]) == {"a"} and "inf" in safe["null_reasons"]["a"]
    assert json.loads(dumps_json(value)) == safe  # strict JSON: no NaN/Infinity tokens
    # a finite document is written as it is, any mapping as an object
    assert json.loads(dumps_json(MappingProxyType({"d": [2.0, (1, "x")]}))) == {
        "d": [2.0, [1, "x"]]}
