"""Columns and fields other work packages add: shown when present, absent without a trace.

``lifecycle`` (new / ongoing / resolved) with alerts.json's ``changes`` and ``resolved``;
``partial`` / ``coverage`` windows; a corrected effect with its interval (`summary.EFFECTS`).
"""

from __future__ import annotations

import re

import polars as pl
import pytest

from pipeline.write.reports.html import render_html
from pipeline.write.reports.markdown import render_markdown
from pipeline.write.reports.summary import EFFECTS, feature_rows
from tests.report_data import ParsedPage, make_alerts, make_drift

LAST = "2024-06-04T00:00:00+00:00"  # last window of make_drift(…, 4)


@pytest.fixture(scope="module")
def enriched() -> tuple[pl.DataFrame, dict]:
    drift = make_drift(6, 4, seed=2, segments={"region": ["EU", "US"]})
    effect = EFFECTS[0]
    alerting = pl.col("status").is_in(["warn", "critical"])
    drift = drift.with_columns(
        # The first alerting window of each series is new, later ones ongoing.
        lifecycle=pl.when(alerting & (alerting.cum_sum().over("segment", "feature") == 1))
        .then(pl.lit("new")).when(alerting).then(pl.lit("ongoing")),
        partial=pl.col("window") == LAST,
        coverage=pl.when(pl.col("window") == LAST).then(0.42).otherwise(1.0),
        **{effect.value: pl.col("value") * 0.9, effect.low: pl.col("value") * 0.8,
           effect.high: pl.col("value") * 1.1})
    alerts = make_alerts(drift)
    alerts["changes"] = {"new": 7, "ongoing": 3, "resolved": 1}
    alerts["resolved"] = [{"segment": "region=EU", "feature": "air_time", "window": LAST,
                           "since": "2024-06-01T00:00:00+00:00", "last_status": "warn"}]
    return drift, alerts


def test_lifecycle_badges_changes_and_the_resolved_list(enriched: tuple[pl.DataFrame, dict]
                                                        ) -> None:
    drift, alerts = enriched
    page = render_html(drift, alerts)
    assert re.search(r"Since the last run:\s*<span class=\"life l-new\">new</span> 7", page)
    rows = feature_rows(drift.drop("bins"))
    n_new = rows.filter(pl.col("lifecycles").list.contains("new")).height
    table = page.split('<table id="features">')[1].split("</table>")[0]
    assert table.count('<span class="life l-new">new</span>') == n_new > 0
    assert table.count('data-new="1"') == n_new
    assert '<option value="new">New since the last run</option>' in page
    resolved = page.split('<h2 id="resolved">')[1].split("</table>")[0]
    assert "air_time" in resolved and "2024-06-01" in resolved and ">warn<" in resolved
    text = render_markdown(drift, alerts)
    assert "Since the last run: 7 new · 3 ongoing · 1 resolved." in text
    assert "## Resolved since the last run" in text
    assert ("- **air\\_time** (region=EU): back to ok in 2024-06-04, alerting since "
            "2024-06-01, last warn") in text
    assert len([line for line in text.splitlines() if line.startswith("| ")
                and re.match(r"\| \S+ \w+, new[ ,]", line)]) == min(n_new, 20)


def test_partial_windows_are_marked(enriched: tuple[pl.DataFrame, dict]) -> None:
    drift, alerts = enriched
    page = render_html(drift, alerts)
    rows = feature_rows(drift.drop("bins"))
    n_partial = rows.filter(pl.col("window") == LAST).height
    assert page.count('<span class="partial-mark">partial</span>') == n_partial > 0
    assert "partial window: the data cover 42% of it" in page
    n_windows = drift.filter(pl.col("window") == LAST).height
    assert f"{n_windows} partial windows" in page
    # Hollow dots in the across-windows plots, with the coverage in their tooltip.
    assert "partial window, coverage 42%" in page
    assert "2024-06-04 (partial, 42%)" in render_markdown(drift, alerts)


