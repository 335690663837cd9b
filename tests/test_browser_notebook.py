"""The inline report of a Python result (``_repr_html_``) in headless Chromium, inside a page
standing in for a notebook: it renders, its script runs, it stays isolated, and its links
scroll within it instead of loading the notebook into the frame."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import pipeline as kd
from pipeline.write.reports.screenshot import Opened, chromium, open_page
from tests.servers import chromium_executable
from tests.test_api import tables

pytestmark = pytest.mark.browser


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The http:// address of a page with a notebook-like cell output holding the result's
    inline report (served over HTTP, as Jupyter serves a notebook)."""
    baseline, current = tables()
    result = kd.check(current, kd.profile(baseline), timestamp="ts", period="1w")
    page = tmp_path_factory.mktemp("notebook") / "notebook.html"
    page.write_text("<!doctype html><html><head><title>notebook</title>"
                    "<link rel='icon' href='data:,'></head><body>"
                    "<p id='cell'>In [1]: result</p><div class='output'>"
                    f"{result._repr_html_()}</div></body></html>", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        _Quiet, directory=str(page.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notebook.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def opened(notebook: str) -> Iterator[Opened]:
    executable = chromium_executable()
    with chromium(executable) as browser, open_page(browser, notebook) as page:
        yield page


def test_the_inline_report_renders_and_its_script_runs(opened: Opened, notebook: str
                                                       ) -> None:
    frame = opened.page.frame_locator("iframe")
    lead = frame.locator(".headline .lead strong").inner_text()
    assert lead == "1 of 2 features drifted"
    assert frame.locator("#shown-count").inner_text() == "2 of 2"  # set by the script
    frame.locator("#status-filter").select_option("alerting")
    assert frame.locator("#shown-count").inner_text() == "1 of 2"
    assert opened.errors == []  # no CSP violation, no script error, in the frame either
    assert opened.requests == [notebook] and opened.blocked == []


def test_the_report_is_isolated_from_the_notebook(opened: Opened) -> None:
    page = opened.page
    assert page.evaluate("document.querySelectorAll('#features').length") == 0
    report = next(f for f in page.frames if f != page.main_frame)
    assert report.evaluate(
        "() => { try { return window.parent.document.title } catch (e) { return 'denied' } }"
    ) == "denied"
    # the report's styles and script stay in the frame
    assert page.evaluate("[document.styleSheets.length, document.scripts.length]") == [0, 0]


def test_links_open_a_distribution_within_the_frame(opened: Opened) -> None:
    page = opened.page
    report = next(f for f in page.frames if f != page.main_frame)
    frame = page.frame_locator("iframe")
    frame.locator("#status-filter").select_option("all")
    details = frame.locator("details#o0")
    assert details.evaluate("d => d.open") is False
    frame.locator("a[href='#o0']").first.click()
    page.wait_for_timeout(200)
    assert report.url == "about:srcdoc"  # not navigated to the notebook's address
    assert details.evaluate("d => d.open") is True
    assert frame.locator(".headline").count() == 1
