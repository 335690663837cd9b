"""Open a report in headless Chromium with Playwright: screenshot it, record errors and requests.

Playwright drives the Chromium already on the machine (``chromium`` from the distribution,
or ``$KL_DRIFT_CHROMIUM``); it never downloads a browser. Used to make
docs/report-screenshot.png and by the browser tests::

    python -m pipeline.write.reports.screenshot RUN_DIR docs/report-screenshot.png
    python -m pipeline.write.reports.screenshot RUN_DIR dark.png --dark --width 390

Playwright is a development dependency (the ``dev`` extra): reports are written without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.files import atomic_write_bytes

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, FloatRect, Page, Request

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
Scheme = Literal["light", "dark"]


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$KL_DRIFT_CHROMIUM`` first), or None."""
    candidates = [os.environ.get("KL_DRIFT_CHROMIUM", ""), *CHROMIUM_NAMES]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


@contextmanager
def chromium(executable: str | None = None) -> Iterator[Browser]:
    """A headless Chromium (the installed one) under Playwright, closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found: install it (apt-get install chromium) or "
                                "set KL_DRIFT_CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Opened:
    """A page with everything it logged: console errors, uncaught exceptions (``errors``,
    including Content-Security-Policy violations), every request it started (``requests``)
    and those the browser blocked before sending (``blocked``, e.g. by the CSP)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # requests the browser refused to send

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _failed(self, request: Request) -> None:
        if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP", "net::ERR_BLOCKED_BY_CLIENT"):
            self.blocked.append(request.url)

    def _exception(self, error: Exception) -> None:
        self.errors.append(str(error))


@contextmanager
def open_page(browser: Browser, url: str, *, width: int = 1280, height: int = 900,
              color_scheme: Scheme = "light") -> Iterator[Opened]:
    """Open ``url`` in a fresh context of the given viewport and colour scheme."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=color_scheme, device_scale_factor=1)
    try:
        page = context.new_page()
        opened = Opened(page)
        page.on("console", opened._console)
        page.on("pageerror", opened._exception)
        page.on("request", opened._request)
        page.on("requestfailed", opened._failed)
        page.goto(url, wait_until="load")
        yield opened
    finally:
        context.close()


def screenshot_report(report: Path, output: Path, *, width: int = 1280, max_height: int = 2400,
                      color_scheme: Scheme = "light") -> Path:
    """Write a PNG of the top of ``report`` (an HTML file), at most ``max_height`` pixels."""
    with chromium() as browser, open_page(browser, report.resolve().as_uri(), width=width,
                                          color_scheme=color_scheme) as opened:
        page_height = opened.page.evaluate("document.documentElement.scrollHeight")
        clip: FloatRect = {"x": 0, "y": 0, "width": width,
                           "height": min(int(page_height), max_height)}
        return atomic_write_bytes(output, opened.page.screenshot(clip=clip, full_page=True))


def main(argv: list[str] | None = None) -> None:
    """Command line: render RUN_DIR's reports if missing, then screenshot report.html."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=2400)
    parser.add_argument("--dark", action="store_true", help="emulate a dark system setting")
    args = parser.parse_args(argv)
    report = args.run_dir / "report.html"
    if not report.exists():
        from pipeline.write.reports import write_reports

        write_reports(args.run_dir)
    print(screenshot_report(report, args.output, width=args.width, max_height=args.max_height,
                            color_scheme="dark" if args.dark else "light"))


if __name__ == "__main__":
    main()
