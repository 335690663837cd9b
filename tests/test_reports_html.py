"""report.html: self-contained, sorted, capped, small, with the plots of alerting features."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import polars as pl
import pytest

from pipeline.write.history import append_history
from pipeline.write.reports import html
from pipeline.write.reports.html import MAX_PLOTS, render_html
from pipeline.write.reports.summary import STATUSES
from tests.report_data import ParsedPage, make_alerts, make_drift, with_verdicts


@pytest.fixture(scope="module")
def large() -> tuple[pl.DataFrame, str]:
    """100 features x 30 windows, ~30% of windows alerting (rendered once: ~7 s)."""
    drift = make_drift(100, 30, alert_fraction=0.3, seed=1)
    return drift, render_html(drift, make_alerts(drift))


@pytest.fixture(scope="module")
def small() -> tuple[pl.DataFrame, str]:
    drift = make_drift(8, 6, seed=3)
    return drift, render_html(drift, make_alerts(drift))


def test_large_report_is_under_2_mb_and_caps_the_plots(large: tuple[pl.DataFrame, str]) -> None:
    drift, page = large
    alerting = drift.filter(pl.col("status").is_in(["warn", "critical"]))
    assert 0.25 < alerting.height / drift.height < 0.35
    n_alerting = alerting["feature"].n_unique()
    assert n_alerting > MAX_PLOTS  # so the cap is exercised
    assert len(page.encode()) < 2_000_000
    parsed = ParsedPage(page)
    n_others = drift["feature"].n_unique() - n_alerting
    assert len(parsed.all("article")) == MAX_PLOTS
    assert len(parsed.all("details")) == n_others  # every other feature, collapsed
    # Share, contribution and across-windows panels for each.
    assert len(parsed.all("svg")) == 3 * (MAX_PLOTS + n_others)
    assert len(parsed.all("tr")) == 1 + 100 + 1 + 2  # feature header+rows, problems header+rows
    assert (f"Plots for the {MAX_PLOTS} most severe of {n_alerting} alerting features "
            f"(cap {MAX_PLOTS})") in page


def test_page_is_self_contained(small: tuple[pl.DataFrame, str]) -> None:
    _, page = small
    parsed = ParsedPage(page)
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith(("#", "data:")), (tag, name, value)
    assert not any(attrs.get("rel") == "stylesheet" for attrs in parsed.all("link"))
    assert all("src" not in attrs for attrs in parsed.all("script"))
    assert len(parsed.all("script")) == 1
    assert not re.search(r"@import|url\((?!#)|@font-face", page)
    # The only absolute URLs are XML namespace names inside the SVGs, which are never fetched.
    urls = set(re.findall(r"https?://[^\s\"')<]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_csp_forbids_fetches_and_allows_only_the_inline_script(
        small: tuple[pl.DataFrame, str]) -> None:
    _, page = small
    parsed = ParsedPage(page)
    (meta,) = [m for m in parsed.all("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    policy = meta["content"]
    assert "default-src 'none'" in policy
    (script,) = parsed.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_headline_counts_drifted_features_then_checks(small: tuple[pl.DataFrame, str]) -> None:
    drift, page = small
    drifted = drift.filter(pl.col("status").is_in(["warn", "critical"]))["feature"].n_unique()
    assert 0 < drifted < drift["feature"].n_unique()
    assert (f"<strong>{drifted} of {drift['feature'].n_unique()} features drifted</strong>"
            in page)
    # Cards count the table's rows (one per feature here) by their worst window's status.
    worst = drift.sort("value", descending=True).group_by("feature").agg(
        pl.col("status").sort_by(pl.col("status").replace_strict(
            {s: i for i, s in enumerate(STATUSES)})).first())
    rows = dict(worst.group_by("status").len().iter_rows())
    for status in STATUSES:
        card = re.search(rf'<div class="card s-{status}[^"]*">\s*<div class="count">(\d+)</div>',
                         page)
        assert card is not None and int(card.group(1)) == rows.get(status, 0), status
    # The checks come second, every status counted from alerts.json.
    checks = dict(drift.group_by("status").len().iter_rows())
    note = page.split('<section class="headline"')[1].split("</section>")[0]
    assert f"All {drift.height} checks" in note
    for status, label in (("critical", "critical"), ("ok", "ok"), ("error", "error")):
        assert f"{checks.get(status, 0)} {label}" in note


def test_table_is_capped_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html, "MAX_ROWS", 5)
    monkeypatch.setattr(html, "MAX_DISTRIBUTIONS", 2)
    drift = make_drift(12, 2, alert_fraction=0.1, seed=8)
    page = html.render_html(drift, make_alerts(drift))
    assert len([a for a in ParsedPage(page).all("tr") if "data-status" in a]) == 5
    assert "the top 5 of 12 rows (all in drift.parquet)" in page
    n_others = drift.filter(pl.col("status").is_in(["warn", "critical"]).not_().all().over(
        "feature"))["feature"].n_unique()
    assert f"The 2 most severe of {n_others} (cap)" in page


def test_table_rows_are_features_sorted_by_severity(small: tuple[pl.DataFrame, str]) -> None:
    drift, page = small
    rows = [attrs for attrs in ParsedPage(page).all("tr") if "data-status" in attrs]
    assert len(rows) == drift["feature"].n_unique()
    ranks = [STATUSES.index(r["data-status"]) for r in rows]
    assert ranks == sorted(ranks)


def test_every_feature_gets_a_linked_plot(small: tuple[pl.DataFrame, str]) -> None:
    drift, page = small
    alerting = set(drift.filter(pl.col("status").is_in(["warn", "critical"]))["feature"])
    parsed = ParsedPage(page)
    articles, collapsed = parsed.all("article"), parsed.all("details")
    assert len(articles) == len(alerting)
    assert len(collapsed) == drift["feature"].n_unique() - len(alerting)
    assert all("open" not in d for d in collapsed)  # collapsed by default
    links = {a["href"] for a in parsed.all("a")}
    assert links == {f"#{a['id']}" for a in (*articles, *collapsed)}
    # 6 windows: drift over windows for every feature.
    assert page.count("js_distance across windows</text>") == drift["feature"].n_unique()
    assert "across runs (worst" not in page  # no history given


def test_single_window_has_no_series_plot() -> None:
    drift = with_verdicts({"dep_delay": ("critical", 0.3), "origin": ("ok", 0.01)})
    page = render_html(drift, make_alerts(drift))
    assert page.count("Share of rows per bin</text>") == 2  # the alert and the other feature
    assert "across windows" not in page


def test_no_alerts_says_so() -> None:
    drift = make_drift(3, 2, alert_fraction=0.0, problems=False)
    page = render_html(drift, make_alerts(drift))
    assert "No feature is at warn or critical in this run." in page
    assert "<article" not in page and page.count("<details") == 3


def test_problems_are_listed_with_reasons(small: tuple[pl.DataFrame, str]) -> None:
    _, page = small
    problems = page.split('<h2 id="problems">Problems</h2>')[1].split("<h2")[0]
    assert "current histogram is all zeros" in problems
    assert "n_current 12 &lt; min_count 50" in problems


def test_history_adds_drift_across_runs(tmp_path: Path) -> None:
    history_dir = tmp_path / "history"
    for day, seed in ((5, 11), (6, 12)):
        past = make_drift(4, 3, alert_fraction=0.5, seed=seed)
        append_history(history_dir, past, f"run-{day}", f"2024-06-0{day}T00:00:00Z")
    drift = make_drift(4, 3, alert_fraction=0.5, seed=13)
    alerts = make_alerts(drift, run_id="run-8", created_at="2024-06-08T00:00:00Z")
    page = render_html(drift, alerts, history_dir)
    n_alerting = drift.filter(pl.col("status").is_in(["warn", "critical"]))["feature"].n_unique()
    assert page.count("across runs (worst window)</text>") == n_alerting
    # Three runs, oldest first, on the x axis of each across-runs plot.
    runs_panel = page.split("across runs (worst window)</text>")[1].split("</svg>")[0]
    assert re.search(r">2024-06-05</text>.*>2024-06-06</text>.*>2024-06-08</text>", runs_panel,
                     re.S)


def test_rendering_is_deterministic() -> None:
    drift = make_drift(3, 4, seed=9)
    alerts = make_alerts(drift)
    assert render_html(drift, alerts) == render_html(drift, alerts)


def test_alert_without_bins_gets_a_note_instead_of_a_plot() -> None:
    drift = with_verdicts({"a": ("critical", 0.3), "b": ("warn", 0.15)})
    drift = drift.with_columns(bins=pl.when(pl.col("feature") == "a").then(None)
                               .otherwise("bins"))
    page = render_html(drift, make_alerts(drift))
    assert page.count("<svg") == 2  # b: share and contribution
    assert page.count("No per-bin data was recorded for this window.") == 1
