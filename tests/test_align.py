"""Alignment of histogram long tables into dense, row-aligned arrays over the bin union."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.bins.align import align
from pipeline.bins.binning import bin_raw
from pipeline.bins.profile import build_profile
from pipeline.config import METRICS, DriftConfig
from pipeline.errors import InputError
from pipeline.measure.drift import compute_drift
from pipeline.read.sources import scan_raw
from tests.conftest import categorical_histogram, numeric_histogram

DATA = Path(__file__).parents[1] / "data"


def row_bins(aligned, row: int) -> dict[str, tuple[float, float]]:
    """{bin: (baseline, current)} of one aligned row, in slot order."""
    cells = aligned.cells.filter(pl.col("row") == row).sort("slot")
    return {b: (aligned.baseline[row, s], aligned.current[row, s])
            for b, s in zip(cells["bin"], cells["slot"], strict=True)}


def test_bin_union_and_display_order() -> None:
    baseline = pl.concat([
        categorical_histogram("c", {"__missing__": 1, "b": 5, "__other__": 2, "a": 3}),
        numeric_histogram("x", [0, 1], [2, 3, 4, 1]),
    ], how="diagonal")
    current = pl.concat([
        categorical_histogram("c", {"new": 4, "a": 1}),
        # Current lists the bins in another order; display order comes from the edges.
        numeric_histogram("x", [0, 1], [1, 1, 1]).reverse(),
    ], how="diagonal")
    aligned = align(baseline, current)
    c_row, x_row = (aligned.rows["feature"].to_list().index(f) for f in ("c", "x"))
    # Categorical: baseline order (missing/other last), current-only category after them.
    assert list(row_bins(aligned, c_row).items()) == [
        ("b", (5, 0)), ("a", (3, 1)), ("new", (0, 4)), ("__other__", (2, 0)),
        ("__missing__", (1, 0))]
    assert list(row_bins(aligned, x_row)) == ["[-inf, 0)", "[0, 1)", "[1, inf)", "__missing__"]
    assert aligned.rows["kind"].to_list() == ["categorical", "numeric"]
    assert aligned.n_bins.tolist() == [5, 4]
    # Padding beyond a row's bins is zero on both sides.
    assert aligned.baseline[x_row, 4:].sum() == aligned.current[x_row, 4:].sum() == 0


def test_global_baseline_is_broadcast_to_every_segment_and_window() -> None:
    baseline = numeric_histogram("x", [0], [6, 4])
    current = pl.concat([
        numeric_histogram("x", [0], [1, 2], region=r, window=w)
        for r in ("EU", "US") for w in ("w1", "w2")
    ])
    aligned = align(baseline, current)
    assert aligned.rows.select("segment", "window").rows() == [
        ("region=EU", "w1"), ("region=EU", "w2"), ("region=US", "w1"), ("region=US", "w2")]
    np.testing.assert_array_equal(aligned.baseline, np.tile([6.0, 4.0], (4, 1)))
    assert aligned.segments == ("region",)


def test_per_segment_baseline_and_baseline_windows_are_summed() -> None:
    baseline = pl.concat([
        numeric_histogram("x", [0], [1, 2], region="EU", window="jan"),
        numeric_histogram("x", [0], [3, 4], region="EU", window="feb"),
        numeric_histogram("x", [0], [10, 0], region="US", window="jan"),
    ])
    current = pl.concat([numeric_histogram("x", [0], [1, 1], region=r) for r in
                         ("EU", "US", "APAC")])
    aligned = align(baseline, current)
    rows = aligned.rows.with_row_index("i")
    by_segment = {s: i for i, s in rows.select("i", "segment").iter_rows()}
    np.testing.assert_array_equal(aligned.baseline[by_segment["region=EU"]], [4, 6])
    np.testing.assert_array_equal(aligned.baseline[by_segment["region=US"]], [10, 0])
    assert rows.filter(segment="region=APAC")["reason"].item() == (
        "segment region=APAC not in the baseline; rebuild the profile or compare globally")
    assert rows.filter(pl.col("segment") != "region=APAC")["reason"].is_null().all()


def test_unseen_segment_values_are_error_rows_never_compared() -> None:
    # the baseline is segmented by region only; the current data by region and model
    baseline = pl.concat([numeric_histogram("x", [0], [5, 5], region="EU"),
                          categorical_histogram("c", {"u": 3}, region="EU"),
                          categorical_histogram("c", {"u": 3}, region="US")], how="diagonal")
    current = pl.concat([
        numeric_histogram("x", [0], [1, 1], region=r, model="2", window="w1")
        for r in ("EU", "US", None)])
    rows = align(baseline, current).rows
    assert rows.select("segment", "feature", "reason").rows() == [
        ("region=EU, model=2", "c", "feature 'c' not in the current data"),
        ("region=EU, model=2", "x", None),
        ("region=US, model=2", "c", "feature 'c' not in the current data"),
        # the segment exists, but this feature has no baseline there
        ("region=US, model=2", "x", "feature 'x' has no baseline for segment 'region=US'"),
        ("region=null, model=2", "c",
         "segment region=null not in the baseline; rebuild the profile or compare globally"),
        ("region=null, model=2", "x",
         "segment region=null not in the baseline; rebuild the profile or compare globally"),
    ]


def test_known_reasons_replace_not_in_the_current_data() -> None:
    baseline = pl.concat([categorical_histogram(f, {"u": 1}) for f in ("a", "b", "gone")])
    current = categorical_histogram("a", {"u": 1})
    reasons = {"b": "feature 'b': its column type changed", "a": "unused: 'a' is present"}
    got = dict(align(baseline, current, reasons=reasons).rows.select(
        "feature", "reason").iter_rows())
    assert got == {"a": None, "b": "feature 'b': its column type changed",
                   "gone": "feature 'gone' not in the current data"}


def test_features_on_one_side_only_become_row_reasons() -> None:
    baseline = pl.concat([categorical_histogram("a", {"u": 1}),
                          categorical_histogram("gone", {"u": 1})])
    current = pl.concat([categorical_histogram("a", {"u": 1}),
                         categorical_histogram("new", {"u": 1})])
    reasons = dict(align(baseline, current).rows.select("feature", "reason").iter_rows())
    assert reasons == {"a": None, "gone": "feature 'gone' not in the current data",
                       "new": "feature 'new' not in the baseline"}


def test_baseline_segment_missing_from_current_is_an_input_error() -> None:
    baseline = numeric_histogram("x", [0], [1, 1], model_version="2")
    current = numeric_histogram("x", [0], [1, 1], region="EU")
    with pytest.raises(InputError, match=r"column 'model_version'.*segmented by"):
        align(baseline, current)


def test_temporal_windows_are_iso_text_in_time_order() -> None:
    stamps = [dt.datetime(2024, 1, 10), dt.datetime(2024, 1, 3, 12), dt.datetime(2023, 12, 27)]
    current = pl.concat([numeric_histogram("x", [0], [1, 1], window=t) for t in stamps])
    aligned = align(numeric_histogram("x", [0], [1, 1]), current)
    assert aligned.rows["window"].to_list() == [
        "2023-12-27T00:00:00", "2024-01-03T12:00:00", "2024-01-10T00:00:00"]
    dates = current.with_columns(pl.col("window").dt.date())
    assert align(numeric_histogram("x", [0], [1, 1]), dates).rows["window"][0] == "2023-12-27"


def test_each_row_gets_the_coverage_of_its_window() -> None:
    stamps = [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)]
    current = pl.concat([numeric_histogram(f, [0], [1, 1], window=t)
                         for t in stamps for f in ("x", "y")])
    coverage = pl.DataFrame({"window": stamps, "coverage": [1.0, 0.25],
                             "partial": [False, True]})
    rows = align(pl.concat([numeric_histogram(f, [0], [1, 1]) for f in ("x", "y")]), current,
                 coverage=coverage).rows
    assert rows.select("feature", "window", "coverage", "partial").rows() == [
        ("x", "2024-01-01T00:00:00", 1.0, False), ("x", "2024-01-02T00:00:00", 0.25, True),
        ("y", "2024-01-01T00:00:00", 1.0, False), ("y", "2024-01-02T00:00:00", 0.25, True)]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_dense_arrays_hold_exactly_the_long_counts(data: st.DataObject) -> None:
    labels = st.sampled_from(["a", "b", "c", "d", "__other__", "__missing__"])
    def table(draw_rows):
        rows = data.draw(st.lists(st.tuples(st.sampled_from(["f", "g"]), labels,
                                            st.integers(0, 50)), min_size=1, max_size=12,
                                  unique_by=lambda r: r[:2]))
        return pl.DataFrame(rows, schema=["feature", "bin", "count"], orient="row").with_columns(
            pl.col("count").cast(pl.Float64))
    baseline, current = table(None), table(None)
    aligned = align(baseline, current)
    for row, feature in enumerate(aligned.rows["feature"]):
        bins = row_bins(aligned, row)
        for side, frame in ((0, baseline), (1, current)):
            expected = dict(frame.filter(feature=feature).select("bin", "count").iter_rows())
            got = {b: counts[side] for b, counts in bins.items() if b in expected}
            assert got == expected
            assert sum(c[side] for c in bins.values()) == sum(expected.values())
        assert len(bins) == aligned.n_bins[row]
        assert list(bins)[-2:].count("__missing__") <= 1


def test_a_bin_spelt_twice_in_rows_out_of_order_is_summed() -> None:
    # Rows written feature by feature while the arrays hold segment by segment: the counts
    # are scattered to their cells, and two spellings of one bin (the same edges) add up
    # rather than the last replacing the first.
    baseline = pl.concat([numeric_histogram(f, [0], [5, 5], region=r)
                          for r in ("EU", "US") for f in ("x", "y")])
    current = pl.concat([numeric_histogram(f, [0], [1, 2], region=r)
                         for f in ("x", "y") for r in ("EU", "US")])
    twice = numeric_histogram("y", [0], [7, 3], region="US").with_columns(
        bin=pl.lit("below zero")).head(1)
    aligned = align(baseline, pl.concat([current, twice]))
    assert aligned.rows.select("segment", "feature").rows() == [
        ("region=EU", "x"), ("region=EU", "y"), ("region=US", "x"), ("region=US", "y")]
    np.testing.assert_array_equal(aligned.current, [[1, 2], [1, 2], [1, 2], [8, 2]])
    np.testing.assert_array_equal(aligned.baseline, np.full((4, 2), 5.0))


def test_null_segment_values_and_windows_are_groups_of_their_own() -> None:
    baseline = numeric_histogram("x", [0], [5, 5])
    current = pl.concat([
        numeric_histogram("x", [0], [1, 2], region="EU", window=dt.date(2024, 1, 1)),
        numeric_histogram("x", [0], [3, 4], region=None, window=None),
    ], how="vertical_relaxed")
    aligned = align(baseline, current)
    assert aligned.rows.select("segment", "window").rows() == [
        ("region=EU", "2024-01-01"), ("region=null", "__missing__")]
    np.testing.assert_array_equal(aligned.current, [[1, 2], [3, 4]])


@pytest.mark.parametrize("seed", range(3))
def test_categorical_labels_align_as_their_text(seed: int) -> None:
    # A run reads its current histogram table with categories for labels: segments, windows,
    # features and bins must align exactly as the same text would (null segments included).
    rng = np.random.default_rng(seed)
    n = 300
    current = pl.DataFrame({
        "region": [["eu", "us", None][i] for i in rng.integers(0, 3, n)],
        "window": rng.choice(["w2", "w1", "w3"], n),
        "feature": rng.choice(["x", "y", "z"], n),
        "bin": rng.choice(["b", "a", "c", "__other__"], n),
        "count": rng.integers(0, 9, n).astype(float)}).unique(
        ["region", "window", "feature", "bin"])
    baseline = pl.DataFrame({"region": ["us", "eu"] * 4, "feature": ["x", "y"] * 4,
                             "bin": ["a", "c", "b", "d"] * 2, "count": np.arange(8.0)})
    labels = ["region", "window", "feature", "bin"]
    text = align(baseline, current)
    coded = align(baseline, current.with_columns(pl.col(labels).cast(pl.Categorical)))
    assert coded.rows.equals(text.rows)
    assert coded.bins.equals(text.bins)
    for name in ("cell_bins", "baseline", "current", "n_bins"):
        np.testing.assert_array_equal(getattr(coded, name), getattr(text, name))


def test_same_distribution_per_segment_is_zero_drift_unlike_a_global_baseline() -> None:
    # current = the baseline rows themselves, airport by airport
    raw = scan_raw(DATA / "flights_baseline.parquet")
    profile = build_profile(raw, exclude=["flight_id", "scheduled_departure"],
                            segments=["origin"])
    current = bin_raw(raw, profile, segments=["origin"])
    per_segment = compute_drift(align(profile.histograms(), current), DriftConfig())
    assert per_segment.height == 3 * len(profile.features)
    assert per_segment["reason"].is_null().all()
    values = per_segment.select(METRICS).to_numpy()
    np.testing.assert_allclose(values, 0.0, atol=1e-12)
    # against the pooled baseline, each airport's own carrier/route mix looks like drift
    pooled = compute_drift(align(profile.histograms([]), current), DriftConfig())
    carrier = pooled.filter(feature="carrier")["js_distance"]
    assert carrier.min() > 0.2


def test_each_segment_keeps_its_own_baseline_category_order() -> None:
    # the segments' baselines list the categories in other orders; a category new in the
    # current data comes after the baseline's, before the reserved bins
    baseline = pl.concat([categorical_histogram("c", {"a": 1, "b": 2, "__other__": 1},
                                                region="EU"),
                          categorical_histogram("c", {"b": 3, "a": 4, "__other__": 1},
                                                region="US")])
    current = pl.concat([categorical_histogram("c", {"new": 1, "a": 2}, region=r)
                         for r in ("EU", "US")])
    aligned = align(baseline, current)
    assert [list(row_bins(aligned, row)) for row in range(2)] == [
        ["a", "b", "new", "__other__"], ["b", "a", "new", "__other__"]]
    assert row_bins(aligned, 1)["a"] == (4, 2)


def test_segment_category_orders_hold_when_every_row_has_every_bin() -> None:
    # rows holding exactly their baseline row's bins take the cells in the catalogue's
    # order (the first segment's): the second segment's order is restored all the same
    baseline = pl.concat([categorical_histogram("c", {"a": 1, "b": 2}, region="EU"),
                          categorical_histogram("c", {"b": 3, "a": 4}, region="US")])
    current = pl.concat([categorical_histogram("c", {"b": 5, "a": 6}, region=r)
                         for r in ("EU", "US")])
    aligned = align(baseline, current)
    assert [row_bins(aligned, row) for row in range(2)] == [
        {"a": (1, 6), "b": (2, 5)}, {"b": (3, 5), "a": (4, 6)}]
    assert [list(row_bins(aligned, row)) for row in range(2)] == [["a", "b"], ["b", "a"]]


def test_full_rows_keep_the_current_counts_without_a_copy_and_int32_cells() -> None:
    """Rows holding every bin of their baseline row in its order (the common case) take
    the current counts as polars holds them, and number their cells as int32: at 10^7
    cells each copy or int64 array is 80 MB of fresh memory."""
    baseline = categorical_histogram("c", {"a": 1, "b": 2, "c": 3})
    current = pl.concat([categorical_histogram("c", {"a": 4, "b": 5, "c": 6}, window=w)
                         for w in ("w1", "w2")]).with_columns(pl.col("count").cast(pl.Float64))
    current = current.rechunk()  # as read: float counts in one chunk
    aligned = align(baseline, current)
    assert aligned.current.tolist() == [[4, 5, 6], [4, 5, 6]]
    assert np.shares_memory(aligned.current, current["count"].to_numpy())
    assert aligned.cell_bins.dtype == np.int32
