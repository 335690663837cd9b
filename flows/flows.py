"""Prefect flows ``build_baseline`` and ``drift_check``: thin orchestration of pipeline calls.

Each task wraps one pipeline function. Tasks that read or write storage retry with
exponential backoff, but only for transient OS or network errors: bad input or config
(`InputError`, `ConfigError`) fails the same way every time, so it fails at once with its
one-line message. Drift is data: a run with critical alerts ends Completed unless
``fail_on_alert`` is set.

``prefect.timeout_seconds`` bounds the work of each flow (the ``run-drift`` and
``build-profile`` tasks). It is read from the config when the run starts, so it applies
however the flow is started (``kl-drift serve``, a ``prefect.yaml`` deployment, ``kl-drift
run --prefect``, Python) and edits of a served TOML file apply to the next run. A timed-out
attempt is not retried: it would time out again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.events import emit_event
from prefect.task_engine import TaskRunTimeoutError
from prefect.tasks import Task, exponential_backoff

from flows.publish import (
    DEFAULT_MONITOR,
    MAX_TABLE_ROWS,
    alert_events,
    artifact_key,
    drift_table_rows,
    markdown_url,
    report_url,
    run_completed_event,
    summary_markdown,
)
from pipeline.bins.profile import Profile, write_profile
from pipeline.config import PrefectConfig, RunConfig, load_config
from pipeline.errors import ConfigError, KLDriftError
from pipeline.read.sources import detect_format
from pipeline.run import (
    BinCurrent,
    RunResult,
    bin_current_locally,
    build_baseline_profile,
    run_drift,
)
from pipeline.write.reports.markdown import escape_md

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=2)  # 2, 4, 8 s, with jitter
# OS errors that a retry cannot fix.
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                        PermissionError)


class AlertsFound(Exception):
    """Raised by ``drift_check(fail_on_alert=True)`` when rows reach ``output.fail_on``."""


class _NoTracebackForExpectedFailures(logging.Filter):
    """Bad input, bad config and ``fail_on_alert`` failures carry a message that says it
    all: log them without the traceback Prefect attaches to every flow-run failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KLDriftError | AlertsFound):
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("prefect.flow_runs").addFilter(_NoTracebackForExpectedFailures())


def is_transient(error: BaseException | None) -> bool:
    """Whether a failure is worth retrying: an OS or network error, or one wrapped as the
    cause of an `InputError` (the readers convert every read failure to one).

    Missing paths and permission errors are permanent; so is every other exception.
    """
    while error is not None:
        if isinstance(error, OSError):
            return not isinstance(error, _PERMANENT_OS_ERRORS)
        error = error.__cause__
    return False


def _retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    error = state.result(raise_on_failure=False)
    # A TimeoutError is an OSError, but an attempt that hit timeout_seconds is not transient.
    return not isinstance(error, TaskRunTimeoutError) and is_transient(error)


def _io_task(name: str) -> Any:
    """A task touching storage: retried on transient errors, never cached (data changes
    behind the same paths, and hashing data frames for cache keys is wasted work)."""
    return task(name=name, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS,
                retry_jitter_factor=0.5, retry_condition_fn=_retry_transient,
                cache_policy=NO_CACHE)


@_io_task("load-config")
def load_run_config(config: RunConfig | str, overrides: dict[str, Any] | None) -> RunConfig:
    """The run configuration: ``config`` itself, or the TOML file it names with overrides."""
    if isinstance(config, RunConfig):
        if overrides:
            raise ConfigError("overrides apply to a config file: give config as a TOML "
                              "path, or change the config parameter itself")
        return config
    return load_config(config, overrides)


@_io_task("build-profile")
def build_profile_task(config: RunConfig, source: str) -> Profile:
    """Profile the raw baseline rows of ``source`` as ``[input]`` and ``[profile]`` say."""
    return build_baseline_profile(config, source)


@_io_task("write-profile")
def write_profile_task(profile: Profile, path: str) -> Path:
    """Write the profile atomically: drift checks reading it never see a partial file."""
    return write_profile(profile, path)


def _bin_current(config: RunConfig) -> BinCurrent:
    """How the run bins raw current rows: locally, or with ``input.executor = "dask"`` on
    the Dask cluster, checked first (`flows.dask_cluster.check_dask`: fails within
    ``input.dask_timeout`` rather than hanging, and histogram input is an error rather than
    silently local)."""
    if config.input.executor != "dask" or not (config.input.baseline or config.input.current):
        return bin_current_locally
    from flows.dask_cluster import check_dask

    get_run_logger().info("binning on %s", check_dask(config.input))
    from flows.dask_histograms import bin_on_dask  # prefect-dask is an optional extra

    return bin_on_dask


@_io_task("run-drift")
def run_drift_task(config: RunConfig) -> RunResult:
    """One drift run: writes the run folder (drift.parquet, alerts.json, reports) and
    adds the run to the history dataset.

    With ``input.executor = "dask"`` raw current files are binned on a Dask cluster.
    """
    return run_drift(config, progress=get_run_logger().info, bin_current=_bin_current(config))


def monitor_name(settings: PrefectConfig) -> str:
    """The monitor's name in artifact keys and events: ``prefect.name``, else the name of
    the deployment this flow run belongs to, else ``kl-drift``."""
    if settings.name is not None:
        return settings.name
    from prefect.runtime import deployment

    return str(deployment.name or DEFAULT_MONITOR)


