"""A scheduled monitor run after run: state carried through the history, one folder per run.

A scripted week of daily runs (one new window per run) against a real profile: a drift
that starts on day 3 and lasts to day 6 alerts once as new when persistence is reached,
is ongoing afterwards and resolved when it ends. Run folders are published whole: a failed
or killed rerun leaves the previous run, every table of a folder carries the run it belongs
to, and exit codes separate alerts (1), bad input or output locations (2) and bugs (3).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, LOG_DIR_ENV, app
from pipeline.bins.profile import build_profile, write_profile
from pipeline.config import load_config
from pipeline.formats import DRIFT_FILE, RESOLVED_COLUMNS, RESOLVED_FILE
from pipeline.run import run_drift
from tests.run_checks import assert_one_run

DAYS = 8
DRIFT_DAYS = range(2, 6)  # the 3rd to the 6th day are shifted
START = datetime(2024, 3, 1, tzinfo=UTC)


def _day(rng: np.random.Generator, day: int, rows: int = 3000) -> pl.DataFrame:
    shift = 0.8 if day in DRIFT_DAYS else 0.0
    seconds = np.sort(rng.integers(0, 86_400, rows))
    return pl.DataFrame({
        "ts": [START + timedelta(days=day, seconds=int(s)) for s in seconds],
        "x": rng.normal(shift, 1.0, rows),
        "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
    })


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Profile, eight daily files, and one run per day with persistence 2."""
    root = tmp_path_factory.mktemp("week")
    rng = np.random.default_rng(7)
    baseline = pl.DataFrame({"x": rng.normal(0, 1, 20_000),
                             "c": rng.choice(["a", "b", "c"], 20_000, p=[0.5, 0.3, 0.2])})
    profile = root / "profile.parquet"
    write_profile(build_profile(baseline.lazy(), features=["x", "c"]), profile)
    documents = []
    for day in range(DAYS):
        path = root / f"day{day}.parquet"
        _day(rng, day).write_parquet(path)
        config = load_config(None, {
            "input.baseline": str(profile), "input.current": str(path),
            "input.timestamp": "ts", "input.period": "1d", "alerts.persistence": 2,
            "output.dir": str(root / "runs"), "output.run_id": f"day{day}"})
        documents.append(run_drift(config).alerts)
    return {"root": root, "documents": documents}


def test_a_drift_alerts_once_as_new_then_ongoing_then_resolved(week: dict) -> None:
    lifecycle = [[(a["feature"], a["lifecycle"]) for a in doc["alerts"]]
                 for doc in week["documents"]]
    resolved = [[(r["feature"], r["since"][:10], r["window"][:10]) for r in doc["resolved"]]
                for doc in week["documents"]]
    assert lifecycle == [[], [], [], [("x", "new")], [("x", "ongoing")], [("x", "ongoing")],
                         [], []]
    assert resolved == [[], [], [], [], [], [], [("x", "2024-03-03", "2024-03-07")], []]
    changes = [doc["changes"] for doc in week["documents"]]
    assert sum(c["new"] for c in changes) == 1 and sum(c["resolved"] for c in changes) == 1
    day3 = week["documents"][2]
    held = [p for p in pl.read_parquet(week["root"] / "runs" / "day2" / DRIFT_FILE)
            .filter(feature="x").iter_rows(named=True)]
    assert held[0]["window_status"] != "ok" and held[0]["status"] == "ok"
    assert "1 of 2 required consecutive windows" in held[0]["reason"]
    assert day3["summary"]["warn"] + day3["summary"]["critical"] == 0


