"""Deployments of ``build_baseline`` and ``drift_check`` on the cron schedules of ``[schedule]``.

``kl-drift serve`` runs `serve_deployments`: a long-lived process that registers both
deployments with the Prefect server and runs their scheduled (and manually triggered) flow
runs. Teams deploying to work pools use ``prefect.yaml`` instead (docs/deploy.md).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Schedule

from flows.flows import build_baseline, drift_check
from pipeline.config import RunConfig
from pipeline.errors import ConfigError

DEPLOYMENT_NAME = "kl-drift"
TAGS = ["kl-drift"]


def _schedules(key: str, cron: str | None, timezone: str) -> list[Schedule]:
    if cron is None:
        return []
    try:
        return [Cron(cron, timezone=timezone)]
    except ValueError:
        raise ConfigError(f"schedule.{key}: {cron!r} is not a cron expression such as "
                          "'0 * * * *' (minute hour day month weekday)") from None


def build_deployments(config: RunConfig, *, config_path: str | None = None
                      ) -> list[RunnerDeployment]:
    """The two deployments ``kl-drift serve`` serves, without registering them.

    Parameters
    ----------
    config : RunConfig
        Its ``[schedule]`` section gives the cron schedules and the baseline source.
    config_path : str, optional
        The TOML file ``config`` came from. When given, the deployments' ``config``
        parameter is this path, so each run reads the file afresh; otherwise it is the
        configuration itself.

    Returns
    -------
    list of RunnerDeployment
        ``drift-check/<name>`` and ``build-baseline/<name>``, where ``<name>`` is
        ``prefect.name`` (default ``kl-drift``): the monitor name of artifact keys and events.

    Raises
    ------
    ConfigError
        A cron expression Prefect cannot parse.
    """
    schedule = config.schedule
    reference: Any = config_path or config.model_dump(mode="json")
    baseline_parameters = {"config": reference}
    if schedule.baseline_source is not None:
        baseline_parameters["source"] = schedule.baseline_source
    common: dict[str, Any] = {"name": config.prefect.name or DEPLOYMENT_NAME, "tags": TAGS,
                              "concurrency_limit": 1,
                              "entrypoint_type": EntrypointType.MODULE_PATH}
    deployments = [
        drift_check.to_deployment(
            schedules=_schedules("drift_cron", schedule.drift_cron, schedule.timezone),
            parameters={"config": reference},
            description="Check current data against the baseline profile; publish the "
                        "report, drift table, run summary and new-alert events.", **common),
        build_baseline.to_deployment(
            schedules=_schedules("baseline_cron", schedule.baseline_cron, schedule.timezone),
            parameters=baseline_parameters,
            description="Rebuild the baseline profile (input.baseline) from raw data.",
            **common),
    ]
    # to_deployment is sync-or-async; called from sync code it returns the deployment.
    return cast(list[RunnerDeployment], deployments)


def serve_deployments(config: RunConfig, *, config_path: str | None = None) -> None:
    """Serve both deployments until interrupted (Ctrl-C); see `build_deployments`."""
    serve(*build_deployments(config, config_path=config_path))
