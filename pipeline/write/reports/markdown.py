"""report.md: a concise summary that reads well as a Prefect markdown artifact or in chat.

Feature drift, then joint drift, model outputs and estimates when the run has them. Every
data-derived string goes through `escape_md`, so a feature, bin, class or id can never
become a link, an image, raw HTML or a broken table row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from pipeline.write.reports.bin_labels import label_map
from pipeline.write.reports.joint_drift import fmt_interval, joint_intro, joint_rows, top_features
from pipeline.write.reports.model_outputs import (
    SHOWN_METRICS,
    class_means,
    estimate_intro,
    extra_metric,
    model_intro,
    model_rows,
    top_examples,
)
from pipeline.write.reports.summary import (
    ALERTING,
    LIFECYCLES,
    STATUS_LABELS,
    BinsLoader,
    Effect,
    FeatureSummary,
    bins_of,
    effect_columns,
    fmt_count,
    fmt_effect,
    fmt_p,
    fmt_share,
    fmt_value,
    resolved_episodes,
    run_facts,
    status_counts,
    summarize,
    thresholds_vary,
    window_labels,
)
from pipeline.write.reports.trends import counts as trend_counts
from pipeline.write.reports.trends import flag_text, flagged_series, series_of
from pipeline.write.run_folder import ModelTables

MAX_ROWS = 20
MAX_DETAILS = 10
MAX_PROBLEMS = 10
MAX_RESOLVED = 10
ICONS = {"critical": "🔴", "warn": "🟠", "error": "🟣", "insufficient_data": "⚪", "ok": "🟢"}
TREND_ICONS = {"red": "🔴", "yellow": "🟡", "green": "🟢", "none": "⚪"}
MAX_TRENDS = 10  # flagged trend series listed

# <, > and & as entities (also safe in chat tools that ignore backslashes); the rest of
# Markdown's inline syntax, and the table separator, backslash-escaped.
_SPECIAL = re.compile(r"[\\`*_\[\]|#~!<>&]")
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def escape_md(text: object) -> str:
    """Escape ``text`` for inline Markdown or a table cell: one line, no markup, no HTML."""
    one_line = " ".join(str(text).split())
    return _SPECIAL.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), one_line)


def _status(status: str) -> str:
    return f"{ICONS.get(status, '')} {STATUS_LABELS.get(status, escape_md(status))}".strip()


def _more(rows: pl.DataFrame, noun: str) -> str:
    """The "…and N more" line for the rows a capped list left out, counted by status."""
    if rows.is_empty():
        return ""
    counts = dict(rows.group_by("status").len().iter_rows())
    by_status = ", ".join(f"{counts[s]} {STATUS_LABELS[s]}" for s in STATUS_LABELS if s in counts)
    return f"\n…and {rows.height} more {noun} ({by_status}); see report.html.\n"


Column = tuple[bool, str, str, Callable[[dict[str, Any]], str]]


def _grid(columns: list[Column], rows: pl.DataFrame) -> str:
    """A Markdown table of ``rows``: (shown?, header, alignment, cell) per column."""
    shown = [(header, align, cell) for keep, header, align, cell in columns if keep]
    lines = ["| " + " | ".join(h for h, _, _ in shown) + " |",
             "|" + "|".join(a for _, a, _ in shown) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in shown) + " |"
              for r in rows.iter_rows(named=True)]
    return "\n".join(lines) + "\n"


def _window(row: Mapping[str, Any], labels: dict[str, str]) -> str:
    """A window label, marked when the data cover only part of the window."""
    text = escape_md(labels.get(row["window"], row["window"]))
    if not row.get("partial"):
        return text
    coverage = row.get("coverage")
    return f"{text} (partial{'' if coverage is None else f', {coverage:.0%}'})"


def _lifecycle_status(row: Mapping[str, Any]) -> str:
    events = row.get("lifecycles") or []
    return _status(row["status"]) + "".join(f", {escape_md(event)}" for event in events)


def _row_status(row: Mapping[str, Any]) -> str:
    """A model-output or joint row's status, with its lifecycle event if any."""
    return _status(row["status"]) + (f", {escape_md(row['lifecycle'])}"
                                     if row.get("lifecycle") else "")


