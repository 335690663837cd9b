"""Every fenced snippet of README.md runs, as a user pastes it, in a fresh folder.

Each block runs in a temp folder holding a copy of ``data/`` and ``.venv`` (this test's
environment), with ``kl-drift`` on PATH: bash blocks command by command (a failing command
does not stop the next, as in a terminal; each exit status is checked), python blocks as a
script, toml blocks through ``kl-drift validate``. Blocks that name systems get them, real
and local: an S3 endpoint (moto, reached through the standard AWS environment variables and
an ``AWS_PROFILE``), a Delta and an Iceberg table on it, a DuckDB file, a PostgreSQL server
(the README's role ``monitor`` with password ``...``) and a Pushgateway, and the tables the
commands name, with columns they use (``ts``, ``event_time``, ``region``, ``model``).

What is not run as written is declared in `REWRITES`, each with its reason: host names
become the local servers' addresses, the Quickstart's install steps are this environment
(the test command itself is the one `.ci/run` runs), and the Iceberg example gets its
endpoint from a config (PyIceberg ignores ``AWS_ENDPOINT_URL``, as the README says).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.servers import PG_PASSWORD, S3
from tests.sources_data import to_duckdb

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e . && "


@dataclass
class Block:
    number: int
    language: str
    text: str
    line: int

    @property
    def commands(self) -> list[str]:
        """The block's shell commands: continuation lines joined, comment lines dropped."""
        joined = re.sub(r"\\\n\s*", "", self.text)
        return [line for line in joined.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [Block(i, m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for i, m in enumerate(FENCE.finditer(text))]


@dataclass
class Workspace:
    """A fresh folder to run a block in, and what the block's commands need."""

    path: Path
    env: dict[str, str]
    rewrites: list[tuple[str, str]] = field(default_factory=list)

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        for old, new in self.rewrites:
            command = command.replace(old, new)
        return subprocess.run(["bash", "-c", command], cwd=self.path, env=self.env,
                              capture_output=True, text=True, timeout=600)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    shutil.copytree(ROOT / "data", tmp_path / "data")
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PG", "KL_DRIFT_", "FORCE_COLOR"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Workspace(tmp_path, env)


# --- the tables the data-source examples name ------------------------------------------

def fraud_rows(start: datetime, days: int, shift: float, seed: int) -> pl.DataFrame:
    """Card transactions: amount, merchant, hour; by region and model version."""
    rng = np.random.default_rng(seed)
    n = 400 * days
    times = [start + timedelta(minutes=float(m))
             for m in np.sort(rng.uniform(0, days * 24 * 60, n))]
    return pl.DataFrame({
        "event_time": times, "region": rng.choice(["EU", "US"], n),
        "model": rng.choice(["v6", "v7"], n),
        "amount": rng.lognormal(3.0 + shift, 1.0, n),
        "merchant": rng.choice(["grocery", "travel", "online", "fuel"], n,
                               p=[0.4, 0.1 + shift / 4, 0.4 - shift / 4, 0.1]),
    }).with_columns(ts=pl.col("event_time"))


def fraud_data(folder: Path) -> pl.DataFrame:
    """``baseline.parquet`` (May, raw rows) in ``folder``; June's rows are returned."""
    fraud_rows(datetime(2024, 5, 1), 14, 0.0, 1).write_parquet(folder / "baseline.parquet")
    return fraud_rows(datetime(2024, 6, 1), 7, 0.2, 2)


def local_files(ws: Workspace, june: pl.DataFrame) -> None:
    (ws.path / "exports").mkdir()
    for day, rows in june.group_by(pl.col("ts").dt.date(), maintain_order=True):
        rows.drop("event_time").write_csv(ws.path / "exports" / f"{day[0]}.csv")
    for (region,), rows in june.group_by("region"):
        folder = ws.path / "features" / f"region={region}"
        folder.mkdir(parents=True)
        rows.drop("region").write_parquet(folder / "part-0.parquet")


def object_store(ws: Workspace, june: pl.DataFrame, s3: S3) -> None:
    """June on the S3 endpoint: Parquet files, a Delta table and an Iceberg table, reached
    through the standard environment (and the ``monitoring`` profile)."""
    keys = {k: s3.options[k] for k in ("aws_access_key_id", "aws_secret_access_key")}
    for bucket in ("ml-features", "lake"):
        if bucket not in {b["Name"] for b in s3.client.list_buckets()["Buckets"]}:
            s3.client.create_bucket(Bucket=bucket)
    for i, part in enumerate(june.iter_slices(june.height // 2)):
        part.write_parquet(ws.path / f"part-{i}.parquet")
        s3.upload(str(ws.path / f"part-{i}.parquet"), f"fraud/2024/06/part-{i}.parquet",
                  "ml-features")
    june.write_delta("s3://lake/tables/fraud_features", mode="overwrite",
                     storage_options={**s3.options, "AWS_S3_ALLOW_UNSAFE_RENAME": "true"})
    iceberg_table(ws.path, june, s3)
    (ws.path / "aws").mkdir()
    (ws.path / "aws" / "config").write_text("[profile monitoring]\nregion = us-east-1\n")
    (ws.path / "aws" / "credentials").write_text(
        "[monitoring]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    ws.env.update(AWS_ENDPOINT_URL=s3.url, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
                  AWS_CONFIG_FILE=str(ws.path / "aws" / "config"),
                  AWS_SHARED_CREDENTIALS_FILE=str(ws.path / "aws" / "credentials"),
                  AWS_ACCESS_KEY_ID=keys["aws_access_key_id"],
                  AWS_SECRET_ACCESS_KEY=keys["aws_secret_access_key"])
    endpoint = ws.path / "iceberg-endpoint.toml"  # PyIceberg's keys, as the README says
    endpoint.write_text(f'[input.storage_options]\n"s3.endpoint" = "{s3.url}"\n'
                        '"s3.region" = "us-east-1"\n"s3.force-virtual-addressing" = "false"\n')
    iceberg = "iceberg:s3://lake/warehouse/ml/fraud/metadata/00042-1f.metadata.json'"
    ws.rewrites.append((iceberg, f"{iceberg} --config {endpoint}"))


def iceberg_table(folder: Path, june: pl.DataFrame, s3: S3) -> None:
    """An Iceberg table at s3://lake/warehouse/ml/fraud whose metadata file has the
    README's name, ``00042-1f.metadata.json``."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("readme", uri=f"sqlite:///{folder / 'catalog.db'}",
                         warehouse="s3://lake/warehouse", **{
                             "s3.endpoint": s3.url, "s3.region": "us-east-1",
                             "s3.access-key-id": s3.options["aws_access_key_id"],
                             "s3.secret-access-key": s3.options["aws_secret_access_key"]})
    catalog.create_namespace_if_not_exists("ml")
    arrow = june.with_columns(pl.col("event_time", "ts").dt.cast_time_unit("us")).to_arrow()
    if catalog.table_exists("ml.fraud"):
        catalog.drop_table("ml.fraud")
    table = catalog.create_table("ml.fraud", schema=arrow.schema,
                                 location="s3://lake/warehouse/ml/fraud")
    table.append(arrow)
    source = table.metadata_location.removeprefix("s3://lake/")
    s3.client.copy_object(Bucket="lake", Key="warehouse/ml/fraud/metadata/00042-1f.metadata.json",
                          CopySource={"Bucket": "lake", "Key": source})


def postgres(ws: Workspace, june: pl.DataFrame, url: str) -> None:
    """June in analytics.fraud_features of database ``ml``, readable by the README's role
    ``monitor`` (password ``...``), at the local server's address."""
    import sqlalchemy as sa

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = 'monitor'")
                                  ).first():
            connection.execute(sa.text("CREATE ROLE monitor LOGIN PASSWORD '...'"))
        connection.execute(sa.text("DROP DATABASE IF EXISTS ml"))
        connection.execute(sa.text("CREATE DATABASE ml"))
    admin.dispose()
    ml = sa.create_engine(url.rsplit("/", 1)[0] + "/ml")
    with ml.begin() as connection:
        connection.execute(sa.text("CREATE SCHEMA analytics"))
        connection.execute(sa.text(
            "CREATE TABLE analytics.fraud_features (event_time timestamp, region text, "
            "model text, amount double precision, merchant text, ts timestamp)"))
        connection.execute(sa.text(
            "INSERT INTO analytics.fraud_features VALUES (:event_time, :region, :model, "
            ":amount, :merchant, :ts)"), june.to_dicts())
        connection.execute(sa.text("GRANT USAGE ON SCHEMA analytics TO monitor"))
        connection.execute(sa.text("GRANT SELECT ON analytics.fraud_features TO monitor"))
    ml.dispose()
    host = re.search(r"@([\d.]+:\d+)/", url)
    assert host and PG_PASSWORD in url
    ws.rewrites.append(("db.internal:5432", host.group(1)))


# --- running a block ----------------------------------------------------------------------

#: What a command may exit with besides 0: alerts at or above --fail-on exit 1.
ALERTING = re.compile(r"^(\S+=\S+ )*kl-drift run ")


def run_commands(ws: Workspace, block: Block, expect: Callable[[str], set[int]]) -> list[str]:
    """Run each command of ``block``; check its exit status; return their stdouts."""
    outputs = []
    for command in block.commands:
        done = ws.shell(command)
        assert done.returncode in expect(command), (
            f"README line {block.line}: {command}\nexit {done.returncode}\n{done.stderr}")
        assert "Traceback" not in done.stderr, done.stderr
        outputs.append(done.stdout)
    return outputs


def fail_on(command: str) -> set[int]:
    """A run exits 1 when it finds rows at or above --fail-on (critical by default)."""
    if ALERTING.match(command) and "--fail-on never" not in command:
        return {0, 1}
    return {0}


def check_runs(ws: Workspace, outputs: list[str], sources: list[str]) -> None:
    """Each run printed its report, and its alerts.json names the source it read."""
    reports = [re.search(r"^report: (.+)$", out, re.MULTILINE) for out in outputs]
    assert all(reports), outputs
    for found, source in zip(reports, sources, strict=True):
        assert found is not None
        alerts = json.loads((ws.path / Path(found.group(1)).parent / "alerts.json").read_text())
        assert alerts["run"]["inputs"]["current"] == source
        assert alerts["summary"]["total"] > 0


def test_every_readme_block_is_run_by_this_file() -> None:
    found = [(b.language, b.commands[0] if b.language == "bash" else b.text.split("\n")[0])
             for b in blocks()]
    assert len(found) == len(HANDLERS), found
    for block in blocks():
        assert HANDLERS[block.number][0](block), (block.line, block.text[:80])


def quickstart(ws: Workspace, block: Block) -> None:
    install, test = block.commands
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert test == ci  # `.ci/run` runs exactly this command: CI executes it
    assert install.startswith(INSTALL)  # this environment is that install
    outputs = run_commands(ws, Block(block.number, "bash", install.removeprefix(INSTALL),
                                     block.line), lambda _: {0})
    assert "demo-output/demo-flights/report.html" in outputs[0]
    assert (ws.path / "demo-output" / "demo-flights" / "report.html").is_file()


def cli(ws: Workspace, block: Block) -> None:
    def expect(command: str) -> set[int]:
        # air_time is critical, and runs fail on critical by default
        return {1} if command.startswith("kl-drift run ") else {0}

    outputs = run_commands(ws, block, expect)
    by_command = dict(zip(block.commands, outputs, strict=True))
    runs = [out for command, out in by_command.items() if command.startswith("kl-drift run ")]
    assert "critical" in runs[0]
    assert (ws.path / "runs" / "week-27" / "report.html").is_file()
    assert (ws.path / "runs" / "models-1" / "report.html").is_file()
    estimate = next(out for command, out in by_command.items()
                    if command.startswith("kl-drift estimate "))
    assert json.loads(estimate)[0]["estimator"] == "k3"
    joint = next(command for command in block.commands if " --joint" in command
                 and command.startswith("kl-drift run "))
    report = re.search(r"^report: (.+)$", by_command[joint], re.MULTILINE)
    assert report is not None
    assert (ws.path / Path(report.group(1)).parent / "joint.parquet").is_file()


def python(ws: Workspace, block: Block) -> None:
    script = ws.path / "snippet.py"
    script.write_text(block.text)
    done = subprocess.run([sys.executable, str(script)], cwd=ws.path, env=ws.env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    written = json.loads((ws.path / "runs" / "summer" / "alerts.json").read_text())
    assert written["run"]["run_id"] == "summer" and written["summary"]["critical"] > 0


def metrics(ws: Workspace, block: Block, pushgateway: str) -> None:
    ws.rewrites.append(("http://localhost:9091", pushgateway))
    run_commands(ws, block, lambda _: {0})
    assert "kl_drift_status{" in (ws.path / "metrics" / "kl_drift.prom").read_text()
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        scraped = response.read().decode()
    assert re.search(r'kl_drift_status\{[^}]*feature="air_time"[^}]*job="kl-drift"[^}]*'
                     r'monitor="kl-drift"', scraped), scraped[:2000]


def local_sources(ws: Workspace, block: Block) -> None:
    local_files(ws, fraud_data(ws.path))
    outputs = run_commands(ws, block, fail_on)
    check_runs(ws, outputs, ["exports/2024-06-*.csv", "features/"])


def s3_files(ws: Workspace, block: Block, s3: S3) -> None:
    object_store(ws, fraud_data(ws.path), s3)
    outputs = run_commands(ws, block, fail_on)
    check_runs(ws, outputs, ["s3://ml-features/fraud/2024/06/"])


def toml(ws: Workspace, block: Block) -> None:
    fraud_data(ws.path)
    (ws.path / "snippet.toml").write_text(block.text)
    done = ws.shell("kl-drift validate snippet.toml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok snippet.toml: config")


def lakehouse(ws: Workspace, block: Block, s3: S3) -> None:
    object_store(ws, fraud_data(ws.path), s3)
    outputs = run_commands(ws, block, fail_on)
    check_runs(ws, outputs, [
        "delta:s3://lake/tables/fraud_features",
        "iceberg:s3://lake/warehouse/ml/fraud/metadata/00042-1f.metadata.json"])


def duckdb(ws: Workspace, block: Block) -> None:
    to_duckdb(fraud_data(ws.path), ws.path / "warehouse.duckdb", "fraud_features")
    outputs = run_commands(ws, block, fail_on)
    check_runs(ws, outputs, ["duckdb:///warehouse.duckdb#fraud_features",
                             "duckdb:///warehouse.duckdb#SELECT * FROM fraud_features "
                             "WHERE model = 'v7'"])


def postgresql(ws: Workspace, block: Block, postgres_url: str) -> None:
    postgres(ws, fraud_data(ws.path), postgres_url)
    outputs = run_commands(ws, block, fail_on)
    check_runs(ws, outputs, [f"postgresql+psycopg://monitor@{ws.rewrites[-1][1]}/ml"
                             "#analytics.fraud_features"])


#: Per README block, in order: how to recognise it, and how to run it.
HANDLERS: list[tuple[Callable[[Block], bool], Callable[..., None]]] = [
    (lambda b: b.text.startswith("# 1. install"), quickstart),
    (lambda b: "kl-drift profile data/flights_baseline.parquet" in b.text, cli),
    (lambda b: b.language == "python", python),
    (lambda b: "--pushgateway" in b.text, metrics),
    (lambda b: "exports/2024-06-*.csv" in b.text, local_sources),
    (lambda b: "AWS_PROFILE=monitoring" in b.text, s3_files),
    (lambda b: b.language == "toml", toml),
    (lambda b: "delta:s3://" in b.text, lakehouse),
    (lambda b: "duckdb:///" in b.text, duckdb),
    (lambda b: "postgresql+psycopg://" in b.text, postgresql),
]
SERVERS = {"metrics": "pushgateway", "s3_files": "s3", "lakehouse": "s3",
           "postgresql": "postgres_url"}


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(HANDLERS)),
                         ids=[handler.__name__ for _, handler in HANDLERS])
def test_readme_block_runs(number: int, workspace: Workspace,
                           request: pytest.FixtureRequest) -> None:
    block = blocks()[number]
    recognise, handler = HANDLERS[number]
    assert recognise(block), (block.line, block.text[:80])
    server = SERVERS.get(handler.__name__)
    if server is None:
        handler(workspace, block)
    else:
        handler(workspace, block, request.getfixturevalue(server))
