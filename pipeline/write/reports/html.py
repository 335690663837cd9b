"""report.html: one self-contained page (inline CSS, JS and SVG; no network requests).

Feature drift, then joint drift, model outputs and estimates when the run has them.
Rendered with a
Jinja2 template with autoescaping on, so every data-derived string (feature, segment,
window, bin, reason, run id, class, example id) is escaped. A Content-Security-Policy allows
only the page's own script (by hash) and no network fetches at all, as a second line of
defence.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from pipeline.write.history import CREATED_AT, as_utc, read_recent_runs
from pipeline.write.reports.bin_labels import label_map
from pipeline.write.reports.joint_drift import (
    fmt_interval,
    joint_intro,
    joint_rows,
    top_features,
    view_title,
    viewed_rows,
)
from pipeline.write.reports.model_outputs import (
    SHOWN_METRICS,
    class_means,
    estimate_intro,
    extra_metric,
    model_intro,
    model_rows,
    top_examples,
)
from pipeline.write.reports.plots import (
    class_means_svgs,
    feature_svgs,
    joint_view_svgs,
    trend_svg,
)
from pipeline.write.reports.summary import (
    ALERTING,
    LIFECYCLES,
    STATUS_COLORS,
    STATUS_LABELS,
    STATUSES,
    BinsLoader,
    Effect,
    FeatureSummary,
    bins_of,
    effect_columns,
    feature_rows,
    fmt_count,
    fmt_coverage,
    fmt_effect,
    fmt_p,
    fmt_share,
    fmt_value,
    reference_text,
    references_of,
    resolved_episodes,
    run_facts,
    status_counts,
    summarize,
    thresholds_vary,
    window_labels,
)
from pipeline.write.reports.template_cache import template_cache
from pipeline.write.reports.trends import counts as trend_counts
from pipeline.write.reports.trends import flag_text, flagged_series, series_of, statistic_label
from pipeline.write.run_folder import ModelTables

MAX_PLOTS = 50  # alerting features with their plots open
MAX_ROWS = 500  # rows of the features table (segment x feature); all are in drift.parquet
MAX_DISTRIBUTIONS = 100  # other features whose distribution is offered (collapsed)
PLOT_BUDGET = 1_100_000  # characters of plots per page; other features fill what alerts leave
MAX_PROBLEMS = 100
MAX_RESOLVED = 100
MAX_RUNS = 30  # past runs in the across-runs plots
MAX_MODEL_ROWS = 200
MAX_PROBS = 8  # classes whose probabilities an example row shows
MAX_TREND_SERIES = 24  # flagged trend series plotted
SERIES_COLUMNS = ("value", "status", "warn_threshold", "critical_threshold")
WINDOW_COLUMNS = ("partial", "coverage")  # drawn in the across-windows plot when present

_ENV = Environment(loader=PackageLoader("pipeline.write.reports", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   bytecode_cache=template_cache())
_STATIC = resources.files("pipeline.write.reports") / "templates"


def _note(row: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[str, str]:
    """The table's last cell: the reason, or the top bin's shift; and its full-label tooltip."""
    if row["reason"]:
        return row["reason"], ""
    if not row["top_bins"]:
        return "", ""
    top = row["top_bins"][0]
    shift = f"{fmt_share(top['baseline_share'])} → {fmt_share(top['current_share'])}"
    shown = labels.get(top["bin"], top["bin"])
    return f"{shown}: {shift}", (top["bin"] if shown != top["bin"] else "")


def _window(row: Mapping[str, Any], windows: Mapping[str, str]) -> dict[str, Any]:
    return {"label": windows.get(row["window"], row["window"]), "full": row["window"],
            "partial": fmt_coverage(row)}


def _table_row(row: Mapping[str, Any], link: str | None, windows: Mapping[str, str],
               labels: Mapping[str, str], effect: Effect | None) -> dict[str, Any]:
    note, note_title = _note(row, labels)
    lifecycles = list(row.get("lifecycles") or [])
    return {
        "status": row["status"], "status_label": STATUS_LABELS.get(row["status"], row["status"]),
        "rank": row["rank"], "alerting": row["status"] in ALERTING, "link": link,
        "lifecycles": lifecycles,
        "feature": row["feature"], "segment": row["segment"], "window": _window(row, windows),
        "value": fmt_value(row["value"]), "value_sort": _sort_key(row["value"]),
        "effect": None if effect is None else fmt_effect(row, effect),
        "effect_sort": None if effect is None else _sort_key(row[effect.value]),
        "thresholds": f"{fmt_value(row['warn_threshold'])} / "
                      f"{fmt_value(row['critical_threshold'])}",
        "warn_sort": _sort_key(row["warn_threshold"]),
        "q": fmt_p(row["q_value"]), "q_sort": _sort_key(row["q_value"]),
        "n_current": fmt_count(row["n_current"]), "n_sort": _sort_key(row["n_current"]),
        "n_alerting": row["n_alerting"], "n_windows": row["n_windows"],
        "note": note, "note_title": note_title,
        "references": _sides(row),
        "search": " ".join((row["feature"], row["segment"], row["window"], row["status"],
                            *lifecycles, note, *(s["reference"] for s in _sides(row))
                            )).lower(),
    }


def _sides(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The row's references side by side (``by_reference`` of `summary.feature_rows`)."""
    return [{"reference": side["reference"], "status": side["status"],
             "status_label": STATUS_LABELS.get(side["status"], side["status"]),
             "value": fmt_value(side["value"]),
             "alerting": f"{side['n_alerting']}/{side['n_windows']}"}
            for side in row.get("by_reference") or []]


