"""The Model outputs and Estimates sections of report.md and report.html."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.special import softmax

from pipeline.config import EstimateConfig, ModelsConfig
from pipeline.errors import InputError
from pipeline.formats import DRIFT_FILE, MODELS_FILES
from pipeline.measure.estimate import estimate_frame
from pipeline.measure.models import compare_outputs
from pipeline.write.documents import alerts_document, estimates_block, models_block
from pipeline.write.reports import write_reports
from pipeline.write.reports.model_outputs import class_means, top_examples
from pipeline.write.reports.plots import MAX_PANELS, class_means_svgs
from pipeline.write.run_folder import model_tables, read_run, write_run_outputs
from tests.report_data import ParsedPage, make_alerts, make_drift

HOSTILE_CLASS = "<b>bold</b>|[x](http://evil.example)"
HOSTILE_REGION = "<img src=x onerror=alert(1)>"
CLASSES = ["early", HOSTILE_CLASS, "late"]


def _model_result(n: int = 400):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(n, 3)) * 2
    cur = base + rng.normal(scale=0.8, size=(n, 3))
    regions = rng.choice(["EU", HOSTILE_REGION], n).tolist()
    ids = [f"*id{i}*" for i in range(n)]
    frames = [pl.DataFrame({"id": ids, "logits": values.tolist(), "region": regions,
                            "day": [f"d{i % 2}" for i in range(n)]}) for values in (base, cur)]
    config = ModelsConfig(baseline="b.parquet", current="c.parquet", outputs="logits",
                          class_names=CLASSES, segments=["region"], timestamp="day",
                          warn=0.05, critical=0.5, top_n=5)
    return compare_outputs(*frames, config), base, cur, np.asarray(regions)


def _estimates():
    rng = np.random.default_rng(4)
    logq = -rng.exponential(1.0, 300)
    samples = pl.DataFrame({"logq": logq, "logp": np.minimum(logq + rng.normal(0, 0.2, 300), 0),
                            "g": rng.choice(["a", "b"], 300)})
    config = EstimateConfig(source="s.parquet", segments=["g"])
    return estimate_frame(samples, config), config


def _write(run_dir: Path, *, drift: pl.DataFrame | None = None, models=None,
           estimates=None) -> Path:
    """A run folder with the given parts, written as the pipeline writes one."""
    run = make_alerts(make_drift(2, 1))["run"]
    document = alerts_document(
        drift, {**run, "inputs": {} if drift is None else run["inputs"]},
        models=None if models is None else models_block(models),
        estimates=None if estimates is None else estimates_block(*estimates))
    tables = {DRIFT_FILE: drift, **(model_tables(models) if models else {}),
              **({"estimates.parquet": estimates[0]} if estimates else {})}
    write_run_outputs(run_dir, tables, document)
    write_reports(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory):
    result, base, cur, regions = _model_result()
    run_dir = _write(tmp_path_factory.mktemp("m") / "run", models=result, estimates=_estimates())
    return run_dir, result, base, cur, regions


def test_class_means_pool_windows_over_all_matched_examples(model_run) -> None:
    run_dir, _, base, cur, regions = model_run
    tables = read_run(run_dir).models
    pooled = class_means(tables)
    np.testing.assert_allclose(pooled["current_mean"].to_numpy(),
                               softmax(cur, axis=1).mean(0), rtol=1e-12)
    np.testing.assert_allclose(pooled["baseline_mean"].to_numpy(),
                               softmax(base, axis=1).mean(0), rtol=1e-12)
    shares = np.bincount(softmax(cur, axis=1).argmax(1), minlength=3) / len(cur)
    np.testing.assert_allclose(pooled["current_predicted_share"].to_numpy(), shares)
    by_segment = class_means(tables, by=["segment"]).filter(pl.col("segment") == "region=EU")
    eu = regions == "EU"
    np.testing.assert_allclose(by_segment["current_mean"].to_numpy(),
                               softmax(cur[eu], axis=1).mean(0), rtol=1e-12)
    assert pooled["class"].to_list() == CLASSES


def test_top_examples_are_the_largest_of_the_run(model_run) -> None:
    run_dir, result, *_ = model_run
    top = top_examples(read_run(run_dir).models, n=4)
    largest = result.per_example["js_distance"].sort(descending=True).head(4).to_list()
    assert top["value"].to_list() == pytest.approx(largest)
    assert top["id"].dtype == pl.String


def test_markdown_model_and_estimate_sections(model_run) -> None:
    run_dir, result, *_ = model_run
    text = (run_dir / "report.md").read_text()
    assert "## Features" not in text  # no feature drift in this run
    models = text.split("## Model outputs", 1)[1].split("## Estimates", 1)[0]
    table = [line for line in models.split("\n### ", 1)[0].splitlines() if line.startswith("| ")]
    assert len(table) == 1 + result.summary.height  # header + one row per window x segment
    assert table[0].startswith("| Status | Segment | Window | n | JS distance mean | p95 |")
    assert "### Mean predicted probability per class" in models
    assert "### Most changed examples" in models
    estimates = text.split("## Estimates", 1)[1].split("## Run", 1)[0]
    assert "KL(Q ‖ P) estimated with k3" in estimates and "| g=a |" in estimates
    assert sum(line.startswith("| g=") for line in estimates.splitlines()) == 2


def test_markdown_escapes_model_strings(model_run) -> None:
    text = (model_run[0] / "report.md").read_text()
    assert "<b>" not in text and "<img" not in text and "[x](" not in text
    assert "&lt;b&gt;bold&lt;/b&gt;\\|\\[x\\](http://evil.example)" in text
    assert "\\*id" in text  # ids cannot turn into emphasis


def test_html_model_sections_are_escaped_and_self_contained(model_run) -> None:
    run_dir, result, *_ = model_run
    page = ParsedPage((run_dir / "report.html").read_text())
    assert not page.all("b") and not page.all("img")  # hostile names stay text
    assert HOSTILE_CLASS in "".join(page.text) and HOSTILE_REGION in "".join(page.text)
    assert not [a for a in page.all("a") if (a.get("href") or "").startswith("http")]
    assert len(page.all("script")) == 1 and not any(
        attrs.get("src") for attrs in page.all("script"))
    html = (run_dir / "report.html").read_text()
    models = html.split('id="models"', 1)[1].split('id="estimates"', 1)[0]
    n_segments = result.summary["segment"].n_unique()  # one class-means panel per segment
    assert models.count("<svg") == n_segments == 2 and "Most changed examples" in models
    assert models.split('id="model-rows"', 1)[1].split("</table>", 1)[0].count("<tr>") == (
        1 + result.summary.height)


def test_model_and_estimate_sections_follow_the_features(tmp_path: Path) -> None:
    result, *_ = _model_result(120)
    run_dir = _write(tmp_path / "r", drift=make_drift(3, 2, seed=1), models=result,
                     estimates=_estimates())
    text = (run_dir / "report.md").read_text()
    assert text.index("## Features") < text.index("## Model outputs") < text.index(
        "## Estimates") < text.index("## Run")
    page = (run_dir / "report.html").read_text()
    assert page.index('id="features"') < page.index('id="models"') < page.index(
        'id="estimates"')


def test_class_means_draw_one_panel_per_segment_and_cap_them() -> None:
    means = pl.DataFrame({"segment": [f"s{i}" for i in range(15) for _ in range(2)],
                          "class": ["a", "b"] * 15, "baseline_mean": [0.4, 0.6] * 15,
                          "current_mean": [0.5, 0.3] * 15})
    panels = class_means_svgs(means)
    assert len(panels) == MAX_PANELS
    titles = [ParsedPage(svg).text[0] for svg in panels[:2]]
    assert titles == ["s0", "s1"]
    # Bar lengths are proportional to the means (all panels share one scale).
    widths = [float(w) for w in re.findall(r'class="(?:base|cur)-bar"[^>]*width="([\d.]+)"',
                                           panels[0])]
    np.testing.assert_allclose(np.array(widths) / widths[2], [0.4 / 0.6, 0.5 / 0.6, 1, 0.5],
                               rtol=0.02)  # baseline a, current a, baseline b, current b
    single = class_means_svgs(means.filter(pl.col("segment") == "s0").with_columns(
        segment=pl.lit("all")))
    assert [ParsedPage(svg).text[0] for svg in single] == ["All examples"]


def test_missing_or_malformed_model_tables_are_one_line_errors(tmp_path: Path) -> None:
    result, *_ = _model_result(60)
    run_dir = _write(tmp_path / "r", models=result)
    (run_dir / MODELS_FILES["examples"]).unlink()
    with pytest.raises(InputError, match=r"model_examples\.parquet not found"):
        write_reports(run_dir)
    pl.read_parquet(run_dir / MODELS_FILES["classes"]).rename({"class": "label"}).write_parquet(
        run_dir / MODELS_FILES["examples"])
    with pytest.raises(InputError, match=r"model_examples\.parquet lacks a required column"):
        write_reports(run_dir)
    document = json.loads((run_dir / "alerts.json").read_text())
    assert document["summary"]["total"] == 0 and "models" in document


def test_model_rows_show_their_lifecycle_and_the_changes(model_run) -> None:
    from pipeline.write.reports.html import render_html
    from pipeline.write.reports.markdown import render_markdown

    run_dir, *_ = model_run
    run = read_run(run_dir)
    assert run.models is not None
    summary = run.models.summary.with_columns(
        lifecycle=pl.when(pl.col("status") == "ok").then(None).otherwise(pl.lit("new")))
    block = {**run.models.block, "changes": {"new": 2, "ongoing": 5, "resolved": 1}}
    tables = type(run.models)(block, summary, run.models.classes, run.models.examples)
    page = render_html(None, run.alerts, models=tables)
    rows = page.split('id="model-rows"')[1].split("</table>")[0]
    n_new = summary.filter(pl.col("lifecycle") == "new").height
    assert rows.count('<span class="life l-new">new</span>') == n_new > 0
    assert "since the last run: " in page and '<span class="life l-resolved">resolved</span> 1' \
        in page
    text = render_markdown(None, run.alerts, models=tables)
    assert "; since the last run: 2 new · 5 ongoing · 1 resolved." in text
    assert text.count(", new |") == n_new
