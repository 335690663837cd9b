"""A real schedule end to end, as docs/deploy.md shows it: ``prefect server start``,
``kl-drift serve`` with a cron schedule, the scheduler creating a flow run that completes
and writes its run folder, and the automation of docs/deploy.md turning the run's
``kl-drift.run.completed`` event into a webhook POST to a local receiver.

Everything runs in separate processes, like a user's: the server, the serve process and
the flow runs it starts. Every wait is bounded. The cron fires every 5 seconds (a seconds
field: same scheduler code path as a minute cron, without waiting for the next minute).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.publish import RUN_COMPLETED, artifact_key
from tests.flows.conftest import (
    FLIGHTS_BASELINE,
    FLIGHTS_CURRENT,
    RealServer,
    prefect_env,
    start_process,
    stop_process,
    tail,
)

ROOT = Path(__file__).parents[2]
MONITOR = "flights-every-5s"
SCHEDULED_RUN_SECONDS = 150  # serve start, the first cron tick, a flow-run process, the run
WEBHOOK_SECONDS = 30


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: keeps the JSON body of every POST."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[Any] = []
        self.arrived = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/on-call"

    def wait_for(self, text: str, timeout: float) -> list[Any]:
        """Bodies whose ``text`` contains ``text``, once there is one (at most ``timeout``)."""
        def matching() -> list[Any]:
            return [b for b in self.bodies if text in b.get("text", "")]

        with self.arrived:
            self.arrived.wait_for(matching, timeout)
            return matching()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.arrived:
            self.server.bodies.append(json.loads(body))
            self.server.arrived.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


def docs_automation_yaml() -> str:
    """The automation YAML of docs/deploy.md (the block with the call-webhook action)."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if RUN_COMPLETED in b]
    return block


@dataclass
class Scheduled:
    url: str
    flow_run: Any
    receiver: Receiver


def client_for(url: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api=url)


@pytest.fixture(scope="module")
def scheduled(real_prefect_server: RealServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Scheduled]:
    """Webhook block and docs automation on the real server, then ``kl-drift serve`` until
    the scheduler's first flow run of drift-check has completed."""
    from prefect.blocks.webhook import Webhook
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, root = real_prefect_server.url, tmp_path_factory.mktemp("scheduled")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        block_id = Webhook.model_validate({
            "method": "POST", "url": receiver.url, "allow_private_urls": True,
            "headers": {"Content-Type": "application/json"}}).save("on-call")
    automation = root / "automation.yaml"
    automation.write_text(docs_automation_yaml().replace("BLOCK_ID", str(block_id)))
    created = subprocess.run(
        [sys.executable, "-m", "prefect", "automation", "create", "--from-file",
         str(automation)], env=prefect_env(root / "cli-home", api_url=url),
        capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr

    config = root / "monitor.toml"
    config.write_text(f"""
[input]
baseline = "{FLIGHTS_BASELINE}"
current = "{FLIGHTS_CURRENT}"
timestamp = "scheduled_departure"
period = "1w"
features = ["dep_delay", "dest", "distance"]

[output]
dir = "runs"

[schedule]
drift_cron = "* * * * * */5"

[prefect]
name = "{MONITOR}"
""")
    log = root / "serve.log"
    serve = start_process([sys.executable, "-m", "flows.cli", "serve", "--config", str(config)],
                          prefect_env(root / "serve-home", api_url=url,
                                      runner_poll_frequency=1), log)
    try:
        run = first_completed_scheduled_run(url, serve, log, real_prefect_server)
        yield Scheduled(url, run, receiver)
    finally:
        stop_process(serve)
        receiver.shutdown()


def first_completed_scheduled_run(url: str, serve: subprocess.Popen, log: Path,
                                  server: RealServer) -> Any:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    finished = FlowRunFilterState(type=FlowRunFilterStateType(any_=[
        StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]))

    deadline = time.monotonic() + SCHEDULED_RUN_SECONDS
    with client_for(url) as client:
        while True:
            assert serve.poll() is None, f"kl-drift serve exited:\n{tail(log)}"
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["drift-check"])),
                flow_run_filter=FlowRunFilter(state=finished),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC)
            if runs:
                run = runs[0]
                assert run.state.is_completed(), f"{run.state}\n{tail(log)}"
                return run
            assert time.monotonic() < deadline, (
                f"no scheduled drift-check run completed in {SCHEDULED_RUN_SECONDS} s; "
                f"{len(client.read_flow_runs())} flow runs exist; server errors:\n"
                f"{server.errors()[-3000:]}\nkl-drift serve:\n{tail(log)}")
            time.sleep(1)


