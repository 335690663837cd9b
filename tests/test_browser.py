"""report.html in headless Chromium: no console errors, no requests, working sort and filter.

Needs Chromium (``chromium`` on PATH or ``$KL_DRIFT_CHROMIUM``). Without it the tests skip
locally and fail when ``CI`` is set, so CI can never pass them silently.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from pipeline.write.reports import write_reports
from pipeline.write.reports.screenshot import Page, find_chromium
from tests.report_data import make_alerts, make_drift, write_run

pytestmark = pytest.mark.browser

ROWS = "Array.from(document.querySelectorAll('#features tbody tr'))"
VISIBLE = f"{ROWS}.filter(r => !r.hidden)"


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = find_chromium()
    if executable is None:
        message = "headless Chromium not found (install chromium or set KL_DRIFT_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return executable


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    drift = make_drift(14, 8, seed=5, segments={"region": ["EU", "US"]})
    broken = pl.col("feature") == "month"  # every window an error: a blank metric cell
    drift = drift.with_columns(
        status=pl.when(broken).then(pl.lit("error")).otherwise("status"),
        value=pl.when(broken).then(None).otherwise("value"),
        reason=pl.when(broken).then(pl.lit("all-zero histogram")).otherwise("reason"))
    run_dir = write_run(tmp_path_factory.mktemp("browser") / "run", drift, make_alerts(drift))
    write_reports(run_dir)
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def page(chromium: str, report: Path) -> Iterator[Page]:
    with Page(chromium, width=1280, height=900) as opened:
        opened.goto(report.as_uri())
        yield opened


def test_no_console_errors_and_no_network_requests(page: Page, report: Path) -> None:
    assert page.errors == []
    assert page.requests == [report.as_uri()]


def test_screenshot_is_not_blank(page: Page) -> None:
    pixels = imread(io.BytesIO(page.screenshot(max_height=900)), format="png")[..., :3]
    assert pixels.shape[:2] == (900, 1280)
    background = np.all(np.abs(pixels - pixels[5, 5]) < 0.02, axis=-1)
    assert 0.05 < 1 - background.mean() < 0.9  # content, but not a solid or noisy block
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 20  # text, badges, plots


def test_clicking_a_header_sorts_the_table(page: Page) -> None:
    header = "document.querySelectorAll('#features thead th')"
    features = f"{ROWS}.map(r => r.cells[1].textContent.trim())"
    page.evaluate(f"{header}[1].querySelector('button').click()")
    ascending = page.evaluate(features)
    assert ascending == sorted(ascending, key=str.lower)
    page.evaluate(f"{header}[1].querySelector('button').click()")
    assert page.evaluate(features) == sorted(ascending, key=str.lower, reverse=True)
    # Numeric column (the metric): by value, blanks last in either direction.
    metric = f"{ROWS}.map(r => r.cells[4].dataset.sort)"
    for order in ("ascending", "descending"):
        page.evaluate(f"{header}[4].querySelector('button').click()")
        keys = page.evaluate(metric)
        values = [float(v) for v in keys if v]
        assert values == sorted(values, reverse=order == "descending")
        assert keys[-2:] == ["", ""]  # "month" in both regions
        assert page.evaluate(f"{header}[4].getAttribute('aria-sort')") == order


def test_status_filter_and_search(page: Page) -> None:
    def set_control(selector: str, value: str, event: str) -> None:
        page.evaluate(f"(() => {{ const c = document.querySelector({json.dumps(selector)});"
                      f" c.value = {json.dumps(value)};"
                      f" c.dispatchEvent(new Event({json.dumps(event)})); }})()")

    total = page.evaluate(f"{ROWS}.length")
    set_control("#status-filter", "critical", "change")
    statuses = page.evaluate(f"{VISIBLE}.map(r => r.dataset.status)")
    assert statuses and set(statuses) == {"critical"} and len(statuses) < total
    assert page.evaluate("document.getElementById('shown-count').textContent") == (
        f"{len(statuses)} of {total}")
    set_control("#status-filter", "all", "change")
    set_control("#search", "DEP_DEL", "input")
    features = page.evaluate(f"{VISIBLE}.map(r => r.cells[1].textContent.trim())")
    assert features == ["dep_delay", "dep_delay"]  # one row per region
    set_control("#search", "region=us", "input")
    assert page.evaluate(f"{VISIBLE}.length") == total // 2
    set_control("#search", "", "input")
    assert page.evaluate(f"{VISIBLE}.length") == total
    assert page.errors == []


def test_the_harness_sees_requests_and_errors(chromium: str, tmp_path: Path) -> None:
    """Negative control: a page that fetches and logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>')
    with Page(chromium) as opened:
        opened.goto(bad.as_uri())
        assert "http://127.0.0.1:9/x.png" in opened.requests
        assert any("boom" in e for e in opened.errors)
