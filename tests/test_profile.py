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

from pipeline.bins.profile import (
    SCHEMA_VERSION,
    UNSEEN_WARNING,
    Profile,
    _malformed_features,
    build_profile,
    read_profile,
    write_profile,
)
from pipeline.errors import ConfigError, InputError
from pipeline.labels import MISSING, OTHER, public_segment_columns, segment_column
from pipeline.read.sources import PROFILE_METADATA_KEY, scan_raw
from tests.test_binning import as_counts, naive_categorical, naive_numeric

DATA = Path(__file__).parents[1] / "data"
ORIGIN = segment_column("origin")


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


def test_quantile_edges_are_baseline_values_between_ranks_too() -> None:
    # 1000 values: most quantile ranks fall between two values, where "nearest" picks one
    # of them and interpolation would make an edge no baseline row has
    x = np.random.default_rng(3).normal(size=1000)
    edges = interior_edges(build_profile(pl.LazyFrame({"x": x}), bins=20), "x")
    assert len(edges) == 19 and set(edges) <= set(x.tolist())


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


@pytest.mark.parametrize("edges", [[], [0.5, 0.2], [0.2, 0.2], [0.0, math.inf]])
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


def test_the_largest_float_repeated_keeps_the_open_top_bin() -> None:
    """Its point bin would end at the next float, inf: found by hypothesis in the round trip."""
    top = float(np.finfo(np.float64).max)
    profile = build_profile(pl.LazyFrame({"x": [top, 0.5] * 3}), bins=6)
    x = numeric_bins(profile, "x")
    assert x["lower"].to_list() == [-np.inf, 0.5, np.nextafter(0.5, np.inf), top]
    assert x["count"].to_list() == [0.0, 3.0, 0.0, 3.0]


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


def test_values_spelled_like_the_reserved_bins_are_not_categories() -> None:
    profile = build_profile(pl.LazyFrame({"c": ["a", "a", OTHER, MISSING, None]}))
    assert profile.table.select("bin", "count").rows() == [("a", 2.0), (OTHER, 2.0),
                                                           (MISSING, 1.0)]


@pytest.mark.parametrize(("rows", "warns"), [(19, True), (20, False)])
def test_the_unseen_share_warns_only_above_its_threshold(rows: int, warns: bool) -> None:
    # one category seen once: Good-Turing leaves 1 / rows of the mass to unseen categories
    values = ["a"] * (rows - 1) + ["b"]
    assert UNSEEN_WARNING == 1 / 20 and (1 / rows > UNSEEN_WARNING) == warns
    profile = build_profile(pl.LazyFrame({"c": values}))
    messages = profile.warnings(["c"])
    assert len(messages) == warns and all("baseline too small" in m for m in messages)


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
                            source="base.parquet", bins=4, max_categories=3)
    meta = profile.metadata
    assert {k: meta[k] for k in ("schema_version", "source", "strategy", "bins",
                                 "max_categories", "min_category_count", "row_count")} == {
        "schema_version": 3, "source": "base.parquet", "strategy": "quantile", "bins": 4,
        "max_categories": 3, "min_category_count": 1, "row_count": 3}
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
    profile = build_profile(frame, bins=6, max_categories=3, segments=segments, source="round trip")
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
    newer = SCHEMA_VERSION + 1  # the first version this one cannot know
    write_profile(Profile(profile.table, profile.metadata | {"schema_version": newer}), path)
    footer = pq.read_schema(path).metadata  # another reader sees it too
    assert json.loads(footer[PROFILE_METADATA_KEY.encode()])["schema_version"] == newer
    with pytest.raises(InputError, match=rf"p.parquet'.*schema_version {newer}.*upgrade"):
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
    # bin indices intact, but the first bin ends before the second begins: values between
    # them would fall in no bin
    first = (pl.col("feature") == "x") & (pl.col("bin_index") == 0)
    shortened = profile.table.with_columns(
        upper=pl.when(first).then(pl.col("upper") - 0.5).otherwise(pl.col("upper")))
    write_profile(Profile(shortened, profile.metadata), path)
    with pytest.raises(InputError, match=r"feature 'x': profile bins are malformed"):
        read_profile(path)