def summary_event(url: str, flow_run_id: Any) -> Any:
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    query = EventFilter(event=EventNameFilter(name=[RUN_COMPLETED]),
                        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
    deadline = time.monotonic() + 20
    with client_for(url) as client:
        while not (events := client.read_events(query, limit=5).events):
            assert time.monotonic() < deadline, "the run's kl-drift.run.completed is missing"
            time.sleep(0.5)
    [event] = events
    return event


def test_the_scheduler_creates_a_run_that_completes_and_writes_its_run_folder(
    scheduled: Scheduled
) -> None:
    run = scheduled.flow_run
    assert run.auto_scheduled and run.idempotency_key.startswith("scheduled ")
    assert run.created_by.type == "SCHEDULE"  # the scheduler made it, not a user
    with client_for(scheduled.url) as client:
        deployment = client.read_deployment(run.deployment_id)
    assert deployment.name == MONITOR  # prefect.name names the served deployments
    payload = summary_event(scheduled.url, run.id).payload
    run_dir = Path(payload["run_dir"])
    assert {"drift.parquet", "alerts.json", "report.md", "report.html"} <= {
        p.name for p in run_dir.iterdir()}
    alerts = json.loads((run_dir / "alerts.json").read_text())
    assert alerts["run"]["run_id"] == payload["run_id"] == run_dir.name
    assert payload["report"] == (run_dir / "report.html").as_uri()


def test_a_scheduled_run_publishes_under_the_monitor_keys(scheduled: Scheduled) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client_for(scheduled.url) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[scheduled.flow_run.id])))
    assert sorted(a.key for a in artifacts) == sorted(
        artifact_key(kind, MONITOR) for kind in ("report", "report-link", "drift-table"))


def test_the_docs_automation_posts_the_run_summary_to_the_webhook_once(
    scheduled: Scheduled
) -> None:
    """The run's summary event fires the docs' automation; the same event sent again (a
    rerun's, same id) posts nothing, while a different one posts again."""
    import httpx
    from prefect.events import Event

    event = summary_event(scheduled.url, scheduled.flow_run.id)
    run_id = event.payload["run_id"]
    [body] = scheduled.receiver.wait_for(f"run {run_id}:", WEBHOOK_SECONDS)
    assert body == {"text": event.payload["message"]}
    assert body["text"].startswith(f"kl-drift {MONITOR}, run {run_id}: ")
    assert "new alerts (" in body["text"] and body["text"].endswith(event.payload["report"])

    again = Event.model_validate(event.model_dump(exclude={"received"}))
    other = again.model_copy(update={"id": uuid.uuid4(), "payload": {
        **event.payload, "message": f"kl-drift {MONITOR}, run sentinel-{run_id}: ..."}})
    for sent in (again, other):  # in this order: the second one's POST proves the first done
        response = httpx.post(f"{scheduled.url}/events", json=[sent.model_dump(mode="json")])
        assert response.status_code == 204, response.text
    assert len(scheduled.receiver.wait_for(f"run sentinel-{run_id}:", WEBHOOK_SECONDS)) == 1
    assert len(scheduled.receiver.wait_for(f"run {run_id}:", 0)) == 1