def _labelled(settings: RunConfig, monitor: str) -> RunConfig:
    """Metrics exported by ``[export.prometheus]`` carry the monitor's name, as its artifacts
    and events do, unless the section names the monitor itself."""
    export = settings.export.prometheus
    if export is None or export.monitor is not None:
        return settings
    labelled = settings.export.model_copy(
        update={"prometheus": export.model_copy(update={"monitor": monitor})})
    return settings.model_copy(update={"export": labelled})


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(result: RunResult, monitor: str, report: str) -> None:
    """Artifacts under keys stable per monitor (Prefect keeps each key's history): what
    changed plus the report as markdown, the drift rows as a table, a link to report.html."""
    text = (result.run_dir / "report.md").read_text(encoding="utf-8")
    head = summary_markdown(result.alerts, monitor=monitor, report=report)
    create_markdown_artifact(markdown=f"{head}\n---\n\n{text}",
                             key=artifact_key("report", monitor),
                             description=f"kl-drift {monitor}: report of run {result.run_id}")
    # Prefect stores a link artifact as the Markdown "[link_text](link)".
    create_link_artifact(link=markdown_url(report),
                         link_text=f"report.html of run {escape_md(result.run_id)}",
                         key=artifact_key("report-link", monitor),
                         description=f"kl-drift {monitor}: the HTML report of run "
                                     f"{result.run_id}")
    if result.drift is None:  # a run of [models] / [estimate] only
        return
    create_table_artifact(
        table=drift_table_rows(result.drift), key=artifact_key("drift-table", monitor),
        description=f"kl-drift {monitor}, run {result.run_id}: drift rows, most severe "
                    f"first (at most {MAX_TABLE_ROWS}; all in "
                    f"{result.run_dir / 'drift.parquet'})")


@task(name="emit-events", cache_policy=NO_CACHE)
def emit_run_events(result: RunResult, monitor: str, report: str,
                    settings: PrefectConfig) -> int:
    """One ``kl-drift.run.completed`` event, then one event per new alert (and resolved
    episode, if configured), for automations; returns how many were emitted."""
    events = [run_completed_event(result.alerts, monitor=monitor, run_dir=result.run_dir,
                                  report=report, settings=settings),
              *alert_events(result.alerts, monitor=monitor, report=report, settings=settings)]
    for event in events:
        emit_event(**event)
    return len(events)


def _profile_path(config: RunConfig, output: str | None) -> str:
    """Where build_baseline writes: ``output`` or ``input.baseline``, never over data."""
    target = output or config.input.baseline
    if target is None:
        raise ConfigError("build_baseline: pass output, or set input.baseline to the profile "
                          "path the drift checks read")
    if Path(target).exists() and detect_format(target) != "profile":
        raise ConfigError(f"build_baseline: {target!r} holds data, not a profile; write the "
                          "profile to another path (output) and point input.baseline at it")
    return target


@flow(name="build-baseline")
def build_baseline(
    config: RunConfig | str,
    source: str,
    output: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Profile raw baseline data and write the profile every drift check reuses.

    Parameters
    ----------
    config : RunConfig or str
        The configuration, or the path of its TOML file.
    source : str
        Raw baseline Parquet: a file, glob or (hive-partitioned) folder.
    output : str, optional
        Profile file to write; default ``input.baseline``.
    overrides : dict, optional
        Values overriding the TOML file (dotted keys), as in `pipeline.config.load_config`.

    Returns
    -------
    str
        The path of the profile written.
    """
    settings = load_run_config(config, overrides)
    target = _profile_path(settings, output)
    bounded = build_profile_task.with_options(timeout_seconds=settings.prefect.timeout_seconds)
    profile = bounded(settings, source)
    written = write_profile_task(profile, target)
    get_run_logger().info("profile %s: %d features from %s", written, len(profile.features),
                          source)
    return str(written)


@flow(name="drift-check")
def drift_check(
    config: RunConfig | str,
    overrides: dict[str, Any] | None = None,
    fail_on_alert: bool = False,
) -> RunResult:
    """Check current data against the baseline, write the run folder, publish the results.

    Writes drift.parquet, alerts.json, report.md, report.html and the history rows (all by
    `pipeline.run.run_drift`), within ``prefect.timeout_seconds``; then publishes under the
    monitor's name (`monitor_name`): the markdown, table and report-link artifacts, one
    ``kl-drift.run.completed`` event and one ``kl-drift.alert.<status>`` event per new
    alert (docs/deploy.md).

    Parameters
    ----------
    config : RunConfig or str
        The configuration, or the path of its TOML file.
    overrides : dict, optional
        Values overriding the TOML file (dotted keys), as in `pipeline.config.load_config`.
    fail_on_alert : bool
        Fail the flow run (`AlertsFound`) when a row reaches ``output.fail_on``. By default
        drift is data and the run is Completed whatever it found.

    Returns
    -------
    pipeline.run.RunResult
    """
    settings = load_run_config(config, overrides)
    monitor = monitor_name(settings.prefect)
    bounded = run_drift_task.with_options(timeout_seconds=settings.prefect.timeout_seconds)
    result = bounded(_labelled(settings, monitor))
    report = report_url(result.run_dir, settings.prefect.report_base_url)
    publish_artifacts(result, monitor, report)
    emit_run_events(result, monitor, report, settings.prefect)
    summary = ", ".join(f"{n} {status}" for status, n in result.alerts["summary"].items())
    get_run_logger().info("run %s: %s; report %s", result.run_id, summary,
                          result.run_dir / "report.html")
    if fail_on_alert and result.exit_code:
        raise AlertsFound(f"run {result.run_id}: rows at or above "
                          f"{settings.output.fail_on!r} ({summary})")
    return result
