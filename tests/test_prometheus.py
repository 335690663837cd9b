"""[export.prometheus]: a node-exporter textfile and a real Pushgateway carry the run's
verdicts, with bounded series; the Grafana dashboard in docs/ reads exactly those metrics."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

import pipeline as kd
from flows.cli import app
from pipeline.config import PrometheusConfig, load_config
from pipeline.errors import ConfigError, OutputError
from pipeline.write.prometheus import METRICS, export_metrics
from tests.servers import free_port

ROOT = Path(__file__).parents[1]
DATA = ROOT / "data"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
CODES = {"ok": 0, "insufficient_data": 1, "error": 2, "warn": 3, "critical": 4}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str, **wanted: str) -> Samples:
    """Every kl_drift sample of an exposition whose labels include ``wanted``; the labels
    the Pushgateway adds (job, instance) and ``monitor`` are dropped from the key."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("kl_drift_"):
                continue
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            labels = frozenset((k, v) for k, v in sample.labels.items()
                               if k not in ("job", "instance", "monitor"))
            found[(sample.name, labels)] = sample.value
    return found


def scrape(url: str, monitor: str) -> Samples:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return samples(response.read().decode(), job="kl-drift", monitor=monitor)


def expected(drift: pl.DataFrame, alerts: dict, *, cap: int = 10_000) -> Samples:
    """The samples the export must hold, computed row by row in plain Python from the drift
    table: per series its latest complete window, else its latest window."""
    series: dict[tuple[str, str], list[dict]] = {}
    for row in drift.iter_rows(named=True):
        series.setdefault((row["segment"], row["feature"]), []).append(row)
    chosen = []
    for rows in series.values():
        complete = [r for r in rows if not r["partial"]] or rows
        latest = max(complete, key=lambda r: r["window"])
        chosen.append((latest, max(CODES[r["status"]] for r in rows)))
    chosen.sort(key=lambda item: (-item[1], -CODES[item[0]["status"]], -item[0]["value"]))
    out: Samples = {}
    for row, worst in chosen[:cap]:
        key = frozenset({("segment", row["segment"]), ("feature", row["feature"])})
        out[("kl_drift_value", key | {("metric", row["metric"])})] = row["value"]
        if row["effect"] is not None:
            out[("kl_drift_effect", key | {("metric", row["metric"])})] = row["effect"]
        out[("kl_drift_warn_threshold", key)] = row["warn_threshold"]
        out[("kl_drift_critical_threshold", key)] = row["critical_threshold"]
        out[("kl_drift_q_value", key)] = row["q_value"]
        out[("kl_drift_status", key)] = CODES[row["status"]]
        out[("kl_drift_worst_status", key)] = worst
        out[("kl_drift_window_start_timestamp_seconds", key)] = datetime.fromisoformat(
            row["window"] + "+00:00").timestamp()
    counts = dict(drift["status"].value_counts().iter_rows())
    for status in CODES:
        out[("kl_drift_rows", frozenset({("part", "features"), ("status", status)}))] = (
            counts.get(status, 0))
    for lifecycle, n in alerts["changes"].items():
        out[("kl_drift_alerts", frozenset({("part", "features"), ("lifecycle", lifecycle)}))] = n
    out[("kl_drift_series", frozenset({("state", "exported")}))] = min(cap, len(series))
    out[("kl_drift_series", frozenset({("state", "omitted")}))] = max(0, len(series) - cap)
    created = datetime.fromisoformat(alerts["run"]["created_at"].replace("Z", "+00:00"))
    out[("kl_drift_last_run_timestamp_seconds", frozenset())] = created.timestamp()
    return out