def test_effect_with_interval(enriched: tuple[pl.DataFrame, dict]) -> None:
    drift, alerts = enriched
    top = feature_rows(drift.drop("bins")).row(0, named=True)
    interval = (f"{top['value'] * 0.9:.3g} [{top['value'] * 0.8:.3g}, "
                f"{top['value'] * 1.1:.3g}]")
    page = render_html(drift, alerts)
    assert f"<button type=\"button\">{EFFECTS[0].label}</button>" in page
    assert interval in page.split('<table id="features">')[1].split("</tr>")[1]
    assert f"corrected effect {interval}" in page  # in the detail's facts
    assert f"| {EFFECTS[0].label} |" in render_markdown(drift, alerts)


def test_absent_columns_leave_no_trace() -> None:
    """A drift table without the new columns and a schema_version 1 alerts.json (an old run
    folder re-rendered)."""
    drift = make_drift(6, 4, seed=2)
    alerts = {k: v for k, v in make_alerts(drift).items() if k not in ("changes", "resolved")}
    page = render_html(drift, alerts)
    text = render_markdown(drift, alerts)
    for absent in ("Since the last run", "Resolved since", 'class="partial-mark"',
                   "partial window", "Corrected effect", '<span class="life',
                   "New since the last run"):
        assert absent not in page and absent not in text, absent


def test_resolved_list_is_capped_and_escaped(enriched: tuple[pl.DataFrame, dict],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.write.reports import html

    drift, alerts = enriched
    monkeypatch.setattr(html, "MAX_RESOLVED", 2)
    hostile = {"segment": "<b>EU</b>", "feature": "<script>x()</script>", "window": "w",
               "since": None, "last_status": "critical"}
    page = render_html(drift, {**alerts, "resolved": [hostile] * 5})
    assert "the first 2 of 5 (all in alerts.json)" in page
    # alerts.json itself capped (output.max_alerts): the total and the file come from it
    capped = {**alerts, "resolved": [hostile] * 3, "changes": {**alerts["changes"],
                                                               "resolved": 7},
              "omitted": {**alerts.get("omitted", {}), "resolved": 4}}
    assert "the first 2 of 7 (all in resolved.parquet)" in render_html(drift, capped)
    assert "…and 4 more; see resolved.parquet." in render_markdown(drift, capped)
    parsed = ParsedPage(page)
    assert len(parsed.all("script")) == 1 and not parsed.all("b")
    assert "<script>x()</script>" in "".join(parsed.text)
    text = render_markdown(drift, {**alerts, "resolved": [hostile]})
    assert "&lt;script&gt;x()&lt;/script&gt;" in text and "<b>" not in text


def test_row_lifecycle_is_the_episodes_start_and_whether_it_is_over() -> None:
    windows = ["1", "2", "3", "4", "5"]
    series = {  # segment: (statuses, lifecycles) in window order
        "a": (["warn", "warn", "ok", "critical", "critical"],   # ended, then a new one goes on
              ["ongoing", "resolved", None, "new", "ongoing"]),
        "b": (["ok", "warn", "ok", "ok", "insufficient_data"],  # new, over (no verdict last)
              [None, "new", None, None, None]),
        "c": (["warn"] * 5, ["ongoing"] * 5),
        "d": (["warn", "ok", "ok", "ok", "ok"],                  # reported earlier, ended now
              ["resolved", None, None, None, None]),
        "e": (["ok"] * 5, [None] * 5),
    }
    drift = pl.DataFrame({
        "segment": [s for s in series for _ in windows], "feature": "f",
        "window": windows * len(series), "value": 0.1,
        "status": [x for statuses, _ in series.values() for x in statuses],
        "lifecycle": [x for _, events in series.values() for x in events]},
        schema_overrides={"lifecycle": pl.String})
    rows = feature_rows(drift.reverse())  # not in window order: the rule orders by window
    assert dict(rows.select("segment", "lifecycles").iter_rows()) == {
        "a": ["new"], "b": ["new", "resolved"], "c": ["ongoing"], "d": ["resolved"], "e": []}
