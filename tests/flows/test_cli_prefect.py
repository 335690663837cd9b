"""`kl-drift run --prefect`: quiet means one line on stderr; exported metrics carry the
monitor's name as its artifacts and events do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.flows.conftest import FLIGHTS_BASELINE, flights_config

ROOT = Path(__file__).parents[2]


def test_quiet_prefect_run_prints_only_kl_drifts_one_error_line(prefect_server: str,
                                                                tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not parquet")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_LOGGING_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--prefect", "-q", "--baseline",
         FLIGHTS_BASELINE, "--current", str(broken), "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    assert done.stdout == ""
    # Prefect logs the failed task and flow run at ERROR: not on a quiet stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"kl-drift: error: file '{broken}': cannot read it as Parquet")


def test_exported_metrics_are_labelled_with_the_monitor(prefect_server: str,
                                                        tmp_path: Path) -> None:
    from flows.flows import drift_check

    textfile = tmp_path / "kl_drift.prom"
    # a monitor of its own: test_flows counts the artifacts of its monitor on this server
    drift_check(flights_config(tmp_path, **{
        "prefect.name": "Flights metrics", "input.features": ["dep_delay"],
        "export.prometheus.textfile": str(textfile)}))
    monitors = {sample.labels["monitor"]
                for family in text_string_to_metric_families(textfile.read_text())
                for sample in family.samples}
    assert monitors == {"Flights metrics"}