def _sort_key(value: float | None) -> str:
    return "" if value is None else repr(value)


def _detail(row: Mapping[str, Any], detail_id: str, window: str, labels: Mapping[str, str],
            effect: Effect | None) -> dict[str, Any]:
    facts = [f"{row['metric']} {fmt_value(row['value'])} in window {window}"]
    if "reference" in row:
        facts.append(reference_text(row))
    if effect is not None:
        facts.append(f"{effect.label.lower()} {fmt_effect(row, effect)}")
    side = "reference" if row.get("reference", "baseline") != "baseline" else "baseline"
    facts += [f"warn {fmt_value(row['warn_threshold'])} / critical "
              f"{fmt_value(row['critical_threshold'])}",
              f"p {fmt_p(row['p_value'])}, q {fmt_p(row['q_value'])}",
              f"n {fmt_count(row['n_baseline'])} {side} / {fmt_count(row['n_current'])} "
              "current"]
    if row["n_windows"] > 1:
        facts.append(f"{row['n_alerting']} of {row['n_windows']} windows alerting")
    if partial := fmt_coverage(row):
        facts.append(partial)
    return {
        "id": detail_id, "feature": row["feature"], "segment": row["segment"],
        "status": row["status"], "status_label": STATUS_LABELS.get(row["status"], row["status"]),
        "value": fmt_value(row["value"]), "lifecycles": list(row.get("lifecycles") or []),
        "facts": " · ".join(facts), "svgs": [],
        "reference": row.get("reference", "baseline"),
        "top_bins": [{"bin": labels.get(b["bin"], b["bin"]), "full": b["bin"],
                      "baseline": fmt_share(b["baseline_share"]),
                      "current": fmt_share(b["current_share"]),
                      "contribution": fmt_value(b["contribution"])}
                     for b in row["top_bins"] or []],
    }