def _malformed_reference(layout: pl.DataFrame) -> set[str]:
    """The layout rules feature by feature, in plain Python (no segments)."""
    bad = set()
    for feature in layout["feature"].unique():
        bins = layout.filter(pl.col("feature") == feature).sort("bin_index", maintain_order=True)
        labels, kinds = bins["bin"].to_list(), set(bins["kind"])
        lower, upper = bins["lower"].to_list()[:-1], bins["upper"].to_list()[:-1]
        ok = bins["bin_index"].to_list() == list(range(bins.height)) and labels[-1] == MISSING
        ok = ok and len(set(labels)) == len(labels)
        if kinds == {"numeric"}:
            ok = ok and bool(lower) and lower[0] == -math.inf and upper[-1] == math.inf and all(
                a == b for a, b in zip(lower[1:], upper[:-1], strict=True))
        else:
            ok = ok and kinds == {"categorical"} and labels[-2:-1] == [OTHER]
        if not ok:
            bad.add(feature)
    return bad


def _edited(table: pl.DataFrame, row: int, edit: str) -> pl.DataFrame:
    if edit == "drop":
        return table.filter(pl.int_range(pl.len()) != row)
    column, value = {"index": ("bin_index", 7), "lower": ("lower", 0.5),
                     "upper": ("upper", 99.0), "other": ("bin", OTHER),
                     "kind": ("kind", "numeric"), "missing": ("bin", MISSING),
                     "label": ("bin", "a")}[edit]
    return table.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value))
                              .otherwise(pl.col(column)).cast(table.schema[column]).alias(column))


def test_malformed_bins_are_found_like_a_plain_reference() -> None:
    # every single hand edit of a valid layout, and every pair of dropped rows: each rule of
    # the layout is checked, for all features at once
    table = build_profile(pl.LazyFrame({"x": [1.0, 2.0, 3.0, 5.0], "y": [0.0, 0.0, 1.0, 9.0],
                                        "c": ["a", "b", "a", None]}), bins=3).table
    edits = ("drop", "index", "lower", "upper", "other", "kind", "missing", "label")
    cases = [_edited(table, row, edit) for row in range(table.height) for edit in edits]
    cases += [_edited(_edited(table, a, "drop"), b, "drop")
              for a in range(table.height) for b in range(table.height - 1)]
    only_missing = table.filter((pl.col("feature") != "c") | (pl.col("bin") == MISSING))
    cases.append(only_missing.with_columns(
        pl.when(pl.col("feature") == "c").then(0).otherwise("bin_index").cast(pl.Int32)
        .alias("bin_index")))
    assert sum(bool(_malformed_reference(case)) for case in cases) > len(cases) / 2
    for case in cases:
        assert set(_malformed_features(case, [])) == _malformed_reference(case)


# --- per-segment baselines -----------------------------------------------------------------

@pytest.fixture(scope="module")
def flights_baseline() -> pl.DataFrame:
    return pl.read_parquet(DATA / "flights_baseline.parquet")


@pytest.fixture(scope="module")
def by_origin() -> Profile:
    return build_profile(scan_raw(DATA / "flights_baseline.parquet"), exclude=["flight_id"],
                         segments=["origin"], source="flights")