def _place_columns(rows: pl.DataFrame, labels: dict[str, str]) -> list[Column]:
    """The segment and window columns of a table, each only when it has several values."""
    return [(rows["segment"].n_unique() > 1, "Segment", ":--",
             lambda r: escape_md(r["segment"])),
            (rows["window"].n_unique() > 1, "Window", ":--",
             lambda r: escape_md(labels.get(r["window"], r["window"])))]


def _table(rows: pl.DataFrame, metric: str, labels: dict[str, str],
           effect: Effect | None) -> str:
    windowed: bool = rows.select(pl.col("n_windows").max()).item() > 1
    # Optional columns only when they say something.
    columns: list[Column] = [
        (True, "Status", ":--", _lifecycle_status),
        (True, "Feature", ":--", lambda r: escape_md(r["feature"])),
        (rows["segment"].n_unique() > 1, "Segment", ":--", lambda r: escape_md(r["segment"])),
        (windowed, "Worst window", ":--", lambda r: _window(r, labels)),
        (True, escape_md(metric), "--:", lambda r: fmt_value(r["value"])),
        (effect is not None, escape_md(effect.label if effect else ""), "--:",
         lambda r: fmt_effect(r, effect) if effect else ""),
        (thresholds_vary(rows), "Warn / critical", "--:",
         lambda r: f"{fmt_value(r['warn_threshold'])} / {fmt_value(r['critical_threshold'])}"),
        (True, "q", "--:", lambda r: fmt_p(r["q_value"])),
        (windowed, "Alerting windows", "--:", lambda r: f"{r['n_alerting']}/{r['n_windows']}"),
        ("by_reference" in rows.columns, "By reference", ":--", _sides),
    ]
    return _grid(columns, rows.head(MAX_ROWS)) + _more(rows.slice(MAX_ROWS), "features")


def _sides(row: Mapping[str, Any]) -> str:
    """Each reference's worst status and alerting windows: ``baseline 🔴 30/30 · ...``."""
    return " · ".join(f"{escape_md(side['reference'])} {ICONS.get(side['status'], '')} "
                      f"{side['n_alerting']}/{side['n_windows']}"
                      for side in row.get("by_reference") or [])


def _where(row: Mapping[str, Any], labels: dict[str, str]) -> str:
    parts = [escape_md(row["segment"])] if row["segment"] != "all" else []
    if row["window"] != "all":
        parts.append(_window(row, labels))
    if row.get("reference", "baseline") != "baseline":
        parts.append(f"vs {escape_md(row['reference'])}")
    return f" ({', '.join(parts)})" if parts else ""


def _top_bins(alerting: pl.DataFrame, load_bins: BinsLoader, labels: dict[str, str]) -> str:
    lines = []
    every_bin = load_bins(alerting["_row"].head(MAX_DETAILS)).to_list()
    for r, all_bins in zip(alerting.head(MAX_DETAILS).iter_rows(named=True), every_bin,
                           strict=True):
        shown = label_map(all_bins)  # rounded numeric edges; drift.parquet has them exact
        bins_text = "; ".join(
            f"{escape_md(shown.get(b['bin'], b['bin']))} {fmt_share(b['baseline_share'])} → "
            f"{fmt_share(b['current_share'])} ({b['contribution']:+.3g})"
            for b in r["top_bins"] or [] if b["contribution"] is not None)
        lines.append(f"- **{escape_md(r['feature'])}**{_where(r, labels)}, "
                     f"{escape_md(r['metric'])} {fmt_value(r['value'])}: "
                     f"{bins_text or 'no bins'}")
    return "\n".join(lines) + "\n" + _more(alerting.slice(MAX_DETAILS), "alerting features")


def _problems(problems: pl.DataFrame, labels: dict[str, str]) -> str:
    lines = [f"- **{escape_md(r['feature'])}**{_where(r, labels)}: {_status(r['status'])}"
             + (f", {escape_md(r['reason'])}" if r["reason"] else "")
             for r in problems.head(MAX_PROBLEMS).iter_rows(named=True)]
    return "\n".join(lines) + "\n" + _more(problems.slice(MAX_PROBLEMS), "problems")


def _counts_line(document: Mapping[str, Any], noun: str) -> str:
    """Counts by status of ``alerts.json`` or of its ``models`` block, in bold."""
    counts = status_counts(document)
    line = " · ".join(f"{ICONS[s]} {n} {STATUS_LABELS[s]}" for s, n in counts.items())
    return f"**{line}** of {document['summary']['total']} {noun}"


