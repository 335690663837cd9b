"""Real servers for the tests: PostgreSQL, an S3-compatible endpoint and a Prometheus
Pushgateway, on 127.0.0.1.

All are session fixtures on a free port, stopped at the end; a watchdog process stops
them as well if the test run itself is killed. PostgreSQL comes from Debian's
``postgresql`` package (``.ci/run`` installs it) and runs as the ``postgres`` system user
when the tests run as root (it refuses to run as root). The S3 endpoint is moto's server
mode (a dev dependency) with IAM checks on, so wrong credentials are refused as by S3. The
Pushgateway is Debian's ``prometheus-pushgateway``, keeping its metrics in memory only.
Locally a missing binary skips with what to install; under CI (``CI`` set) it fails.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

PG_PASSWORD = "kl-drift-test-secret"


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI: CI must never skip a test silently."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def chromium_executable() -> str:
    """The headless Chromium the browser tests drive through Playwright (never downloaded),
    or :func:`unavailable` saying what to install."""
    from pipeline.write.reports.screenshot import find_chromium

    executable = find_chromium()
    if executable is None:
        unavailable("headless Chromium not found (install chromium or set KL_DRIFT_CHROMIUM)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("Playwright not installed (pip install -e '.[dev]')")
    assert executable is not None
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 60 s")


def _watchdog(stop_command: str) -> subprocess.Popen[bytes]:
    """A shell that runs ``stop_command`` once this test process is gone, so a server never
    outlives a killed test run (teardown kills the watchdog first on a normal exit)."""
    return subprocess.Popen(
        ["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                     f"{stop_command}"], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _serving(command: list[str], port: int, what: str, *, stop_command: str | None = None,
             env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server until the block ends: listening on ``port`` when the block starts,
    stopped afterwards, and stopped by a watchdog (``stop_command``, else a plain kill) if
    this test process dies first."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    watchdog = _watchdog(stop_command or f"kill {server.pid}")
    try:
        _wait_for_port(port, server, what)
        yield
    finally:
        watchdog.kill()
        _stop(server)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://postgres:PASSWORD@127.0.0.1:PORT/postgres`` of a fresh server
    (password logins over TCP, as on a real server)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        unavailable("PostgreSQL is not installed: apt-get install postgresql")
    bindir = os.path.dirname(binaries[-1])
    as_user: list[str] = []
    data = tempfile.mkdtemp(prefix="kl-drift-pg-")
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password_file = os.path.join(data, "pw")
    with open(password_file, "w") as handle:
        handle.write(PG_PASSWORD)
    if as_user:
        os.chown(password_file, user.pw_uid, user.pw_gid)
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", f"{data}/db", "-U", "postgres",
                    "-A", "scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8"],
                   check=True, capture_output=True)
    port = free_port()
    try:
        with _serving([*as_user, f"{bindir}/postgres", "-D", f"{data}/db", "-k", data, "-h",
                       "127.0.0.1", "-p", str(port), "-c", "fsync=off", "-c",
                       "full_page_writes=off"], port, "postgres",
                      stop_command=f"kill -INT $(head -n 1 {data}/db/postmaster.pid); "
                                   f"sleep 5; rm -rf {data}"):
            yield f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        shutil.rmtree(data, ignore_errors=True)


@dataclass(frozen=True)
class S3:
    """A local S3-compatible endpoint and valid credentials for it."""

    url: str
    options: dict[str, str]  # polars storage_options
    client: Any  # boto3 S3 client

    def upload(self, path: str, key: str, bucket: str = "data") -> str:
        self.client.upload_file(path, bucket, key)
        return f"s3://{bucket}/{key}"


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """moto's S3 server with bucket ``data``; only the fixture's key pair is accepted."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    port = free_port()
    # The first 4 requests (set-up below) need no signature; later ones are checked.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    url = f"http://127.0.0.1:{port}"
    with _serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  port, "moto.server", env=env):
        setup = {"endpoint_url": url, "aws_access_key_id": "setup",
                 "aws_secret_access_key": "setup", "region_name": "us-east-1"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="kl-drift")
        key = iam.create_access_key(UserName="kl-drift")["AccessKey"]
        iam.put_user_policy(UserName="kl-drift", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        client = boto3.client("s3", **{**setup, "aws_access_key_id": key["AccessKeyId"],
                                       "aws_secret_access_key": key["SecretAccessKey"]})
        client.create_bucket(Bucket="data")
        yield S3(url, {"aws_endpoint_url": url, "aws_region": "us-east-1",
                       "aws_allow_http": "true", "aws_access_key_id": key["AccessKeyId"],
                       "aws_secret_access_key": key["SecretAccessKey"]}, client)


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[str]:
    """The URL of a fresh Prometheus Pushgateway (``http://127.0.0.1:PORT``)."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        unavailable("the Prometheus Pushgateway is not installed: apt-get install "
                    "prometheus-pushgateway")
    port = free_port()
    with _serving([binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=",
                   "--log.level=warn"], port, "prometheus-pushgateway"):
        yield f"http://127.0.0.1:{port}"
