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
from flows.publish import (
    ALERT_EVENT_PREFIX,
    RESOLVED_EVENT,
    RUN_COMPLETED,
    alert_events,
    artifact_key,
    changes,
    drift_table_rows,
    report_url,
    summary_markdown,
)
from pipeline.bins.profile import read_profile
from pipeline.config import PrefectConfig, RunConfig
from pipeline.errors import ConfigError, InputError
from pipeline.write.history import read_history
from tests.flows.conftest import FLIGHTS_BASELINE, flights_config

RUN_ID = "Flights 2013/06"  # not a valid artifact key: keys must come from the monitor
MONITOR = "Flights weekly"  # prefect.name; needs sanitising into artifact keys


@pytest.fixture(scope="module")
def drift_run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One drift_check run, its parameters given as JSON the way a deployment passes them."""
    out = tmp_path_factory.mktemp("runs")
    config = flights_config(out, **{"output.run_id": RUN_ID, "prefect.name": MONITOR})
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


def test_artifacts_are_published_under_keys_stable_per_monitor(drift_run: Any) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    state, result, _ = drift_run
    keys = {"markdown": artifact_key("report", MONITOR),
            "table": artifact_key("drift-table", MONITOR),
            "link": artifact_key("report-link", MONITOR)}
    assert keys["markdown"].startswith("kl-drift-flights-weekly-")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys.values()))))
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == set(keys.values()) and len(artifacts) == 3
    assert all(a.flow_run_id == state.state_details.flow_run_id for a in artifacts)
    report = report_url(result.run_dir)
    head = summary_markdown(result.alerts, monitor=MONITOR, report=report)
    assert by_key[keys["markdown"]].data == (
        f"{head}\n---\n\n{(result.run_dir / 'report.md').read_text()}")
    counts = changes(result.alerts)
    assert (f"**{counts['new']} new · {counts['ongoing']} ongoing · {counts['resolved']} "
            "resolved**") in head
    assert report == (result.run_dir.resolve() / "report.html").as_uri()
    # Prefect stores a link artifact as Markdown; the run id's "/" is no markup.
    assert by_key[keys["link"]].data == f"[report.html of run {RUN_ID}]({report})"
    rows = json.loads(str(by_key[keys["table"]].data))
    assert rows == drift_table_rows(result.drift)
    assert rows[0]["status"] == "critical" and len(rows) == result.drift.height
    assert all(len(repr(r["value"])) <= len("1.234e-05") for r in rows if r["value"])


def flow_run_events(flow_run_id: Any, names: list[str], expected: int, *,
                    about_the_run: bool = False) -> list[Any]:
    """The events related to a flow run (or, ``about_the_run``, whose resource it is), once
    ``expected`` have arrived (stored asynchronously: wait at most 20 s)."""
    from prefect import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventRelatedFilter,
        EventResourceFilter,
    )

    run = [f"prefect.flow-run.{flow_run_id}"]
    query = EventFilter(event=EventNameFilter(name=names),
                        **({"resource": EventResourceFilter(id=run)} if about_the_run else
                           {"related": EventRelatedFilter(id=run)}))
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while len(events := client.read_events(query, limit=50).events) < expected:
            assert time.monotonic() < deadline, f"{len(events)} of {expected} events"
            time.sleep(0.2)
    return events


ALERT_NAMES = [f"{ALERT_EVENT_PREFIX}warn", f"{ALERT_EVENT_PREFIX}critical", RESOLVED_EVENT]


def test_one_summary_event_and_one_event_per_new_alert(drift_run: Any) -> None:
    state, result, _ = drift_run
    flow_run_id = state.state_details.flow_run_id
    # The first run of an output folder: each episode's first alert is new.
    new = [a for a in result.alerts["alerts"] if a["lifecycle"] == "new"]
    assert {a["status"] for a in new} == {"warn", "critical"} and len(new) < 50
    [summary] = flow_run_events(flow_run_id, [RUN_COMPLETED], 1)
    received = flow_run_events(flow_run_id, ALERT_NAMES, len(new))
    assert len(received) == len(new)
    assert sorted((e.event, e.resource.id, e.payload["window"]) for e in received) == sorted(
        (f"kl-drift.alert.{a['status']}", f"kl-drift.feature.{a['feature']}.{a['segment']}",
         a["window"]) for a in new)
    expected = alert_events(result.alerts, monitor=MONITOR, report=report_url(result.run_dir),
                            settings=PrefectConfig.model_validate({}))
    assert sorted(e.id for e in received) == sorted(e["id"] for e in expected)
    assert summary.resource["kl-drift.monitor"] == MONITOR
    assert summary.resource["kl-drift.new-status"] == "critical"
    assert summary.payload["run_id"] == RUN_ID
    assert summary.payload["changes"] == changes(result.alerts)
    assert summary.payload["changes"]["new"] == len(new)
    assert summary.payload["report"] == report_url(result.run_dir)
    assert len(summary.payload["new_alerts"]) == min(len(new), 20)


def test_a_rerun_of_the_same_run_id_sends_no_new_notifications(drift_run: Any) -> None:
    """Same run id, same outcome: the same event ids, which the server keeps once."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    state, result, out = drift_run
    config = flights_config(out, **{"output.run_id": RUN_ID, "prefect.name": MONITOR})
    again = drift_check(config, return_state=True)
    assert again.is_completed() and again.result().alerts["alerts"] == result.alerts["alerts"]
    new = [a for a in result.alerts["alerts"] if a["lifecycle"] == "new"]
    first = flow_run_events(state.state_details.flow_run_id, [RUN_COMPLETED, *ALERT_NAMES],
                            1 + len(new))
    # The rerun's own state events are sent after its kl-drift events: once they are
    # stored, so would be any kl-drift event of the rerun the server kept.
    rerun = again.state_details.flow_run_id
    flow_run_events(rerun, ["prefect.flow-run.Completed"], 1, about_the_run=True)
    time.sleep(1)
    assert flow_run_events(rerun, [RUN_COMPLETED, *ALERT_NAMES], 0) == []
    with get_client(sync_client=True) as client:
        stored = client.read_events(
            EventFilter(id=EventIDFilter(id=[e.id for e in first])), limit=50).events
    assert sorted(e.id for e in stored) == sorted(e.id for e in first)


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

    def fails_once(config: RunConfig, progress: Any, bin_current: Any) -> str:
        calls.append(config)
        if len(calls) == 1:
            raise read_failure(cause)
        return "finished"

    monkeypatch.setattr(flows_module, "run_drift", fails_once)
    task = flows_module.run_drift_task.with_options(retry_delay_seconds=0)
    state = task(RunConfig(), return_state=True)
    assert len(calls) == attempts
    assert state.is_completed() is (attempts == 2)


def test_timeout_seconds_bounds_the_run_and_a_timed_out_run_is_not_retried(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[RunConfig] = []

    def hangs(config: RunConfig, progress: Any, bin_current: Any) -> None:
        calls.append(config)
        time.sleep(60)

    monkeypatch.setattr(flows_module, "run_drift", hangs)
    config = flights_config(tmp_path, **{"prefect.timeout_seconds": 1})
    started = time.monotonic()
    state = drift_check(config, return_state=True)
    assert time.monotonic() - started < 20  # 1 s, plus a busy machine's overheads
    assert state.is_failed() and state.name == "TimedOut"
    assert state.message and "timed out after 1.0 second" in state.message
    assert len(calls) == 1  # a TimeoutError is an OSError, yet not retried


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