def _headline(summary: FeatureSummary, alerts: Mapping[str, Any]) -> str:
    """The drifted features first, then the counts of checks and the changes since the
    last run (when alerts.json has them)."""
    counts = summary.counts
    where = "segment or window" if summary.n_segments > 1 else "window"
    by_status = " · ".join(f"{ICONS[s]} {counts[s]} {STATUS_LABELS[s]}" for s in ALERTING)
    noun = "feature" if counts["features"] == 1 else "features"
    lines = [f"**{counts['drifted']} of {counts['features']} {noun} drifted** in at least one "
             f"{where}" + (f" ({by_status}, by worst window)." if counts["drifted"] else ".")]
    checks = " · ".join(f"{n} {STATUS_LABELS[s]}" for s, n in status_counts(alerts).items())
    lines.append(f"{checks} of {alerts['summary']['total']} checks ({summary.shape}).")
    if n_partial := summary.n_partial:
        lines.append(f"{n_partial} partial {'window' if n_partial == 1 else 'windows'} "
                     "(the data cover only part of them).")
    if since := _changes(alerts):
        lines.append(f"Since the last run: {since}.")
    return "\n".join(f"{line}  " for line in lines[:-1]) + "\n" + lines[-1] + "\n"


def _resolved(resolved: list[Mapping[str, Any]], more: int, listing: str,
              labels: dict[str, str]) -> str:
    lines = []
    for r in resolved:
        segment = "" if r.get("segment") in (None, "all") else f" ({escape_md(r['segment'])})"
        if r.get("reference") not in (None, "baseline"):
            segment += f" vs {escape_md(r['reference'])}"
        since = r.get("since")
        last = r.get("last_status")
        lines.append(
            f"- **{escape_md(r.get('feature', ''))}**{segment}: back to ok in "
            f"{escape_md(labels.get(r.get('window', ''), r.get('window', '')))}"
            + ("" if since is None else f", alerting since {escape_md(labels.get(since, since))}")
            + ("" if last is None else f", last {STATUS_LABELS.get(last, escape_md(last))}"))
    rest = f"\n…and {more} more; see {listing}.\n" if more else ""
    return ("\n".join(lines) + "\n" + rest) if lines else "None in this run.\n"


def _features(summary: FeatureSummary, alerts: Mapping[str, Any],
              load_bins: BinsLoader) -> list[str]:
    """Headline, features table, resolved alerts, top bins and problems of feature drift."""
    run = alerts["run"]
    metric = str(run.get("metric") or "value")
    labels, rows = summary.windows, summary.rows
    parts = [
        _headline(summary, alerts),
        "## Features\n",
        "One row per segment × feature at its worst window, most severe first.\n",
        (_table(rows, metric, labels, effect_columns(summary.drift.columns)) if rows.height
         else "No rows in the drift table.\n"),
    ]
    episodes = resolved_episodes(alerts, MAX_RESOLVED)
    if episodes is not None:
        parts += ["## Resolved since the last run\n", _resolved(*episodes, labels)]
    alerting = rows.filter(pl.col("status").is_in(ALERTING))
    if alerting.height:
        parts += ["## Top contributing bins\n",
                  "Reference (the baseline unless said) → current share of rows, and the bin's "
                  "contribution.\n",
                  _top_bins(alerting, load_bins, labels)]
    problems = summary.problems
    if problems.height:
        parts += ["## Problems\n", _problems(problems, labels)]
    return parts


def _changes(block: Mapping[str, Any]) -> str | None:
    """``3 new · 6 ongoing · 0 resolved``: the block's changes since the last run, if any."""
    changes = block.get("changes")
    return None if not changes else " · ".join(
        f"{int(changes.get(name) or 0)} {name}" for name in LIFECYCLES)


def _window_section(title: str, block: Mapping[str, Any], intro: str) -> list[str]:
    """The head of a section of window × segment checks (model outputs, joint drift): its
    counts, the changes since the last run, what it measures and its warnings."""
    parts = [f"## {title}\n",
             f"{_counts_line(block, 'window × segment checks')}"
             + (f"; since the last run: {since}" if (since := _changes(block)) else "")
             + f". {escape_md(intro)}\n"]
    if block["warnings"]:
        parts.append("".join(f"- {escape_md(w)}\n" for w in block["warnings"]))
    return parts


def _more_rows(rows: pl.DataFrame, table: str) -> str:
    """The line under a capped table: how many rows it left out, and where they are."""
    return (f"\n…and {rows.height - MAX_ROWS} more window × segment rows; see {table}.\n"
            if rows.height > MAX_ROWS else "")


