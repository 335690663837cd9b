"""Hostile names: data-derived strings show as text and never write outside the run folder."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.write.history import append_history, read_history
from pipeline.write.reports import render_markdown, write_reports
from tests.report_data import ParsedPage, make_alerts, make_drift, write_run

SCRIPT = "<script>alert(1)</script>"
EVIL_PATH = "../../evil"
IMG = "<img src=x onerror=alert(1)>"
NAMES = [SCRIPT, EVIL_PATH, "x\n| injected | row |", "$\\mathrm{x}$ `tick` [a](javascript:x)"]
BINS = [IMG, "]]></text><script>alert(2)</script>", "<!-- -->", "ok"]


@pytest.fixture(scope="module")
def hostile() -> tuple[pl.DataFrame, dict]:
    drift = make_drift(len(NAMES), 2, names=NAMES, bin_labels=BINS, alert_fraction=0.5, seed=4,
                       segments={"region": ["<b>EU</b>"]})
    # Every hostile feature alerts, so its name and bins reach titles, tables and plots.
    drift = drift.with_columns(status=pl.lit("critical"), value=pl.lit(0.5))
    return drift, make_alerts(drift, run_id=f"{EVIL_PATH}<i>run</i>")


@pytest.fixture(scope="module")
def run_tree(hostile: tuple[pl.DataFrame, dict], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("hostile")
    run_dir = write_run(root / "out" / "run", *hostile)
    append_history(root / "out" / "history", hostile[0], hostile[1]["run"]["run_id"],
                   hostile[1]["run"]["created_at"])
    written = write_reports(run_dir, history_dir=root / "out" / "history")
    return root, run_dir, written


def test_html_has_no_injected_elements(run_tree: tuple[Path, Path, list[Path]]) -> None:
    _, run_dir, _ = run_tree
    page = ParsedPage((run_dir / "report.html").read_text())
    tags = [tag for tag, _ in page.tags]
    assert tags.count("script") == 1  # our own inline script only
    assert page.all("script")[0] == {}
    assert not {"img", "iframe", "object", "embed", "b", "i"} & set(tags)
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    static = Path(__file__).parents[1] / "pipeline/write/reports/templates/report.js"
    assert page.scripts == [static.read_text()]  # nothing data-derived in the script


def test_html_shows_hostile_names_as_text(run_tree: tuple[Path, Path, list[Path]]) -> None:
    _, run_dir, _ = run_tree
    text = "".join(ParsedPage((run_dir / "report.html").read_text()).text)
    for shown in (SCRIPT, EVIL_PATH, IMG, "<b>EU</b>", "]]></text><script>alert(2)</script>"):
        assert shown in text
    assert "$\\mathrm{x}$" in text  # verbatim in the SVG too: no mathtext


def test_markdown_escapes_hostile_names(hostile: tuple[pl.DataFrame, dict]) -> None:
    text = render_markdown(*hostile)
    assert "<" not in text and ">" not in text.replace("→", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\[a\\](javascript:x)" in text and "\\`tick\\`" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    cells = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
    assert len(cells) == 1  # the newline and pipes in a name did not add a row or a column
    assert not any(line.startswith("| injected") for line in text.splitlines())


def test_nothing_is_written_outside_the_run_and_history_folders(
        run_tree: tuple[Path, Path, list[Path]]) -> None:
    root, run_dir, written = run_tree
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    (partition,) = [f for f in files if f.startswith("out/history/")]
    assert re.fullmatch(r"out/history/run_id=[A-Za-z0-9._-]+/part\.parquet", partition)
    assert [f for f in files if not f.startswith("out/history/")] == [
        "out/run/alerts.json", "out/run/drift.parquet", "out/run/report.html",
        "out/run/report.md"]
    assert written == [run_dir / "report.md", run_dir / "report.html"]


def test_history_keeps_the_original_run_id(run_tree: tuple[Path, Path, list[Path]],
                                           hostile: tuple[pl.DataFrame, dict]) -> None:
    root, _, _ = run_tree
    history = read_history(root / "out" / "history")
    assert history is not None
    assert history["run_id"].unique().to_list() == [hostile[1]["run"]["run_id"]]


def test_hostile_run_id_partition_stays_inside(tmp_path: Path) -> None:
    drift = make_drift(1, 1)
    for run_id in ("../../outside", "/abs/path", "..", "a/../../b", "C:\\x", ""):
        path = append_history(tmp_path / "history", drift, run_id, "2024-06-01T00:00:00Z")
        assert path.resolve().is_relative_to((tmp_path / "history").resolve())
        assert path.parent.parent == tmp_path / "history"
    assert {p.parent for p in tmp_path.rglob("*.parquet")} <= set(
        (tmp_path / "history").iterdir())


def test_optional_columns_and_alerts_fields_are_escaped_too(
        hostile: tuple[pl.DataFrame, dict]) -> None:
    """Lifecycle, resolved list and changes come from other stages: still only text."""
    from pipeline.write.reports.html import render_html

    drift, alerts = hostile
    drift = drift.with_columns(lifecycle=pl.lit(IMG), partial=pl.lit(True),
                               coverage=pl.lit(0.5))
    document = {**alerts, "changes": {"new": 1, "ongoing": 0, "resolved": 1},
                "resolved": [{"segment": SCRIPT, "feature": IMG, "window": EVIL_PATH,
                              "since": SCRIPT, "last_status": IMG}]}
    page = ParsedPage(render_html(drift, document))
    tags = [tag for tag, _ in page.tags]
    assert tags.count("script") == 1 and "img" not in tags
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    assert IMG in "".join(page.text) and SCRIPT in "".join(page.text)
    text = render_markdown(drift, document)
    assert "<" not in text and ">" not in text.replace("→", "")
