"""Building, writing and reading baseline profiles."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.binning import MISSING, OTHER
from pipeline.errors import ConfigError, InputError
from pipeline.profile import METADATA_KEY, Profile, build_profile, read_profile, write_profile
from pipeline.readers import scan_raw
from tests.test_binning import as_counts, naive_categorical, naive_numeric

DATA = Path(__file__).parents[1] / "data"


def numeric_bins(profile: Profile, feature: str) -> pl.DataFrame:
    return profile.table.filter(pl.col("feature") == feature, pl.col("lower").is_not_null())


def interior_edges(profile: Profile, feature: str) -> list[float]:
    return numeric_bins(profile, feature)["lower"].to_list()[1:]


def test_quantile_edges_equal_numpy_nearest_quantiles() -> None:
    # 1001 distinct values: (n - 1) * i / 20 is a whole number, so "nearest" is unambiguous
    x = np.random.default_rng(0).normal(size=1001)
    profile = build_profile(pl.LazyFrame({"x": x}), bins=20)
    expected = np.quantile(x, np.arange(1, 20) / 20, method="nearest")
    assert interior_edges(profile, "x") == expected.tolist()
    bins = numeric_bins(profile, "x")
    assert bins["lower"][0] == -math.inf
    assert bins["upper"][-1] == math.inf
    assert (bins["lower"][1:] == bins["upper"][:-1]).all()  # contiguous


def test_uniform_edges_span_the_finite_range() -> None:
    x = [0.0, 1.0, 10.0, math.inf, None, math.nan]
    profile = build_profile(pl.LazyFrame({"x": x}), strategy="uniform", bins=5)
    assert interior_edges(profile, "x") == np.linspace(0, 10, 6)[1:-1].tolist()
    assert profile.metadata["features"]["x"] == {
        "kind": "numeric", "edges": "uniform", "min": 0.0, "max": 10.0, "n_bins": 6,
        "n_rows": 6, "n_missing": 2}


def test_fixed_edges_get_open_tails() -> None:
    scores = np.random.default_rng(1).uniform(size=500)
    edges = [i / 10 for i in range(11)]
    profile = build_profile(pl.LazyFrame({"score": scores, "y": scores}),
                            fixed_edges={"score": edges})
    assert interior_edges(profile, "score") == edges
    assert numeric_bins(profile, "score")["count"].sum() == 500
    assert profile.metadata["features"]["score"]["edges"] == "fixed"
    assert profile.metadata["features"]["y"]["edges"] == "quantile"


@pytest.mark.parametrize("edges", [[], [0.5, 0.2], [0.0, math.inf]])
def test_bad_fixed_edges(edges: list[float]) -> None:
    with pytest.raises(ConfigError, match=r"fixed_edges\['s'\]: give finite"):
        build_profile(pl.LazyFrame({"s": [0.1, 0.2]}), fixed_edges={"s": edges})


def test_fixed_edges_for_a_text_column() -> None:
    with pytest.raises(ConfigError, match=r"fixed_edges\['c'\]: not a numeric feature"):
        build_profile(pl.LazyFrame({"c": ["a"]}), fixed_edges={"c": [0.0, 1.0]})


def test_constant_column_gets_a_point_bin() -> None:
    profile = build_profile(pl.LazyFrame({"f": [2.5] * 10, "i": [7] * 10}))
    f = numeric_bins(profile, "f")
    assert f["bin"].to_list() == ["[-inf, 2.5)", "[2.5, 2.5]", "(2.5, inf)"]
    assert f["count"].to_list() == [0.0, 10.0, 0.0]
    # whole numbers: the point bin is [c, c + 1)
    assert numeric_bins(profile, "i")["bin"].to_list() == ["[-inf, 7)", "[7, 8)", "[8, inf)"]


def test_zero_inflated_feature_keeps_the_zeros_apart() -> None:
    x = np.concatenate([np.zeros(600), np.random.default_rng(2).exponential(size=400)])
    profile = build_profile(pl.LazyFrame({"x": x}), bins=10)
    bins = numeric_bins(profile, "x").filter(pl.col("count") > 0)
    assert bins.row(0, named=True)["bin"] == "[0, 0]"
    assert bins["count"][0] == 600.0


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_all_null_columns_have_everything_in_missing(strategy: str) -> None:
    frame = pl.LazyFrame({"x": [None, None], "c": [None, None]},
                         schema={"x": pl.Float64, "c": pl.String})
    table = build_profile(frame, strategy=strategy).table  # type: ignore[arg-type]
    assert table.select("feature", "bin", "count").rows() == [
        ("x", "[-inf, inf)", 0.0), ("x", MISSING, 2.0),
        ("c", OTHER, 0.0), ("c", MISSING, 2.0)]


def test_feature_selection_by_type_and_exclude() -> None:
    frame = pl.LazyFrame({
        "id": [1, 2], "ts": [datetime(2024, 1, 1)] * 2, "flag": [True, False],
        "score": [0.1, 0.2], "tags": [["a"], ["b"]], "kind": ["u", "v"],
        "cat": pl.Series(["p", "q"], dtype=pl.Categorical)})
    profile = build_profile(frame, exclude=["id", "not_a_column"])
    kinds = dict(profile.table.select("feature", "kind").unique(maintain_order=True).rows())
    assert kinds == {"flag": "categorical", "score": "numeric", "kind": "categorical",
                     "cat": "categorical"}
    assert profile.features == list(kinds)
    flag = profile.table.filter(feature="flag")["bin"].to_list()
    assert sorted(flag[:2]) == ["false", "true"]


def test_bad_feature_requests() -> None:
    frame = pl.LazyFrame({"ts": [datetime(2024, 1, 1)], "x": [1.0]})
    with pytest.raises(InputError, match=r"file 'base.parquet', column 'nope': baseline lacks"):
        build_profile(frame, features=["x", "nope"], source="base.parquet")
    with pytest.raises(InputError, match=r"column 'ts': type Datetime.* cannot be a feature"):
        build_profile(frame, features=["ts"], source="base.parquet")
    with pytest.raises(InputError, match=r"base.parquet': no feature columns"):
        build_profile(frame.select("ts"), source="base.parquet")
    with pytest.raises(ConfigError, match="strategy"):
        build_profile(frame, strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bins=1"):
        build_profile(frame, bins=1)


def test_metadata_and_histograms() -> None:
    profile = build_profile(pl.LazyFrame({"x": [1.0, 2.0, None], "c": ["a", None, "b"]}),
                            source="base.parquet", bins=4, top_k=3)
    meta = profile.metadata
    assert {k: meta[k] for k in ("schema_version", "source", "strategy", "bins", "top_k",
                                 "row_count")} == {
        "schema_version": 2, "source": "base.parquet", "strategy": "quantile", "bins": 4,
        "top_k": 3, "row_count": 3}
    assert meta["segments"] == [] and meta["segment_rows"] == []
    assert datetime.fromisoformat(meta["created_at"]).utcoffset().total_seconds() == 0
    assert meta["features"]["c"]["n_missing"] == 1
    assert meta["features"]["c"]["n_categories"] == 2
    hist = profile.histograms()
    assert hist.columns == ["feature", "bin", "count", "lower", "upper"]
    assert hist.group_by("feature").agg(pl.col("count").sum()).sort("feature").rows() == [
        ("c", 3.0), ("x", 3.0)]


# --- persistence ---------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True), st.none()), min_size=1, max_size=40),
       st.lists(st.one_of(st.text(max_size=4), st.none()), min_size=1, max_size=40),
       st.lists(st.sampled_from(["", "a", "b", None]), min_size=1, max_size=3))
def test_write_read_round_trip_is_exact(tmp_path_factory: pytest.TempPathFactory,
                                        xs: list, cs: list, regions: list) -> None:
    frame = pl.DataFrame({"x": xs}, schema={"x": pl.Float64}).join(
        pl.DataFrame({"c": cs}, schema={"c": pl.String}), how="cross")
    frame = frame.with_columns(region=pl.Series(  # a segment column with a null value
        [regions[i % len(regions)] for i in range(frame.height)], dtype=pl.String)).lazy()
    segments = ["region"] if len(regions) > 1 else []  # also unsegmented profiles
    profile = build_profile(frame, bins=6, top_k=3, segments=segments, source="round trip")
    path = tmp_path_factory.mktemp("profile") / "profile.parquet"
    write_profile(profile, path)
    back = read_profile(path)
    assert back.table.equals(profile.table)  # incl. +-inf edges and nulls
    assert back.metadata == profile.metadata
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_plain_parquet_is_not_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pl.DataFrame({"feature": ["x"]}).write_parquet(path)
    with pytest.raises(InputError, match=r"plain.parquet': not a kl-drift profile"):
        read_profile(path)


def test_newer_profile_schema_is_refused(tmp_path: Path) -> None:
    profile = build_profile(pl.LazyFrame({"x": [1.0, 2.0]}))
    path = tmp_path / "p.parquet"
    write_profile(Profile(profile.table, profile.metadata | {"schema_version": 99}), path)
    assert json.loads(pq.read_schema(path).metadata[METADATA_KEY])["schema_version"] == 99
    with pytest.raises(InputError, match=r"p.parquet'.*schema_version 99.*upgrade"):
        read_profile(path)


def test_missing_or_corrupt_profile_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.parquet': profile file not found"):
        read_profile(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"bad.parquet': cannot read it as Parquet"):
        read_profile(tmp_path / "bad.parquet")


def test_hand_edited_bins_are_refused(tmp_path: Path) -> None:
    profile = build_profile(pl.LazyFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    gap = profile.table.filter(~((pl.col("feature") == "x") & (pl.col("bin_index") == 1)))
    path = tmp_path / "edited.parquet"
    write_profile(Profile(gap, profile.metadata), path)
    with pytest.raises(InputError, match=r"edited.parquet', feature 'x': profile bins are "
                                         r"malformed"):
        read_profile(path)
