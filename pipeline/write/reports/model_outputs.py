"""What the "Model outputs" and "Estimates" sections show, shared by both renderers.

Model rows (one per window x segment of models.parquet) are ranked like drift rows: by
severity, then by the alert metric. The class table pools the windows of each group, so
its means are over all matched examples (each window's mean weighted by its ``n``).
Strings returned here are plain text: each renderer escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from pipeline.write.reports.summary import fmt_count, fmt_value, sort_rows, unit
from pipeline.write.run_folder import ModelTables

MAX_EXAMPLES = 10
#: models.parquet columns every model table shows (the alert metric is added if different).
SHOWN_METRICS = {"js_distance_mean": "JS distance mean", "js_distance_p95": "p95",
                 "js_distance_max": "max", "flip_rate": "flip rate"}


def model_rows(tables: ModelTables) -> pl.DataFrame:
    """models.parquet rows, most severe first, then by the alert metric (largest first)."""
    return sort_rows(tables.summary)


def extra_metric(tables: ModelTables) -> str | None:
    """The alert metric when it is not one of `SHOWN_METRICS`, so tables add its column."""
    metric = tables.block["metric"]
    return None if metric in SHOWN_METRICS else metric


def model_intro(block: Mapping[str, Any]) -> str:
    """One sentence: what was compared, how many examples matched, what sets the status."""
    inputs = block["inputs"]
    unmatched = (f" ({fmt_count(block['n_unmatched_baseline'])} baseline and "
                 f"{fmt_count(block['n_unmatched_current'])} current ids without a match)"
                 if block["n_unmatched_baseline"] or block["n_unmatched_current"] else "")
    return (f"Current model {inputs['current']} against baseline model {inputs['baseline']} "
            f"({block['kind']}, {block['mode']}): {fmt_count(block['n_matched'])} matched "
            f"examples{unmatched}. Status from {block['metric']}: warn "
            f"{fmt_value(block['warn_threshold'])}, critical "
            f"{fmt_value(block['critical_threshold'])}; metrics in {unit(block['base'])}.")


def class_means(tables: ModelTables, by: Sequence[str] = ()) -> pl.DataFrame:
    """Mean predicted probability and predicted share per class, per ``by`` group.

    Returns
    -------
    polars.DataFrame
        ``by`` columns, ``class``, ``baseline_mean``, ``current_mean``,
        ``baseline_predicted_share``, ``current_predicted_share``: averages over every
        matched example of the group (windows pooled), classes in model order.
    """
    shares = ("baseline_mean", "current_mean", "baseline_predicted_share",
              "current_predicted_share")
    weighted = tables.classes.join(tables.summary.select("segment", "window", "n"),
                                   on=["segment", "window"], how="left", maintain_order="left")
    return (weighted.group_by(*by, "class", maintain_order=True)
            .agg((pl.col(c) * pl.col("n")).sum() / pl.col("n").sum() for c in shares))


def top_examples(tables: ModelTables, n: int = MAX_EXAMPLES) -> pl.DataFrame:
    """The ``n`` examples of the run whose prediction changed most (by ``top_by``).

    Adds ``id`` (the id column as text) and ``value`` (the ``top_by`` metric).
    """
    block = tables.block
    return (tables.examples
            .sort(block["top_by"], descending=True, nulls_last=True).head(n)
            .with_columns(pl.col(block["id_column"]).cast(pl.String).alias("id"),
                          pl.col(block["top_by"]).alias("value")))


def estimate_intro(block: Mapping[str, Any]) -> str:
    """One sentence: which KL, from which samples, in which unit, at which level."""
    kl = "KL(Q ‖ P)" if block["direction"] == "forward" else "KL(P ‖ Q)"
    per = "sequence" if block["per"] == "sequence" else "sample"
    return (f"{kl} estimated with {block['estimator']} from the log-probabilities in "
            f"{block['inputs']['source']} (samples drawn from Q, one term per {per}), in "
            f"{unit(block['base'])}, with {block['level']:.0%} normal intervals. Estimates "
            "have no thresholds: they never alert.")
