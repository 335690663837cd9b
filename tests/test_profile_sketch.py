"""The streamed profile builder: sketches of parts merge into the profile of all rows,
counts and extremes stay exact, and the metadata states the edges' realised rank error."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.bins import sketch
from pipeline.bins.profile import Profile, build_profile
from pipeline.bins.sketch import (
    NumericSketch,
    _bernoulli_positions,
    rank_error_bound,
    sample_capacity,
    sketch_rows,
)

numbers = st.one_of(st.floats(-50, 50), st.integers(-3, 3).map(float), st.none(),
                    st.sampled_from([math.nan, math.inf, -math.inf]))
rows = st.lists(st.tuples(numbers, st.one_of(st.sampled_from("abcd"), st.none()),
                          st.sampled_from(["EU", "US", None])), min_size=1, max_size=80)


def _frame(data: list) -> pl.DataFrame:
    return pl.DataFrame(data, schema={"x": pl.Float64, "c": pl.String, "region": pl.String},
                        orient="row")


def _without_time(profile: Profile) -> dict:
    return {k: v for k, v in profile.metadata.items() if k != "created_at"}


@settings(max_examples=40, deadline=None)
@given(data=rows, cuts=st.lists(st.integers(0, 80), max_size=4),
       strategy=st.sampled_from(["quantile", "uniform"]))
def test_profiles_of_parts_merge_into_the_one_pass_profile(data: list, cuts: list,
                                                            strategy: str) -> None:
    """Below the sample capacity the merged profile is the one-pass profile exactly: bins,
    per-segment counts, category counts, metadata."""
    frame = _frame(data)
    bounds = [0, *sorted(min(c, frame.height) for c in cuts), frame.height]
    parts = [frame.slice(a, b - a).lazy() for a, b in itertools.pairwise(bounds)]
    options = {"segments": ["region"], "bins": 5, "strategy": strategy}
    whole = build_profile(frame.lazy(), **options)
    merged = build_profile(parts, **options)
    assert_frame_equal(merged.table, whole.table)
    assert _without_time(merged) == _without_time(whole)
    # and the edges are the exact quantiles (the profile built before sketches)
    if strategy == "quantile" and whole.metadata["features"]["x"]["min"] is not None:
        assert whole.metadata["features"]["x"]["rank_error"] == 0.0


def _true_shares(values: np.ndarray, edge: float) -> tuple[float, float]:
    """Shares of the values below and at-or-below ``edge``."""
    return float(np.mean(values < edge)), float(np.mean(values <= edge))


def _worst_rank_error(values: np.ndarray, edges: list[float], bins: int) -> float:
    """Largest rank error of quantile edges at levels 1/bins.. against the exact shares."""
    worst = 0.0
    if not len(values):
        return worst
    for j, edge in enumerate(edges, start=1):
        below, at_most = _true_shares(values, edge)
        worst = max(worst, below - j / bins, j / bins - at_most)
    return worst


def _baseline(n: int, seed: int) -> np.ndarray:
    """Sorted values (the worst order for a sampler biased to early rows) with a point mass
    at zero, whole numbers and a long tail."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(n // 5), rng.integers(-5, 5, n // 5).astype(float),
             rng.lognormal(size=n - 2 * (n // 5))]
    return np.sort(np.concatenate(parts))


def _sampled_quantiles(values: np.ndarray, bins: int) -> list[float]:
    """The quantiles build_profile takes from the rows it reads (the same seed and rows)."""
    capacity = sample_capacity(1)
    return sketch_rows(pl.LazyFrame({"x": values}), {"x": "numeric"}, [], capacity=capacity,
                       fraction=min(1.0, capacity / len(values))).stats(bins, 0, 1, ["x"])["x\0q"]


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_sampled_edges_state_their_realised_rank_error(monkeypatch: pytest.MonkeyPatch,
                                                       order: str) -> None:
    """A baseline 100x the sample, read in spread slices: the stated rank error is the
    brute-force rank error of the edges, within the bound of a uniform sample of that size;
    the counts are exact (a plain count against the edges); parts merge into a profile
    with the same guarantee."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    values = _baseline(200_000, seed=1)
    if order == "shuffled":
        values = np.random.default_rng(3).permutation(values)
    bins = 10
    profile = build_profile(pl.LazyFrame({"x": values}), bins=bins)
    stated = profile.metadata["features"]["x"]["rank_error"]
    worst = _worst_rank_error(values, _sampled_quantiles(values, bins), bins)
    assert stated == pytest.approx(worst, abs=1e-12)
    assert 0 < stated <= rank_error_bound(len(values), 2_000, bins - 1) < 0.1
    table = profile.table.filter(pl.col("bin") != "__missing__")
    expected = [np.count_nonzero((values >= lo) & (values < hi))
                for lo, hi in table.select("lower", "upper").iter_rows()]
    assert table["count"].to_list() == expected
    merged = build_profile([pl.LazyFrame({"x": part}) for part in np.array_split(values, 3)],
                           bins=bins)
    assert merged.metadata["features"]["x"]["rank_error"] <= rank_error_bound(
        len(values), 2_000, bins - 1)
    assert merged.table["count"].sum() == len(values)


def test_unrepresentative_slices_fall_back_to_a_uniform_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows whose order repeats with the slices' spacing (every slice reads the smallest
    values): the edges of the rows read would be far off, so the builder samples every
    row instead and the stated error is within the uniform sample's bound."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    n, bins = 200_000, 10
    values = (np.arange(n) % (n // sketch.SLICES)).astype(np.float64) + 0.5
    read = _worst_rank_error(values, _sampled_quantiles(values, bins), bins)
    profile = build_profile(pl.LazyFrame({"x": values}), bins=bins)
    stated = profile.metadata["features"]["x"]["rank_error"]
    assert stated <= rank_error_bound(n, 2_000, bins - 1) < 0.1 < read
    assert profile.table["count"].sum() == n


def test_extremes_come_from_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows read for the sample miss the minimum, the -inf and the one fraction of a
    whole-number feature: the metadata and the point bins still follow every row (the
    fraction makes point bins end at the next float, not at v + 1)."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    n = 200_000
    values = np.arange(n) % 4.0  # whole numbers 0..3, every one a point bin
    values[n // 64] = -1e9
    values[n // 64 + 1] = 2.5
    values[n // 64 + 2] = -np.inf
    profile = build_profile(pl.LazyFrame({"x": values}), bins=10)
    detail = profile.metadata["features"]["x"]
    assert (detail["min"], detail["max"]) == (-1e9, 3.0)
    numeric = profile.table.filter(pl.col("bin") != "__missing__")
    points = [float(v) for v in (0.0, 1.0, 2.0, 3.0) for v in (v, np.nextafter(v, np.inf))]
    assert numeric["lower"].to_list()[1:] == points
    expected = [np.count_nonzero((values >= lo) & (values < hi))
                for lo, hi in numeric.select("lower", "upper").iter_rows()]
    assert numeric["count"].to_list() == expected
    assert detail["rank_error"] == pytest.approx(
        _worst_rank_error(values[np.isfinite(values)], _sampled_quantiles(values, 10), 10),
        abs=1e-12)


def test_rank_error_bound_holds_over_many_samples() -> None:
    """Across 40 seeds the worst edge error stays within the bound, and the bound is not
    vacuous: the observed errors come within a factor of ten of it."""
    values = _baseline(50_000, seed=2)
    bins, capacity = 20, 1_000
    stated = rank_error_bound(len(values), capacity, bins - 1)
    worst = 0.0
    for seed in range(40):
        got = sketch_rows(pl.LazyFrame({"x": values}), {"x": "numeric"}, [],
                          capacity=capacity, seed=seed).stats(bins, 0, 1, ["x"])["x\0q"]
        worst = max(worst, _worst_rank_error(values, got, bins))
    assert stated / 10 < worst <= stated


def test_the_sample_is_uniform_over_batches_and_parts() -> None:
    """Every value is equally likely to be sampled, whether it came early or late, in the
    first part or the last: inclusion counts over 300 seeds pass a chi-square test."""
    n, capacity, seeds = 3_000, 100, 300
    values = np.arange(n, dtype=np.float64)
    included = np.zeros(n)
    for seed in range(seeds):
        rng = np.random.Generator(np.random.SFC64(seed))
        first, second = NumericSketch(capacity), NumericSketch(capacity)
        for chunk in np.array_split(values[:2_000], 7):  # many batches
            first.add(chunk, rng)
        second.add(values[2_000:], rng)
        sample = first.merge(second).sample()
        assert len(sample) == capacity and len(np.unique(sample)) == capacity
        included[sample.astype(int)] += 1
    # 30 groups of 100 consecutive values: expected seeds * capacity / 30 each
    groups = included.reshape(30, -1).sum(axis=1)
    expected = seeds * capacity / 30
    chi2 = float(((groups - expected) ** 2 / expected).sum())
    assert chi2 < 58.3  # 0.999 quantile of chi-square with 29 degrees of freedom


def test_bernoulli_positions_have_the_asked_rate() -> None:
    rng = np.random.default_rng(7)
    hits = np.zeros(500)
    for _ in range(2_000):
        positions = _bernoulli_positions(500, 0.1, rng)
        assert np.all(np.diff(positions) > 0) and (len(positions) == 0 or positions[-1] < 500)
        hits[positions] += 1
    assert abs(hits.mean() / 2_000 - 0.1) < 0.003
    assert abs(hits[:50].mean() - hits[-50:].mean()) / 2_000 < 0.02  # first ≈ last


def test_extremes_integrality_and_categories_are_exact() -> None:
    frame = pl.LazyFrame({"x": [2.0, None, math.inf, -7.0, 3.0], "c": ["a", None, "b", "a", "a"]})
    got = sketch_rows(frame, {"x": "numeric", "c": "categorical"}, [], capacity=1)
    x = got.numeric["x"]
    assert (x.low, x.high, x.integral, x.finite, len(x.sample())) == (-7.0, 3.0, True, 3, 1)
    assert x.neg_inf == 0  # +inf only
    stats = got.stats(4, 10, 1, ["x"])
    assert stats["c\0top"] == ["a", "b"] and stats["c\0distinct"] == 2
    watched = NumericSketch(0, [2.0, 5.0])
    watched.observe(np.array([2.0, -np.inf, 2.0, np.nan, 5.0, -np.inf]))
    assert watched.ties.tolist() == [2, 1] and watched.neg_inf == 2 and watched.finite == 3


def test_rank_error_bound_closed_form() -> None:
    assert rank_error_bound(10, 10, 19) == 0.0
    assert rank_error_bound(10, 0, 19) == 1.0
    expected = math.sqrt(math.log(4 * 19 / 1e-6) / (2 * 10_000)) + 1e-4
    assert rank_error_bound(10**6, 10_000, 19) == pytest.approx(expected)


#: SPREAD_ROWS forcing each way of reading a share of the rows (spread_rows)
READS = {"slices": 0, "one filtered pass": 2**62}


@pytest.mark.parametrize("spread_rows", READS.values(), ids=READS.keys())
def test_spread_rows_reads_disjoint_slices_from_first_to_last_row(
        spread_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch, "SPREAD_ROWS", spread_rows)
    rows, take = 10_000, 640
    got = sketch.spread_rows(pl.LazyFrame({"i": np.arange(rows)}), rows, take)
    index = got.collect()["i"].to_numpy()
    starts = index[np.flatnonzero(np.diff(index, prepend=-2) != 1)]
    assert len(index) == take == len(np.unique(index))
    assert starts.tolist() == [i * rows // sketch.SLICES for i in range(sketch.SLICES)]


@given(st.integers(1, 3_000), st.data())
@settings(max_examples=150, deadline=None)
def test_one_filtered_pass_reads_the_slices_rows(rows: int, data: st.DataObject) -> None:
    """The filter on row positions keeps exactly the slices' rows, in order, whatever the
    rows and the share (slices of uneven starts, slices of one row, every row)."""
    take = data.draw(st.integers(1, rows))
    frame = pl.LazyFrame({"i": np.arange(rows)})
    got = {}
    for name, spread_rows in READS.items():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sketch, "SPREAD_ROWS", spread_rows)
            got[name] = sketch.spread_rows(frame, rows, take).collect()["i"].to_list()
    assert got["one filtered pass"] == got["slices"]


def _plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plans of the queries collected in batches from now on, as polars runs them (with
    the optimizations it is given)."""
    plans: list[str] = []
    collect_batches = pl.LazyFrame.collect_batches

    def spy(self: pl.LazyFrame, **kwargs: Any) -> Any:
        plans.append(self.explain(optimizations=kwargs.get("optimizations",
                                                             pl.QueryOptFlags())))
        return collect_batches(self, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect_batches", spy)
    return plans


def _sliced_file(path: Path) -> pl.LazyFrame:
    pl.DataFrame({"x": np.arange(64_000.0), "y": np.arange(64_000.0) % 7,
                  "c": np.arange(64_000) % 3}).with_columns(
        pl.col("c").cast(pl.String)).write_parquet(path, row_group_size=4_000)
    return pl.scan_parquet(path)


def test_slices_are_read_each_on_their_own(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Read in slices, a share of the rows comes from each slice's own pages: with the
    select the slices share computed once for all of them (polars' common-subplan cache),
    every row of it was held in memory (a 50M x 20 profile took 7.5 GB)."""
    monkeypatch.setattr(sketch, "SPREAD_ROWS", 0)
    plans = _plans(monkeypatch)
    got = sketch_rows(_sliced_file(tmp_path / "base.parquet"),
                      {"x": "numeric", "y": "numeric", "c": "categorical"}, [], fraction=0.1)
    sliced = [plan for plan in plans if "SLICE" in plan]
    assert len(sliced) == 1 and sliced[0].count("SLICE") == sketch.SLICES
    assert "CACHE" not in sliced[0]
    assert got.rows == 64_000 and got.numeric["x"].finite == 6_400  # 32 slices of 200 rows


def test_filtered_rows_are_read_in_one_pass_of_few_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to SPREAD_ROWS rows, the share is filtered from one pass over every row (a slice
    decodes a page of every column it reads: 32 of them cost more than a pass over a
    small table), in passes of at most FILTERED_FEATURES numeric features (polars decodes
    a row group of every column a pass reads at once)."""
    monkeypatch.setattr(sketch, "FILTERED_FEATURES", 1)
    plans = _plans(monkeypatch)
    got = sketch_rows(_sliced_file(tmp_path / "base.parquet"),
                      {"x": "numeric", "y": "numeric", "c": "categorical"}, [], fraction=0.1)
    filtered = [plan for plan in plans if "FILTER" in plan]
    assert len(filtered) == 2 and not any("SLICE" in plan for plan in plans)
    assert all(plan.count("SCAN") == 1 for plan in filtered)
    assert got.rows == 64_000 and got.numeric["y"].finite == 6_400


def test_both_ways_of_reading_a_share_give_one_profile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices or one filtered pass: the same rows in the same order, so the same sample and
    profile (edges, counts and metadata)."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    rng = np.random.default_rng(9)
    frame = pl.LazyFrame({"x": rng.gamma(2.0, size=150_000), "y": rng.normal(size=150_000),
                          "c": rng.choice(["a", "b", "c"], size=150_000),
                          "region": rng.choice(["EU", "US"], size=150_000)})
    profiles = []
    for spread_rows in READS.values():
        monkeypatch.setattr(sketch, "SPREAD_ROWS", spread_rows)
        profiles.append(build_profile(frame, segments=["region"]))
    assert_frame_equal(profiles[0].table, profiles[1].table)
    assert _without_time(profiles[0]) == _without_time(profiles[1])
    assert profiles[0].metadata["features"]["x"]["rank_error"] > 0  # a share was read


def test_rows_read_without_a_finite_value_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slices hold only NaN: the edges come from a sample of every row instead."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    n = 200_000
    values = np.random.default_rng(4).normal(size=n)
    values[(np.arange(n) % (n // sketch.SLICES)) < 100] = np.nan
    profile = build_profile(pl.LazyFrame({"x": values}), bins=10)
    finite = np.count_nonzero(np.isfinite(values))
    assert profile.metadata["features"]["x"]["n_bins"] == 11
    assert profile.metadata["features"]["x"]["rank_error"] <= rank_error_bound(
        finite, 2_000, 9)


def test_a_tied_edge_value_is_counted_for_an_exact_rank_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An atom of 3% at 0.5 among uniform values: the edge at level 0.5 is 0.5 without a
    point bin of its own; its rows are counted, so the stated error is the true one (about
    0, where ``F(< 0.5)`` alone would give 1.5%)."""
    monkeypatch.setattr(sketch, "SAMPLE_ROWS", 2_000)
    values = np.random.default_rng(5).uniform(size=200_000)
    values[np.random.default_rng(6).choice(len(values), 6_000, replace=False)] = 0.5
    profile = build_profile(pl.LazyFrame({"x": values}), bins=10)
    quantiles = list(_sampled_quantiles(values, 10))
    assert quantiles.count(0.5) == 1
    assert profile.metadata["features"]["x"]["rank_error"] == pytest.approx(
        _worst_rank_error(values, quantiles, 10), abs=1e-12)


def test_only_sources_that_skip_rows_are_read_in_slices(tmp_path: Path) -> None:
    """Parquet and in-memory rows are sliced; a CSV or NDJSON reader would parse every row
    up to each slice, so those are sampled in one full pass."""
    frame = pl.DataFrame({"x": [1.0, 2.0]})
    frame.write_parquet(tmp_path / "a.parquet")
    frame.write_csv(tmp_path / "a.csv")
    frame.write_ndjson(tmp_path / "a.ndjson")
    parquet = pl.scan_parquet(tmp_path / "a.parquet")
    assert sketch.skips_rows(parquet) and sketch.skips_rows(frame.lazy())
    assert sketch.skips_rows(pl.concat([parquet, frame.lazy()]))
    assert not sketch.skips_rows(pl.scan_csv(tmp_path / "a.csv"))
    assert not sketch.skips_rows(pl.scan_ndjson(tmp_path / "a.ndjson"))
    assert not sketch.skips_rows(pl.concat([parquet, pl.scan_csv(tmp_path / "a.csv")]))


def test_exact_quantiles_state_no_rank_error() -> None:
    """Every value in the sample: the edges are the exact (nearest-rank) quantiles, 0 as a
    database states them, although level 0.8 of [0, 0, 0, 1] is taken at 0 (share at or
    below it 0.75)."""
    profile = build_profile(pl.LazyFrame({"x": [1.0, 0.0, 0.0, 0.0]}), bins=5)
    assert profile.metadata["features"]["x"]["rank_error"] == 0.0
