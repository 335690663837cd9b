"""Histograms binned file by file on a Dask cluster equal one single-process pass."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.bins.binning import bin_windows
from pipeline.bins.profile import Profile, build_profile
from pipeline.config import InputConfig
from pipeline.read.sources import scan_raw
from tests.flows.conftest import FLIGHTS_BASELINE, FLIGHTS_CURRENT
from tests.servers import S3

distributed = pytest.importorskip("distributed")
FEATURES = ["dep_delay", "dest", "distance"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two worker processes: tasks and their results cross process boundaries, and each
    worker reads its own files."""
    # a scheduler always serves HTTP: on a free port (":0"), not 8787, which the second
    # cluster below (or any other on the machine) would find taken, with a warning
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def current_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The current flights as a hive folder, origin=X/part-{0,1}.parquet: every segment and
    window is split over two files, so the reduction really has to add counts up."""
    root = tmp_path_factory.mktemp("current")
    rows = pl.read_parquet(FLIGHTS_CURRENT).with_row_index()
    for (origin,), group in rows.group_by("origin"):
        (root / f"origin={origin}").mkdir()
        for part in (0, 1):
            group.filter(pl.col("index") % 2 == part).drop("index", "origin").write_parquet(
                root / f"origin={origin}" / f"part-{part}.parquet")
    return root


@pytest.fixture(scope="module")
def profile() -> Profile:
    return build_profile(scan_raw(FLIGHTS_BASELINE), features=FEATURES,
                         source=FLIGHTS_BASELINE)


def settings_for(current: Path, address: str) -> InputConfig:
    return InputConfig(current=str(current), timestamp="scheduled_departure", period="1w",
                       segments=["origin"], executor="dask", dask_address=address)


def test_files_binned_on_dask_sum_to_the_single_process_histograms(
    prefect_server: str, cluster: str, current_folder: Path, profile: Profile
) -> None:
    from flows.dask_histograms import bin_on_dask
    from pipeline.read.sources import source_files

    settings = settings_for(current_folder, cluster)
    assert len(source_files(str(current_folder))) == 6
    single = bin_windows(scan_raw(str(current_folder)), profile, timestamp=settings.timestamp,
                         period=settings.period, segments=settings.segments,
                         features=FEATURES, missing="skip", source=str(current_folder))
    on_dask = bin_on_dask(profile, settings, FEATURES)
    assert_frame_equal(on_dask.histograms, single.histograms)
    # the time range of the files, merged, is that of one pass (window coverage needs it)
    assert on_dask.span == single.span and single.span is not None
    rows = single.histograms["count"].sum()
    assert rows == pl.read_parquet(FLIGHTS_CURRENT).height * len(FEATURES)


def test_workers_report_to_the_callers_server_when_no_api_url_is_set(
    prefect_server: str, cluster: str, current_folder: Path, profile: Profile, tmp_path: Path
) -> None:
    """With no PREFECT_API_URL, Prefect runs on a temporary server the workers would not
    know about; the task runs must still land on the caller's server, not on a server each
    worker would start for itself (with its own database under PREFECT_HOME)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    from flows.dask_histograms import bin_on_dask

    with temporary_settings(updates={PREFECT_HOME: tmp_path},
                            restore_defaults={PREFECT_API_URL,
                                              PREFECT_SERVER_DATABASE_CONNECTION_URL}):
        assert PREFECT_API_URL.value() is None
        bin_on_dask(profile, settings_for(current_folder, cluster), FEATURES)
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["bin-current-on-dask"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    assert sorted(t.name.rsplit("-", 1)[0] for t in tasks) == ["bin-file"] * 6
    assert all(t.state.is_completed() for t in tasks)


def test_drift_check_with_the_dask_executor_matches_a_local_run(
    prefect_server: str, cluster: str, current_folder: Path, tmp_path: Path
) -> None:
    from flows.flows import drift_check
    from pipeline.run import run_drift
    from tests.flows.conftest import flights_config

    options = {"input.current": str(current_folder), "input.segments": ["origin"]}
    local = run_drift(flights_config(tmp_path / "local", **options))
    on_dask = drift_check(flights_config(tmp_path / "dask", **options, **{
        "input.executor": "dask", "input.dask_address": cluster}))
    assert_frame_equal(on_dask.drift, local.drift)
    assert on_dask.alerts["summary"] == local.alerts["summary"]


def test_a_dask_run_over_object_store_files_matches_the_local_run(
    prefect_server: str, cluster: str, s3: S3, current_folder: Path, tmp_path: Path
) -> None:
    """Two worker processes read the S3 files themselves (no shared filesystem): the run
    gives the local run's drift table."""
    from flows.flows import drift_check
    from pipeline.run import run_drift
    from tests.flows.conftest import flights_config

    for path in sorted(current_folder.rglob("*.parquet")):
        s3.upload(str(path), f"dask/{path.relative_to(current_folder)}")
    options = {"input.current": "s3://data/dask/", "input.segments": ["origin"],
               "input.storage_options": s3.options}
    local = run_drift(flights_config(tmp_path / "local", **{
        **options, "input.current": str(current_folder)}))
    on_dask = drift_check(flights_config(tmp_path / "dask", **options, **{
        "input.executor": "dask", "input.dask_address": cluster}))
    assert_frame_equal(on_dask.drift, local.drift)


# --- bounds: a scheduler that cannot serve the run fails fast, with one line -------------

def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dask_toml(tmp_path: Path, address: str, *, current: str = FLIGHTS_CURRENT) -> Path:
    path = tmp_path / "dask.toml"
    path.write_text(f'[input]\nbaseline = "{FLIGHTS_BASELINE}"\ncurrent = "{current}"\n'
                    f'executor = "dask"\ndask_address = "{address}"\ndask_timeout = 1\n')
    return path


def test_an_unreachable_scheduler_fails_the_flow_within_dask_timeout_without_retries(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import dask_cluster
    from flows.flows import drift_check
    from tests.flows.conftest import flights_config

    attempts: list[str] = []
    check = dask_cluster.check_cluster

    def counted(address: str, timeout: float) -> int:
        attempts.append(address)
        return check(address, timeout)

    monkeypatch.setattr(dask_cluster, "check_cluster", counted)
    address = f"tcp://127.0.0.1:{closed_port()}"
    config = flights_config(tmp_path, **{"input.executor": "dask", "input.dask_address": address,
                                         "input.dask_timeout": 1})
    started = time.monotonic()
    state = drift_check(config, return_state=True)
    assert time.monotonic() - started < 15  # 1 s to fail, plus flow overheads on a busy box
    assert state.is_failed() and state.message is not None
    assert state.message.endswith(f"input.dask_address: cannot reach a Dask scheduler at "
                                  f"'{address}' within 1 s (Timed out trying to connect to "
                                  f"{address} after 1 s); check the address and that the "
                                  "scheduler runs (input.dask_timeout sets the wait)")
    assert attempts == [address]  # a config error is not retried


def test_validate_checks_the_scheduler_and_its_workers(cluster: str, tmp_path: Path) -> None:
    from tests.test_cli import invoke, one_error_line

    good = invoke("validate", str(dask_toml(tmp_path, cluster)))
    assert good.exit_code == 0, good.output
    assert re.search(rf"executor dask: Dask scheduler {re.escape(cluster)} with \d workers?$",
                     good.stdout.strip())
    with distributed.LocalCluster(n_workers=0, processes=False,
                                  dashboard_address=":0") as empty:
        started = time.monotonic()
        idle = invoke("validate", str(dask_toml(tmp_path, empty.scheduler_address)))
        assert time.monotonic() - started < 10
    assert idle.exit_code == 2
    assert one_error_line(idle) == (
        f"kl-drift: error: input.dask_address: the Dask scheduler at "
        f"'{empty.scheduler_address}' has no worker (waited 1 s); start one with 'dask worker "
        f"{empty.scheduler_address}', or give an adaptive cluster a minimum of 1 worker")
    unreachable = invoke("validate",
                         str(dask_toml(tmp_path, f"tcp://127.0.0.1:{closed_port()}")))
    assert unreachable.exit_code == 2
    assert "cannot reach a Dask scheduler" in one_error_line(unreachable)


def test_dask_where_it_cannot_apply_is_a_config_error_naming_the_key(
    cluster: str, tmp_path: Path
) -> None:
    from flows.dask_cluster import check_dask
    from pipeline.config import load_config
    from pipeline.errors import ConfigError
    from tests.test_cli import invoke, one_error_line

    local = invoke("run", "--config", str(dask_toml(tmp_path, cluster)), "--out", str(tmp_path))
    assert local.exit_code == 2
    assert one_error_line(local) == (
        "kl-drift: error: input.executor: 'dask' bins on a cluster inside the Prefect flow; "
        "add --prefect (or use kl-drift serve), or set executor = 'local'")
    histograms = tmp_path / "histograms.parquet"
    pl.DataFrame({"feature": ["a"], "bin": ["x"], "count": [1.0]}).write_parquet(histograms)
    with pytest.raises(ConfigError, match=r"^input\.executor: 'dask' bins raw current rows, "
                                          r"and input\.current .* is a histogram table"):
        check_dask(load_config(dask_toml(tmp_path, cluster, current=str(histograms))).input)
    with pytest.raises(ConfigError, match=r"input\.executor: 'dask' bins raw current rows, "
                                          r"and current_format is 'histogram'"):
        load_config(None, {"input.executor": "dask", "input.current_format": "histogram"})
    with pytest.raises(ConfigError, match=r"input\.dask_address: applies to executor = 'dask'"):
        load_config(None, {"input.dask_address": cluster})