def test_resolved_parquet_holds_every_episode_alerts_json_lists_the_first(
        tmp_path: Path) -> None:
    """Five features alert in one run and are back to ok in the next: with
    ``output.max_alerts = 2`` alerts.json lists two episodes and counts the rest, which
    resolved.parquet holds with the listed ones; a run resolving none writes it empty."""
    features = [f"f{i}" for i in range(5)]

    def histograms(first: float) -> pl.DataFrame:
        return pl.DataFrame({"feature": np.repeat(features, 2), "bin": ["a", "b"] * 5,
                             "count": [first, 1000 - first] * 5})

    histograms(500).write_parquet(tmp_path / "base.parquet")
    documents = []
    for run_id, first in (("r1", 900), ("r2", 500), ("r3", 500)):
        histograms(first).write_parquet(tmp_path / "cur.parquet")
        config = load_config(None, {
            "input.baseline": str(tmp_path / "base.parquet"),
            "input.current": str(tmp_path / "cur.parquet"), "output.max_alerts": 2,
            "output.dir": str(tmp_path / "runs"), "output.run_id": run_id})
        documents.append(run_drift(config).alerts)
    assert len(documents[0]["alerts"]) == 2 and documents[0]["omitted"]["alerts"] == 3
    second = documents[1]
    assert second["changes"]["resolved"] == 5 and second["omitted"]["resolved"] == 3
    table = pl.read_parquet(tmp_path / "runs" / "r2" / RESOLVED_FILE)
    assert table.columns == list(RESOLVED_COLUMNS)
    assert sorted(table["feature"]) == features
    assert set(table["last_status"]) == {"critical"}
    assert table.head(2).to_dicts() == [{c: r.get(c) for c in RESOLVED_COLUMNS}
                                        for r in second["resolved"]]
    assert "…and 3 more; see resolved.parquet." in (
        tmp_path / "runs" / "r2" / "report.md").read_text()
    assert pl.read_parquet(tmp_path / "runs" / "r3" / RESOLVED_FILE).height == 0


def test_the_week_sends_one_notification_per_new_alert_and_one_when_it_ends(
        week: dict) -> None:
    """What the Prefect flow would emit each day (flows.publish: plain data, no server)."""
    from flows.publish import RESOLVED_EVENT, alert_events, run_completed_event
    from pipeline.config import PrefectConfig

    settings = PrefectConfig.model_validate({"resolved_events": True})
    per_day = []
    for document in week["documents"]:
        events = alert_events(document, monitor="week", report="file:///r", settings=settings)
        summary = run_completed_event(document, monitor="week", report="file:///r",
                                      run_dir=week["root"] / "runs", settings=settings)
        per_day.append(([e["event"] for e in events], summary["resource"]["kl-drift.changed"]))
    names = [n for events, _ in per_day for n in events]
    assert names == ["kl-drift.alert.critical", RESOLVED_EVENT]  # the whole week: two events
    assert [day for day, (events, _) in enumerate(per_day) if events] == [3, 6]
    assert [changed for _, changed in per_day] == ["false", "false", "false", "true", "false",
                                                   "false", "true", "false"]


def test_rerunning_a_day_is_idempotent(week: dict) -> None:
    root = week["root"]
    config = load_config(None, {
        "input.baseline": str(root / "profile.parquet"),
        "input.current": str(root / "day4.parquet"), "input.timestamp": "ts",
        "input.period": "1d", "alerts.persistence": 2, "output.dir": str(root / "runs"),
        "output.run_id": "day4"})
    again = run_drift(config).alerts
    first = week["documents"][4]
    for document in (again, first):
        assert document["run"].pop("created_at")
    assert again == first  # still new: its own earlier rows are not "earlier runs"


