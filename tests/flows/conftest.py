"""Prefect servers for the flow tests, and flights configs.

``prefect_server``: one temporary server (Prefect's test harness, in this process) for the
flow tests of the session. Starting it costs several seconds, so it is session-scoped.
Flow-run heartbeats are off (each finished run would wait up to a second for its heartbeat
thread) and so is the server's telemetry (it races the migrations for the SQLite lock).

``real_prefect_server``: ``prefect server start`` as its own process, as users run it, with
its services (scheduler, triggers, actions) on; for schedules and automations.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import RunConfig, load_config

DATA = Path(__file__).parents[2] / "data"
FLIGHTS_BASELINE = str(DATA / "flights_baseline.parquet")
FLIGHTS_CURRENT = str(DATA / "flights_current.parquet")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """The API URL of the session's temporary Prefect server."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # Tasks called outside a flow (the retry tests) log locally only, without a warning.
    quiet = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False,
             PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}
    with temporary_settings(updates=quiet), prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())


def flights_config(out: Path, **overrides: object) -> RunConfig:
    """Three features of the flights demo in weekly windows: `dest` and `dep_delay` drift."""
    return load_config(None, {
        "input.baseline": FLIGHTS_BASELINE, "input.current": FLIGHTS_CURRENT,
        "input.timestamp": "scheduled_departure", "input.period": "1w",
        "input.features": ["dep_delay", "dest", "distance"], "output.dir": str(out),
        **overrides})


#: Longest wait for `prefect server start` to answer (migrations on a busy CI machine).
SERVER_STARTUP_SECONDS = 120


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prefect_env(home: Path, **settings: object) -> dict[str, str]:
    """This process's environment without its PREFECT_* settings, plus ``settings``: a
    Prefect process started with it depends on nothing but what the test chose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **{f"PREFECT_{k.upper()}": str(v) for k, v in settings.items()}}


def start_process(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``command`` in its own process group (so `stop_process` stops its children
    too), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(process: subprocess.Popen, *, grace: float = 20) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class RealServer:
    url: str  # the API URL, http://127.0.0.1:<port>/api
    log: Path  # the server's output

    def errors(self) -> str:
        """The server's log lines that mention an error (to explain a failed test)."""
        return "\n".join(line for line in self.log.read_text(errors="replace").splitlines()
                         if "Error" in line or "ERROR" in line)


@pytest.fixture(scope="session")
def real_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """``prefect server start`` on 127.0.0.1 and a free port, with its own PREFECT_HOME (so
    its own SQLite database); stopped at the end of the session.

    The scheduler loop runs every second instead of every minute, so a deployment's
    scheduled runs are created at once.
    """
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = prefect_env(root / "home", ui_enabled="false",
                      server_services_scheduler_loop_seconds=1,
                      server_services_scheduler_recent_deployments_loop_seconds=1)
    log = root / "server.log"
    server = start_process([sys.executable, "-m", "prefect", "server", "start", "--host",
                            "127.0.0.1", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + SERVER_STARTUP_SECONDS
        while True:
            assert server.poll() is None, f"prefect server start exited:\n{tail(log)}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"prefect server start did not answer in {SERVER_STARTUP_SECONDS} s:\n"
                f"{tail(log)}")
            time.sleep(0.5)
        yield RealServer(url, log)
    finally:
        stop_process(server)
