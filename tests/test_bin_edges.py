"""Histogram bins are matched by their edges, not by how their labels are spelled.

Precomputed histograms come from other systems: the same numeric bin may be written
``[0.1, 0.3)`` on one side and ``[0.10, 0.30)`` or ``[0.1, 0.3]`` on the other. Identical
histograms must give zero drift whatever the spelling; bins that cannot be aligned, and
malformed edges, are one-line errors naming the file, feature and bins.
"""

from __future__ import annotations

import doctest
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pipeline.bins.layout
from pipeline.bins.align import align
from pipeline.bins.layout import bin_label, label_edges
from pipeline.config import DriftConfig, load_config
from pipeline.errors import InputError
from pipeline.measure.drift import compute_drift
from pipeline.read.histograms import read_histograms
from pipeline.run import run_drift

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def spellings(value: float) -> list[str]:
    """Ways other tools write a number that read back to exactly ``value``."""
    if math.isinf(value):
        return ["inf" if value > 0 else "-inf", "Infinity" if value > 0 else "-Infinity"]
    short = repr(value)
    forms = [short, f"{value:.17g}", f"{value:.17e}", f" {short} "]
    if "." in short and "e" not in short:
        forms.append(short + "00")  # 0.1 -> 0.100
    return forms


@st.composite
def histogram_pair(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """One histogram twice: the baseline with edges and canonical labels, the current
    spelled differently (with edges and free-text labels, or with interval labels only)."""
    inner = sorted(set(draw(st.lists(finite, min_size=1, max_size=6))))
    edges = [-math.inf, *inner, math.inf]
    counts = draw(st.lists(st.integers(0, 50), min_size=len(edges) - 1,
                           max_size=len(edges) - 1))
    assume(sum(counts) > 0)
    lower, upper = edges[:-1], edges[1:]
    baseline = pl.DataFrame({"feature": "x", "bin": [bin_label(a, b) for a, b in
                                                       zip(lower, upper, strict=True)],
                             "count": np.asarray(counts, float), "lower": lower,
                             "upper": upper})
    if draw(st.booleans()):  # edges given: any label text at all
        labels = [draw(st.sampled_from([f"bin {i}", f"[{a:.3g}, {b:.3g}]", "?"])) + f"#{i}"
                  for i, (a, b) in enumerate(zip(lower, upper, strict=True))]
        current = baseline.with_columns(bin=pl.Series(labels))
    else:  # labels only, numbers spelled any way that reads back to the same edges
        labels = [f"[{draw(st.sampled_from(spellings(a)))},"
                  f"{draw(st.sampled_from(['', ' ', '  ']))}"
                  f"{draw(st.sampled_from(spellings(b)))})"
                  for a, b in zip(lower, upper, strict=True)]
        current = baseline.select("feature", bin=pl.Series(labels), count="count")
    order = draw(st.permutations(range(current.height)))
    return baseline, current[list(order)], len(counts)


@settings(max_examples=60)
@given(histogram_pair())
def test_identical_histograms_spelled_differently_have_zero_drift(
        pair: tuple[pl.DataFrame, pl.DataFrame, int]) -> None:
    baseline, current, n_bins = pair
    for first, second in ((baseline, current), (current, baseline)):
        aligned = align(first, second)
        assert aligned.n_bins.tolist() == [n_bins]
        drift = compute_drift(aligned, DriftConfig())
        assert drift["js_distance"].to_list() == [0.0]
        assert drift["kind"].to_list() == ["numeric"]


@settings(max_examples=200)
@given(finite, st.floats(0, 1e3), st.booleans(), st.booleans())
def test_label_edges_reads_back_every_bin_label(lower: float, width: float,
                                                point: bool, after_point: bool) -> None:
    upper = math.nextafter(lower, math.inf) if point else lower + width
    if after_point:
        lower = math.nextafter(lower, math.inf)
    assume(lower < upper)
    for a, b in ((lower, upper), (-math.inf, upper), (lower, math.inf)):
        assert label_edges(pl.Series([bin_label(a, b)])).row(0)[1:] == (a, b)


def test_label_forms() -> None:
    got = label_edges(pl.Series(["[0.10, 0.30)", "(0.1, 0.3]", "[1e-1,3E-1)", "[-Infinity, 2)",
                                 "[5, 3)", "0.1-0.3", "[nan, 1)"])).rows()
    assert got == [
        ("[0.10, 0.30)", 0.1, 0.3),
        # a parenthesis on the left, a bracket on the right: the next float
        ("(0.1, 0.3]", math.nextafter(0.1, 1), math.nextafter(0.3, 1)),
        ("[1e-1,3E-1)", 0.1, 0.3), ("[-Infinity, 2)", -math.inf, 2.0),
        ("[5, 3)", None, None), ("0.1-0.3", None, None), ("[nan, 1)", None, None)]


def test_the_issue_example_runs_clean(tmp_path: Path) -> None:
    # five bins on each side, spelled three ways: one comparison of five bins, drift 0
    edges = [-math.inf, 0.1, 0.3, 0.5, 0.9, math.inf]
    lower, upper = edges[:-1], edges[1:]
    counts = [10.0, 40.0, 30.0, 15.0, 5.0]
    spelled = {
        "baseline": ["[-inf, 0.1)", "[0.1, 0.3)", "[0.3, 0.5)", "[0.5, 0.9)", "[0.9, inf)"],
        "current": ["[-inf, 0.10)", "[0.1, 0.3]", "[0.30, 0.50)", "[0.5, 0.9]", "[0.9, inf]"],
    }
    for role, labels in spelled.items():
        pl.DataFrame({"feature": "score", "bin": labels, "count": counts, "lower": lower,
                      "upper": upper}).write_parquet(tmp_path / f"{role}.parquet")
    result = run_drift(load_config(None, {
        "input.baseline": str(tmp_path / "baseline.parquet"),
        "input.current": str(tmp_path / "current.parquet"), "output.dir": str(tmp_path)}))
    row = result.drift.row(0, named=True)
    assert row["js_distance"] == 0.0 and row["status"] == "ok"
    assert [b["bin"] for b in row["bins"]] == spelled["baseline"]


def test_one_bin_spelled_two_ways_in_two_baseline_windows_is_summed() -> None:
    # a baseline of two months from two systems: windows are summed, bins by their edges
    months = [pl.DataFrame({"feature": "x", "bin": labels, "count": [1.0, 2.0],
                            "lower": [0.0, 1.0], "upper": [1.0, 2.0], "window": month})
              for month, labels in (("jan", ["[0, 1)", "[1, 2)"]),
                                    ("feb", ["[0.0, 1.0)", "[1.00, 2.00)"]))]
    current = pl.DataFrame({"feature": "x", "bin": ["a", "b"], "count": [2.0, 4.0],
                            "lower": [0.0, 1.0], "upper": [1.0, 2.0]})
    aligned = align(pl.concat(months), current)
    np.testing.assert_array_equal(aligned.baseline, [[2.0, 4.0]])
    assert aligned.cells["bin"].to_list() == ["[0, 1)", "[1, 2)"]  # first spelling shown
    assert compute_drift(aligned, DriftConfig())["js_distance"].to_list() == [0.0]


# --- bins that cannot be aligned ---------------------------------------------------------------

def numeric(labels: list[str], lower: list[float] | None, upper: list[float] | None,
            feature: str = "x") -> pl.DataFrame:
    frame = pl.DataFrame({"feature": feature, "bin": labels, "count": [1.0] * len(labels)})
    if lower is not None:
        frame = frame.with_columns(lower=pl.Series(lower), upper=pl.Series(upper))
    return frame


def test_overlapping_bins_of_the_two_sides_are_an_error() -> None:
    baseline = numeric(["[0, 1)", "[1, 2)"], [0.0, 1.0], [1.0, 2.0])
    current = numeric(["[0, 0.5)", "[0.5, 2)"], [0.0, 0.5], [0.5, 2.0])
    with pytest.raises(InputError, match=r"^feature 'x': current bin '\[0, 0.5\)' and "
                                         r"baseline bin '\[0, 1\)' overlap without having the "
                                         r"same edges"):
        align(baseline, current)
    # pandas-style (a, b] bins are other bins than [a, b): integer 1 falls in another one
    labels_only = numeric(["(0, 1]", "(1, 2]"], None, None)
    with pytest.raises(InputError, match=r"bin '\[0, 1\)' and current bin '\(0, 1\]' overlap"):
        align(baseline, labels_only)


def test_labels_that_are_not_intervals_cannot_meet_numeric_bins() -> None:
    baseline = numeric(["[0, 1)", "[1, 2)"], [0.0, 1.0], [1.0, 2.0])
    current = numeric(["low", "[1, 2)", "high"], None, None)
    with pytest.raises(InputError) as error:
        align(baseline, current)
    message = str(error.value)
    assert message.startswith("feature 'x': current bins 'low', 'high' have no lower/upper "
                              "edges and their labels are not intervals")
    assert "\n" not in message
    # without edges anywhere, such labels are categories, matched by text
    categories = numeric(["low", "[1, 2)"], None, None)
    assert align(categories, categories).rows["kind"].to_list() == ["categorical"]


def test_gaps_are_allowed_and_filled_from_the_other_side() -> None:
    baseline = numeric(["[0, 1)", "[1, 2)", "[2, 3)"], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    sparse = numeric(["[0.0, 1.0)", "[2.0, 3.0)"], [0.0, 2.0], [1.0, 3.0])  # empty bin left out
    aligned = align(baseline, sparse)
    np.testing.assert_array_equal(aligned.current, [[1.0, 0.0, 1.0]])
    assert aligned.cells["bin"].to_list() == ["[0, 1)", "[1, 2)", "[2, 3)"]


# --- malformed edges on read -------------------------------------------------------------------

@pytest.mark.parametrize(("lower", "upper", "expected"), [
    ([0.0, 2.0], [1.0, 1.5], r"bin\(s\) where each has lower > upper, first bin 'b' "
                             r"\(lower 2.0, upper 1.5\)"),
    ([0.0, math.nan], [1.0, 2.0], r"each has a NaN edge, first bin 'b'"),
    ([0.0, None], [1.0, 2.0], r"each has one edge but not the other.*first bin 'b'"),
    ([0.0, 0.5], [1.0, 2.0], r"1 bin\(s\) overlap another bin of their histogram, first bins "
                             r"'a' \(edges \[0, 1\)\) and 'b' \(edges \[0.5, 2\)\)"),
    ([0.0, 0.0], [1.0, 1.0], r"overlap another bin.*'a' \(edges \[0, 1\)\) and 'b'"),
])
def test_malformed_edges_are_one_line_errors_naming_file_feature_bins(
        tmp_path: Path, lower: list, upper: list, expected: str) -> None:
    path = tmp_path / "h.parquet"
    pl.DataFrame({"feature": "score", "bin": ["a", "b"], "count": [1.0, 1.0], "lower": lower,
                  "upper": upper}, schema_overrides={"lower": pl.Float64}).write_parquet(path)
    with pytest.raises(InputError) as error:
        read_histograms(str(path))
    message = str(error.value)
    assert message.startswith(f"file '{path}', feature 'score': current histogram table")
    assert "\n" not in message
    assert re.search(expected, message), message


def test_one_edge_column_without_the_other(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    pl.DataFrame({"feature": "s", "bin": ["a"], "count": [1.0], "lower": [0.0]}).write_parquet(
        path)
    with pytest.raises(InputError, match=r"column 'upper': current histogram table has a "
                                         r"'lower' column but no 'upper' column"):
        read_histograms(str(path))


def test_bins_of_other_segments_and_windows_may_differ(tmp_path: Path) -> None:
    # overlap is checked within one histogram: (segments, feature, window)
    path = tmp_path / "h.parquet"
    pl.DataFrame({"region": ["EU", "US"], "feature": "s", "bin": ["a", "b"],
                  "count": [1.0, 1.0], "lower": [0.0, 0.5], "upper": [1.0, 2.0]}
                 ).write_parquet(path)
    assert read_histograms(str(path)).height == 2


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(pipeline.bins.layout)
    assert tried > 0 and failures == 0
