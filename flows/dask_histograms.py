"""Raw current data binned on a Dask cluster: one Prefect task per Parquet file, counts summed.

`bin_on_dask` is a subflow run with prefect-dask's ``DaskTaskRunner``: each file is binned
against the baseline profile by :func:`pipeline.bins.binning.bin_raw` in its own task, and the
partial histograms are summed, which gives exactly what one pass over all files gives.

Workers and the Prefect API: prefect-dask ships every task with the caller's settings, and
the worker reports the task run to the ``PREFECT_API_URL`` found there. When no server is
configured, Prefect runs on a temporary local server whose address is *not* in the settings,
so each worker process would start a temporary server of its own (tens of seconds each, left
running after the run, and task runs missing from the UI). The subflow therefore pins the
address of the server it reports to before mapping. A remote cluster cannot reach a
temporary server on 127.0.0.1: start ``prefect server start --host 0.0.0.0`` and set
``PREFECT_API_URL`` on the machine running the flow (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from flows.dask_cluster import check_cluster
from pipeline.bins.binning import Binned
from pipeline.bins.profile import Profile
from pipeline.config import InputConfig
from pipeline.formats import HISTOGRAM_COLUMNS
from pipeline.read.location import parse_location
from pipeline.read.sources import source_files
from pipeline.run import bin_current_locally
from pipeline.windows import merge_spans


def sum_histograms(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Add up histograms of disjoint row sets binned against the same profile.

    Rows are summed per (segments, feature, window, bin) and returned in the order
    `pipeline.bins.binning.bin_raw` gives one pass over all rows: by segments and window, then
    profile bin order (every part lists a group's bins in that order).
    """
    first = parts[0]
    keys = [c for c in first.columns if c not in HISTOGRAM_COLUMNS]  # segment columns
    window = ["window"] if "window" in first.columns else []
    summed = (pl.concat(parts)
              .group_by([*keys, "feature", *window, "bin"], maintain_order=True)
              .agg(pl.col("count").sum(), pl.col("lower").first(), pl.col("upper").first()))
    by = [*keys, *window]
    return (summed.sort(by, nulls_last=True, maintain_order=True) if by else summed).select(
        first.columns)


@task(name="bin-file", retries=2, retry_delay_seconds=[2, 8], cache_policy=NO_CACHE)
def bin_file(path: str, profile: Profile, settings: InputConfig, features: list[str]) -> Binned:
    """Histograms of one Parquet file against the profile, binned as a local run would."""
    return bin_current_locally(profile, settings.model_copy(update={"current": path}), features)


@flow(name="bin-current-on-dask", validate_parameters=False)
def _bin_files(files: list[str], profile: Profile, settings: InputConfig,
               features: list[str]) -> Binned:
    # The server this run reports to, pinned for the workers (see the module docstring).
    context = FlowRunContext.get()
    if context is None:  # only called as a flow, which always has a run context
        raise RuntimeError("bin-current-on-dask must run as a Prefect flow")
    api_url = str(context.client.api_url)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        futures = bin_file.map(files, unmapped(profile), unmapped(settings), unmapped(features))
        parts = futures.result()
        return Binned(sum_histograms([p.histograms for p in parts]),
                      merge_spans(*(p.span for p in parts)))


def bin_on_dask(profile: Profile, settings: InputConfig, features: list[str]) -> Binned:
    """Bin ``settings.current`` file by file on the Dask cluster at ``settings.dask_address``.

    Parameters
    ----------
    profile : Profile
        The baseline profile.
    settings : InputConfig
        ``current`` (raw files: a local or object-store file, glob or folder; a database
        source is binned by the database instead), ``storage_options``, ``timestamp``,
        ``period``, ``segments``, ``dask_address`` (None: a local cluster for this run) and
        ``dask_timeout``.
    features : list of str
        Profile features to bin.

    Returns
    -------
    pipeline.bins.binning.Binned
        The histogram long table and time range `pipeline.bins.binning.bin_windows` gives
        for all files at once.

    Raises
    ------
    ConfigError
        Within ``dask_timeout`` seconds (twice: connection, first worker) when the
        scheduler cannot be reached or has no worker (`flows.dask_cluster.check_cluster`).
    """
    if parse_location(str(settings.current)).format == "sql":
        return bin_current_locally(profile, settings, features)  # the database bins it
    if settings.dask_address is not None:  # fail within dask_timeout, never hang
        check_cluster(settings.dask_address, settings.dask_timeout)
    # Listed once here; each worker reads its own file (local path or object-store URL,
    # with the same storage_options), so no shared filesystem is needed for URLs.
    files = source_files(str(settings.current), storage_options=settings.storage_options)
    # prefect-dask subclasses TaskRunner without its future type, which with_options rejects
    runner: TaskRunner[Any] = DaskTaskRunner(address=settings.dask_address,
                                             client_kwargs={"timeout": settings.dask_timeout})
    return _bin_files.with_options(task_runner=runner)(files, profile, settings, features)
