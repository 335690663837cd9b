"""Open a report in headless Chromium: screenshot it, and record console errors and requests.

Talks the DevTools protocol over ``--remote-debugging-pipe`` with the standard library only
(no TCP port, no extra packages). Used to make docs/report-screenshot.png and by the browser
test::

    python -m pipeline.write.reports.screenshot RUN_DIR docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.files import atomic_write_bytes
from pipeline.write.reports import write_reports

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio")

# Chromium reads commands on fd 3 and writes replies on fd 4. This trampoline moves the pipe
# ends there (via high temporary fds, so neither overwrites the other) and execs Chromium;
# unlike a shell it handles any fd number, unlike preexec_fn it is safe with threads.
_EXEC_WITH_PIPES = (
    "import fcntl, os, sys\n"
    "r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 10) for fd in sys.argv[1:3])\n"
    "os.dup2(r, 3)\nos.dup2(w, 4)\nos.execv(sys.argv[3], sys.argv[3:])"
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$KL_DRIFT_CHROMIUM`` first), or None."""
    candidates = [os.environ.get("KL_DRIFT_CHROMIUM", ""), *CHROMIUM_NAMES]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


class Page:
    """One headless Chromium tab, driven over the DevTools pipe. Use as a context manager.

    Every console error, uncaught exception, error log entry (e.g. a CSP violation) and
    network request of the tab is recorded in `errors` and `requests`.
    """

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900,
                 timeout: float = 30.0) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._timeout = timeout
        self._size = (width, height)
        self._profile = tempfile.TemporaryDirectory(prefix="kl-drift-chromium-")
        to_browser, self._write_fd = os.pipe()
        self._read_fd, from_browser = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_PIPES, str(to_browser), str(from_browser),
             executable, *FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(to_browser, from_browser), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target,
                                   flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Quit Chromium and remove its temporary profile."""
        self._timeout = 5.0
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):  # already gone
            self._call("Browser.close")
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._write_fd)
        self._profile.cleanup()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._messages.put(json.loads(message))

    def _record(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description", details["text"]))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])
        self._events.append(event)

    def _receive(self, deadline: float) -> dict[str, Any]:
        try:
            return self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("Chromium did not answer in time") from None

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._record(reply)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a DevTools command to the tab and return its result."""
        return self._call(method, self._session, **params)

    def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        seen = len(self._events)
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self._timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events[seen:]):
            self._record(self._receive(deadline))

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its (JSON) value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']['text']}")
        return result["result"].get("value")

    def screenshot(self, *, max_height: int = 2400) -> bytes:
        """PNG of the page from the top: its full height, at most ``max_height`` pixels."""
        content = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": self._size[0],
                "height": min(int(content["height"]), max_height), "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", clip=clip,
                         captureBeyondViewport=True)["data"]
        return base64.b64decode(data)


def screenshot_report(report: Path, output: Path, *, width: int = 1280,
                      max_height: int = 2400) -> Path:
    """Write a PNG screenshot of the top of ``report`` (an HTML file) to ``output``."""
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found: install it or set KL_DRIFT_CHROMIUM")
    with Page(executable, width=width) as page:
        page.goto(report.resolve().as_uri())
        return atomic_write_bytes(output, page.screenshot(max_height=max_height))


def main(argv: list[str] | None = None) -> None:
    """Command line: render RUN_DIR's reports if missing, then screenshot report.html."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--max-height", type=int, default=2400)
    args = parser.parse_args(argv)
    report = args.run_dir / "report.html"
    if not report.exists():
        write_reports(args.run_dir)
    print(screenshot_report(report, args.output, width=args.width, max_height=args.max_height))


if __name__ == "__main__":
    main()