def test_a_failing_rerun_leaves_the_previous_run_whole(week: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = week["root"]
    overrides = {"input.baseline": str(root / "profile.parquet"),
                 "input.current": str(root / "day5.parquet"), "input.timestamp": "ts",
                 "input.period": "1d", "output.dir": str(tmp_path), "output.run_id": "r"}
    run_drift(load_config(None, overrides))
    before = assert_one_run(tmp_path / "r")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("pipeline.run.write_reports", broken)
    with pytest.raises(RuntimeError):
        run_drift(load_config(None, {**overrides, "input.current": str(root / "day1.parquet")}))
    assert assert_one_run(tmp_path / "r") == before
    assert not any((tmp_path / ".kl-drift" / "staging").iterdir())


def test_kill_9_at_any_instant_of_a_rerun_leaves_one_run(week: dict, tmp_path: Path) -> None:
    """SIGKILL at random instants of the write phase (from the moment the staging folder
    appears): the run folder is always one whole run, the old one or the new one."""
    root = week["root"]
    command = [sys.executable, "-m", "flows.cli", "run", "--baseline",
               str(root / "profile.parquet"), "--timestamp", "ts", "--period", "1d",
               "--out", str(tmp_path), "--run-id", "k", "-q", "--fail-on", "never"]
    subprocess.run([*command, "--current", str(root / "day0.parquet")], check=True)
    staging = tmp_path / ".kl-drift" / "staging"

    def rerun(day: int) -> tuple[subprocess.Popen[bytes], float]:
        """A rerun, once it has started writing, and when that was."""
        process = subprocess.Popen([*command, "--current", str(root / f"day{day}.parquet")])
        deadline = time.monotonic() + 120
        while not any(staging.glob("k.*")) and process.poll() is None:
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.002)
        return process, time.monotonic()

    # How long the write phase lasts on this machine: the kills are drawn within it.
    process, started = rerun(DAYS - 1)
    process.wait()
    phase = time.monotonic() - started
    stamps = {assert_one_run(tmp_path / "k")["created_at"]}
    rng = np.random.default_rng(3)
    killed_while_staging = 0
    for attempt in range(8):
        process, _ = rerun(1 + attempt % (DAYS - 1))
        time.sleep(rng.uniform(0, phase))
        killed_while_staging += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        stamps.add(assert_one_run(tmp_path / "k")["created_at"])
    assert killed_while_staging >= 3  # most kills hit the write phase
    assert len(stamps) >= 2 or killed_while_staging == 8


def _cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_exit_codes_separate_bad_locations_from_bugs(week: dict, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = week["root"]
    args = ["run", "--baseline", str(root / "profile.parquet"),
            "--current", str(root / "day0.parquet"), "-q"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    located = _cli(*args, "--out", str(blocker / "runs"))
    assert located.exit_code == EXIT_BAD_INPUT
    assert located.stderr.count("\n") == 1 and str(blocker) in located.stderr

    def bug(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("pipeline.run.run_drift", bug)
    crashed = _cli(*args, "--out", str(tmp_path / "runs"),
                   env={LOG_DIR_ENV: str(tmp_path / "logs")})
    assert crashed.exit_code == EXIT_INTERNAL
    assert crashed.stderr.count("\n") == 1 and "ZeroDivisionError" in crashed.stderr
    (log,) = (tmp_path / "logs").iterdir()
    assert str(log) in crashed.stderr and "Traceback" in log.read_text()


def test_a_full_disk_is_one_line_naming_the_file(week: dict, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = week["root"]

    def full(self: pl.DataFrame, file: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    result = _cli("run", "--baseline", str(root / "profile.parquet"),
                  "--current", str(root / "day0.parquet"), "--out", str(tmp_path), "-q")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "No space left on device" in result.stderr and result.stderr.count("\n") == 1
    assert "drift.parquet" in result.stderr


def test_fail_on_lists_statuses(week: dict, tmp_path: Path) -> None:
    root = week["root"]
    args = ["run", "--baseline", str(root / "profile.parquet"), "--current",
            str(root / "day4.parquet"), "--out", str(tmp_path), "-q"]
    assert _cli(*args, "--fail-on", "never").exit_code == 0
    assert _cli(*args, "--fail-on", "warn,critical").exit_code == 1
    assert _cli(*args, "--fail-on", "error,insufficient_data").exit_code == 0
    bad = _cli(*args, "--fail-on", "critical,sometimes")
    assert bad.exit_code == EXIT_BAD_INPUT and "sometimes" in bad.stderr


def test_the_monitor_carries_no_state_between_output_folders(week: dict,
                                                             tmp_path: Path) -> None:
    """Lifecycle is per output.dir: a fresh folder starts a fresh history."""
    root = week["root"]
    config = load_config(None, {
        "input.baseline": str(root / "profile.parquet"),
        "input.current": str(root / "day5.parquet"), "input.timestamp": "ts",
        "input.period": "1d", "output.dir": str(tmp_path), "output.run_id": "alone"})
    alerts = run_drift(config).alerts["alerts"]
    assert [(a["feature"], a["lifecycle"]) for a in alerts] == [("x", "new")]
    assert os.listdir(tmp_path / "history") == ["run_id=alone"]
