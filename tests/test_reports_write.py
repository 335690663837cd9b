"""write_reports on a run folder, its one-line errors, and docs/reports.md against the schema."""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path

import polars as pl
import pytest
from pydantic import BaseModel, Field

from pipeline.errors import InputError
from pipeline.write.documents import AlertsDocument
from pipeline.write.history import append_history
from pipeline.write.reports import render_html, render_markdown, write_reports
from pipeline.write.run_folder import REPORT_COLUMNS
from tests.report_data import make_alerts, make_drift, write_run

DOCS = Path(__file__).parents[1] / "docs" / "reports.md"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    drift = make_drift(5, 3, seed=6)
    return write_run(tmp_path / "runs" / "r1", drift, make_alerts(drift, run_id="r1"))


def test_writes_both_reports_from_the_run_folder_only(run_dir: Path) -> None:
    inputs = {name: (run_dir / name).read_bytes() for name in ("drift.parquet", "alerts.json")}
    written = write_reports(run_dir)
    assert written == [run_dir / "report.md", run_dir / "report.html"]
    drift = pl.read_parquet(run_dir / "drift.parquet")
    alerts = json.loads(inputs["alerts.json"])
    assert written[0].read_text() == render_markdown(drift, alerts)
    assert written[1].read_text() == render_html(drift, alerts)
    # Inputs untouched (nothing recomputed) and no temp files left behind.
    assert {n: (run_dir / n).read_bytes() for n in inputs} == inputs
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "alerts.json", "drift.parquet", "report.html", "report.md"]


def test_rerendering_replaces_the_reports(run_dir: Path) -> None:
    (run_dir / "report.md").write_text("stale")
    first = write_reports(run_dir)[1].read_text()
    assert (run_dir / "report.md").read_text() != "stale"
    assert write_reports(run_dir)[1].read_text() == first


def test_history_dir_adds_across_runs_and_may_be_missing(run_dir: Path, tmp_path: Path) -> None:
    write_reports(run_dir, history_dir=tmp_path / "no-such-history")
    assert "across runs (worst" not in (run_dir / "report.html").read_text()
    history = tmp_path / "runs" / "history"
    append_history(history, make_drift(5, 3, seed=7), "r0", "2024-06-01T00:00:00Z")
    write_reports(run_dir, history_dir=history)
    assert "across runs (worst window)" in (run_dir / "report.html").read_text()


def _one_line_error(run_dir: Path, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as caught:
        write_reports(run_dir)
    assert "\n" not in str(caught.value)
    assert not (run_dir / "report.html").exists()
    return caught.value


def test_missing_folder_or_files(tmp_path: Path, run_dir: Path) -> None:
    _one_line_error(tmp_path / "nowhere", "alerts.json not found")
    (run_dir / "alerts.json").unlink()
    error = _one_line_error(run_dir, "alerts.json not found")
    assert error.source == str(run_dir)


def test_malformed_drift_table(run_dir: Path) -> None:
    (run_dir / "drift.parquet").write_bytes(b"not parquet at all")
    _one_line_error(run_dir, "not a readable Parquet file")


def test_drift_table_missing_a_column(run_dir: Path) -> None:
    pl.read_parquet(run_dir / "drift.parquet").drop("bins").write_parquet(
        run_dir / "drift.parquet")
    error = _one_line_error(run_dir, "lacks a required column")
    assert error.column == "bins"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda doc: "{ not json", "not valid JSON"),
        (lambda doc: {**doc, "schema_version": 3}, r"schema_version: Input should be 1 or 2"),
        (lambda doc: {**doc, "summary": {**doc["summary"], "critical": -1}},
         r"summary\.critical"),
        (lambda doc: {k: v for k, v in doc.items() if k != "run"}, r"run: Field required"),
        (lambda doc: {**doc, "run": {**doc["run"], "created_at": "yesterday"}},
         "run.created_at is not an ISO-8601 time"),
    ],
)
def test_malformed_alerts_json(run_dir: Path, change: typing.Callable, match: str) -> None:
    doc = change(json.loads((run_dir / "alerts.json").read_text()))
    (run_dir / "alerts.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    _one_line_error(run_dir, match)


# --- docs/reports.md documents exactly the alerts.json schema -------------------------------


def _model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field path of ``model`` in the docs' notation (``alerts[].top_bins[].bin``).

    Fields are named as in JSON (their alias), and optional blocks (``X | None``) are walked.
    """
    paths = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        paths.add(path)
        annotation = field.annotation
        inner, suffix = annotation, "."
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            inner = next((a for a in typing.get_args(annotation) if a is not type(None)), None)
        if typing.get_origin(annotation) is list:
            inner, suffix = typing.get_args(annotation)[0], "[]."
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths |= _model_paths(inner, path + suffix)
    return paths


def _documented_paths() -> set[str]:
    section = DOCS.read_text().split("## `alerts.json`", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


# Objects whose keys are data (file names, input names, the config), not schema fields.
_FREE_FORM = {"run.config", "run.inputs", "models.inputs", "models.files", "estimates.inputs",
              "estimates.files", "joint.files"}


def _document_paths(value: object, prefix: str = "") -> set[str]:
    """Field paths present in a JSON document (dict values that are free-form excluded)."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = prefix + key
            paths.add(path)
            if path not in _FREE_FORM and not key.endswith("null_reasons"):
                paths |= _document_paths(item, path + ".")
    elif isinstance(value, list):
        for item in value:
            paths |= _document_paths(item, prefix.rstrip(".") + "[].")
    return paths


def test_docs_document_every_alerts_json_field_and_no_other() -> None:
    assert _documented_paths() == _model_paths(AlertsDocument)


def test_generated_alerts_json_matches_the_documented_schema(run_dir: Path) -> None:
    doc = json.loads((run_dir / "alerts.json").read_text())
    AlertsDocument.model_validate(doc)
    assert doc["alerts"] and doc["problems"]  # the document exercises every list
    assert _document_paths(doc) <= _documented_paths()


def test_docs_list_the_drift_columns_reports_read() -> None:
    section = DOCS.read_text().split("## `drift.parquet`", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", section))
    assert set(REPORT_COLUMNS) <= documented


def test_model_paths_walks_nested_models() -> None:
    class Leaf(BaseModel):
        x: int

    class Root(BaseModel):
        leaf: Leaf
        leaves: list[Leaf]
        maybe: int | None = None
        block: Leaf | None = None
        keyword: int = Field(0, alias="class")

    assert _model_paths(Root) == {"leaf", "leaf.x", "leaves", "leaves[].x", "maybe", "block",
                                  "block.x", "class"}


def test_read_bins_returns_the_rows_asked_for_in_their_order(run_dir: Path) -> None:
    from pipeline.write.run_folder import read_bins, read_run

    drift = pl.read_parquet(run_dir / "drift.parquet")
    rows = pl.Series([7, 0, drift.height - 1, 3], dtype=pl.UInt32)
    assert read_bins(run_dir / "drift.parquet", rows).equals(drift["bins"].gather(rows))
    # rows spread over several chunks: each is found at its offset within its chunk
    assert read_bins(run_dir / "drift.parquet", rows, chunk=3).equals(
        drift["bins"].gather(rows))
    assert not read_bins(run_dir / "drift.parquet", rows.reverse()).equals(
        drift["bins"].gather(rows))
    light = read_run(run_dir, bins=False).drift
    assert light is not None and "bins" not in light.columns
    assert light.equals(drift.drop("bins"))
