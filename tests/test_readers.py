"""Reading Parquet sources and validating histogram tables."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InputError
from pipeline.read.histograms import histogram_runs, read_histograms
from pipeline.read.sources import scan_raw, scan_source


def _histogram(**extra: list) -> pl.DataFrame:
    return pl.DataFrame({"feature": ["a", "a", "b"], "bin": ["x", "y", "x"],
                         "count": [1, 2, 3], **extra})


def _write(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


# --- sources -------------------------------------------------------------------------------

def test_file_glob_list_and_hive_folder_read_the_same_rows(tmp_path: Path) -> None:
    frame = pl.DataFrame({"v": range(10), "region": ["EU"] * 4 + ["US"] * 6})
    whole = _write(frame, tmp_path / "whole.parquet")
    parts = [_write(part, tmp_path / "parts" / f"p{i}.parquet")
             for i, part in enumerate(frame.iter_slices(3))]
    for region in ("EU", "US"):
        _write(frame.filter(region=region).drop("region"),
               tmp_path / "hive" / f"region={region}" / "0.parquet")
    (tmp_path / "hive" / "_SUCCESS").write_text("")  # marker files must be ignored

    def rows(source: object) -> pl.DataFrame:
        return scan_source(source).collect().select("v", "region").sort("v")

    expected = rows(whole)
    assert rows(parts).equals(expected)
    assert rows(str(tmp_path / "parts" / "*.parquet")).equals(expected)
    assert rows(tmp_path / "hive").equals(expected)


@pytest.mark.parametrize("name", ["nope.parquet", "nope/*.parquet"])
def test_missing_path_or_empty_glob_names_the_source(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"nope.*(not found|no file matches)"):
        scan_source(tmp_path / name)


def test_folder_without_parquet_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"holds no \.parquet files"):
        scan_raw(tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not parquet at all"])
def test_empty_or_corrupt_file_is_an_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.parquet'.*cannot read it as Parquet") as info:
        scan_source(path)
    assert "\n" not in str(info.value)


def test_corrupt_file_among_good_ones_fails_at_read_time_with_the_source(
        tmp_path: Path) -> None:
    _write(_histogram(), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 garbage PAR1")
    with pytest.raises(InputError, match=r"b\.parquet'.*cannot read"):  # the culprit
        read_histograms(tmp_path / "*.parquet")


def test_empty_list_of_files() -> None:
    with pytest.raises(InputError, match="empty list"):
        scan_source([])


# --- histogram tables ----------------------------------------------------------------------

def test_read_histograms_types_and_segments(tmp_path: Path) -> None:
    frame = _histogram(model_version=[1, 1, 2], window=["w1", "w1", "w2"],
                       lower=[0, 1, None], upper=[1, 2, None])
    table = read_histograms(_write(frame, tmp_path / "h.parquet"))
    assert table.schema == pl.Schema({
        "feature": pl.String, "bin": pl.String, "count": pl.Float64,
        "model_version": pl.String, "window": pl.String, "lower": pl.Float64,
        "upper": pl.Float64})
    assert table["count"].to_list() == [1.0, 2.0, 3.0]
    assert table["model_version"].to_list() == ["1", "1", "2"]


def test_read_histograms_as_categories_holds_the_same_labels(tmp_path: Path) -> None:
    # the current table's labels as categories (4 bytes a row, not 16): the same text, numbers
    # through their text; a datetime window keeps its type
    frame = _histogram(model_version=[1, 1, 2], window=["w1", "w1", "w2"])
    path = _write(frame, tmp_path / "h.parquet")
    text, coded = read_histograms(path), read_histograms(path, categorical=True)
    labels = ["feature", "bin", "model_version", "window"]
    assert {c: coded.schema[c] for c in labels} == dict.fromkeys(labels, pl.Categorical())
    assert coded.with_columns(pl.col(labels).cast(pl.String)).equals(text)
    dated = _write(frame.with_columns(window=pl.lit(dt.datetime(2024, 1, 1))),
                   tmp_path / "d.parquet")
    assert read_histograms(dated, categorical=True).schema["window"] == pl.Datetime("us")


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["x", "y"]),
                               st.sampled_from(["w1", "w2"])), min_size=1, max_size=12))
def test_categories_of_keys_in_runs_are_the_text(keys: list[tuple], tmp_path_factory:
                                                  pytest.TempPathFactory) -> None:
    # a histogram's keys repeat over its bins: runs, repeats after other values and null
    # segments keep their text as categories
    rows = [(segment, feature, window, f"b{i}") for i, (segment, feature, window)
            in enumerate(keys)]
    frame = pl.DataFrame(rows, schema=["region", "feature", "window", "bin"],
                         orient="row").with_columns(count=pl.lit(1.0))
    path = _write(frame, tmp_path_factory.mktemp("runs") / "h.parquet")
    coded = read_histograms(path, categorical=True)
    assert coded.with_columns(pl.col("region", "feature", "window", "bin").cast(pl.String)
                              ).equals(read_histograms(path))


def test_missing_required_column_lists_what_was_found(tmp_path: Path) -> None:
    path = _write(_histogram().drop("bin"), tmp_path / "h.parquet")
    with pytest.raises(InputError, match=r"h\.parquet', column 'bin': baseline .*lacks required "
                                         r"column\(s\) bin; found feature, count"):
        read_histograms(path, role="baseline")


def test_string_counts_are_rejected(tmp_path: Path) -> None:
    path = _write(_histogram().with_columns(pl.col("count").cast(pl.String)),
                  tmp_path / "h.parquet")
    with pytest.raises(InputError, match=r"column 'count': current column 'count' must be "
                                         r"numeric, found String"):
        read_histograms(path)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, None])
def test_bad_counts_name_the_first_offending_bin(tmp_path: Path, bad: float | None) -> None:
    frame = _histogram().with_columns(pl.col("count").cast(pl.Float64))
    frame = frame.with_columns(count=pl.when(pl.col("feature") == "b").then(bad)
                               .otherwise(pl.col("count")))
    with pytest.raises(InputError, match=r"column 'count'.* 1 row\(s\) .*first feature 'b' "
                                         r"bin 'x'"):
        read_histograms(_write(frame, tmp_path / "h.parquet"))


def test_null_feature_label(tmp_path: Path) -> None:
    frame = _histogram().with_columns(feature=pl.Series(["a", None, "b"]))
    with pytest.raises(InputError, match=r"column 'feature'.*1 row\(s\) with a null feature"):
        read_histograms(_write(frame, tmp_path / "h.parquet"))


def test_empty_histogram_table(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"h\.parquet'.*has no rows"):
        read_histograms(_write(_histogram().clear(), tmp_path / "h.parquet"))


def test_duplicate_bins_error_names_the_first_duplicate(tmp_path: Path) -> None:
    frame = pl.concat([_histogram(region=["EU", "EU", "US"])] * 2)
    path = _write(frame, tmp_path / "h.parquet")
    with pytest.raises(InputError, match=r"6 rows sharing .* first region='EU', "
                                         r"feature='a', bin='x'; pass duplicates='sum'"):
        read_histograms(path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("xyz"),
                          st.integers(0, 100)), min_size=1, max_size=30))
def test_duplicates_sum_equals_a_dictionary_sum(tmp_path_factory: pytest.TempPathFactory,
                                                rows: list[tuple[str, str, int]]) -> None:
    path = tmp_path_factory.mktemp("dup") / "h.parquet"
    pl.DataFrame(rows, schema=["feature", "bin", "count"], orient="row").write_parquet(path)
    expected: dict[tuple[str, str], float] = {}
    for feature, label, count in rows:
        expected[feature, label] = expected.get((feature, label), 0.0) + count
    table = read_histograms(path, duplicates="sum")
    got = {(f, b): c for f, b, c in table.select("feature", "bin", "count").iter_rows()}
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["EU", "US", None]), st.sampled_from("ab"),
                          st.sampled_from(["w1", "w2"]), st.sampled_from("xyz")),
                min_size=1, max_size=25),
       st.booleans(), st.booleans())
def test_duplicates_are_found_whatever_the_order(tmp_path_factory: pytest.TempPathFactory,
                                                 rows: list[tuple[str | None, str, str, str]],
                                                 grouped: bool, categorical: bool) -> None:
    # Rows one histogram after another (bins in order: the cheap proof of no duplicate) or
    # in any order (the hash of every row), labels as text or as categories: refused exactly
    # when two rows share (segment, feature, window, bin), like a set of the rows says.
    rows = sorted(rows, key=str) if grouped else rows
    path = tmp_path_factory.mktemp("dup") / "h.parquet"
    pl.DataFrame(rows, schema=["region", "feature", "window", "bin"], orient="row") \
        .with_columns(count=1.0).write_parquet(path)
    if len(set(rows)) < len(rows):
        with pytest.raises(InputError, match="rows sharing their"):
            read_histograms(path, categorical=categorical)
    else:
        assert read_histograms(path, categorical=categorical).height == len(rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["EU", None]), st.sampled_from([1, 2, None])),
                max_size=20), st.booleans())
def test_histogram_runs_start_where_the_keys_change(rows: list[tuple[str | None, int | None]],
                                                    categorical: bool) -> None:
    table = pl.DataFrame(rows, schema={"region": pl.String, "window": pl.Int64},
                         orient="row")
    if categorical:
        table = table.with_columns(pl.col("region").cast(pl.Categorical))
    # brute force: a row starts a run when it is the first or differs from the one before
    expected = [i for i in range(len(rows)) if i == 0 or rows[i] != rows[i - 1]]
    assert histogram_runs(table, ["region", "window"]).tolist() == expected


def test_a_bare_file_name_in_the_working_folder_is_read(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # `kl-drift run --baseline baseline.parquet` (the README's example) crashed: the file's
    # folder was "" when looking for hive keys
    folder = tmp_path / "region=EU"
    folder.mkdir()
    pl.DataFrame({"x": [1.0, 2.0], "region": ["US", "US"]}).write_parquet(
        folder / "rows.parquet")
    monkeypatch.chdir(folder)
    # the path polars reads names no folder: no hive key, no clash with the region column
    assert scan_source("rows.parquet").collect().to_dict(as_series=False) == {
        "x": [1.0, 2.0], "region": ["US", "US"]}
