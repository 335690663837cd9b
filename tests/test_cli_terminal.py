"""The CLI in a terminal and in logs: nothing that identifies a row is cut at 80 columns,
statuses coloured only on a terminal, --version, --json everywhere, readable help, errors
that name what is wrong, and sources printed without their passwords."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.write.reports.summary import compact_time_labels

ROOT = Path(__file__).parents[1]
DATA = ROOT / "data"
WINDOWS = ["--timestamp", "scheduled_departure", "--period", "1w"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kl_drift(*args: object, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command, its output piped (as in a CI log)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd,
                          env={**environment, "PYTHONPATH": str(ROOT), **env})


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("terminal") / "profile.parquet"
    result = invoke("profile", DATA / "flights_baseline.parquet", "--out", path,
                    "--exclude", "flight_id", "--exclude", "scheduled_departure",
                    "--segment", "origin", "--segment", "carrier")
    assert result.exit_code == 0, result.output
    return path


def test_piped_output_at_80_columns_keeps_every_row_whole(profile_path: Path,
                                                          tmp_path: Path) -> None:
    # two segment columns make long labels ("origin=EWR, carrier=US") next to the windows
    fast = tmp_path / "fast.toml"
    fast.write_text("[alerts]\ncalibrated = false\n")  # no simulated null: a quick run
    done = kl_drift("run", "--config", fast, "--baseline", profile_path, "--current",
                    DATA / "flights_current.parquet", *WINDOWS, "--segment", "origin",
                    "--segment", "carrier", "--feature", "air_time", "--feature", "dest",
                    "--out", tmp_path, "--run-id", "r80", "--fail-on", "never", cwd=tmp_path,
                    COLUMNS="80")
    assert done.returncode == 0, done.stderr
    assert not ANSI.search(done.stdout)  # piped: no colour codes
    lines = done.stdout.splitlines()
    document = json.loads((tmp_path / "r80" / "alerts.json").read_text())
    header = next(line for line in lines if line.startswith("status"))
    assert "js_distance" in header.split() and "value" not in header.split()
    rows = document["alerts"] + document["problems"]
    order = ("critical", "warn", "error", "insufficient_data")
    shown = sorted(rows, key=lambda row: order.index(row["status"]))[:25]
    windows = sorted({row["window"] for row in rows})
    label = dict(zip(windows, compact_time_labels(windows), strict=True))
    body = [line for line in lines if line.split()[:1] and line.split()[0] in order]
    assert len(body) == 25
    for line, row in zip(body, shown, strict=True):
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[:4] == [row["status"], row["segment"], row["feature"],
                             label[row["window"]]], line
        assert cells[4] == f"{row['value']:.3f}"
    assert not any("…" in line for line in lines if not line.startswith("… and "))
    assert f"… and {len(rows) - 25} more in alerts.json" in lines


def test_statuses_are_coloured_on_a_terminal_or_with_force_color(profile_path: Path,
                                                                 tmp_path: Path) -> None:
    fast = tmp_path / "fast.toml"
    fast.write_text("[alerts]\ncalibrated = false\n")
    done = kl_drift("run", "--config", fast, "--baseline", profile_path, "--current",
                    DATA / "flights_current.parquet", *WINDOWS, "--segment", "origin",
                    "--segment", "carrier", "--feature", "air_time", "--out", tmp_path,
                    "--fail-on", "never", cwd=tmp_path, FORCE_COLOR="1", COLUMNS="120")
    coloured = {match.group(1) for match in
                re.finditer(r"\x1b\[([0-9;]+)mcritical\x1b\[0m", done.stdout)}
    assert coloured == {"1;31"}, done.stdout[:500]  # bold red
    assert re.search(r"\x1b\[33m\d+ warn\x1b\[0m", done.stdout)


def test_version_and_help_say_what_they_should(profile_path: Path) -> None:
    version = invoke("--version")
    assert version.exit_code == 0
    assert version.stdout == f"kl-drift {importlib.metadata.version('kl-drift')}\n"
    assert "[models]" in invoke("models", "--help").stdout
    assert "[estimate]" in invoke("estimate", "--help").stdout
    assert "--install-completion" in invoke("--help").stdout
    for command in ("run", "models"):
        text = invoke(command, "--help").stdout
        assert "--prometheus-textfile" in text and "--pushgateway" in text
    for command in ("profile", "validate", "report", "run", "models", "estimate", "demo"):
        assert "--json" in invoke(command, "--help").stdout, command


def test_every_reporting_command_prints_json(profile_path: Path, tmp_path: Path) -> None:
    built = invoke("profile", DATA / "flights_baseline.parquet", "--out",
                   tmp_path / "p.parquet", "--exclude", "flight_id", "--json")
    document = json.loads(built.stdout)
    assert document["profile"] == str(tmp_path / "p.parquet")
    assert document["row_count"] == 27004 and len(document["features"]) == 8
    checked = json.loads(invoke("validate", profile_path, DATA / "demo.toml", "--json").stdout)
    assert [(c["source"], c["kind"]) for c in checked] == [
        (str(profile_path), "profile"), (str(DATA / "demo.toml"), "config")]
    run = invoke("run", "--baseline", profile_path, "--current",
                 DATA / "flights_current.parquet", *WINDOWS, "--segment", "origin",
                 "--segment", "carrier", "--feature", "distance", "--out", tmp_path,
                 "--run-id", "j", "--json", "--fail-on", "never")
    assert json.loads(run.stdout) == json.loads((tmp_path / "j" / "alerts.json").read_text())
    report = json.loads(invoke("report", tmp_path / "j", "--json").stdout)
    assert report == {"written": [str(tmp_path / "j" / "report.md"),
                                  str(tmp_path / "j" / "report.html")]}


def test_an_unknown_feature_is_named_with_the_features_there_are(profile_path: Path,
                                                                 tmp_path: Path) -> None:
    result = invoke("run", "--baseline", profile_path, "--current",
                    DATA / "flights_current.parquet", "--segment", "origin", "--segment",
                    "carrier", "--feature", "nonexistent", "--out", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "kl-drift: error: input.features: 'nonexistent' is in neither the baseline "
        "nor the current data, whose features are air_time, arr_delay, dep_delay, dest, "
        "distance, hour; fix the name (--feature) or remove it")


def test_validate_shows_a_database_source_without_its_password(postgres_url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS shown (x double precision, c text)"))
        connection.execute(sqlalchemy.text("INSERT INTO shown VALUES (1.0, 'a'), (2.0, 'b')"))
    engine.dispose()
    source = f"{postgres_url}#shown"
    password = postgres_url.split(":")[2].split("@")[0]
    printed = invoke("validate", source)
    assert printed.exit_code == 0, printed.output
    assert password not in printed.stdout
    assert printed.stdout.startswith("ok postgresql+psycopg://postgres:***@127.0.0.1:")
    assert "#shown: raw table" in printed.stdout
    as_json = json.loads(invoke("validate", source, "--json").stdout)
    assert password not in json.dumps(as_json) and as_json[0]["kind"] == "raw"
