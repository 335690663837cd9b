"""Histograms binned file by file on a Dask cluster equal one single-process pass."""

from __future__ import annotations

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
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
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
