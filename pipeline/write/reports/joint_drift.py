"""What both reports show of joint drift (joint.parquet and alerts.json's ``joint`` block).

Plain, unescaped text: the renderers escape it (Markdown) or autoescape it (HTML).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from pipeline.write.reports.summary import ALERTING, fmt_value, sort_rows, unit

MAX_VIEWS = 6  # alerting rows whose 2-D view report.html draws
TOP_FEATURES = 3  # features named per row


def joint_rows(table: pl.DataFrame) -> pl.DataFrame:
    """joint.parquet rows, most severe first, then by KL (largest first)."""
    return sort_rows(table)


def viewed_rows(table: pl.DataFrame) -> pl.DataFrame:
    """The alerting rows with a 2-D view, most severe first (at most `MAX_VIEWS`)."""
    return (joint_rows(table).filter(pl.col("status").is_in(ALERTING)
                                     & pl.col("view").is_not_null())
            .head(MAX_VIEWS))


def joint_intro(block: Mapping[str, Any]) -> str:
    """One paragraph: what is estimated, on what, and how to read it."""
    features = list(block["features"])
    shown = ", ".join(features[:8]) + (", …" if len(features) > 8 else "")
    return (f"KL(current ‖ baseline) of the joint distribution of {len(features)} features "
            f"({shown}), in {unit(block['base'])}, estimated per segment × window by a "
            f"classifier that tells baseline rows from current ones, with a "
            f"{block['level']:.0%} interval; a row alerts when KL reaches "
            f"{fmt_value(block['warn_threshold'])} (warn) or "
            f"{fmt_value(block['critical_threshold'])} (critical) and q is below the FDR "
            "level. A classifier that fits poorly underestimates KL, never overestimates it: "
            "a small q is evidence of drift whatever the estimate (docs/joint-drift.md).")


def fmt_interval(row: Mapping[str, Any]) -> str:
    """``kl`` with its interval: ``0.412 (0.38 to 0.44)``, or ``—``."""
    if row["kl"] is None:
        return "—"
    return f"{fmt_value(row['kl'])} ({fmt_value(row['kl_low'])} to {fmt_value(row['kl_high'])})"


def top_features(row: Mapping[str, Any]) -> str:
    """The most important features of a row, ``x0, x1, x3``, or ``—``."""
    found = [f["feature"] for f in (row["top_features"] or [])[:TOP_FEATURES]]
    return ", ".join(found) or "—"


def view_title(row: Mapping[str, Any], windows: Mapping[str, str]) -> str:
    """``segment · window`` of a row, for its 2-D view."""
    parts = [p for p in (row["segment"] if row["segment"] != "all" else None,
                         windows.get(row["window"], row["window"])
                         if row["window"] != "all" else None) if p]
    return " · ".join(parts) or "all rows"
