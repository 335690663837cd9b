"""report.html in headless Chromium (Playwright): what a reader sees, on a desktop and a phone,
in the light and dark schemes; no console errors, no network requests, the CSP enforced.

Needs Chromium (``chromium`` on PATH or ``$KL_DRIFT_CHROMIUM``) and Playwright (the dev
extra). Without them the tests skip locally and fail when ``CI`` is set, so CI can never pass
them silently.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from pipeline.bins.layout import bin_label
from pipeline.write.reports import write_reports
from pipeline.write.reports.screenshot import Opened, chromium, open_page
from tests.report_data import make_alerts, make_drift, write_run
from tests.servers import chromium_executable

pytestmark = pytest.mark.browser

ROWS = "Array.from(document.querySelectorAll('#features tbody tr'))"
VISIBLE = f"{ROWS}.filter(r => !r.hidden)"
SCALE = 1.6431714216404367  # makes every dep_delay edge a long float


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_executable()
    with chromium(executable) as opened:
        yield opened


def _long_edges(bins: list[dict]) -> list[dict]:
    """The bins with their numeric edges scaled to long floats, labelled as the binning does."""
    out = []
    for b in bins:
        if b["lower"] is None or math.isnan(b["lower"]):
            out.append(b)
            continue
        lower, upper = b["lower"] * SCALE, b["upper"] * SCALE
        out.append({**b, "lower": lower, "upper": upper, "bin": bin_label(lower, upper)})
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    drift = make_drift(14, 8, seed=5, segments={"region": ["EU", "US"]})
    broken = pl.col("feature") == "month"  # every window an error: a blank metric cell
    drift = drift.with_columns(
        status=pl.when(broken).then(pl.lit("error")).otherwise("status"),
        value=pl.when(broken).then(None).otherwise("value"),
        reason=pl.when(broken).then(pl.lit("all-zero histogram")).otherwise("reason"))
    long = drift.filter(pl.col("feature") == "dep_delay")
    relabel = {b["bin"]: n["bin"] for bins in long["bins"].to_list()
               for b, n in zip(bins, _long_edges(bins), strict=True)}
    drift = drift.with_columns(
        bins=pl.when(pl.col("feature") == "dep_delay").then(pl.Series(
            [_long_edges(b) if f == "dep_delay" else b
             for f, b in zip(drift["feature"], drift["bins"].to_list(), strict=True)],
            dtype=drift.schema["bins"])).otherwise("bins"),
        top_bins=pl.Series([[{**t, "bin": relabel.get(t["bin"], t["bin"])} for t in tops]
                            if f == "dep_delay" else tops for f, tops in
                            zip(drift["feature"], drift["top_bins"].to_list(), strict=True)],
                           dtype=drift.schema["top_bins"]))
    run_dir = write_run(tmp_path_factory.mktemp("browser") / "run", drift, make_alerts(drift))
    write_reports(run_dir)
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def page(browser: object, report: Path) -> Iterator[Opened]:
    with open_page(browser, report.as_uri(), width=1280) as opened:  # type: ignore[arg-type]
        yield opened


@pytest.fixture(scope="module")
def dark(browser: object, report: Path) -> Iterator[Opened]:
    with open_page(browser, report.as_uri(), color_scheme="dark") as opened:  # type: ignore[arg-type]
        yield opened


@pytest.fixture(scope="module")
def phone(browser: object, report: Path) -> Iterator[Opened]:
    with open_page(browser, report.as_uri(), width=390, height=844) as opened:  # type: ignore[arg-type]
        yield opened


def _png_pixels(png: bytes) -> np.ndarray:
    """RGB pixels of a PNG screenshot, in [0, 1]."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float) / 255


@pytest.mark.parametrize("which", ["page", "dark", "phone"])
def test_no_console_errors_and_no_network_requests(which: str, report: Path,
                                                   request: pytest.FixtureRequest) -> None:
    opened: Opened = request.getfixturevalue(which)
    assert opened.errors == []
    assert opened.requests == [report.as_uri()] and opened.blocked == []