def _series(rows: pl.DataFrame, keys: pl.DataFrame, order: str, label: pl.Expr
            ) -> dict[tuple[str, ...], Any]:
    """Per segment x feature of ``keys`` (x reference, when ``rows`` has one): its rows of
    ``rows`` ordered by ``order``."""
    extra = [c for c in WINDOW_COLUMNS if c in rows.columns]
    by = ["segment", "feature", *(["reference"] if "reference" in rows.columns else [])]
    series = (rows.join(keys.select("segment", "feature").unique(), on=["segment", "feature"],
                        how="semi")
              .sort(order)
              .select(*by, label.alias("label"), *SERIES_COLUMNS, *extra))
    return series.partition_by(by, as_dict=True, include_key=False)


def _by_reference(series: Mapping[tuple[str, ...], Any], row: Mapping[str, Any],
                  references: Sequence[str]) -> Any:
    """The across-windows series of a segment x feature: one, or one per reference."""
    found = {ref: s for ref in references
             if (s := series.get((row["segment"], row["feature"], ref))) is not None}
    return found if len(references) > 1 else found.get(references[0])


def _runs(history_dir: Path | None, keys: pl.DataFrame, run: Mapping[str, Any],
          ) -> tuple[dict[tuple[str, ...], Any], int]:
    """Per segment x feature: the worst window of each recent run and of this one.

    ``keys`` holds this run's worst window of each plotted segment x feature. Returns the
    series and the number of past runs the history holds (the plots show the newest
    `MAX_RUNS`).
    """
    if history_dir is None or keys.is_empty():
        return {}, 0
    past, n_runs = read_recent_runs(history_dir, keys,
                                    ["window", "metric", "reference", *SERIES_COLUMNS],
                                    exclude_run_id=run["run_id"], max_runs=MAX_RUNS)
    if past is None:
        return {}, n_runs
    # each feature's runs against the reference of the window shown (older runs: baseline)
    reference = keys.select("segment", "feature", "reference")
    past = past.join(reference, on=["segment", "feature", "reference"], how="semi")
    by = ("created_at", "segment", "feature")
    worst = feature_rows(past.filter(pl.col("metric") == run["metric"]).drop("reference"),
                         by=("run_id", *by)).select(*by, *SERIES_COLUMNS)
    if worst.is_empty():
        return {}, n_runs
    current = keys.select(
        pl.lit(as_utc(run["created_at"]), dtype=CREATED_AT).alias("created_at"),
        "segment", "feature", *SERIES_COLUMNS)
    both = pl.concat([worst, current], how="vertical_relaxed")
    label = pl.col("created_at").dt.to_string("%Y-%m-%dT%H:%M:%S+00:00")
    return _series(both, keys, "created_at", label), n_runs


def _plots(row: Mapping[str, Any], bins: pl.Series | None, metric: str,
           windows: Any, runs: Mapping[tuple[str, ...], Any]) -> list[Markup]:
    if bins is None or not len(bins):
        return []
    key = (row["segment"], row["feature"])
    # Trusted markup: the SVG writer escapes every label and tooltip it writes.
    return [Markup(svg) for svg in feature_svgs(
        bins.struct.unnest(), metric=metric, windows=windows, runs=runs.get(key),
        reference=row.get("reference", "baseline"))]


def _headline(summary: FeatureSummary, alerts: Mapping[str, Any]) -> dict[str, Any]:
    counts = summary.counts
    by_status = dict(summary.rows.group_by("status").len().iter_rows())
    changes = alerts.get("changes")
    return {
        "features": counts["features"], "drifted": counts["drifted"],
        "by_status": [(s, STATUS_LABELS[s], counts[s]) for s in ALERTING],
        "cards": [(s, STATUS_LABELS[s], by_status.get(s, 0)) for s in STATUSES],
        "checks": [(s, STATUS_LABELS[s], n) for s, n in status_counts(alerts).items()],
        "changes": None if not changes else [(name, int(changes.get(name) or 0))
                                             for name in LIFECYCLES],
        "partial": summary.n_partial,
    }