@pytest.fixture(scope="module")
def flights(pushgateway: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`kl-drift run` on the flights, pushing and writing a textfile: (run folder, textfile)."""
    tmp = tmp_path_factory.mktemp("prom")
    config = tmp / "flights.toml"
    config.write_text('[input]\nexclude = ["flight_id"]\n'
                      '[export.prometheus]\nmonitor = "flights"\n')
    textfile = tmp / "textfile" / "kl_drift.prom"
    result = CliRunner().invoke(app, [
        "run", "--config", str(config), "--baseline", str(DATA / "flights_baseline.parquet"),
        "--current", str(DATA / "flights_current.parquet"), "--timestamp",
        "scheduled_departure", "--period", "1w", "--segment", "origin", "--out", str(tmp),
        "--run-id", "w27", "--fail-on", "never", "--quiet", "--pushgateway", pushgateway,
        "--prometheus-textfile", str(textfile)])
    assert result.exit_code == 0, result.output
    return tmp / "w27", textfile


def test_the_pushgateway_serves_the_runs_gauges(flights, pushgateway: str) -> None:
    run_dir, _ = flights
    drift = pl.read_parquet(run_dir / "drift.parquet")
    alerts = json.loads((run_dir / "alerts.json").read_text())
    assert drift["partial"].any()  # the first week is partial: the series skip it
    scraped = scrape(pushgateway, "flights")
    assert scraped == expected(drift, alerts)
    # 3 airports x 7 features, one series each: not one per window
    assert sum(name == "kl_drift_status" for name, _ in scraped) == 21 < drift.height


def test_the_textfile_holds_the_same_metrics_and_only_them(flights, pushgateway) -> None:
    _, textfile = flights
    text = textfile.read_text()
    assert samples(text, monitor="flights") == scrape(pushgateway, "flights")
    assert {f.name for f in text_string_to_metric_families(text)} == set(METRICS)
    assert not list(textfile.parent.glob(".*"))  # the atomic write left no temp file


def test_each_run_of_a_monitor_replaces_its_metrics_and_others_stay(pushgateway: str,
                                                                  tmp_path: Path) -> None:
    from tests.test_api import tables

    baseline, current = tables()
    profile = kd.profile(baseline)
    export = {"export.prometheus.pushgateway": pushgateway}
    kd.check(current, profile, timestamp="ts", period="1w",
             **export, **{"export.prometheus.monitor": "m1"}).write(tmp_path / "a")
    kd.check(current, profile, timestamp="ts", period="1w",
             **export, **{"export.prometheus.monitor": "m2"}).write(tmp_path / "b")
    first = scrape(pushgateway, "m1")
    assert {dict(labels)["feature"] for name, labels in first
            if name == "kl_drift_status"} == {"x", "color"}
    # the next run of m1 checks x only: color's series are gone, m2 keeps its own
    again = kd.check(current, profile, timestamp="ts", period="1w", features=["x"],
                     **export, **{"export.prometheus.monitor": "m1"}).write(tmp_path / "c")
    assert {dict(labels)["feature"] for name, labels in scrape(pushgateway, "m1")
            if name == "kl_drift_status"} == {"x"}
    assert scrape(pushgateway, "m1") == expected(again.drift, again.alerts)
    assert scrape(pushgateway, "m2")[("kl_drift_status", frozenset(
        {("segment", "all"), ("feature", "color")}))] == 0


def test_max_series_keeps_the_most_severe_and_counts_the_rest(flights, tmp_path) -> None:
    run_dir, _ = flights
    drift = pl.read_parquet(run_dir / "drift.parquet")
    alerts = json.loads((run_dir / "alerts.json").read_text())
    out = tmp_path / "capped.prom"
    export_metrics(drift, alerts, PrometheusConfig(textfile=str(out), max_series=4),
                   monitor="capped")
    written = samples(out.read_text(), monitor="capped")
    assert written == expected(drift, alerts, cap=4)
    assert {value for (name, _), value in written.items() if name == "kl_drift_worst_status"
            } == {CODES["critical"]}


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None]]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("PUT", self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(recorder: str,
                                                                       tmp_path) -> None:
    from tests.test_api import tables

    baseline, current = tables()
    _Recorder.seen.clear()
    result = kd.check(current, baseline, **{
        "export.prometheus.pushgateway": f"http://ops:s3cret@{recorder}",
        "export.prometheus.monitor": "a/b", "export.prometheus.job": "drift"})
    assert "s3cret" not in json.dumps(result.alerts)
    written = result.write(tmp_path / "r")
    token = base64.b64encode(b"ops:s3cret").decode()
    # the grouping key: job and monitor (the slash base64-encoded, as Pushgateway wants)
    assert _Recorder.seen == [("PUT", "/metrics/job/drift/monitor@base64/YS9i",
                               f"Basic {token}")]
    assert "s3cret" not in (written.run_dir / "alerts.json").read_text()
    unreachable = f"http://ops:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(OutputError, match=r"cannot push metrics to the Pushgateway "
                       r"'http://ops:\*\*\*@127\.0\.0\.1:\d+'.*the run folder is written"):
        kd.check(current, baseline,
                 **{"export.prometheus.pushgateway": unreachable}).write(tmp_path / "s")
    assert (tmp_path / "s" / "report.html").is_file()


def test_export_settings_are_checked_like_any_config_key() -> None:
    with pytest.raises(ConfigError, match=r"export\.prometheus\.textfile: must end in \.prom"):
        load_config(None, {"export.prometheus.textfile": "/var/lib/x.txt"})
    with pytest.raises(ConfigError, match=r"export\.prometheus\.textfile: set textfile or "
                       "pushgateway"):
        load_config(None, {"export.prometheus.monitor": "m"})
    with pytest.raises(ConfigError, match=r"export\.prometheus\.pushgateway: must be an http"):
        load_config(None, {"export.prometheus.pushgateway": "pushgateway:9091"})
    with pytest.raises(ConfigError, match=r"unknown key 'export\.prometheus\.max_serie'"):
        load_config(None, {"export.prometheus.max_serie": 3,
                           "export.prometheus.textfile": "a.prom"})


def test_a_failed_push_exits_2_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "run", "--baseline", str(DATA / "flights_baseline.parquet"), "--current",
        str(DATA / "flights_current.parquet"), "--feature", "dep_delay", "--out",
        str(tmp_path), "--pushgateway", f"http://127.0.0.1:{free_port()}", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kl-drift: error: cannot push metrics")


def test_the_grafana_dashboard_reads_the_exported_metrics(flights) -> None:
    _, textfile = flights
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "monitor", "segment", "feature"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["type"] for p in panels} >= {"stat", "state-timeline", "table", "timeseries"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queries = []
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queries.append(target["expr"])
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= variables, (panel["title"], used)
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    names = {name for query in queries for name in re.findall(r"\bkl_drift_\w+", query)}
    written = {f.name for f in text_string_to_metric_families(textfile.read_text())}
    assert names <= set(METRICS) and names <= written, names - written
    # every metric the exporter writes has a panel (the series count too)
    assert names == set(METRICS) - {"kl_drift_window_start_timestamp_seconds"}
    # the status colours say what the codes mean
    timeline = next(p for p in panels if p["type"] == "state-timeline")
    mapping = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {int(code): m["text"] for code, m in mapping.items()} == {
        code: status for status, code in CODES.items()}