def _models(tables: ModelTables) -> list[str]:
    """Model rows, class means and the most changed examples."""
    block = tables.block
    rows = model_rows(tables)
    labels = window_labels(rows)
    extra = extra_metric(tables)
    columns: list[Column] = [
        (True, "Status", ":--", _row_status),
        *_place_columns(rows, labels),
        (True, "n", "--:", lambda r: fmt_count(r["n"])),
        (extra is not None, escape_md(extra or ""), "--:", lambda r: fmt_value(r["value"])),
        *[(True, header, "--:", lambda r, c=column: fmt_value(r[c]))
          for column, header in SHOWN_METRICS.items()],
    ]
    classes: list[Column] = [
        (True, "Class", ":--", lambda r: escape_md(r["class"])),
        (True, "Baseline mean", "--:", lambda r: fmt_share(r["baseline_mean"])),
        (True, "Current mean", "--:", lambda r: fmt_share(r["current_mean"])),
        (True, "Predicted as (baseline → current)", "--:",
         lambda r: f"{fmt_share(r['baseline_predicted_share'])} → "
                   f"{fmt_share(r['current_predicted_share'])}"),
    ]
    examples: list[Column] = [
        (True, escape_md(block["id_column"]), ":--", lambda r: escape_md(r["id"])),
        *_place_columns(rows, labels),
        (True, "Baseline class", ":--", lambda r: escape_md(r["baseline_class"])),
        (True, "Current class", ":--", lambda r: escape_md(r["current_class"])),
        (True, escape_md(block["top_by"]), "--:", lambda r: fmt_value(r["value"])),
    ]
    more = _more_rows(rows, "models.parquet")
    parts = _window_section("Model outputs", block, model_intro(block))
    parts += [_grid(columns, rows.head(MAX_ROWS)) + more,
              "### Mean predicted probability per class\n",
              "Over all matched examples; the share of examples predicted as each class.\n",
              _grid(classes, class_means(tables))]
    top = top_examples(tables)
    if top.height:
        parts += ["### Most changed examples\n", _grid(examples, top)]
    return parts


def _joint(table: pl.DataFrame, block: Mapping[str, Any]) -> list[str]:
    """Joint drift rows with their intervals and most important features."""
    rows = joint_rows(table)
    labels = window_labels(rows)
    level = f"{block['level']:.0%} CI"
    columns: list[Column] = [
        (True, "Status", ":--", _row_status),
        *_place_columns(rows, labels),
        (True, f"KL ({level})", "--:", fmt_interval),
        (True, "Reverse KL", "--:", lambda r: fmt_value(r["reverse_kl"])),
        (True, "AUC", "--:", lambda r: fmt_value(r["auc"])),
        (True, "q", "--:", lambda r: fmt_p(r["q_value"])),
        (True, "n (baseline / current)", "--:",
         lambda r: f"{fmt_count(r['n_baseline'])} / {fmt_count(r['n_current'])}"),
        (True, "Top features", ":--", lambda r: escape_md(top_features(r))),
    ]
    more = _more_rows(rows, "joint.parquet")
    parts = _window_section("Joint drift", block, joint_intro(block))
    parts.append(_grid(columns, rows.head(MAX_ROWS)) + more)
    problems = [r for r in rows.iter_rows(named=True) if r["reason"] and r["status"] != "ok"]
    if problems:
        parts.append("".join(f"- {escape_md(r['segment'])}, "
                             f"{escape_md(labels.get(r['window'], r['window']))}: "
                             f"{_status(r['status'])}, {escape_md(r['reason'])}\n"
                             for r in problems[:MAX_PROBLEMS]))
    return parts


def _estimates(estimates: pl.DataFrame, block: Mapping[str, Any]) -> list[str]:
    labels = window_labels(estimates)
    level = f"{block['level']:.0%} CI"
    columns: list[Column] = [
        *_place_columns(estimates, labels),
        (True, "Estimator", ":--", lambda r: escape_md(r["estimator"])),
        (True, "Value", "--:", lambda r: fmt_value(r["value"])),
        (True, "Std. error", "--:", lambda r: fmt_value(r["stderr"])),
        (True, level, "--:",
         lambda r: f"{fmt_value(r['ci_low'])} to {fmt_value(r['ci_high'])}"),
        (True, "n", "--:", lambda r: fmt_count(r["n"])),
    ]
    more = (f"\n…and {estimates.height - MAX_ROWS} more rows; see estimates.parquet.\n"
            if estimates.height > MAX_ROWS else "")
    return ["## Estimates\n", escape_md(estimate_intro(block)) + "\n",
            _grid(columns, estimates.head(MAX_ROWS)) + more]


