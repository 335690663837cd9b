"""Drift table: batched kl_metrics results equal direct per-row calls; bins and top bins."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from kl_metrics import bin_contributions, divergences
from pipeline.bins.align import align
from pipeline.config import METRICS, DriftConfig
from pipeline.measure.drift import BIN, TOP_BIN, compute_drift
from tests.conftest import categorical_histogram, numeric_histogram

COLUMNS = ["segment", "feature", "window", "coverage", "partial", "kind", "n_baseline",
           "n_current", "baseline_unseen", *METRICS, "metric", "value", "effect", "effect_low",
           "effect_high", "warn_threshold", "critical_threshold", "p_value", "q_value",
           "status", "window_status", "reason", "top_bins", "bins"]


def ragged_tables(rng: np.random.Generator, widths: list[int], windows: int = 2):
    """Baseline and windowed current tables of categorical features with given bin counts."""
    baseline, current = [], []
    for i, width in enumerate(widths):
        labels = [f"b{j}" for j in range(width)]
        baseline.append(categorical_histogram(f"f{i}", dict(zip(
            labels, rng.integers(0, 40, width) + (np.arange(width) == 0), strict=True))))
        for w in range(windows):
            current.append(categorical_histogram(f"f{i}", dict(zip(
                labels, rng.integers(0, 40, width) + (np.arange(width) == 1 % width),
                strict=True)), window=f"w{w}"))
    return pl.concat(baseline), pl.concat(current)


def per_row_reference(drift: pl.DataFrame, config: DriftConfig) -> None:
    """Each row's metrics and contributions equal an unpadded, single-row kl_metrics call."""
    for row in drift.iter_rows(named=True):
        bins = row["bins"]
        p = np.array([b["current_count"] for b in bins])
        q = np.array([b["baseline_count"] for b in bins])
        direct = divergences(p, q, base=config.log_base, eps=config.eps)
        for name in METRICS:
            assert row[name] == pytest.approx(float(direct[name]), rel=1e-12, abs=1e-15)
        terms = bin_contributions(p, q, config.metric, base=config.log_base, eps=config.eps)
        np.testing.assert_allclose([b["contribution"] for b in bins], terms, rtol=1e-12,
                                   atol=1e-15)
        assert row["value"] == row[config.metric]
        assert sum(b["contribution"] for b in bins) == pytest.approx(row["value"], rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 9), min_size=1, max_size=5),
       seed=st.integers(0, 2**32 - 1),
       metric=st.sampled_from(METRICS), base=st.sampled_from([2, "e"]),
       eps=st.sampled_from([1e-6, 1e-3]))
def test_batched_ragged_rows_equal_unpadded_per_row_calls(widths, seed, metric, base, eps):
    baseline, current = ragged_tables(np.random.default_rng(seed), widths)
    config = DriftConfig(metric=metric, base=base, eps=eps)
    drift = compute_drift(align(baseline, current), config)
    assert drift.height == 2 * len(widths)
    assert drift["status"].is_null().all()
    per_row_reference(drift, config)


def test_schema_follows_the_architecture_contract(rng: np.random.Generator) -> None:
    baseline, current = ragged_tables(rng, [3, 5])
    drift = compute_drift(align(baseline, current.with_columns(region=pl.lit("EU"))),
                          DriftConfig())
    assert drift.columns == ["region", *COLUMNS]
    assert drift.schema["bins"] == pl.List(BIN)
    assert drift.schema["top_bins"] == pl.List(TOP_BIN)
    assert drift["segment"].unique().to_list() == ["region=EU"]
    for name in (*METRICS, "n_baseline", "n_current", "value", "p_value"):
        assert drift.schema[name] == pl.Float64


def test_bins_shares_and_top_bins() -> None:
    baseline = numeric_histogram("x", [0, 1, 2], [10, 20, 30, 40, 0])
    current = numeric_histogram("x", [0, 1, 2], [40, 30, 20, 10, 5])
    row = compute_drift(align(baseline, current), DriftConfig()).row(0, named=True)
    bins = pl.DataFrame(row["bins"])
    assert bins["bin"].to_list() == ["[-inf, 0)", "[0, 1)", "[1, 2)", "[2, inf)", "__missing__"]
    assert bins["lower"].to_list()[:4] == [-np.inf, 0, 1, 2] and bins["lower"][4] is None
    np.testing.assert_allclose(bins["baseline_share"], np.array([10, 20, 30, 40, 0]) / 100)
    np.testing.assert_allclose(bins["current_share"], np.array([40, 30, 20, 10, 5]) / 105)
    assert (row["n_baseline"], row["n_current"]) == (100, 105)
    top = pl.DataFrame(row["top_bins"])
    expected = bins.sort("contribution", descending=True).head(3)
    assert top["bin"].to_list() == expected["bin"].to_list()
    assert top["contribution"].to_list() == expected["contribution"].to_list()
    assert row["kind"] == "numeric"


