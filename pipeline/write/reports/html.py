"""report.html: one self-contained page (inline CSS, JS and SVG; no network requests).

Feature drift, then model outputs and estimates when the run has them. Rendered with a
Jinja2 template with autoescaping on, so every data-derived string (feature, segment,
window, bin, reason, run id, class, example id) is escaped. A Content-Security-Policy allows
only the page's own script (by hash) and no network fetches at all, as a second line of
defence.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from importlib import resources
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from pipeline.write.history import CREATED_AT, as_utc
from pipeline.write.reports.model_outputs import (
    SHOWN_METRICS,
    class_means,
    estimate_intro,
    extra_metric,
    model_intro,
    model_rows,
    top_examples,
)
from pipeline.write.reports.plots import class_means_svg, feature_svg
from pipeline.write.reports.summary import (
    ALERTING,
    STATUS_COLORS,
    STATUS_LABELS,
    feature_rows,
    fmt_count,
    fmt_p,
    fmt_share,
    fmt_value,
    problem_rows,
    run_facts,
    severity,
    status_counts,
    thresholds_vary,
    window_labels,
)
from pipeline.write.run_folder import ModelTables

MAX_PLOTS = 50
MAX_PROBLEMS = 100
MAX_MODEL_ROWS = 200
MAX_PROBS = 8  # classes whose probabilities an example row shows
SERIES_COLUMNS = ("label", "value", "status", "warn_threshold", "critical_threshold")

_ENV = Environment(loader=PackageLoader("pipeline.write.reports", "templates"), autoescape=True,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_STATIC = resources.files("pipeline.write.reports") / "templates"


def _note(row: Mapping[str, Any]) -> str:
    if row["reason"]:
        return row["reason"]
    if not row["top_bins"]:
        return ""
    top = row["top_bins"][0]
    return f"{top['bin']}: {fmt_share(top['baseline_share'])} → {fmt_share(top['current_share'])}"


def _table_row(row: Mapping[str, Any], detail_id: str | None, window: str) -> dict[str, Any]:
    note = _note(row)
    return {
        "status": row["status"], "status_label": STATUS_LABELS.get(row["status"], row["status"]),
        "rank": row["rank"], "alerting": row["status"] in ALERTING, "detail_id": detail_id,
        "feature": row["feature"], "segment": row["segment"], "window": window,
        "window_full": row["window"],
        "value": fmt_value(row["value"]), "value_sort": _sort_key(row["value"]),
        "thresholds": f"{fmt_value(row['warn_threshold'])} / "
                      f"{fmt_value(row['critical_threshold'])}",
        "warn_sort": _sort_key(row["warn_threshold"]),
        "q": fmt_p(row["q_value"]), "q_sort": _sort_key(row["q_value"]),
        "n_current": fmt_count(row["n_current"]), "n_sort": _sort_key(row["n_current"]),
        "n_alerting": row["n_alerting"], "n_windows": row["n_windows"], "note": note,
        "search": " ".join((row["feature"], row["segment"], row["window"], row["status"],
                            note)).lower(),
    }


def _sort_key(value: float | None) -> str:
    return "" if value is None else repr(value)


def _detail(row: Mapping[str, Any], detail_id: str, window: str) -> dict[str, Any]:
    facts = [f"{row['metric']} {fmt_value(row['value'])} in window {window}",
             f"warn {fmt_value(row['warn_threshold'])} / critical "
             f"{fmt_value(row['critical_threshold'])}",
             f"p {fmt_p(row['p_value'])}, q {fmt_p(row['q_value'])}",
             f"n {fmt_count(row['n_baseline'])} baseline / {fmt_count(row['n_current'])} current"]
    if row["n_windows"] > 1:
        facts.append(f"{row['n_alerting']} of {row['n_windows']} windows alerting")
    return {
        "id": detail_id, "feature": row["feature"], "segment": row["segment"],
        "status": row["status"], "status_label": STATUS_LABELS[row["status"]],
        "facts": " · ".join(facts), "svg": None,
        "top_bins": [{"bin": b["bin"], "baseline": fmt_share(b["baseline_share"]),
                      "current": fmt_share(b["current_share"]),
                      "contribution": fmt_value(b["contribution"])}
                     for b in row["top_bins"] or []],
    }


def _windows(drift: pl.DataFrame, plotted: pl.DataFrame) -> dict[tuple[str, str], pl.DataFrame]:
    series = (drift.join(plotted.select("segment", "feature"), on=["segment", "feature"],
                         how="semi")
              .sort("window")
              .select("segment", "feature", pl.col("window").alias("label"), *SERIES_COLUMNS[1:]))
    return series.partition_by("segment", "feature", as_dict=True, include_key=False)


def _runs(history: pl.DataFrame | None, plotted: pl.DataFrame, run: Mapping[str, Any]
          ) -> dict[tuple[str, str], pl.DataFrame]:
    """Per segment x feature: the worst window of each run in history and of this one."""
    if history is None:
        return {}
    keys = ["segment", "feature"]
    past = (history.filter(pl.col("run_id") != run["run_id"], pl.col("metric") == run["metric"])
            .join(plotted.select(keys), on=keys, how="semi"))
    if past.is_empty():
        return {}
    current = plotted.with_columns(created_at=pl.lit(as_utc(run["created_at"]), dtype=CREATED_AT))
    columns = ["created_at", *keys, *SERIES_COLUMNS[1:]]
    series = (pl.concat([feature_rows(past, by=("run_id", *keys)).select(columns),
                         current.select(columns)], how="vertical_relaxed")
              .sort("created_at")
              .with_columns(label=pl.col("created_at").dt.to_string()))
    return series.partition_by(*keys, as_dict=True, include_key=False)


def _features(drift: pl.DataFrame, alerts: Mapping[str, Any],
              history: pl.DataFrame | None) -> dict[str, Any]:
    """Template values of the feature-drift sections."""
    run = alerts["run"]
    metric = str(run.get("metric") or (drift["metric"][0] if drift.height else "value"))
    rows = feature_rows(drift).with_columns(rank=severity())
    alerting = rows.filter(pl.col("status").is_in(ALERTING))
    plotted = alerting.head(MAX_PLOTS)
    windows = _windows(drift, plotted)
    runs = _runs(history, plotted, run)
    labels = window_labels(drift)
    details = []
    for i, row in enumerate(plotted.drop("bins").iter_rows(named=True)):
        key, bins = (row["segment"], row["feature"]), plotted["bins"][i]
        detail = _detail(row, f"f{i}", labels.get(row["window"], row["window"]))
        if bins is not None and len(bins):
            # Trusted markup: matplotlib XML-escapes every label it writes into the SVG.
            detail["svg"] = Markup(feature_svg(
                bins.struct.unnest(), metric=metric, salt=f"kd{i}", windows=windows.get(key),
                runs=runs.get(key)))
        details.append(detail)
    detail_ids = {(d["segment"], d["feature"]): d["id"] for d in details}
    table = [_table_row(row, detail_ids.get((row["segment"], row["feature"])),
                        labels.get(row["window"], row["window"]))
             for row in rows.drop("bins").iter_rows(named=True)]
    problems = problem_rows(drift)
    problem_list = [
        {"status": r["status"], "status_label": STATUS_LABELS[r["status"]],
         "feature": r["feature"], "segment": r["segment"],
         "window": labels.get(r["window"], r["window"]), "reason": r["reason"] or ""}
        for r in problems.head(MAX_PROBLEMS).select(
            "status", "feature", "segment", "window", "reason").iter_rows(named=True)]
    return {
        "metric": metric, "total": alerts["summary"].get("total", drift.height),
        "counts": [(s, STATUS_LABELS[s], n) for s, n in status_counts(alerts).items()],
        "n_features": drift["feature"].n_unique(), "n_segments": drift["segment"].n_unique(),
        "n_windows": drift["window"].n_unique(), "varying_thresholds": thresholds_vary(rows),
        "rows": table, "details": details, "problems": problem_list,
        "n_problems": problems.height, "n_alerting": alerting.height, "has_runs": bool(runs),
    }


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
        "rows": table, "n_rows": rows.height, "examples": examples,
        "id_column": block["id_column"], "top_by": block["top_by"],
        "classes": means["class"].unique(maintain_order=True).to_list(),
        "n_segments": rows["segment"].n_unique(), "n_windows": rows["window"].n_unique(),
        # Trusted markup: matplotlib XML-escapes every label it writes into the SVG.
        "svg": Markup(class_means_svg(means, salt="km")),
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


def _scope(drift: pl.DataFrame | None, models: ModelTables | None,
           estimates: pl.DataFrame | None) -> str:
    """What the run checked, for the page's subtitle."""
    parts = []
    if drift is not None:
        shape = [f"{drift['feature'].n_unique()} features"]
        shape += [f"{n} {noun}" for noun, n in (("segments", drift["segment"].n_unique()),
                                                ("windows", drift["window"].n_unique())) if n > 1]
        parts.append(f"{drift.height} feature checks ({' × '.join(shape)})")
    if models is not None:
        parts.append(f"{models.summary.height} model-output checks")
    if estimates is not None:
        parts.append(f"{estimates.height} KL estimates")
    return " · ".join(parts)