def _trends(trends: pl.DataFrame, block: Mapping[str, Any]) -> list[str]:
    """Counts by light and the most severe flags of the run's trends."""
    by_light = trend_counts(trends)
    flagged, total = flagged_series(trends, MAX_TRENDS)
    head = (f"**{' · '.join(f'{TREND_ICONS[k]} {n} {k}' for k, n in by_light.items())}** "
            f"statistics of this run's windows against the median ± {block.get('yellow')} "
            f"(yellow) and ± {block.get('red')} (red) spreads of the {block.get('windows')} "
            "windows before each (none: fewer earlier windows than "
            f"{block.get('min_windows')}, or a partial window).\n")
    lines = []
    for row in flagged.iter_rows(named=True):
        flag = series_of(trends, row).filter(
            pl.col("checked") & (pl.col("window") == row["window"])).row(0, named=True)
        where = "" if row["segment"] == "all" else f" ({escape_md(row['segment'])})"
        lines.append(f"- {TREND_ICONS[row['light']]} **{escape_md(row['feature'])}**{where}: "
                     f"{escape_md(flag_text(flag))}; {row['n_red']} red, "
                     f"{row['n_yellow']} yellow in this run")
    more = (f"\n…and {total - flagged.height} more flagged series; see trends.parquet.\n"
            if total > flagged.height else "")
    return ["## Trends\n", head, ("\n".join(lines) + "\n" + more) if lines else
            "No statistic outside its bounds.\n"]


def render_markdown(drift: pl.DataFrame | None, alerts: Mapping[str, Any], *,
                    models: ModelTables | None = None,
                    estimates: pl.DataFrame | None = None,
                    joint: pl.DataFrame | None = None,
                    bins: BinsLoader | None = None,
                    trends: pl.DataFrame | None = None,
                    summary: FeatureSummary | None = None) -> str:
    """Render report.md.

    Parameters
    ----------
    drift : polars.DataFrame or None
        The run's drift table (``drift.parquet``, docs/architecture.md); ``None`` for a
        run without feature drift.
    alerts : mapping
        The run's ``alerts.json`` document.
    models : ModelTables, optional
        The run's model comparison (`pipeline.write.run_folder.read_run`).
    estimates : polars.DataFrame, optional
        The run's ``estimates.parquet`` (its settings come from ``alerts["estimates"]``).
    joint : polars.DataFrame, optional
        The run's ``joint.parquet`` (its settings come from ``alerts["joint"]``).
    bins : callable, optional
        Loads the ``bins`` of the rows listed (as in `render_html`); default:
        ``drift["bins"]``.
    trends : polars.DataFrame, optional
        The run's ``trends.parquet`` (settings from ``alerts["trends"]``).
    summary : FeatureSummary, optional
        ``summary.summarize(drift)``, when the caller has it (as in `render_html`).

    Returns
    -------
    str
        Summary counts, the features table (most severe first, capped at `MAX_ROWS`; with
        several references, each one's worst status side by side), the top contributing bins
        of each alerting feature, problems, trends, joint drift, model outputs, estimates,
        warnings and the run metadata.
    """
    run = alerts["run"]
    parts = [f"# Drift report: run {escape_md(run.get('run_id', ''))}\n"]
    if drift is not None:
        parts += _features(summary or summarize(drift), alerts, bins or bins_of(drift))
    if trends is not None:
        parts += _trends(trends, alerts.get("trends") or {})
    if joint is not None:
        parts += _joint(joint, alerts["joint"])
    if models is not None:
        parts += _models(models)
    if estimates is not None:
        parts += _estimates(estimates, alerts["estimates"])
    if alerts.get("warnings"):
        parts += ["## Warnings\n", "\n".join(f"- {escape_md(w)}" for w in alerts["warnings"])
                  + "\n"]
    parts += ["## Run\n", "\n".join(f"- {label}: {escape_md(value)}"
                                    for label, value in run_facts(drift, alerts)) + "\n"]
    return "\n".join(parts)
