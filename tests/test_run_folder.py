"""pipeline.write.run_folder: write order, run stamps, staging, publishing and the run lock.

Each test injects the fault it is about (a table write that fails, a kill that leaves a
staging folder, a second run of the same id) and checks what a reader of the output folder
would see. The end-to-end versions (SIGKILL at random instants of a real run) are in
tests/test_monitoring.py; these are the fast unit checks.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.errors import OutputError
from pipeline.formats import ALERTS_FILE, DRIFT_FILE
from pipeline.write.run_folder import (
    RUN_KEY,
    _exchange,
    claimed_run_id,
    publish,
    read_alerts,
    run_lock,
    run_stamp,
    staging_folder,
    write_run_outputs,
)
from tests.report_data import make_alerts, make_drift

MODELS = "models.parquet"


@pytest.fixture(scope="module")
def drift() -> pl.DataFrame:
    return make_drift(2, 2, seed=1)


def _stamp(path: Path) -> dict[str, str]:
    return json.loads(pl.read_parquet_metadata(path)[RUN_KEY])


def test_a_failed_table_write_leaves_no_alerts_json(drift: pl.DataFrame, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """alerts.json is written last: it never names tables that are not there."""
    def full(path: Path, *_args: object) -> Path:
        raise OutputError(errno.ENOSPC, f"cannot write {path}: No space left on device")

    monkeypatch.setattr("pipeline.write.run_folder.write_parquet", full)
    with pytest.raises(OutputError):
        write_run_outputs(tmp_path, {DRIFT_FILE: drift}, make_alerts(drift, run_id="r"))
    assert not (tmp_path / ALERTS_FILE).exists()


def test_every_table_carries_its_run_and_a_rerun_drops_parts_it_no_longer_has(
        drift: pl.DataFrame, tmp_path: Path) -> None:
    first = make_alerts(drift, run_id="r", created_at="2024-06-08T00:05:12Z")
    written = write_run_outputs(tmp_path, {DRIFT_FILE: drift, MODELS: drift}, first)
    assert [p.name for p in written] == [DRIFT_FILE, MODELS, ALERTS_FILE]
    again = make_alerts(drift, run_id="r", created_at="2024-06-09T00:05:12Z")
    write_run_outputs(tmp_path, {DRIFT_FILE: drift, MODELS: None}, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ALERTS_FILE, DRIFT_FILE]
    # the rerun of the same id is told apart from the first run by its creation time
    assert _stamp(tmp_path / DRIFT_FILE) == {"run_id": "r",
                                             "created_at": "2024-06-09T00:05:12Z"}
    assert run_stamp(first) != run_stamp(again)
    assert read_alerts(tmp_path / ALERTS_FILE)["run"]["created_at"] == "2024-06-09T00:05:12Z"


def _folder(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / ALERTS_FILE).write_text(content)
    return path


def test_publish_switches_a_rerun_in_without_a_moment_without_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "r"
    publish(_folder(tmp_path / "staged1", "first"), run_dir)
    assert (run_dir / ALERTS_FILE).read_text() == "first"
    # while the rerun publishes, record whether a reader would find the run folder
    seen: list[bool] = []
    rename, rmtree = os.rename, shutil.rmtree

    def watched_rename(*args: object, **kwargs: object) -> None:
        seen.append(run_dir.is_dir())
        rename(*args, **kwargs)  # type: ignore[arg-type]

    def watched_rmtree(*args: object, **kwargs: object) -> None:
        seen.append(run_dir.is_dir())
        rmtree(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", watched_rename)
    monkeypatch.setattr(shutil, "rmtree", watched_rmtree)
    publish(_folder(tmp_path / "staged2", "second"), run_dir)
    monkeypatch.undo()
    assert (run_dir / ALERTS_FILE).read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # the old run is gone
    probe = [_folder(tmp_path / name, name) for name in ("a", "b")]
    if _exchange(*probe):  # Linux renameat2: the folder is swapped in one step
        assert seen and all(seen)


def test_publish_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("not a run folder")
    with pytest.raises(OutputError, match="a file is in the way"):
        publish(_folder(tmp_path / "staged", "x"), tmp_path / "r")
    assert (tmp_path / "r").read_text() == "not a run folder"


def test_staging_removes_folders_of_killed_runs_only_and_its_own_on_failure(
        tmp_path: Path) -> None:
    staging = tmp_path / ".kl-drift" / "staging"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    killed = _folder(staging / f"r.{dead}.0123456789ab", "killed")
    running = _folder(staging / f"r.{os.getppid()}.0123456789ab", "running")
    with pytest.raises(RuntimeError), staging_folder(tmp_path, "r") as folder:
        assert folder.parent == staging and folder.is_dir()
        raise RuntimeError("the run failed while staging")
    assert sorted(staging.iterdir()) == [running] and not killed.exists()


def test_the_run_lock_admits_one_holder_at_a_time(tmp_path: Path) -> None:
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        entered.set()
        with run_lock(tmp_path, "r"):
            order.append("second")

    with run_lock(tmp_path, "r"):
        thread = threading.Thread(target=second)
        thread.start()
        entered.wait()
        thread.join(timeout=0.3)  # it must still be waiting for the lock
        order.append("first done")
    thread.join()
    assert order == ["first done", "second"]


def test_a_claimed_run_id_is_skipped_until_released_and_checked_again_once_held(
        tmp_path: Path) -> None:
    published: set[str] = set()

    def claim(taken: Callable[[str], bool] = published.__contains__) -> Any:
        return claimed_run_id(tmp_path, iter(["s", "s-2", "s-3"]), taken)

    with claim() as first, claim() as second, claim() as third:
        assert (first, second, third) == ("s", "s-2", "s-3")
    with claim() as again:  # released: free again, no run has it
        assert again == "s"
    published.add("s")
    with claim() as after:  # published: taken
        assert after == "s-2"
    # taken while this process waited for the claim (its holder published and let go):
    # checked again once held
    checks: list[str] = []

    def published_meanwhile(run_id: str) -> bool:
        checks.append(run_id)
        return run_id == "s" and checks.count("s") > 1

    with claim(published_meanwhile) as late:
        assert late == "s-2" and checks[:2] == ["s", "s"]
    with pytest.raises(ValueError, match="no run id left"), \
            claimed_run_id(tmp_path, iter([]), published.__contains__):
        pass


def test_a_run_holding_its_claimed_id_can_take_its_run_lock(tmp_path: Path) -> None:
    # a run holds its claim while it publishes under the run lock: two different locks
    with claimed_run_id(tmp_path, iter(["r"]), lambda _: False) as run_id:
        entered = threading.Event()

        def publish() -> None:
            with run_lock(tmp_path, run_id):
                entered.set()

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        assert entered.wait(timeout=5)
    thread.join()
