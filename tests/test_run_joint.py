"""Joint drift in a run: [joint] and --joint, the profile's sample, joint.parquet, alerts.json,
history, reports and Prefect events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from flows.cli import app
from flows.publish import alert_events, run_alerts, summary_markdown, worst_status
from pipeline.bins.profile import read_profile
from pipeline.config import PrefectConfig, load_config
from pipeline.formats import JOINT_FILE
from pipeline.run import run_drift
from pipeline.write.documents import AlertsDocument
from pipeline.write.history import HISTORY_DIR
from tests.joint_data import correlation_flip

QUICK = {"joint.sample_rows": 2000, "joint.current_rows": 1500, "joint.max_iter": 30,
         "joint.importance_repeats": 1}


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def flip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline and current rows whose marginals agree but whose correlation flips in the
    second of two days; the region column is a segment, ``<b>x1</b>`` a hostile name."""
    root = tmp_path_factory.mktemp("joint-run")
    baseline, flipped = correlation_flip(2000, 1, 1500, seed=3)
    same, _ = correlation_flip(1500, 1, 1, seed=4)
    names = {"x1": "<b>x1</b>"}
    baseline.rename(names).with_columns(region=pl.lit("EU")).write_parquet(
        root / "baseline.parquet")
    current = pl.concat([same.with_columns(day=pl.lit("2024-01-01")),
                         flipped.drop("window").with_columns(day=pl.lit("2024-01-02"))])
    current.rename(names).with_columns(region=pl.lit("EU")).write_parquet(
        root / "current.parquet")
    return {"root": root, "baseline": root / "baseline.parquet",
            "current": root / "current.parquet"}


def settings(files: dict[str, Path], out: Path, run_id: str, **extra: object):
    return load_config(None, {
        "input.baseline": str(files["baseline"]), "input.current": str(files["current"]),
        "input.timestamp": "day", "input.segments": ["region"],
        "output.dir": str(out), "output.run_id": run_id, **QUICK, **extra})


def test_a_run_with_joint_writes_its_table_block_history_and_reports(flip_files, tmp_path):
    result = run_drift(settings(flip_files, tmp_path, "r1"))
    # features: every marginal is the same, no feature alerts; joint: day 2 critical
    assert result.drift is not None and not result.drift["status"].is_in(["warn", "critical"]).any()
    joint = pl.read_parquet(result.run_dir / JOINT_FILE)
    assert joint.select("region", "segment", "window", "status").rows() == [
        ("EU", "region=EU", "2024-01-01", "ok"), ("EU", "region=EU", "2024-01-02", "critical")]
    assert joint.columns[:5] == ["region", "segment", "window", "coverage", "partial"]
    assert result.exit_code == 1 and result.worst_status == "critical"
    # alerts.json: a joint block with the models block's lifecycle fields, valid schema
    document = json.loads((result.run_dir / "alerts.json").read_text())
    AlertsDocument.model_validate(document)
    block = document["joint"]
    assert block["summary"]["critical"] == 1 and block["changes"]["new"] == 1
    alert = block["alerts"][0]
    assert (alert["window"], alert["lifecycle"], alert["metric"]) == ("2024-01-02", "new", "kl")
    assert alert["kl_low"] <= alert["value"] <= alert["kl_high"]
    assert {f["feature"] for f in alert["top_features"][:2]} == {"x0", "<b>x1</b>"}
    assert block["files"] == {"joint": "joint.parquet"} and block["base"] == 2
    # history: the joint part, without the 2-D view
    part = pl.read_parquet(tmp_path / HISTORY_DIR / "run_id=r1" / "joint.parquet")
    assert "view" not in part.columns and part.height == 2
    # reports: a Joint drift section, the views of the alerting row, names escaped
    text = (result.run_dir / "report.md").read_text()
    assert "## Joint drift" in text
    assert "<b>" not in text and "&lt;b&gt;x1&lt;/b&gt;" in text
    page = (result.run_dir / "report.html").read_text()
    assert 'id="joint-rows"' in page and page.count('class="heat-') > 20
    assert "<b>x1</b>" not in page and "&lt;b&gt;x1&lt;/b&gt;" in page
    # the profile built from raw rows keeps its sample next to it
    profile = read_profile(result.run_dir / "baseline_profile.parquet")
    assert profile.sample is not None and profile.sample.collect().height == 2000