def test_zero_totals_become_row_statuses_without_stopping_the_batch() -> None:
    baseline = pl.concat([categorical_histogram("empty_base", {"a": 0, "b": 0}),
                          categorical_histogram("ok", {"a": 5, "b": 5}),
                          categorical_histogram("empty_cur", {"a": 5, "b": 5})])
    current = pl.concat([categorical_histogram("empty_base", {"a": 3}),
                         categorical_histogram("ok", {"a": 5, "b": 1}),
                         categorical_histogram("empty_cur", {"a": 0, "b": 0})])
    drift = compute_drift(align(baseline, current), DriftConfig())
    status = {r["feature"]: (r["status"], r["reason"]) for r in drift.iter_rows(named=True)}
    assert status["empty_base"] == ("error", "baseline histogram is empty (total count 0)")
    assert status["empty_cur"] == ("insufficient_data",
                                   "no current data for this segment and window")
    assert status["ok"] == (None, None)
    values = dict(drift.select("feature", "js_distance").iter_rows())
    assert values["ok"] > 0 and values["empty_base"] is None and values["empty_cur"] is None
    top = dict(drift.select("feature", pl.col("top_bins").list.len()).iter_rows())
    assert top == {"empty_base": 0, "ok": 2, "empty_cur": 0}
    # rows not compared have bins, without contributions
    contributions = dict(drift.select("feature", pl.col("bins").list.eval(
        pl.element().struct.field("contribution").is_null()).list.all()).iter_rows())
    assert contributions == {"empty_base": True, "ok": False, "empty_cur": True}


def test_exact_eps_zero_gives_infinite_kl_not_an_exception() -> None:
    baseline = categorical_histogram("c", {"a": 10, "b": 0})
    current = categorical_histogram("c", {"a": 5, "b": 5})
    row = compute_drift(align(baseline, current), DriftConfig(metric="kl", eps=0.0)).row(
        0, named=True)
    assert row["kl"] == np.inf and row["value"] == np.inf
    assert 0 < row["js_distance"] < 1


@pytest.mark.parametrize("metric", ["kl", "reverse_kl", "js_distance"])
def test_effect_is_the_jackknife_of_current_against_baseline(metric: str) -> None:
    from kl_metrics import jackknife

    rng = np.random.default_rng(9)
    edges = [-1.0, 0.0, 1.0]
    # an empty bin and one seen once: numeric bins get no unseen mass all the same
    baseline = numeric_histogram("x", edges, [0.0, 1.0, *rng.integers(50, 90, 2)])
    current = pl.concat([numeric_histogram("x", edges, list(rng.integers(1, 40, 4)),
                                           window=f"w{i}") for i in range(5)])
    config = DriftConfig(metric=metric, effect_level=0.8)
    drift = compute_drift(align(baseline, current), config)
    assert drift["baseline_unseen"].is_null().all()  # numeric: no unseen mass
    for row in drift.iter_rows(named=True):
        cur = np.array([b["current_count"] for b in row["bins"]])
        base = np.array([b["baseline_count"] for b in row["bins"]])
        expected = jackknife(cur, base, metric, base=2, eps=config.eps, level=0.8)
        assert (row["effect"], row["effect_low"], row["effect_high"]) == pytest.approx(
            (expected.estimate, expected.low, expected.high), rel=1e-12)
        assert row["effect"] <= row["value"]