def test_segment_counts_equal_a_group_by_reference(flights_baseline: pl.DataFrame,
                                                   by_origin: Profile) -> None:
    groups = flights_baseline.group_by("origin").agg("dep_delay", "distance", "carrier", "dest")
    assert groups.height == 3
    for origin, dep_delay, distance, carrier, dest in groups.iter_rows():
        rows = public_segment_columns(by_origin.histograms()).filter(origin=origin)
        for feature, values in (("dep_delay", dep_delay), ("distance", distance)):
            bins = by_origin.layout.filter(feature=feature)
            assert as_counts(rows, feature) == naive_numeric(values, bins)
        for feature, values in (("carrier", carrier), ("dest", dest)):
            bins = by_origin.layout.filter(feature=feature)
            assert as_counts(rows, feature) == naive_categorical(values, bins)
    assert by_origin.metadata["segments"] == ["origin"]
    expected = dict(flights_baseline.group_by("origin").len().iter_rows())
    assert {r["segment"]["origin"]: r["rows"] for r in by_origin.metadata["segment_rows"]} == (
        expected)


def test_segments_share_the_global_layout(flights_baseline: pl.DataFrame,
                                          by_origin: Profile) -> None:
    # bins come from the whole baseline, so pooling the segments gives the global profile
    global_ = build_profile(flights_baseline.lazy(), exclude=["flight_id", "origin"])
    assert by_origin.layout.equals(global_.table.drop("count"))
    assert by_origin.histograms([]).equals(global_.histograms())
    assert by_origin.features == global_.features
    assert "origin" not in by_origin.features  # a segment column is never a feature
    assert by_origin.metadata["features"] == global_.metadata["features"]
    table = by_origin.table  # in memory, segment columns have private names
    assert table.columns == [ORIGIN, "feature", "kind", "bin", "bin_index", "lower",
                             "upper", "count"]
    assert table.height == 3 * global_.table.height
    assert by_origin.histograms().columns == [ORIGIN, "feature", "bin", "count", "lower",
                                              "upper"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["EU", "US", None]), st.sampled_from([1, 2]),
                          st.one_of(st.floats(-5, 5), st.none()),
                          st.sampled_from(["a", "b", "c", None])), min_size=1, max_size=50))
def test_two_segment_columns_match_a_naive_reference(rows: list) -> None:
    frame = pl.DataFrame(rows, schema={"region": pl.String, "version": pl.Int64,
                                       "x": pl.Float64, "c": pl.String}, orient="row")
    profile = build_profile(frame.lazy(), segments=["region", "version"], bins=4, max_categories=2)
    assert profile.segments == ["region", "version"] and profile.features == ["x", "c"]
    hist = public_segment_columns(profile.histograms())
    assert hist["version"].dtype == pl.String  # segment values are text, like current data
    seen = {(r, str(v)) for r, v, *_ in rows}
    assert set(hist.select("region", "version").unique().rows()) == seen
    for region, version in seen:
        mine = [row for row in rows if (row[0], str(row[1])) == (region, version)]
        got = hist.filter(pl.col("region").eq_missing(region), version=version)
        assert as_counts(got, "x") == naive_numeric([r[2] for r in mine],
                                                    profile.layout.filter(feature="x"))
        assert as_counts(got, "c") == naive_categorical([r[3] for r in mine],
                                                        profile.layout.filter(feature="c"))


def test_histograms_pool_the_segments_left_out() -> None:
    frame = pl.LazyFrame({"a": ["p", "p", "q"], "b": ["u", "v", "v"], "x": [1.0, 2.0, 3.0]})
    profile = build_profile(frame, segments=["a", "b"], bins=2)
    by_a = public_segment_columns(profile.histograms(["a"]))
    assert by_a.columns == ["a", "feature", "bin", "count", "lower", "upper"]
    totals = by_a.group_by("a").agg(pl.col("count").sum()).sort("a").rows()
    assert totals == [("p", 2.0), ("q", 1.0)]
    with pytest.raises(InputError, match=r"column 'c': not a segment column of the profile "
                                         r"\(it has a, b\)"):
        profile.histograms(["c"])


