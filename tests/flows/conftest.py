"""One temporary Prefect server for every flow test of the session, and flights configs.

Starting Prefect's test harness costs several seconds, so it is session-scoped. Flow-run
heartbeats are off (each finished run would wait up to a second for its heartbeat thread)
and so is the server's telemetry (it races the migrations for the SQLite lock).
"""

from __future__ import annotations

from collections.abc import Iterator
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
