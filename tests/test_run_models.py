"""Model outputs and KL estimates in a run: run_models, run_estimate, run_drift with all parts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import RunConfig, load_config
from pipeline.errors import ConfigError
from pipeline.formats import ALERTS_FILE, DRIFT_FILE, ESTIMATES_FILE, MODELS_FILES, RESOLVED_FILE
from pipeline.run import PROFILE_FILE, run_drift, run_estimate, run_models
from pipeline.write.documents import AlertsDocument

DATA = Path(__file__).parents[1] / "data"
REPORTS = ["report.html", "report.md"]
MODELS = {"models.baseline": str(DATA / "models_v1.parquet"),
          "models.current": str(DATA / "models_v2.parquet"), "models.id_column": "flight_id",
          "models.outputs": "logits",
          "models.class_names": ["early", "on_time", "late", "very_late"],
          "models.timestamp": "scheduled_departure", "models.period": "1w",
          "models.segments": ["origin"]}
ESTIMATE = {"estimate.source": str(DATA / "model_logprobs.parquet"),
            "estimate.timestamp": "scheduled_departure", "estimate.period": "1w"}
FEATURES = {"input.baseline": str(DATA / "flights_baseline.parquet"),
            "input.current": str(DATA / "flights_current.parquet"),
            "input.timestamp": "scheduled_departure", "input.period": "1w",
            "input.segments": ["origin"], "input.features": ["dep_delay", "dest"]}


def settings(tmp_path: Path, *parts: dict, **overrides: object) -> RunConfig:
    merged = {k: v for part in parts for k, v in part.items()}
    return load_config(None, {**merged, "output.dir": str(tmp_path / "runs"), **overrides})


def alerts_json(run_dir: Path) -> dict:
    """alerts.json, parsed strictly (no NaN/Infinity) and validated against the schema."""
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")
    document = json.loads((run_dir / ALERTS_FILE).read_text(), parse_constant=reject)
    AlertsDocument.model_validate(document)
    return document


@pytest.fixture(scope="module")
def models_run(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("models")
    messages: list[str] = []
    config = settings(tmp_path, MODELS, **{"output.run_id": "shadow"})
    return run_models(config, progress=messages.append), messages


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("full")
    return run_drift(settings(tmp_path, FEATURES, MODELS, ESTIMATE, **{"output.run_id": "all"}))


def test_models_run_folder_holds_the_three_tables_alerts_and_reports(models_run) -> None:
    result, messages = models_run
    assert result.run_dir.name == "shadow" and result.drift is None
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted(
        [*MODELS_FILES.values(), ALERTS_FILE, *REPORTS])
    on_disk = {name: pl.read_parquet(result.run_dir / file) for name, file in MODELS_FILES.items()}
    assert on_disk["models"].equals(result.models.summary)
    assert on_disk["classes"].equals(result.models.classes)
    assert on_disk["examples"].equals(result.models.examples)
    document = alerts_json(result.run_dir)
    assert document == result.alerts
    # Feature drift was not checked: its summary is empty; the model rows count on their own.
    assert document["summary"] == {"total": 0, "ok": 0, "warn": 0, "critical": 0,
                                   "insufficient_data": 0, "error": 0}
    assert document["alerts"] == [] and document["run"]["inputs"] == {}
    block = document["models"]
    statuses = result.models.summary["status"].to_list()
    assert block["summary"] == {"total": 9, "ok": 0, "warn": 9, "critical": 0,
                                "insufficient_data": 0} == {
        "total": len(statuses), **{s: statuses.count(s) for s in block["summary"]
                                   if s != "total"}}
    assert len(block["alerts"]) == 9 and block["n_matched"] == result.models.n_matched
    assert "estimates" not in document
    assert messages[0].startswith("comparing model outputs") and messages[-1] == (
        "rendering reports")


def test_models_run_exit_code_follows_fail_on_on_model_rows(models_run, tmp_path) -> None:
    result, _ = models_run
    assert (result.worst_status, result.exit_code) == ("warn", 0)  # fail_on = critical
    warn = run_models(settings(tmp_path, MODELS, **{"output.fail_on": "warn"}))
    assert warn.exit_code == 1
    calm = run_models(settings(tmp_path, MODELS, **{"output.fail_on": "warn",
                                                    "models.warn": 0.5,
                                                    "models.critical": 0.9}))
    assert (calm.worst_status, calm.exit_code) == ("ok", 0)


def test_models_report_has_only_the_model_sections(models_run) -> None:
    result, _ = models_run
    text = (result.run_dir / "report.md").read_text()
    assert "## Model outputs" in text and "## Features" not in text
    assert "## Estimates" not in text and "Metric:" not in text
    page = (result.run_dir / "report.html").read_text()
    assert 'id="models"' in page and 'id="features"' not in page and "<svg" in page


def test_one_run_folder_for_features_models_and_estimates(full_run) -> None:
    result = full_run
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted(
        [DRIFT_FILE, PROFILE_FILE, *MODELS_FILES.values(), ESTIMATES_FILE, ALERTS_FILE,
         RESOLVED_FILE, *REPORTS])
    document = alerts_json(result.run_dir)
    assert document["summary"]["total"] == result.drift.height == 3 * 2 * 7  # origins x 2 x weeks
    assert document["models"]["summary"]["warn"] == 9
    rows = document["estimates"]["rows"]
    assert [r["window"] for r in rows] == result.estimates["window"].to_list() == [
        "2013-07-01T00:00:00", "2013-07-08T00:00:00", "2013-07-15T00:00:00"]
    assert pl.read_parquet(result.run_dir / ESTIMATES_FILE).equals(result.estimates)
    statuses = {*result.drift["status"], *result.models.summary["status"]}
    assert result.worst_status == max(statuses, key=["ok", "insufficient_data", "error",
                                                     "warn", "critical"].index)
    text = (result.run_dir / "report.md").read_text()
    assert text.index("## Features") < text.index("## Model outputs") < text.index(
        "## Estimates")


def test_all_tables_of_a_run_share_window_and_segment_labels(full_run) -> None:
    result = full_run
    # Same timestamp column and period: the weeks both tables cover get the same labels.
    shared = set(result.drift["window"]) & set(result.models.summary["window"])
    assert shared == {"2013-07-01T00:00:00", "2013-07-08T00:00:00"}
    assert set(result.drift["segment"]) == set(result.models.summary["segment"]) == {
        "origin=EWR", "origin=JFK", "origin=LGA"}


def test_run_drift_with_only_models_runs_just_the_models(tmp_path: Path) -> None:
    result = run_drift(settings(tmp_path, MODELS, **{"output.run_id": "m"}))
    assert result.drift is None and result.models is not None
    assert not (result.run_dir / DRIFT_FILE).exists()


@pytest.mark.parametrize(("parts", "runner", "message"), [
    ((), run_drift, "nothing to check: set input.baseline and input.current"),
    (({"input.baseline": FEATURES["input.baseline"]}, MODELS), run_drift,
     "input.current: required for feature drift"),
    ((FEATURES,), run_models, "models: missing; add a [models] section"),
    ((MODELS,), run_estimate, "estimate: missing; add an [estimate] section"),
])
def test_missing_sections_are_one_line_config_errors(tmp_path, parts, runner, message) -> None:
    with pytest.raises(ConfigError) as caught:
        runner(settings(tmp_path, *parts))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_rerun_with_other_parts_removes_stale_tables(tmp_path: Path) -> None:
    config = settings(tmp_path, MODELS, ESTIMATE, **{"output.run_id": "same"})
    models = run_models(config)
    estimates = run_estimate(config)
    assert estimates.run_dir == models.run_dir
    assert sorted(p.name for p in estimates.run_dir.iterdir()) == sorted(
        [ESTIMATES_FILE, ALERTS_FILE, *REPORTS])
    document = alerts_json(estimates.run_dir)
    assert "models" not in document and document["estimates"]["estimator"] == "k3"
    assert estimates.exit_code == 0 and estimates.worst_status == "ok"  # no thresholds
    assert "## Model outputs" not in (estimates.run_dir / "report.md").read_text()
    # the model rows of the first run left the history with the rerun that has no models
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".kl-drift", "history",
                                                                      "same"]
    assert not any((tmp_path / "runs" / "history").iterdir())