def test_bad_segment_columns() -> None:
    frame = pl.LazyFrame({"x": [1.0], "kind": ["u"], "bin": ["v"]})
    with pytest.raises(InputError, match=r"file 'b.parquet', column 'region': baseline lacks "
                                         r"segment column"):
        build_profile(frame, segments=["region"], source="b.parquet")
    with pytest.raises(InputError, match="baseline has no rows, so no segment to profile"):
        build_profile(pl.LazyFrame({"x": [1.0], "r": ["a"]}).head(0), segments=["r"])


def test_segmented_round_trip_and_version_1_profiles(tmp_path: Path, by_origin: Profile) -> None:
    path = write_profile(by_origin, tmp_path / "by_origin.parquet")
    back = read_profile(path)
    assert back.table.equals(by_origin.table) and back.metadata == by_origin.metadata
    assert back.segments == ["origin"]
    # a profile written before segments existed: no segment columns or metadata keys
    old = build_profile(pl.LazyFrame({"x": [1.0, 2.0, 3.0]}))
    meta = {k: v for k, v in old.metadata.items() if k not in ("segments", "segment_rows")}
    write_profile(Profile(old.table, meta | {"schema_version": 1}), tmp_path / "v1.parquet")
    v1 = read_profile(tmp_path / "v1.parquet")
    assert v1.segments == [] and v1.histograms().equals(old.histograms())


def test_segment_columns_named_like_profile_columns(tmp_path: Path) -> None:
    # names of the profile table itself: stored as segment:<name>, read back by name
    frame = pl.LazyFrame({"x": [1.0, 2.0, 5.0], "kind": ["u", "v", "u"],
                          "bin": ["p", "p", "q"], "segment:kind": ["s", "s", "s"]})
    segments = ["kind", "bin", "segment:kind"]
    profile = build_profile(frame, segments=segments, bins=2, source="b.parquet")
    assert profile.segments == segments and profile.features == ["x"]
    path = write_profile(profile, tmp_path / "p.parquet")
    assert list(pl.read_parquet_schema(path))[:3] == [
        "segment:segment:kind", "segment:bin", "segment:kind"]
    back = read_profile(path)
    assert back.table.equals(profile.table) and back.segments == segments
    rows = {(r["segment"]["kind"], r["segment"]["bin"]): r["rows"]
            for r in back.metadata["segment_rows"]}
    assert rows == {("u", "p"): 1, ("v", "p"): 1, ("u", "q"): 1}


def test_segments_with_different_bins_are_refused(tmp_path: Path, by_origin: Profile) -> None:
    one_bin_less = by_origin.table.filter(
        ~((pl.col(ORIGIN) == "JFK") & (pl.col("feature") == "hour")
          & (pl.col("bin_index") == 2)))
    write_profile(Profile(one_bin_less, by_origin.metadata), tmp_path / "gap.parquet")
    with pytest.raises(InputError, match=r"gap.parquet', feature 'hour': profile bins are "
                                         r"malformed"):
        read_profile(tmp_path / "gap.parquet")
    # every bin once per segment: here each bin is in 2 rows of 2 segments, but segment a
    # has "u" twice and no "__other__", segment b the reverse
    two = build_profile(pl.LazyFrame({"r": ["a", "b"], "c": ["u", "u"]}), segments=["r"])
    (a_u, _, a_missing, _, b_other, b_missing) = two.table.rows()
    doubled = pl.DataFrame([a_u, a_u, a_missing, b_other, b_other, b_missing],
                           schema=two.table.schema, orient="row")
    write_profile(Profile(doubled, two.metadata), tmp_path / "doubled.parquet")
    with pytest.raises(InputError, match="feature 'c': profile bins are malformed"):
        read_profile(tmp_path / "doubled.parquet")
    # segment columns not declared in the metadata
    write_profile(Profile(by_origin.table, by_origin.metadata | {"segments": []}),
                  tmp_path / "undeclared.parquet")
    with pytest.raises(InputError, match="unexpected columns or types"):
        read_profile(tmp_path / "undeclared.parquet")