def test_headline_counts_features_and_checks_come_second(page: Opened, report: Path) -> None:
    drift = pl.read_parquet(report.parent / "drift.parquet")
    drifted = drift.filter(pl.col("status").is_in(["warn", "critical"]))["feature"].n_unique()
    lead = page.page.locator(".headline .lead strong").inner_text()
    assert lead == f"{drifted} of {drift['feature'].n_unique()} features drifted"
    # The cards count the table's rows (segment x feature), as the table shows them.
    table = page.page.evaluate(f"{ROWS}.map(r => r.dataset.status)")
    cards = dict(page.page.evaluate(
        "Array.from(document.querySelectorAll('.cards .card')).map(c => "
        "[c.className.split(' ')[1].slice(2), Number(c.querySelector('.count').textContent)])"))
    assert cards == {s: table.count(s) for s in cards} and sum(cards.values()) == len(table)
    checks = page.page.locator(".headline > .note").inner_text()
    assert f"All {drift.height} checks" in checks


def test_numeric_labels_are_rounded_with_full_precision_tooltips(page: Opened,
                                                                 report: Path) -> None:
    drift = pl.read_parquet(report.parent / "drift.parquet")
    row = drift.filter(pl.col("feature") == "dep_delay", pl.col("region") == "EU",
                       pl.col("status") == "critical").sort("value").tail(1)
    full = [b["bin"] for b in row["bins"][0].to_list() if b["bin"] != "__missing__"]
    assert all(len(label) > 20 for label in full[1:-1])  # really long floats
    article = page.page.locator("article", has=page.page.locator("h3", has_text="dep_delay")
                                ).first
    texts = article.locator("svg").first.locator("text").evaluate_all(
        "ts => ts.filter(t => t.querySelector('title')).map(t => "
        "[t.firstChild.textContent, t.querySelector('title').textContent, t.getBBox().x])")
    shown = {title.split(": ")[0]: (text, x) for text, title, x in texts}
    assert set(full) <= set(shown)  # every bin has its full label in a tooltip
    for label in full:
        text, x = shown[label]
        assert len(text) <= 18 and text != label, (text, label)
        lower, upper = (float(v) for v in text[1:-1].split(", "))
        exact = [float(v) for v in label[1:-1].split(", ")]
        assert lower == pytest.approx(exact[0], rel=5e-3) and upper == pytest.approx(
            exact[1], rel=5e-3)
        assert x >= 0  # not clipped at the left edge of the plot
    assert len({text for text, _ in shown.values()}) == len(shown)  # still distinct
    # The table's top-bin note and the top-bin list carry the exact label as a tooltip too.
    titles = page.page.evaluate("Array.from(document.querySelectorAll('[title]'))"
                                ".map(e => e.getAttribute('title'))")
    assert any(t in full for t in titles)


def test_dark_scheme_follows_the_system_setting(page: Opened, dark: Opened) -> None:
    def colours(opened: Opened) -> dict[str, list[float]]:
        return opened.page.evaluate(
            "(() => { const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);"
            " const css = (sel, prop) => rgb(getComputedStyle(document.querySelector(sel))[prop]);"
            " return {page: css('body', 'backgroundColor'), ink: css('body', 'color'),"
            " card: css('.card', 'backgroundColor'), base: css('.plot .base', 'fill'),"
            " tick: css('.plot .tick', 'fill')}; })()")

    def luminance(rgb: list[float]) -> float:
        return float(np.dot(rgb, [0.2126, 0.7152, 0.0722]) / 255)

    light, night = colours(page), colours(dark)
    assert luminance(light["page"]) > 0.9 and luminance(light["ink"]) < 0.3
    assert luminance(night["page"]) < 0.15 and luminance(night["ink"]) > 0.8
    assert luminance(night["card"]) < 0.2 and luminance(night["tick"]) > 0.4  # plots too
    assert night["base"] != light["base"]
    pixels = _png_pixels(dark.page.screenshot())
    assert pixels[..., :].mean() < 0.3  # mostly dark
    assert page.page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is False
    assert dark.page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is True


def test_phone_width_has_no_horizontal_page_scroll(phone: Opened) -> None:
    widths = phone.page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth]")
    assert widths[0] <= widths[1] == 390 and widths[2] <= 390
    # Wide tables scroll inside their own box instead.
    boxes = phone.page.evaluate(
        "Array.from(document.querySelectorAll('.table-wrap')).map(w => "
        "[w.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX])")
    assert any(scroll > client for scroll, client, _ in boxes)
    assert all(overflow == "auto" for _, _, overflow in boxes)
    # Plots fit the column and their text stays legible (at least 8 px).
    plots = phone.page.evaluate(
        "Array.from(document.querySelectorAll('.plot svg')).map(s => [s.getBoundingClientRect()"
        ".right, s.getBoundingClientRect().width / s.viewBox.baseVal.width])")
    assert plots and all(right <= 390 for right, _ in plots)
    assert min(scale for _, scale in plots) * 11 >= 8