def _resolved(alerts: Mapping[str, Any], windows: Mapping[str, str]) -> dict[str, Any] | None:
    """The "resolved since the last run" list of alerts.json, capped."""
    episodes = resolved_episodes(alerts, MAX_RESOLVED)
    if episodes is None:
        return None
    resolved, more, listing = episodes
    items = [{"feature": r.get("feature", ""), "segment": r.get("segment", ""),
              "reference": r.get("reference") or "baseline",
              "window": windows.get(r.get("window", ""), r.get("window", "")),
              "since": windows.get(r.get("since") or "", r.get("since") or "—"),
              "last_status": r.get("last_status") or "",
              "last_label": STATUS_LABELS.get(r.get("last_status") or "", "")}
             for r in resolved]
    return {"items": items, "total": len(items) + more, "listing": listing}


def _features(summary: FeatureSummary, alerts: Mapping[str, Any],
              history_dir: Path | None, load_bins: BinsLoader) -> dict[str, Any]:
    """Template values of the feature-drift sections."""
    run = alerts["run"]
    drift, rows = summary.drift, summary.rows  # without bins: only the rows shown load them
    metric = str(run.get("metric") or (drift["metric"][0] if drift.height else "value"))
    effect = effect_columns(drift.columns)
    alerting = rows.filter(pl.col("status").is_in(ALERTING))
    plotted = alerting.head(MAX_PLOTS)
    others = rows.filter(~pl.col("status").is_in(ALERTING)).head(MAX_DISTRIBUTIONS)
    shown = pl.concat([plotted, others])
    table_rows = rows.head(MAX_ROWS)
    needed = pl.concat([shown["_row"], table_rows["_row"]]).unique()
    loaded = dict(zip(needed.to_list(), load_bins(needed), strict=True))
    labels = {row: label_map(None if b is None else b.to_list()) for row, b in loaded.items()}
    bins = [loaded[row] for row in shown["_row"].to_list()]
    windows = summary.windows
    references = references_of(drift)
    keys = shown.select("segment", "feature")
    window_series = _series(drift, keys, "window", pl.col("window"))
    run_series, n_runs = _runs(history_dir, plotted.with_columns(
        reference=pl.col("reference") if "reference" in plotted.columns
        else pl.lit("baseline")).select("segment", "feature", "reference", *SERIES_COLUMNS),
        run)
    details: list[dict[str, Any]] = []
    distributions: list[dict[str, Any]] = []
    budget = PLOT_BUDGET
    for i, row in enumerate(shown.iter_rows(named=True)):
        target = details if i < plotted.height else distributions
        detail = _detail(row, f"f{i}" if target is details else f"o{i - plotted.height}",
                         windows.get(row["window"], row["window"]), labels[row["_row"]], effect)
        detail["svgs"] = _plots(row, bins[i], metric,
                                _by_reference(window_series, row, references),
                                run_series if target is details else {})
        budget -= sum(len(svg) for svg in detail["svgs"])
        if target is distributions and budget < 0:
            break  # the page stays small: the remaining distributions are left out (and said)
        target.append(detail)
    links = {(d["segment"], d["feature"]): d["id"] for d in (*details, *distributions)}
    table = [_table_row(row, links.get((row["segment"], row["feature"])), windows,
                        labels[row["_row"]], effect)
             for row in table_rows.iter_rows(named=True)]
    problems = summary.problems
    problem_list = [
        {"status": r["status"], "status_label": STATUS_LABELS[r["status"]],
         "feature": r["feature"], "segment": r["segment"],
         "reference": r.get("reference", "baseline"),
         "window": windows.get(r["window"], r["window"]), "reason": r["reason"] or ""}
        for r in problems.head(MAX_PROBLEMS).iter_rows(named=True)]
    return {
        "metric": metric, "headline": _headline(summary, alerts),
        "total": int(alerts["summary"].get("total", drift.height)),
        "n_features": summary.n_features, "n_segments": summary.n_segments,
        "n_windows": summary.n_windows, "varying_thresholds": thresholds_vary(rows),
        "effect": None if effect is None else effect.label,
        "has_lifecycle": "lifecycle" in drift.columns,
        "rows": table, "n_rows": rows.height, "details": details,
        "distributions": distributions,
        "n_others": rows.height - alerting.height, "problems": problem_list,
        "n_problems": problems.height, "n_alerting": alerting.height,
        "has_runs": bool(run_series), "n_runs": n_runs, "max_runs": MAX_RUNS,
        "resolved": _resolved(alerts, windows),
        "references": references if len(references) > 1 else [],
    }


