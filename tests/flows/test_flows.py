"""The Prefect flows on a temporary server: artifacts, events, retries, failure modes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows import flows as flows_module
from flows.flows import build_baseline, drift_check, is_transient
from flows.publish import CRITICAL_EVENT, artifact_key, drift_table_rows
from pipeline.bins.profile import read_profile
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, InputError
from pipeline.write.history import read_history
from tests.flows.conftest import FLIGHTS_BASELINE, flights_config

RUN_ID = "Flights 2013/06"  # needs sanitising into artifact keys


@pytest.fixture(scope="module")
def drift_run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One drift_check run, its parameters given as JSON the way a deployment passes them."""
    out = tmp_path_factory.mktemp("runs")
    config = flights_config(out, **{"output.run_id": RUN_ID})
    state = drift_check(config=config.model_dump(mode="json"), return_state=True)
    return state, state.result(), out


def test_drift_is_data_the_run_completes_with_reports_and_history(drift_run: Any) -> None:
    state, result, out = drift_run
    assert state.is_completed()
    assert result.worst_status == "critical" and result.exit_code == 1
    assert {"drift.parquet", "alerts.json", "report.md", "report.html"} <= {
        p.name for p in result.run_dir.iterdir()}
    history = read_history(out / "history")
    assert history is not None and set(history["run_id"]) == {RUN_ID}
    assert history.height == result.drift.height


def test_report_and_drift_table_artifacts_are_published(drift_run: Any) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    state, result, _ = drift_run
    keys = {"markdown": artifact_key("report", RUN_ID), "table": artifact_key("drift", RUN_ID)}
    assert keys["markdown"].startswith("kl-drift-report-flights-2013-06-")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys.values()))))
    by_type = {a.type: a for a in artifacts}
    assert {t: a.key for t, a in by_type.items()} == keys
    assert all(a.flow_run_id == state.state_details.flow_run_id for a in artifacts)
    assert by_type["markdown"].data == (result.run_dir / "report.md").read_text()
    rows = json.loads(by_type["table"].data)
    assert rows == drift_table_rows(result.drift)
    assert rows[0]["status"] == "critical" and len(rows) == result.drift.height


def test_one_event_per_critical_alert(drift_run: Any) -> None:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    state, result, _ = drift_run
    critical = [a for a in result.alerts["alerts"] if a["status"] == "critical"]
    assert critical, "the flights fixture must have critical rows"
    flow_run = f"prefect.flow-run.{state.state_details.flow_run_id}"
    query = EventFilter(event=EventNameFilter(name=[CRITICAL_EVENT]),
                        related=EventRelatedFilter(id=[flow_run]))
    deadline = time.monotonic() + 20  # events are sent and stored asynchronously
    with get_client(sync_client=True) as client:
        while len(events := client.read_events(query, limit=50).events) < len(critical):
            assert time.monotonic() < deadline, f"{len(events)} of {len(critical)} events"
            time.sleep(0.2)
    received = sorted((e.resource.id, e.payload["window"], e.payload["value"])
                      for e in events)
    assert received == sorted((f"kl-drift.feature.{a['feature']}.{a['segment']}",
                               a["window"], a["value"]) for a in critical)
    assert all(e.payload["run_id"] == RUN_ID for e in events)


def test_fail_on_alert_fails_the_run(prefect_server: str, tmp_path: Path) -> None:
    config = flights_config(tmp_path, **{"output.run_id": "strict"})
    state = drift_check(config, fail_on_alert=True, return_state=True)
    assert state.is_failed()
    assert "run strict: rows at or above 'critical'" in state.message
    assert (tmp_path / "strict" / "report.html").is_file()  # everything was published first


def read_failure(cause: BaseException | None) -> InputError:
    """An InputError as the readers raise it, from the error met while reading."""
    error = InputError("cannot read it as Parquet", source="s3://bucket/x.parquet")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("error", "transient"), [
    (TimeoutError("read timed out"), True),
    (read_failure(ConnectionResetError(104, "Connection reset by peer")), True),
    (read_failure(None), False),
    (read_failure(FileNotFoundError("x.parquet")), False),
    (PermissionError("x.parquet"), False),
    (ConfigError("alerts.warn: must be < alerts.critical"), False),
    (ValueError("a bug"), False),
])
def test_only_os_and_network_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(("cause", "attempts"), [(TimeoutError("timed out"), 2), (None, 1)])
def test_retries_happen_for_transient_errors_only(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch, cause: OSError | None, attempts: int
) -> None:
    calls: list[RunConfig] = []

    def fails_once(config: RunConfig, progress: Any) -> str:
        calls.append(config)
        if len(calls) == 1:
            raise read_failure(cause)
        return "finished"

    monkeypatch.setattr(flows_module, "run_drift", fails_once)
    task = flows_module.run_drift_task.with_options(retry_delay_seconds=0)
    state = task(RunConfig(), return_state=True)
    assert len(calls) == attempts
    assert state.is_completed() is (attempts == 2)


@pytest.fixture
def flow_run_records() -> Iterator[list[logging.LogRecord]]:
    """Records of the flow-run logger, as its handlers see them (after its filters)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_bad_config_fails_with_its_one_line_message_and_no_traceback(
    prefect_server: str, tmp_path: Path, flow_run_records: list[logging.LogRecord]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[alerts]\nwran = 0.1\n")
    state = drift_check(str(path), return_state=True)
    assert state.is_failed()
    assert "unknown key 'alerts.wran' (did you mean 'alerts.warn'?)" in state.message
    with pytest.raises(ConfigError, match=r"unknown key 'alerts\.wran'"):
        state.result()
    failures = [r for r in flow_run_records if r.levelno >= logging.ERROR]
    assert failures and all(r.exc_info is None for r in failures)


def test_parameters_are_validated_before_the_run(prefect_server: str) -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="config"):
        drift_check(config={"drift": {"metric": 3}})


def test_build_baseline_writes_the_profile_drift_checks_read(
    prefect_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[input]\nbaseline = "profiles/flights.parquet"\n')
    written = build_baseline(str(path), source=FLIGHTS_BASELINE,
                             overrides={"input.features": ["dest", "distance"]})
    assert written == str(tmp_path / "profiles" / "flights.parquet")
    assert read_profile(written).features == ["dest", "distance"]


def test_build_baseline_never_overwrites_data(prefect_server: str, tmp_path: Path) -> None:
    config = flights_config(tmp_path)  # input.baseline is the raw flights file
    before = Path(FLIGHTS_BASELINE).stat().st_mtime_ns
    state = build_baseline(config, source=FLIGHTS_BASELINE, return_state=True)
    assert state.is_failed() and "holds data, not a profile" in state.message
    assert Path(FLIGHTS_BASELINE).stat().st_mtime_ns == before
