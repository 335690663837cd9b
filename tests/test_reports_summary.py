"""The summary both reports share (pipeline.write.reports.summary.summarize) against brute
force over every row of the drift table."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.write.reports.summary import STATUSES, summarize

STATUS = st.sampled_from(["ok", "ok", "warn", "critical", "error", "insufficient_data"])


@st.composite
def drift_tables(draw: st.DrawFn) -> pl.DataFrame:
    """Every (segment, feature, reference, window) of a small grid, with random statuses."""
    features = draw(st.integers(1, 4))
    references = draw(st.sampled_from([["baseline"], ["baseline", "previous"]]))
    rows = [{"segment": s, "feature": f"f{f}", "reference": r, "window": f"w{w}",
             "status": draw(STATUS), "value": draw(st.floats(0, 1)), "reason": None}
            for s in ("s0", "s1") for f in range(features) for r in references
            for w in range(3)]
    return pl.DataFrame(rows, schema_overrides={"reason": pl.String})


@settings(max_examples=60, deadline=None)
@given(drift_tables())
def test_headline_counts_are_each_features_worst_row(drift: pl.DataFrame) -> None:
    worst: dict[str, int] = {}
    for row in drift.iter_rows(named=True):
        rank = STATUSES.index(row["status"])
        worst[row["feature"]] = min(worst.get(row["feature"], rank), rank)
    critical = sum(rank == 0 for rank in worst.values())
    warn = sum(rank == 1 for rank in worst.values())
    summary = summarize(drift)
    assert summary.counts == {"features": len(worst), "drifted": critical + warn,
                              "critical": critical, "warn": warn}
    assert (summary.n_features, summary.n_segments, summary.n_windows) == (len(worst), 2, 3)
    problems = drift.filter(pl.col("status").is_in(["error", "insufficient_data"]))
    assert summary.problems.height == problems.height
    # every row keeps its place in the table: the rows shown load their bins by it
    assert summary.drift["_row"].to_list() == list(range(drift.height))
