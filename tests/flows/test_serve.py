"""Deployments built for `kl-drift serve`, and prefect.yaml for work pools (nothing served)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).parents[2]
SCHEDULED = {"schedule.drift_cron": "*/15 * * * *", "schedule.baseline_cron": "0 3 * * 1",
             "schedule.baseline_source": "/data/raw/*.parquet",
             "schedule.timezone": "Europe/Paris", "input.baseline": "/data/profile.parquet"}


def test_deployments_carry_the_config_schedules_and_path() -> None:
    from flows.serve import build_deployments

    drift, baseline = build_deployments(load_config(None, SCHEDULED),
                                        config_path="/etc/kl-drift.toml")
    assert [(d.flow_name, d.name) for d in (drift, baseline)] == [
        ("drift-check", "kl-drift"), ("build-baseline", "kl-drift")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in drift.schedules] == [
        ("*/15 * * * *", "Europe/Paris")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in baseline.schedules] == [
        ("0 3 * * 1", "Europe/Paris")]
    assert drift.parameters == {"config": "/etc/kl-drift.toml"}
    assert baseline.parameters == {"config": "/etc/kl-drift.toml",
                                   "source": "/data/raw/*.parquet"}
    assert drift.entrypoint == "flows.flows.drift_check"


def test_without_a_path_the_config_itself_is_the_parameter() -> None:
    from flows.flows import drift_check
    from flows.serve import build_deployments

    config = load_config(None, {"input.baseline": "/data/profile.parquet"})
    drift, baseline = build_deployments(config)
    assert [s.schedule.cron for s in drift.schedules] == ["0 * * * *"]  # hourly by default
    assert baseline.schedules == []  # no baseline_cron: on demand only
    assert drift_check.validate_parameters(drift.parameters)["config"] == config


def test_a_bad_cron_is_a_one_line_config_error() -> None:
    from flows.serve import build_deployments

    with pytest.raises(ConfigError, match=r"^schedule\.drift_cron: '61 \* \* \* \*' is not"):
        build_deployments(load_config(None, {"schedule.drift_cron": "61 * * * *"}))


def test_prefect_yaml_entrypoints_parameters_and_schedules_are_valid() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{name}")
        names.add(flow.name)
        parameters = flow.validate_parameters(deployment["parameters"])
        load_config(ROOT / parameters["config"])  # exists and is valid
        for schedule in deployment["schedules"]:
            Cron(schedule["cron"], timezone=schedule["timezone"])
        assert deployment["work_pool"]["name"] == "kl-drift"
    assert names == {"drift-check", "build-baseline"}


def test_prefect_name_names_the_served_deployments() -> None:
    from flows.serve import build_deployments

    config = load_config(None, {"prefect.name": "flights-hourly"})
    assert [d.name for d in build_deployments(config)] == ["flights-hourly", "flights-hourly"]
