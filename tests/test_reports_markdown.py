"""report.md: counts, severity order, caps, top bins, problems and run metadata."""

from __future__ import annotations

import re

import polars as pl
import pytest

from pipeline.write.reports.markdown import MAX_ROWS, escape_md, render_markdown
from tests.report_data import make_alerts, make_drift, with_verdicts


def _table_features(text: str) -> list[str]:
    rows = [line for line in text.splitlines() if re.match(r"\| \S+ (critical|warn|error|"
                                                           r"insufficient data|ok) \|", line)]
    return [row.split(" | ")[1] for row in rows]


def test_table_is_sorted_by_severity_then_value() -> None:
    drift = with_verdicts({"a": ("ok", 0.05), "b": ("critical", 0.3), "c": ("warn", 0.15),
                            "d": ("critical", 0.5), "e": ("error", None),
                            "f": ("insufficient_data", 0.01), "g": ("ok", 0.09)})
    text = render_markdown(drift, make_alerts(drift))
    assert _table_features(text) == ["d", "b", "c", "e", "f", "g", "a"]


def test_summary_line_counts_every_status_from_alerts_json() -> None:
    drift = make_drift(6, 4, seed=2)
    alerts = make_alerts(drift)
    first_lines = "\n".join(render_markdown(drift, alerts).splitlines()[:4])
    for status, label in (("critical", "critical"), ("warn", "warn"), ("error", "error"),
                          ("insufficient_data", "insufficient data"), ("ok", "ok")):
        assert f"{alerts['summary'][status]} {label}" in first_lines
    assert f"of {drift.height} checks (6 features · 4 windows)" in first_lines.replace(" × ", " · ")


def test_one_row_per_feature_at_its_worst_window() -> None:
    drift = make_drift(3, 5, seed=4, problems=False)
    text = render_markdown(drift, make_alerts(drift))
    assert sorted(_table_features(text)) == sorted(
        escape_md(f) for f in drift["feature"].unique().to_list())
    worst = drift.filter(pl.col("feature") == "dep_delay").sort("value", descending=True).row(
        0, named=True)
    n_alerting = drift.filter(pl.col("feature") == "dep_delay",
                              pl.col("status").is_in(["warn", "critical"])).height
    line = next(x for x in text.splitlines() if x.startswith("| ") and "dep\\_delay" in x)
    assert f"| {worst['value']:.3g} |" in line
    assert f"| {n_alerting}/5 |" in line


def test_long_table_is_capped_with_and_n_more() -> None:
    drift = make_drift(MAX_ROWS + 15, 1, seed=5, problems=False)
    text = render_markdown(drift, make_alerts(drift))
    assert len(_table_features(text)) == MAX_ROWS
    assert re.search(r"…and 15 more features \(.*\); see report\.html", text)


def test_top_bins_of_each_alert_are_listed() -> None:
    drift = with_verdicts({"dep_delay": ("critical", 0.4), "origin": ("ok", 0.01)})
    text = render_markdown(drift, make_alerts(drift))
    section = text.split("## Top contributing bins")[1].split("## ")[0]
    top = drift.filter(pl.col("feature") == "dep_delay")["top_bins"][0][0]
    assert "**dep\\_delay**" in section
    assert (f"{escape_md(top['bin'])} {top['baseline_share']:.1%} → {top['current_share']:.1%} "
            f"({top['contribution']:+.3g})") in section
    assert "origin" not in section


def test_problems_list_reasons() -> None:
    drift = make_drift(3, 2, seed=1)
    text = render_markdown(drift, make_alerts(drift))
    problems = text.split("## Problems")[1].split("## ")[0]
    assert "error, current histogram is all zeros" in problems
    assert "insufficient data, n\\_current 12 &lt; min\\_count 50" in problems


def test_run_metadata_section() -> None:
    drift = make_drift(2, 2)
    alerts = make_alerts(drift, run_id="nightly-42", created_at="2024-06-08T00:05:12Z")
    run = text_section(render_markdown(drift, alerts), "## Run")
    assert "- Run id: nightly-42" in run
    assert "- Created: 2024-06-08T00:05:12Z" in run
    assert "- Baseline input: data/baseline\\_profile.parquet" in run
    assert "- Current input: data/flights/2024-06-\\*.parquet" in run
    assert "- Metric: js\\_distance (base 2, bits)" in run
    assert "- Thresholds: warn 0.1, critical 0.2" in run
    assert f"- Config hash: {alerts['run']['config_hash'][:12]}" in run


def text_section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_columns_adapt_to_segments_windows_and_thresholds() -> None:
    flat = make_drift(3, 1, problems=False)
    header = render_markdown(flat, make_alerts(flat)).split("## Features")[1].split("\n")[4]
    assert header == "| Status | Feature | js\\_distance | q |"
    segmented = make_drift(3, 3, segments={"region": ["EU", "US"]}).with_columns(
        warn_threshold=pl.when(pl.col("feature") == "dep_delay").then(0.05).otherwise(0.1))
    text = render_markdown(segmented, make_alerts(segmented))
    assert ("| Status | Feature | Segment | Worst window | js\\_distance | Warn / critical | q "
            "| Alerting windows |") in text
    assert "| region=EU |" in text
    assert "warn 0.05–0.1, critical 0.2–0.2 (per feature / calibrated)" in text


def test_run_warnings_are_shown() -> None:
    drift = make_drift(2, 1)
    alerts = {**make_alerts(drift), "warnings": ["threshold pattern 'dep_*' matched nothing"]}
    assert "## Warnings\n\n- threshold pattern 'dep\\_\\*' matched nothing" in render_markdown(
        drift, alerts)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("dep_delay", "dep\\_delay"),
        ("a|b", "a\\|b"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("[x](http://evil)", "\\[x\\](http://evil)"),
        ("![i](x.png)", "\\!\\[i\\](x.png)"),
        ("`code` *em* ~s~ #h \\", "\\`code\\` \\*em\\* \\~s\\~ \\#h \\\\"),
        ("two\nlines\r\n\tand tab", "two lines and tab"),
        ("a & b", "a &amp; b"),
    ],
)
def test_escape_md(raw: str, escaped: str) -> None:
    assert escape_md(raw) == escaped
