"""`kl-drift models` and `kl-drift estimate` end to end on the demo model data."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.formats import ALERTS_FILE, ESTIMATES_FILE, MODELS_FILES
from pipeline.write.documents import AlertsDocument

DATA = Path(__file__).parents[1] / "data"
V1, V2 = str(DATA / "models_v1.parquet"), str(DATA / "models_v2.parquet")
LOGPROBS = str(DATA / "model_logprobs.parquet")
MODEL_FLAGS = ["--baseline", V1, "--current", V2, "--id", "flight_id", "--outputs", "logits",
               "--timestamp", "scheduled_departure", "--period", "1w", "--segment", "origin"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kl-drift: error: "), result.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_models_from_flags_only_writes_a_run_folder(tmp_path: Path) -> None:
    result = invoke("models", *MODEL_FLAGS, "--out", str(tmp_path), "--run-id", "shadow")
    assert result.exit_code == 0, result.output  # rows are at warn; fail-on is critical
    run_dir = tmp_path / "shadow"
    assert {p.name for p in run_dir.iterdir()} == {*MODELS_FILES.values(), ALERTS_FILE,
                                                   "report.md", "report.html"}
    assert "model outputs (19,040 matched examples): 9 warn" in result.stdout
    assert "origin=LGA" in result.stdout and str(run_dir / "report.html") in result.stdout
    # One --outputs value is the list column; --class-name is not given: classes 0..3.
    classes = pl.read_parquet(run_dir / MODELS_FILES["classes"])
    assert classes["class"].unique(maintain_order=True).to_list() == ["0", "1", "2", "3"]


def test_models_json_and_fail_on(tmp_path: Path) -> None:
    result = invoke("models", *MODEL_FLAGS, "--out", str(tmp_path), "--fail-on", "warn",
                    "--json", "--class-name", "early", "--class-name", "on_time",
                    "--class-name", "late", "--class-name", "very_late")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    AlertsDocument.model_validate(document)
    assert document["models"]["summary"]["warn"] == 9
    assert {c["class"] for a in document["models"]["alerts"] for c in a["top_classes"]} <= {
        "early", "on_time", "late", "very_late"}
    assert result.stderr == ""  # no progress output with --json


def test_models_config_section_with_flags_overriding_it(tmp_path: Path) -> None:
    (tmp_path / "v1.parquet").write_bytes(Path(V1).read_bytes())
    (tmp_path / "v2.parquet").write_bytes(Path(V2).read_bytes())
    config = tmp_path / "run.toml"
    config.write_text('[models]\nbaseline = "v1.parquet"\ncurrent = "v2.parquet"\n'
                      'id_column = "flight_id"\noutputs_prefix = "p_"\nkind = "probabilities"\n'
                      '[output]\ndir = "runs"\nfail_on = "warn"\n')
    flagged = invoke("models", "--config", str(config), "--run-id", "calm", "--warn", "0.5",
                     "--critical", "0.9", "--quiet")
    assert flagged.exit_code == 0 and flagged.stdout == ""  # thresholds raised by the flags
    document = json.loads((tmp_path / "runs" / "calm" / ALERTS_FILE).read_text())
    assert document["models"]["inputs"]["baseline"] == str(tmp_path / "v1.parquet")
    assert document["models"]["summary"] == {"total": 1, "ok": 1, "warn": 0, "critical": 0,
                                             "insufficient_data": 0}
    plain = invoke("models", "--config", str(config), "--run-id", "plain", "-q")
    assert plain.exit_code == 1  # one window x segment at warn, fail_on = "warn" in the file


def test_run_with_only_a_models_section_runs_the_models(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'[models]\nbaseline = "{V1}"\ncurrent = "{V2}"\nid_column = '
                      f'"flight_id"\noutputs = "logits"\n[output]\ndir = "{tmp_path}"\n'
                      'run_id = "m"\nfail_on = "warn"\n')
    result = invoke("run", "--config", str(config))
    assert result.exit_code == 1, result.output
    assert (tmp_path / "m" / MODELS_FILES["models"]).exists()
    assert not (tmp_path / "m" / "drift.parquet").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--baseline", V1, "--current", V2, "--id", "nope", "--outputs", "logits"],
     ["models_v1.parquet", "'nope'", "missing column"]),
    (["--baseline", V1, "--current", V2, "--id", "flight_id", "--outputs", "p_early",
      "--outputs", "p_late", "--kind", "probabilities"],
     ["models_v1.parquet", "do not sum to 1"]),
    (["--baseline", V1, "--current", V2], ["models.outputs: set exactly one of outputs"]),
    (["--baseline", V1, "--current", V2, "--outputs", "logits", "--period", "1 week",
      "--timestamp", "scheduled_departure"], ["models.period: '1 week' is not a duration"]),
    ([], ["models: missing; add a [models] section"]),
])
def test_models_bad_input_exits_2_with_one_line(tmp_path: Path, args, expected) -> None:
    one_line_error(invoke("models", *args, "--out", str(tmp_path)), *expected)
    assert not any(tmp_path.iterdir())  # nothing written


def test_estimate_json_prints_the_table_and_writes_nothing(tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("estimate", LOGPROBS, "--json", "--segment", "origin", "--estimator", "k1")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["segment"] for r in rows] == ["origin=EWR", "origin=JFK", "origin=LGA"]
    assert sum(r["n"] for r in rows) == 19_040
    assert all(r["estimator"] == "k1" and r["value"] == r["k1"] for r in rows)
    assert not any(tmp_path.iterdir())


def test_estimate_writes_a_run_folder(tmp_path: Path) -> None:
    result = invoke("estimate", LOGPROBS, "--timestamp", "scheduled_departure", "--period",
                    "1w", "--out", str(tmp_path), "--run-id", "kl")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "kl"
    assert {p.name for p in run_dir.iterdir()} == {ESTIMATES_FILE, ALERTS_FILE, "report.md",
                                                   "report.html"}
    table = pl.read_parquet(run_dir / ESTIMATES_FILE)
    assert table["window"].to_list() == ["2013-07-01T00:00:00", "2013-07-08T00:00:00",
                                         "2013-07-15T00:00:00"]
    document = AlertsDocument.model_validate_json((run_dir / ALERTS_FILE).read_text())
    assert [r.value for r in document.estimates.rows] == pytest.approx(table["value"].to_list())
    assert "KL estimates" in result.stdout and "2013-07-08" in result.stdout
    assert "## Estimates" in (run_dir / "report.md").read_text()


def test_estimate_config_section_and_flag_override(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'[estimate]\nsource = "{LOGPROBS}"\nper = "sequence"\n'
                      'sequence_id = "sequence_id"\n')
    result = invoke("estimate", "--config", str(config), "--direction", "reverse", "--json")
    rows = json.loads(result.stdout)
    assert result.exit_code == 0 and len(rows) == 1
    assert rows[0]["direction"] == "reverse" and rows[0]["n"] < rows[0]["n_tokens"] == 19_040


@pytest.mark.parametrize(("args", "expected"), [
    ([LOGPROBS, "--logq", "nope"], ["model_logprobs.parquet", "'nope'", "missing column"]),
    ([LOGPROBS, "--logq", "scheduled_departure"], ["'scheduled_departure'", "expected numbers"]),
    ([LOGPROBS, "--level", "1.5"], ["estimate.level:"]),
    ([str(DATA / "absent.parquet")], ["absent.parquet"]),
    ([], ["estimate.source: required"]),
])
def test_estimate_bad_input_exits_2_with_one_line(tmp_path: Path, args, expected) -> None:
    one_line_error(invoke("estimate", *args, "--out", str(tmp_path)), *expected)
    assert not any(tmp_path.iterdir())