def test_joint_alerts_have_lifecycles_across_runs_and_a_rerun_without_drops_them(
        flip_files, tmp_path):
    run_drift(settings(flip_files, tmp_path, "r1"))
    second = run_drift(settings(flip_files, tmp_path, "r2"))
    assert second.joint is not None
    assert second.joint.filter(pl.col("status") == "critical")["lifecycle"].to_list() == [
        "ongoing"]
    rerun = run_drift(settings(flip_files, tmp_path, "r2").model_copy(update={"joint": None}))
    assert not (rerun.run_dir / JOINT_FILE).exists() and "joint" not in rerun.alerts
    assert not (tmp_path / HISTORY_DIR / "run_id=r2" / "joint.parquet").exists()


def test_new_joint_alerts_become_prefect_events(flip_files, tmp_path):
    document = run_drift(settings(flip_files, tmp_path, "r1")).alerts
    assert [a["kind"] for a in run_alerts(document)] == ["joint"]
    assert worst_status(document) == "critical"
    (event,) = alert_events(document, monitor="m", report="r.html", settings=PrefectConfig())
    assert event["event"] == "kl-drift.alert.critical"
    assert event["resource"]["prefect.resource.id"] == "kl-drift.joint.region=EU"
    assert event["resource"]["kl-drift.kind"] == "joint"
    assert event["payload"]["window"] == "2024-01-02"
    assert "joint distribution" in summary_markdown(document, monitor="m", report="r.html")


def test_cli_profile_and_run_with_the_joint_flag(flip_files, tmp_path):
    profile = tmp_path / "profile.parquet"
    made = invoke("profile", flip_files["baseline"], "--out", profile, "--segment", "region",
                  "--joint")
    assert made.exit_code == 0, made.output
    assert "a sample of 2,000 baseline rows" in made.output
    ran = invoke("run", "--baseline", profile, "--current", flip_files["current"],
                 "--timestamp", "day", "--segment", "region", "--out", tmp_path / "runs",
                 "--joint", "--json")
    assert ran.exit_code == 1, ran.output  # the joint critical row, default fail_on
    assert json.loads(ran.stdout)["joint"]["summary"]["critical"] == 1


def test_joint_without_a_baseline_sample_or_without_scikit_learn_exits_2(
        flip_files, tmp_path, monkeypatch):
    plain = tmp_path / "plain.parquet"
    assert invoke("profile", flip_files["baseline"], "--out", plain, "--segment",
                  "region").exit_code == 0
    ran = invoke("run", "--baseline", plain, "--current", flip_files["current"],
                 "--timestamp", "day", "--segment", "region", "--out", tmp_path, "--joint")
    assert ran.exit_code == 2
    assert "joint: the baseline keeps no sample of rows" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    ran = invoke("run", "--baseline", flip_files["baseline"], "--current",
                 flip_files["current"], "--timestamp", "day", "--segment", "region",
                 "--out", tmp_path, "--joint")
    assert ran.exit_code == 2 and "pip install 'kl-drift[joint]'" in ran.stderr


def test_help_and_runs_without_joint_never_import_scikit_learn():
    # a fresh interpreter: the suite itself has imported scikit-learn by now
    import subprocess

    code = ("import sys; from typer.testing import CliRunner; from flows.cli import app; "
            "CliRunner().invoke(app, ['--help']); "
            "import pipeline.run; print('sklearn' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).parents[1])
    assert found.stdout.strip() == "False"


def test_view_heat_maps_draw_every_cell_and_escape_labels():
    from pipeline.write.reports.plots import joint_view_svgs

    view = {"x": "<x>", "y": "y & z", "x_bins": ["[-inf, 0)", "[0, inf)", "__missing__"],
            "y_bins": ["a", "<script>"], "baseline": [4.0, 0.0, 0.0, 4.0, 1.0, 1.0],
            "current": [0.0, 5.0, 5.0, 0.0, 0.0, 0.0]}
    baseline, current = joint_view_svgs(view, "segment=<EU>")
    for svg in (baseline, current):
        assert svg.count("<rect") == 6 and "<script>" not in svg and "<x>" not in svg
        assert "&lt;script&gt;" in svg and "y &amp; z" in svg and ">NA<" in svg
    # one scale: the fullest cell of either side is the darkest
    assert baseline.count('class="heat-6"') == 0 and current.count('class="heat-6"') == 2
    assert 'class="heat-0"' in current  # empty cells stay light