def test_screenshot_is_not_blank(page: Opened) -> None:
    pixels = _png_pixels(page.page.screenshot())
    assert pixels.shape[:2] == (900, 1280)
    background = np.all(np.abs(pixels - pixels[5, 5]) < 0.02, axis=-1)
    assert 0.05 < 1 - background.mean() < 0.9  # content, but not a solid or noisy block
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 20  # text, badges


def test_csp_blocks_injected_scripts_and_fetches(browser: object, report: Path) -> None:
    with open_page(browser, report.as_uri()) as opened:  # type: ignore[arg-type]
        policy = opened.page.locator("meta[http-equiv='Content-Security-Policy']"
                                     ).get_attribute("content")
        assert policy is not None and "default-src 'none'" in policy
        opened.page.evaluate(
            "(() => { const s = document.createElement('script');"
            " s.textContent = 'window.__injected = 1'; document.body.append(s);"
            " const i = document.createElement('img'); i.src = 'http://127.0.0.1:9/x.png';"
            " document.body.append(i); })()")
        opened.page.wait_for_timeout(200)
        assert opened.page.evaluate("window.__injected") is None
        # The image request was refused by the CSP, never sent.
        assert opened.blocked == ["http://127.0.0.1:9/x.png"]
        assert any("Content Security Policy" in e for e in opened.errors), opened.errors


def test_links_open_collapsed_distributions(page: Opened) -> None:
    link = page.page.locator("#features a[href^='#o']").first
    target = link.get_attribute("href")
    assert target and page.page.evaluate(f"document.querySelector('{target}').open") is False
    link.click()
    assert page.page.evaluate(f"document.querySelector('{target}').open") is True
    assert page.page.locator(f"{target} svg").first.is_visible()


def test_clicking_a_header_sorts_the_table(page: Opened) -> None:
    evaluate = page.page.evaluate
    header = "document.querySelectorAll('#features thead th')"
    features = f"{ROWS}.map(r => r.cells[1].textContent.trim())"
    evaluate(f"{header}[1].querySelector('button').click()")
    ascending = evaluate(features)
    assert ascending == sorted(ascending, key=str.lower)
    evaluate(f"{header}[1].querySelector('button').click()")
    assert evaluate(features) == sorted(ascending, key=str.lower, reverse=True)
    # Numeric column (the metric): by value, blanks last in either direction.
    metric = f"{ROWS}.map(r => r.cells[4].dataset.sort)"
    for order in ("ascending", "descending"):
        evaluate(f"{header}[4].querySelector('button').click()")
        keys = evaluate(metric)
        values = [float(v) for v in keys if v]
        assert values == sorted(values, reverse=order == "descending")
        assert keys[-2:] == ["", ""]  # "month" in both regions
        assert evaluate(f"{header}[4].getAttribute('aria-sort')") == order


def test_status_filter_and_search(page: Opened) -> None:
    def set_control(selector: str, value: str, event: str) -> None:
        page.page.evaluate(f"(() => {{ const c = document.querySelector({json.dumps(selector)});"
                           f" c.value = {json.dumps(value)};"
                           f" c.dispatchEvent(new Event({json.dumps(event)})); }})()")

    total = page.page.evaluate(f"{ROWS}.length")
    set_control("#status-filter", "critical", "change")
    statuses = page.page.evaluate(f"{VISIBLE}.map(r => r.dataset.status)")
    assert statuses and set(statuses) == {"critical"} and len(statuses) < total
    assert page.page.evaluate("document.getElementById('shown-count').textContent") == (
        f"{len(statuses)} of {total}")
    set_control("#status-filter", "all", "change")
    set_control("#search", "DEP_DEL", "input")
    features = page.page.evaluate(f"{VISIBLE}.map(r => r.cells[1].textContent.trim())")
    assert features == ["dep_delay", "dep_delay"]  # one row per region
    set_control("#search", "region=us", "input")
    assert page.page.evaluate(f"{VISIBLE}.length") == total // 2
    set_control("#search", "", "input")
    assert page.page.evaluate(f"{VISIBLE}.length") == total
    assert page.errors == []


def test_the_harness_sees_requests_and_errors(browser: object, tmp_path: Path) -> None:
    """Negative control: a page that fetches and logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>')
    with open_page(browser, bad.as_uri()) as opened:  # type: ignore[arg-type]
        assert "http://127.0.0.1:9/x.png" in opened.requests
        assert any("boom" in e for e in opened.errors)
