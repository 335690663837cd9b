"""pipeline.bins.row_sample: seeded bottom-k samples, merging, pooling, storage with the profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from scipy import stats

from pipeline.bins import row_sample
from pipeline.bins.profile import build_profile, read_profile, write_profile
from pipeline.bins.row_sample import (
    SAMPLE_ENTRY,
    SAMPLE_KEY,
    RowSample,
    keep_smallest,
    row_keys,
    sample_baseline,
    sample_rows,
)
from pipeline.errors import InputError
from pipeline.labels import segment_column

REGION = segment_column("region")


def test_keys_are_uniform_and_independent_of_batching() -> None:
    keys = row_keys(3, 0, 200_000)
    assert np.array_equal(np.concatenate([row_keys(3, 0, 70_000), row_keys(3, 70_000, 130_000)]),
                          keys)
    uniform = keys / 2.0**64
    assert stats.kstest(uniform, "uniform").pvalue > 1e-3
    # consecutive rows are not correlated, and another seed gives other keys
    assert abs(np.corrcoef(uniform[:-1], uniform[1:])[0, 1]) < 0.01
    assert np.mean(row_keys(4, 0, 1000) == keys[:1000]) == 0


def test_every_row_is_equally_likely_to_be_sampled() -> None:
    # 40 rows, samples of 10 under 400 seeds: each row is in 10/40 of them
    frame = pl.LazyFrame({"x": range(40)})
    hits = np.zeros(40)
    for seed in range(400):
        hits[sample_rows(frame, groups=[], size=10, seed=seed, source="t").collect()["x"]] += 1
    assert stats.chisquare(hits).pvalue > 1e-3
    # fault injection: keeping the first rows instead is caught by the same test
    assert stats.chisquare(np.r_[np.full(10, 400.0), np.zeros(30)] + 1e-9).pvalue < 1e-3


def test_sample_is_reproducible_and_independent_of_batch_size(monkeypatch) -> None:
    frame = pl.LazyFrame({"g": ["a", "b", "c"] * 1000, "x": range(3000)})
    whole = sample_rows(frame, groups=["g"], size=50, seed=9, source="t")
    monkeypatch.setattr("pipeline.read.sources.BATCH_ROWS", 7)
    batched = sample_rows(frame, groups=["g"], size=50, seed=9, source="t")
    assert_frame_equal(whole.collect(), batched.collect())
    assert_frame_equal(whole.totals, batched.totals)
    assert whole.totals["rows"].to_list() == [1000, 1000, 1000]
    assert whole.collect().group_by("g").len()["len"].to_list() == [50] * 3


@given(st.integers(1, 199), st.integers(1, 30), st.integers(0, 2**32))
def test_samples_of_parts_merge_into_the_sample_of_the_whole(cut: int, size: int,
                                                               seed: int) -> None:
    frame = pl.LazyFrame({"g": [str(i % 3) for i in range(200)], "x": range(200)})
    whole = sample_rows(frame, groups=["g"], size=size, seed=seed, source="t")
    head = sample_rows(frame.slice(0, cut), groups=["g"], size=size, seed=seed, source="t")
    tail = sample_rows(frame.slice(cut), groups=["g"], size=size, seed=seed, source="t",
                       start=cut)
    merged = head.merge(tail)
    assert_frame_equal(merged.collect(), whole.collect())
    assert_frame_equal(merged.totals, whole.totals)


def test_pooled_segments_give_a_uniform_sample_of_the_pooled_rows() -> None:
    # a big segment (sampled) and a small one (kept whole): pooled, every row of either
    # segment must be equally likely, so the small one must not be over-represented
    frame = pl.LazyFrame({"s": ["big"] * 300 + ["small"] * 30, "x": range(330)})
    hits = np.zeros(330)
    sizes = []
    for seed in range(300):
        pooled = sample_rows(frame, groups=["s"], size=40, seed=seed, source="t").pooled([])
        rows = pooled.collect()
        sizes.append(rows.height)
        hits[rows["x"]] += 1
    assert stats.chisquare(hits).pvalue > 1e-3
    # rows up to the big segment's 40th key: about 40 * 330 / 300 = 44, capped at 40 again
    assert set(sizes) == {40}
    # the naive union (every sampled row of both segments) is caught by the same test
    union = np.r_[np.full(300, 40 / 300), np.ones(30)] * 300
    assert stats.chisquare(union, np.full(330, union.mean())).pvalue < 1e-3


def test_pooling_keeps_the_requested_segments_and_their_totals() -> None:
    frame = pl.LazyFrame({"a": ["x", "y"] * 50, "b": ["1"] * 50 + ["2"] * 50,
                          "v": range(100)})
    sample = sample_rows(frame, groups=["a", "b"], size=5, seed=1, source="t")
    by_a = sample.pooled(["a"])
    assert by_a.groups == ["a"]
    assert by_a.totals.to_dicts() == [{"a": "x", "rows": 50}, {"a": "y", "rows": 50}]
    assert set(by_a.collect().columns) == {"a", "v", SAMPLE_KEY}
    assert sample.pooled(["a", "b"]) is sample
    with pytest.raises(InputError, match=r"column 'c'.*not split by this column"):
        sample.pooled(["c"])


def test_keep_smallest_keeps_the_smallest_keys_per_group() -> None:
    rows = pl.DataFrame({"g": ["a", "a", "a", "b"], SAMPLE_KEY: [5, 1, 3, 2]},
                        schema_overrides={SAMPLE_KEY: pl.UInt64})
    kept = keep_smallest(rows, ["g"], 2)
    assert kept.rows() == [("a", 1), ("a", 3), ("b", 2)]
    assert keep_smallest(rows, [], 1).rows() == [("a", 1)]


# --- stored with the profile ----------------------------------------------------------------
@pytest.fixture
def baseline() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"region": rng.choice(["EU", "US"], 2000), "x": rng.normal(size=2000),
                         "flag": rng.random(2000) < 0.3,
                         "c": rng.choice(["u", "v", None], 2000)})


def _profile_with_sample(baseline: pl.DataFrame, size: int = 100):
    profile = build_profile(baseline.lazy(), segments=["region"])
    sample = sample_baseline(baseline.lazy(), profile.layout, segments=["region"], size=size,
                             seed=5, source="baseline")
    return type(profile)(profile.table, profile.metadata, sample)


def test_baseline_sample_keeps_every_feature_typed_like_the_profile(baseline) -> None:
    profile = _profile_with_sample(baseline)
    rows = profile.sample.collect()
    # segment columns under their private names, like the profile table's
    assert rows.schema == pl.Schema({REGION: pl.String, "x": pl.Float64, "flag": pl.String,
                                     "c": pl.String, SAMPLE_KEY: pl.UInt64})
    assert rows.group_by(REGION).len().sort(REGION)["len"].to_list() == [100, 100]
    # sampled rows are real baseline rows
    original = baseline.rename({"region": REGION}).with_columns(pl.col("flag").cast(pl.String))
    assert rows.join(original, on=[REGION, "x", "flag", "c"], how="anti",
                     nulls_equal=True).is_empty()


def test_profile_stores_its_sample_next_to_it_and_reads_it_back(baseline, tmp_path) -> None:
    profile = _profile_with_sample(baseline)
    path = tmp_path / "profile.parquet"
    write_profile(profile, path)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    assert len(siblings) == 2 and siblings[1].startswith("profile.parquet.sample-")
    back = read_profile(path)
    assert back.metadata[SAMPLE_ENTRY]["file"] == siblings[1]
    assert_frame_equal(back.table, profile.table)  # the profile table itself is unchanged
    assert_frame_equal(back.sample.collect(), profile.sample.collect())
    assert_frame_equal(back.sample.totals, profile.sample.totals)
    assert (back.sample.size, back.sample.seed, back.sample.groups) == (100, 5, [REGION])


def test_rewriting_a_profile_replaces_its_sample_file(baseline, tmp_path) -> None:
    path = tmp_path / "profile.parquet"
    write_profile(_profile_with_sample(baseline), path)
    first = read_profile(path)
    write_profile(first, path)  # a read profile carries its sample along
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 2 and read_profile(path).metadata[SAMPLE_ENTRY]["file"] in names
    plain = build_profile(baseline.lazy(), segments=["region"])
    write_profile(plain, path)  # a profile without sample leaves no stale sample behind
    assert [p.name for p in tmp_path.iterdir()] == ["profile.parquet"]
    assert read_profile(path).sample is None


def test_missing_or_mismatched_sample_file_is_a_one_line_error(baseline, tmp_path) -> None:
    path = tmp_path / "profile.parquet"
    write_profile(_profile_with_sample(baseline), path)
    sample_file = next(p for p in tmp_path.iterdir() if p != path)
    pl.DataFrame({"x": [1.0]}).write_parquet(sample_file)
    with pytest.raises(InputError, match="has 1 rows, the profile names one of 200"):
        read_profile(path)
    sample_file.unlink()
    with pytest.raises(InputError, match=r"baseline sample .* is missing next to it"):
        read_profile(path)


def test_sample_entry_cannot_point_outside_the_profile_folder(tmp_path: Path) -> None:
    meta = {SAMPLE_ENTRY: {"file": "../x.parquet", "rows": 1, "size": 1, "seed": 0,
                           "groups": [], "totals": [{"rows": 1}]}}
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="malformed joint_sample entry"):
        row_sample.read_sample(tmp_path / "sub" / "profile.parquet", meta)


def test_row_sample_merge_refuses_different_settings() -> None:
    frame = pl.LazyFrame({"x": [1, 2, 3]})
    one = sample_rows(frame, groups=[], size=2, seed=0, source="t")
    other = sample_rows(frame, groups=[], size=2, seed=1, source="t")
    with pytest.raises(ValueError, match="same groups, size and seed"):
        one.merge(other)
    assert isinstance(one, RowSample)