def test_effect_of_rows_with_merged_unseen_cells_is_capped_by_their_own_value() -> None:
    from kl_metrics import jackknife
    from pipeline.measure.unseen import with_unseen_mass

    # small categorical samples whose baselines miss categories (the unseen cells are
    # merged and get the singletons' share): the effect's cap is the value of the merged
    # counts, not the plug-in value the drift table shows for the raw counts
    rng = np.random.default_rng(11)
    labels = [f"b{j}" for j in range(5)]
    baseline, current = [], []
    for i in range(60):
        counts = rng.integers(0, 4, 5) + (np.arange(5) == 0)
        counts[4] = 0  # one category the baseline never saw
        baseline.append(categorical_histogram(f"f{i}", dict(zip(labels, counts, strict=True))))
        current += [categorical_histogram(f"f{i}", dict(zip(
            labels, rng.integers(0, 4, 5) + (np.arange(5) == 1), strict=True)), window=f"w{w}")
            for w in range(8)]
    config = DriftConfig(metric="js_distance")
    drift = compute_drift(align(pl.concat(baseline), pl.concat(current)), config)
    capped = 0
    for row in drift.iter_rows(named=True):
        cur = np.array([[b["current_count"] for b in row["bins"]]])
        base = np.array([[b["baseline_count"] for b in row["bins"]]])
        merged = with_unseen_mass(cur, base, base == 0, np.array([row["baseline_unseen"]]))
        expected = jackknife(*merged, "js_distance", base=2, eps=config.eps)
        assert (row["effect"], row["effect_low"], row["effect_high"]) == pytest.approx(
            (expected.estimate[0], expected.low[0], expected.high[0]), rel=1e-12, abs=1e-15)
        capped += bool(expected.estimate[0] == expected.value[0] > 0)
    assert capped  # rows at the cap: a wrong cap would show


def test_rows_measured_in_blocks_on_threads_give_the_table_of_one_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.measure.drift as drift_module
    import pipeline.parallel as parallel

    # ragged widths (groups of rows), baselines missing categories (merged unseen cells),
    # windows without counts (rows not compared, between the measured ones)
    rng = np.random.default_rng(5)
    baseline, current = ragged_tables(rng, [2, 5, 5, 9, 3, 5], windows=7)
    baseline = baseline.with_columns(pl.when(pl.col("bin") == "b2").then(0.0)
                                     .otherwise("count").alias("count"))
    current = current.with_columns(pl.when(pl.col("window") == "w3").then(0.0)
                                   .otherwise("count").alias("count"))
    aligned = align(baseline, current)
    config = DriftConfig(metric="js_divergence")
    whole = compute_drift(aligned, config)  # one block per width
    assert whole["baseline_unseen"].is_not_null().sum() > 0
    assert whole["status"].is_null().sum() == 36  # w3 not compared
    # every row its own block: the same table; the effect of merged rows (fractional
    # counts, whose totals BLAS sums in an order that depends on the rows summed together)
    # to rounding
    monkeypatch.setattr(drift_module, "BLOCK_CELLS", 1)
    tables = []
    for n in (1, 3):  # on one thread and three at once: to the last bit
        monkeypatch.setattr(parallel, "threads", lambda n=n: n)
        tables.append(compute_drift(aligned, config))
    assert_frame_equal(tables[0], tables[1], check_exact=True)
    effect = ["effect", "effect_low", "effect_high"]
    assert_frame_equal(tables[0].drop(effect), whole.drop(effect), check_exact=True)
    assert_frame_equal(tables[0].select(effect), whole.select(effect), rel_tol=1e-12)
    per_row_reference(whole.filter(pl.col("status").is_null()), config)


def test_list_columns_come_in_chunks_of_their_own_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.measure.drift as drift_module
    from pipeline.write.reports.summary import bins_of

    baseline, current = ragged_tables(np.random.default_rng(8), [2, 5, 9, 3], windows=3)
    aligned = align(baseline, current)
    whole = compute_drift(aligned, DriftConfig())  # 12 rows: one chunk
    monkeypatch.setattr(drift_module, "LIST_CHUNK_ROWS", 5)
    chunked = compute_drift(aligned, DriftConfig())
    # the same lists, cut at 5 and 10 rows (polars writes chunks of their own rows faster
    # than one chunk of all rows)
    assert_frame_equal(chunked, whole, check_exact=True)
    for name in ("bins", "top_bins"):
        assert [c.len() for c in chunked[name].get_chunks()] == [5, 5, 2]
    # the reports take some rows' bins, in the order asked, without joining the chunks
    rows = pl.Series([11, 0, 6, 0], dtype=pl.UInt32)
    assert bins_of(chunked)(rows).to_list() == whole["bins"].gather(rows).to_list()