def _trends(trends: pl.DataFrame, block: Mapping[str, Any]) -> dict[str, Any]:
    """Template values of the Trends section: counts by light, and the flagged series
    plotted against their bounds (at most `MAX_TREND_SERIES`)."""
    flagged, total = flagged_series(trends, MAX_TREND_SERIES)
    panels = []
    for i, row in enumerate(flagged.iter_rows(named=True)):
        series = series_of(trends, row)
        last = series.filter(pl.col("checked") & (pl.col("window") == row["window"])).row(
            0, named=True)
        where = row["feature"] + ("" if row["segment"] == "all" else f" ({row['segment']})")
        title = f"{where}: {statistic_label(row['statistic'], row['reference'])}"
        panels.append({
            "light": row["light"], "title": title, "text": flag_text(last),
            "counts": f"{row['n_red']} red, {row['n_yellow']} yellow",
            # Trusted markup: the SVG writer escapes every label and tooltip it writes.
            "svg": Markup(trend_svg(series, title, legend=i == 0))})
    return {"counts": list(trend_counts(trends).items()), "panels": panels, "total": total,
            "windows": block.get("windows"), "min_windows": block.get("min_windows"),
            "yellow": block.get("yellow"), "red": block.get("red")}


def _probabilities(probs: list[float] | None) -> str:
    """A probability vector as short text: ``0.29 0.52 0.15 0.04`` (first `MAX_PROBS`)."""
    if probs is None:
        return "—"
    more = " …" if len(probs) > MAX_PROBS else ""
    return " ".join(f"{p:.2f}" for p in probs[:MAX_PROBS]) + more


def _models(tables: ModelTables) -> dict[str, Any]:
    """Template values of the Model outputs section."""
    block = tables.block
    rows = model_rows(tables)
    labels = window_labels(rows)
    extra = extra_metric(tables)
    metrics = {**({extra: extra} if extra else {}), **SHOWN_METRICS}
    table = [{"status": r["status"], "status_label": STATUS_LABELS[r["status"]],
              "lifecycle": r.get("lifecycle"),
              "segment": r["segment"], "window": labels.get(r["window"], r["window"]),
              "window_full": r["window"], "n": fmt_count(r["n"]),
              "cells": [fmt_value(r["value" if c == extra else c]) for c in metrics]}
             for r in rows.head(MAX_MODEL_ROWS).iter_rows(named=True)]
    examples = [{"id": r["id"], "segment": r["segment"],
                 "window": labels.get(r["window"], r["window"]),
                 "baseline_class": r["baseline_class"], "current_class": r["current_class"],
                 "value": fmt_value(r["value"]),
                 "baseline_probs": _probabilities(r["baseline_probs"]),
                 "current_probs": _probabilities(r["current_probs"])}
                for r in top_examples(tables).iter_rows(named=True)]
    means = class_means(tables, by=["segment"])
    return {
        "intro": model_intro(block), "warnings": block["warnings"],
        "counts": [(s, STATUS_LABELS[s], n) for s, n in status_counts(block).items()],
        "total": block["summary"]["total"], "headers": list(metrics.values()),
        "changes": [(name, int(block["changes"].get(name) or 0)) for name in LIFECYCLES]
        if block.get("changes") else None,
        "rows": table, "n_rows": rows.height, "examples": examples,
        "id_column": block["id_column"], "top_by": block["top_by"],
        "classes": means["class"].unique(maintain_order=True).to_list(),
        "n_segments": rows["segment"].n_unique(), "n_windows": rows["window"].n_unique(),
        # Trusted markup: the SVG writer escapes every label and tooltip it writes.
        "svgs": [Markup(svg) for svg in class_means_svgs(means)],
    }


