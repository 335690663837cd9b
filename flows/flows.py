"""Prefect flows ``build_baseline`` and ``drift_check``: thin orchestration of pipeline calls.

Each task wraps one pipeline function. Tasks that read or write storage retry with
exponential backoff, but only for transient OS or network errors: bad input or config
(`InputError`, `ConfigError`) fails the same way every time, so it fails at once with its
one-line message. Drift is data: a run with critical alerts ends Completed unless
``fail_on_alert`` is set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.events import emit_event
from prefect.tasks import Task, exponential_backoff

from flows.publish import MAX_TABLE_ROWS, artifact_key, critical_alert_events, drift_table_rows
from pipeline.bins.profile import Profile, write_profile
from pipeline.config import RunConfig, load_config
from pipeline.errors import ConfigError, KLDriftError
from pipeline.read.sources import detect_format
from pipeline.run import RunResult, build_baseline_profile, run_drift

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
    return is_transient(state.result(raise_on_failure=False))


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


@_io_task("run-drift")
def run_drift_task(config: RunConfig) -> RunResult:
    """One drift run: writes the run folder (drift.parquet, alerts.json, reports) and
    adds the run to the history dataset.

    With ``input.executor = "dask"`` raw current files are binned on a Dask cluster.
    """
    options: dict[str, Any] = {}
    if config.input.executor == "dask":
        from flows.dask_histograms import bin_on_dask  # prefect-dask is an optional extra

        options["bin_current"] = bin_on_dask
    return run_drift(config, progress=get_run_logger().info, **options)


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(result: RunResult) -> None:
    """The report as a markdown artifact and the drift rows (if any) as a table artifact."""
    report = (result.run_dir / "report.md").read_text(encoding="utf-8")
    create_markdown_artifact(markdown=report, key=artifact_key("report", result.run_id),
                             description=f"kl-drift report of run {result.run_id}")
    if result.drift is None:  # a run of [models] / [estimate] only
        return
    create_table_artifact(
        table=drift_table_rows(result.drift), key=artifact_key("drift", result.run_id),
        description=f"kl-drift run {result.run_id}: drift rows, most severe first "
                    f"(at most {MAX_TABLE_ROWS}; all in {result.run_dir / 'drift.parquet'})")


@task(name="emit-alert-events", cache_policy=NO_CACHE)
def emit_alert_events(alerts: dict[str, Any]) -> int:
    """One ``kl-drift.alert.critical`` event per critical row, for automations."""
    events = critical_alert_events(alerts)
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
    profile = build_profile_task(settings, source)
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
    `pipeline.run.run_drift`); creates the ``kl-drift-report-<run>`` markdown and
    ``kl-drift-drift-<run>`` table artifacts; emits one ``kl-drift.alert.critical`` event
    per critical row.

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
    result = run_drift_task(settings)
    publish_artifacts(result)
    emit_alert_events(result.alerts)
    summary = ", ".join(f"{n} {status}" for status, n in result.alerts["summary"].items())
    get_run_logger().info("run %s: %s; report %s", result.run_id, summary,
                          result.run_dir / "report.html")
    if fail_on_alert and result.exit_code:
        raise AlertsFound(f"run {result.run_id}: rows at or above "
                          f"{settings.output.fail_on!r} ({summary})")
    return result
