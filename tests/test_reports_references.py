"""The reports of a run with several references and trends: side by side, escaped.

A feature whose name is markup, 12 daily windows, a break on day 9, four reference modes and
trends: the features table shows each reference's worst status under the row's status, the
plots of an alerting feature show the metric across windows once per reference and the
share plot names the reference of the window shown, the Trends section plots the flagged
series against their bands, and no data-derived string becomes markup in either report.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipeline.config import load_config
from pipeline.run import run_drift
from pipeline.write.documents import AlertsDocument
from tests.test_reports_html import ParsedPage

HOSTILE = "x<script>alert(1)</script>&"
START = datetime(2024, 5, 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report_refs")
    rng = np.random.default_rng(4)
    pl.DataFrame({HOSTILE: rng.normal(0, 1, 20_000),
                  "c": rng.choice(["a", "b"], 20_000)}).write_parquet(root / "base.parquet")
    parts = []
    for day in range(12):
        values = rng.normal(0, 1, 1500) + (1.5 if day >= 9 else 0.0)
        parts.append(pl.DataFrame({
            "ts": [START + timedelta(days=day, seconds=int(s))
                   for s in np.sort(rng.integers(0, 86_400, 1500))],
            HOSTILE: values, "c": rng.choice(["a", "b"], 1500)}))
    pl.concat(parts).write_parquet(root / "cur.parquet")
    config = load_config(None, {
        "input.baseline": str(root / "base.parquet"), "input.current": str(root / "cur.parquet"),
        "input.timestamp": "ts", "input.period": "1d",
        "references.modes": ["baseline", "previous", "rolling", "same_period"],
        "references.season": "7d", "trends.enabled": True, "trends.windows": 6,
        "trends.min_windows": 3, "output.dir": str(root / "runs"), "output.run_id": "r",
        "output.fail_on": "never"})
    result = run_drift(config)
    return {"result": result, "html": (result.run_dir / "report.html").read_text(),
            "md": (result.run_dir / "report.md").read_text()}


def test_the_features_table_shows_each_reference_under_the_status(run: dict[str, Any]) -> None:
    table = run["html"].split('<table id="features">')[1].split("</table>")[0]
    first = table.split("<tbody>")[1].split("</tr>")[0]
    refs = re.findall(r'<span class="ref" title="([a-z_]+):', first)
    assert refs == ["baseline", "previous", "rolling", "same_period"]
    drift = run["result"].drift.filter(pl.col("feature") == HOSTILE)
    counts = {ref: f"{n}/12" for ref, n in drift.group_by("reference").agg(
        pl.col("status").is_in(["warn", "critical"]).sum()).iter_rows()}
    assert counts["baseline"] == "3/12" and counts["previous"] == "1/12"
    row = next(line for line in run["md"].splitlines() if "script" in line and "| " in line)
    shown = re.findall(r"(baseline|previous|rolling|same\\_period) \S+ (\d+/12)", row)
    assert [(ref.replace("\\", ""), n) for ref, n in shown] == [
        (ref, counts[ref]) for ref in ("baseline", "previous", "rolling", "same_period")]


def test_alerting_features_plot_each_reference(run: dict[str, Any]) -> None:
    page = ParsedPage(run["html"])
    titles = set(page.text)
    for reference in ("baseline", "previous", "rolling"):
        assert f"js_distance across windows vs {reference}" in titles
    rank = pl.col("status").replace_strict({"critical": 0, "warn": 1}, default=2)
    worst = (run["result"].drift.filter(pl.col("feature") == HOSTILE)
             .sort(rank, pl.col("value"), descending=[False, True]).row(0, named=True))
    legend = f">{worst['reference']}</text>"  # the share plot's filled side
    assert legend in run["html"]
    if worst["reference"] != "baseline":
        assert f"vs {worst['reference']}".replace("_", "\\_") in run["md"]
        assert "compared with the" in run["html"]


def test_trends_section_plots_flagged_series_with_their_bands(run: dict[str, Any]) -> None:
    html = run["html"]
    section = html.split('<h2 id="trends">Trends</h2>')[1].split("<h2")[0]
    panels = section.count('<div class="plot trend"')
    trends = pl.read_parquet(run["result"].run_dir / "trends.parquet")
    flagged = (trends.filter(pl.col("checked"), pl.col("light").is_in(["yellow", "red"]))
               .select("segment", "feature", "statistic", "reference").unique().height)
    assert panels == min(flagged, 24) > 0
    assert section.count('class="band-green"') >= panels
    assert 'class="dot t-red"' in section
    md = run["md"].split("## Trends")[1].split("\n## ")[0]
    assert "🔴" in md and "spreads from the median" in md


def test_data_derived_names_stay_text(run: dict[str, Any]) -> None:
    page = ParsedPage(run["html"])
    assert len(page.all("script")) == 1  # the page's own
    assert HOSTILE in "".join(page.text)
    assert "<script>alert" not in run["md"] and "x&lt;script&gt;alert(1)&lt;/script&gt;&amp;" \
        in run["md"]


def test_alerts_json_carries_the_reference_and_the_trends(run: dict[str, Any]) -> None:
    document = run["result"].alerts
    AlertsDocument.model_validate(document)
    references = {a["reference"] for a in document["alerts"]}
    assert {"baseline", "previous"} <= references
    previous = next(a for a in document["alerts"] if a["reference"] == "previous")
    assert len(previous["reference_windows"]) == 1
    assert all(a["reference_windows"] is None for a in document["alerts"]
               if a["reference"] == "baseline")
    assert {p["reference"] for p in document["problems"]} >= {"previous", "same_period"}
    assert document["trends"]["summary"]["red"] > 0