def _joint(table: pl.DataFrame, block: Mapping[str, Any]) -> dict[str, Any]:
    """Template values of the Joint drift section."""
    rows = joint_rows(table)
    labels = window_labels(rows)
    return {
        "intro": joint_intro(block), "warnings": block["warnings"],
        "level": f"{block['level']:.0%}",
        "counts": [(s, STATUS_LABELS[s], n) for s, n in status_counts(block).items()],
        "total": block["summary"]["total"],
        "changes": [(name, int(block["changes"].get(name) or 0)) for name in LIFECYCLES]
        if block.get("changes") else None,
        "n_segments": rows["segment"].n_unique(), "n_windows": rows["window"].n_unique(),
        "n_rows": rows.height,
        "rows": [{"status": r["status"], "status_label": STATUS_LABELS[r["status"]],
                  "lifecycle": r.get("lifecycle"), "segment": r["segment"],
                  "window": labels.get(r["window"], r["window"]), "window_full": r["window"],
                  "kl": fmt_interval(r), "reverse_kl": fmt_value(r["reverse_kl"]),
                  "auc": fmt_value(r["auc"]), "q": fmt_p(r["q_value"]),
                  "n": f"{fmt_count(r['n_baseline'])} / {fmt_count(r['n_current'])}",
                  "features": top_features(r), "reason": r["reason"]}
                 for r in rows.head(MAX_MODEL_ROWS).iter_rows(named=True)],
        # Trusted markup: the SVG writer escapes every label and tooltip it writes.
        "views": [{"title": view_title(r, labels), "pair": (r["view"]["x"], r["view"]["y"]),
                   "svgs": [Markup(svg) for svg in joint_view_svgs(r["view"],
                                                                   view_title(r, labels))]}
                  for r in viewed_rows(table).iter_rows(named=True)],
    }


def _estimates(estimates: pl.DataFrame, block: Mapping[str, Any]) -> dict[str, Any]:
    """Template values of the Estimates section."""
    labels = window_labels(estimates)
    return {
        "intro": estimate_intro(block), "level": f"{block['level']:.0%}",
        "n_segments": estimates["segment"].n_unique(),
        "n_windows": estimates["window"].n_unique(),
        "rows": [{"segment": r["segment"], "window": labels.get(r["window"], r["window"]),
                  "estimator": r["estimator"], "value": fmt_value(r["value"]),
                  "stderr": fmt_value(r["stderr"]), "ci_low": fmt_value(r["ci_low"]),
                  "ci_high": fmt_value(r["ci_high"]), "n": fmt_count(r["n"])}
                 for r in estimates.iter_rows(named=True)],
    }


def _scope(summary: FeatureSummary | None, models: ModelTables | None,
           estimates: pl.DataFrame | None, joint: pl.DataFrame | None = None) -> str:
    """What the run checked, for the page's subtitle."""
    parts = []
    if summary is not None:
        parts.append(f"{summary.drift.height} feature checks ({summary.shape})")
    if joint is not None:
        parts.append(f"{joint.height} joint checks")
    if models is not None:
        parts.append(f"{models.summary.height} model-output checks")
    if estimates is not None:
        parts.append(f"{estimates.height} KL estimates")
    return " · ".join(parts)