def render_html(
    drift: pl.DataFrame | None,
    alerts: Mapping[str, Any],
    history: pl.DataFrame | None = None,
    *,
    models: ModelTables | None = None,
    estimates: pl.DataFrame | None = None,
) -> str:
    """Render report.html.

    Parameters
    ----------
    drift : polars.DataFrame or None
        The run's drift table (``drift.parquet``, docs/architecture.md); ``None`` for a
        run without feature drift.
    alerts : mapping
        The run's ``alerts.json`` document.
    history : polars.DataFrame, optional
        `pipeline.write.history.read_history` output; adds the metric across runs to the plots.
    models : ModelTables, optional
        The run's model comparison (`pipeline.write.run_folder.read_run`).
    estimates : polars.DataFrame, optional
        The run's ``estimates.parquet`` (its settings come from ``alerts["estimates"]``).

    Returns
    -------
    str
        The whole page. Features at warn/critical get plots, at most `MAX_PLOTS`.
    """
    run = alerts["run"]
    js = (_STATIC / "report.js").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    return _ENV.get_template("report.html.j2").render(
        csp=("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
             f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"),
        css=Markup((_STATIC / "report.css").read_text(encoding="utf-8")),
        status_colors=STATUS_COLORS,
        js=Markup(js),  # our own static file, hashed into the CSP above
        run_id=run.get("run_id", ""), created_at=run.get("created_at", ""),
        tool_version=run.get("tool_version", ""), scope=_scope(drift, models, estimates),
        facts=run_facts(drift, alerts), max_plots=MAX_PLOTS,
        warnings=list(alerts.get("warnings") or []),
        features=None if drift is None else _features(drift, alerts, history),
        models=None if models is None else _models(models),
        estimates=None if estimates is None else _estimates(estimates, alerts["estimates"]),
    )