def render_html(
    drift: pl.DataFrame | None,
    alerts: Mapping[str, Any],
    history_dir: str | os.PathLike[str] | None = None,
    *,
    models: ModelTables | None = None,
    estimates: pl.DataFrame | None = None,
    joint: pl.DataFrame | None = None,
    bins: BinsLoader | None = None,
    trends: pl.DataFrame | None = None,
    summary: FeatureSummary | None = None,
) -> str:
    """Render report.html.

    Parameters
    ----------
    drift : polars.DataFrame or None
        The run's drift table (``drift.parquet``, docs/architecture.md); ``None`` for a
        run without feature drift.
    alerts : mapping
        The run's ``alerts.json`` document.
    history_dir : path, optional
        The history dataset (`pipeline.write.history`): adds the metric across the newest
        runs to the plots of alerting features. Only what the plots show is read.
    models : ModelTables, optional
        The run's model comparison (`pipeline.write.run_folder.read_run`).
    estimates : polars.DataFrame, optional
        The run's ``estimates.parquet`` (its settings come from ``alerts["estimates"]``).
    joint : polars.DataFrame, optional
        The run's ``joint.parquet`` (its settings come from ``alerts["joint"]``): a table of
        its rows and the 2-D views of the alerting ones.
    bins : callable, optional
        Loads the ``bins`` of the rows shown (`summary.BinsLoader`), so ``drift`` may come
        without that column (`write_reports` reads it from the Parquet file, row by row
        needed); default: ``drift["bins"]``.
    trends : polars.DataFrame, optional
        The run's ``trends.parquet`` (its settings come from ``alerts["trends"]``): the
        Trends section.
    summary : FeatureSummary, optional
        ``summary.summarize(drift)``, when the caller has it (`write_reports` computes it
        once for both reports).

    Returns
    -------
    str
        The whole page. Features at warn/critical get plots (at most `MAX_PLOTS`), the
        others a collapsed distribution (at most `MAX_DISTRIBUTIONS`, and as many as
        `PLOT_BUDGET` leaves room for); the features table has at most `MAX_ROWS` rows. The
        page states each cap it applies.
    """
    run = alerts["run"]
    if summary is None and drift is not None:
        summary = summarize(drift)
    js = (_STATIC / "report.js").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    return _ENV.get_template("report.html.j2").render(
        csp=("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
             f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"),
        css=Markup((_STATIC / "report.css").read_text(encoding="utf-8")),
        status_colors=STATUS_COLORS,
        js=Markup(js),  # our own static file, hashed into the CSP above
        run_id=run.get("run_id", ""), created_at=run.get("created_at", ""),
        tool_version=run.get("tool_version", ""),
        scope=_scope(summary, models, estimates, joint),
        facts=run_facts(drift, alerts), max_plots=MAX_PLOTS,
        warnings=list(alerts.get("warnings") or []),
        features=None if drift is None or summary is None else _features(
            summary, alerts, None if history_dir is None else Path(history_dir),
            bins or bins_of(drift)),
        joint=None if joint is None else _joint(joint, alerts["joint"]),
        models=None if models is None else _models(models),
        estimates=None if estimates is None else _estimates(estimates, alerts["estimates"]),
        trends=None if trends is None else _trends(trends, alerts.get("trends") or {}),
    )


#: Height of the report inline in a notebook; the frame can be resized by its corner.
NOTEBOOK_HEIGHT = 720


def notebook_frame(page: str, *, height: int = NOTEBOOK_HEIGHT) -> str:
    """A report page as HTML to show inline in Jupyter (``_repr_html_``): an iframe whose
    ``srcdoc`` is the whole page.

    The page keeps its own Content-Security-Policy and script, which an iframe's document
    applies to itself; its CSS cannot restyle the notebook; and ``sandbox="allow-scripts"``
    without ``allow-same-origin`` gives it an opaque origin, so its script (sorting and
    filtering the table) cannot reach the notebook. Links inside it scroll within it.

    >>> frame = notebook_frame("<p title='a'>x & y</p>")
    >>> frame.startswith("<iframe") and "&amp;amp;" not in frame and "x &amp; y" in frame
    True
    """
    return (f'<iframe srcdoc="{escape(page)}" sandbox="allow-scripts" title="kl-drift report" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #8884;resize:vertical">'
            "</iframe>")
