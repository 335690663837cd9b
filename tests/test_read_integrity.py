"""Input integrity on read: each file once, folder keys that contradict a file, counts that
are not counts, tables that are not what they seem, and errors that blame the right thing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.bins.profile import read_profile
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.read.histograms import read_histograms
from pipeline.read.location import parse_location, redact
from pipeline.read.sources import scan_source, source_files
from pipeline.run import run_drift
from tests.servers import S3
from tests.sources_data import FLIGHTS_BASELINE, FLIGHTS_CURRENT

runner = CliRunner()


def _rows(source: object) -> int:
    return scan_source(source).select(pl.len()).collect().item()  # type: ignore[arg-type]


def test_a_symlink_loop_does_not_read_files_twice(tmp_path: Path) -> None:
    pl.DataFrame({"x": range(1500)}).write_parquet(tmp_path / "a.parquet")
    (tmp_path / "latest").symlink_to(".")
    assert _rows(tmp_path) == 1500
    assert _rows(str(tmp_path / "**" / "*.parquet")) == 1500
    assert source_files(tmp_path) == [str(tmp_path / "a.parquet")]


def test_a_hive_key_that_contradicts_the_files_column_names_both(tmp_path: Path) -> None:
    (tmp_path / "region=EU").mkdir()
    pl.DataFrame({"region": ["US"] * 3, "x": [1, 2, 3]}).write_parquet(
        tmp_path / "region=EU" / "p.parquet")
    with pytest.raises(InputError, match=r"region=EU.*column 'region'.*folder key region=EU "
                                         r"disagrees with the file's own 'region' column "
                                         r"\(value 'US'\)"):
        scan_source(tmp_path)


def test_a_hive_key_that_agrees_with_the_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "region=EU").mkdir()
    pl.DataFrame({"region": ["EU"] * 3}).write_parquet(tmp_path / "region=EU" / "p.parquet")
    assert scan_source(tmp_path).collect()["region"].to_list() == ["EU"] * 3


def test_int_and_float_files_are_widened_not_refused(tmp_path: Path) -> None:
    pl.DataFrame({"x": [1, 2]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"x": [2.5]}).write_parquet(tmp_path / "b.parquet")
    frame = scan_source(str(tmp_path / "*.parquet")).collect()
    assert frame.schema["x"] == pl.Float64 and frame["x"].to_list() == [1.0, 2.0, 2.5]


def test_types_that_cannot_be_widened_name_both_files(tmp_path: Path) -> None:
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"x": ["one"]}).write_parquet(tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b\.parquet', column 'x': column type String here "
                                         r"but Int64 in '.*a\.parquet'"):
        scan_source(tmp_path)


def test_a_histogram_file_without_count_is_the_one_blamed(tmp_path: Path) -> None:
    good = pl.DataFrame({"feature": ["f"], "bin": ["a"], "count": [1.0]})
    good.write_parquet(tmp_path / "a.parquet")
    good.drop("count").write_parquet(tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b\.parquet', column 'count': lacks column 'count'"):
        read_histograms(tmp_path)


def test_an_unreadable_folder_is_not_reported_as_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "sub" / "a.parquet")
    real_scandir = os.scandir

    def denied(path: str) -> object:  # as for a folder without read permission (not root)
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("pipeline.read.sources.os.scandir", denied)
    with pytest.raises(InputError, match=r"sub': cannot list this folder: permission denied"):
        scan_source(tmp_path)


def test_a_literal_path_with_glob_characters_is_a_file(tmp_path: Path) -> None:
    pl.DataFrame({"x": [1, 2]}).write_parquet(tmp_path / "cur[1].parquet")
    pl.DataFrame({"x": [3]}).write_parquet(tmp_path / "cur1.parquet")
    assert _rows(tmp_path / "cur[1].parquet") == 2  # not the glob matching cur1.parquet
    assert _rows(str(tmp_path / "cur[[]1].parquet")) == 2  # escaped in a glob


def test_source_syntax() -> None:
    assert parse_location("s3://b/f/*.csv").format == "csv"
    assert parse_location("gs://b/t/").format == "parquet"
    assert parse_location("ndjson:s3://b/f.txt").format == "ndjson"
    assert parse_location("iceberg:s3://b/t/metadata/v1.metadata.json").format == "iceberg"
    located = parse_location("postgresql+psycopg://u:pw@h/db#SELECT * FROM t")
    assert (located.format, located.query, located.path) == (
        "sql", "SELECT * FROM t", "postgresql+psycopg://u:pw@h/db")
    assert parse_location("duckdb:///w.duckdb#analytics.features").table == (
        "analytics.features")
    assert redact("postgresql://u:pw@h/db#t") == "postgresql://u:***@h/db#t"


def test_config_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        '[input]\nbaseline = "csv:base.csv"\ncurrent = "duckdb:///wh.duckdb#cur"\n'
        '[models]\nbaseline = "s3://b/m1.parquet"\ncurrent = "m2.parquet"\noutputs = "p"\n')
    config = load_config(tmp_path / "run.toml")
    assert config.input.baseline == f"csv:{tmp_path}/base.csv"
    assert config.input.current == f"duckdb:///{tmp_path.resolve()}/wh.duckdb#cur"
    assert config.models is not None and config.models.baseline == "s3://b/m1.parquet"


# -- counts ------------------------------------------------------------------------------

def _edited_profile(tmp_path: Path, count: float) -> Path:
    source = tmp_path / "profile.parquet"
    result = runner.invoke(app, ["profile", str(FLIGHTS_BASELINE), "--out", str(source),
                                 "--feature", "distance", "-q"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(source)
    counts = table.column("count").to_numpy().copy()
    counts[1] = count
    edited = table.set_column(table.schema.get_field_index("count"), "count", [counts])
    pq.write_table(edited.replace_schema_metadata(table.schema.metadata), source)
    return source


@pytest.mark.parametrize("count", [float("nan"), -1.0, float("inf"), 2.0**53, 2.0**63])
def test_profile_counts_that_are_not_counts_are_refused(tmp_path: Path, count: float) -> None:
    with pytest.raises(InputError, match=r"feature 'distance': profile has|2\*\*53") as info:
        read_profile(_edited_profile(tmp_path, count))
    assert "\n" not in str(info.value)


def test_huge_histogram_counts_and_sums_are_refused(tmp_path: Path) -> None:
    table = pl.DataFrame({"feature": ["f", "f", "f"], "bin": ["a", "a", "b"],
                          "count": [2.0**52, 2.0**52, 1.0]})
    table.write_parquet(tmp_path / "h.parquet")
    with pytest.raises(InputError, match=r"counts adding up to .* below 2\*\*53"):
        read_histograms(tmp_path / "h.parquet", duplicates="sum")


def test_the_limit_is_per_histogram_not_per_table(tmp_path: Path) -> None:
    # Each histogram's bins are below 2**53 but one histogram's total is not (refused, naming
    # it); a table of many histograms may add up to more than 2**53 (accepted).
    big = 2.0**52
    over = pl.DataFrame({"feature": ["ok", "huge", "huge"], "bin": ["a", "a", "b"],
                         "count": [1.0, big, big]})
    over.write_parquet(tmp_path / "over.parquet")
    with pytest.raises(InputError, match=r"feature 'huge'"):
        read_histograms(tmp_path / "over.parquet")
    many = pl.DataFrame({"feature": ["u", "v", "w"], "bin": ["a"] * 3, "count": [big] * 3})
    many.write_parquet(tmp_path / "many.parquet")
    assert read_histograms(tmp_path / "many.parquet")["count"].sum() == 3 * big


@pytest.mark.parametrize("categorical", [False, True])
def test_duplicate_bins_are_found_in_a_large_table(tmp_path: Path, categorical: bool) -> None:
    # One repeated (feature, window, bin) among 60,000 distinct ones: refused, or summed;
    # also with the labels read as categories (hashed by their codes), as a run reads them.
    table = pl.DataFrame({"feature": [f"f{i % 300}" for i in range(60_000)],
                          "window": [f"w{i // 300 % 20}" for i in range(60_000)],
                          "bin": [f"b{i // 6000}" for i in range(60_000)],
                          "count": [1.0] * 60_000})
    table = pl.concat([table, table.slice(41_234, 1)])
    table.write_parquet(tmp_path / "dup.parquet")
    with pytest.raises(InputError, match=r"2 rows sharing .* feature='f134'"):
        read_histograms(tmp_path / "dup.parquet", categorical=categorical)
    summed = read_histograms(tmp_path / "dup.parquet", duplicates="sum",
                             categorical=categorical)
    assert summed.height == 60_000 and summed["count"].max() == 2.0


# -- what a table is --------------------------------------------------------------------------

def _cli_run(tmp_path: Path, baseline: str, current: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", "--baseline", baseline, "--current", current,
                                 "--out", str(tmp_path / "runs"), "-q", *extra])
    return result.exit_code, result.output


def test_raw_rows_that_look_like_a_histogram_explain_the_detection(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = pl.DataFrame({"feature": rng.choice(["u", "v"], 300), "bin": rng.integers(0, 5, 300),
                        "count": rng.integers(0, 9, 300), "x": rng.normal(size=300)})
    raw.write_parquet(tmp_path / "raw.parquet")
    code, output = _cli_run(tmp_path, str(tmp_path / "raw.parquet"),
                            str(tmp_path / "raw.parquet"))
    assert code == 2 and "also the number column 'x' like raw rows" in output
    assert 'input.baseline_format = "raw" or "histogram"' in output
    # with no telling column, a table none of whose features the baseline has
    raw.drop("x").with_columns(feature=pl.format("u{}", pl.int_range(300))).write_parquet(
        tmp_path / "cur.parquet")
    config = load_config(None, {"input.baseline": str(FLIGHTS_BASELINE),
                                "input.current": str(tmp_path / "cur.parquet"),
                                "output.dir": str(tmp_path / "runs")})
    with pytest.raises(InputError, match=r"none of its features .* is a baseline feature "
                                         r"\(read as a histogram table because of its "
                                         r"columns.*input.current_format = \"raw\"\)"):
        run_drift(config)
    # an explicit format is obeyed
    forced = config.model_copy(update={"input": config.input.model_copy(
        update={"current_format": "raw"})})
    with pytest.raises(InputError, match=r"none of the baseline's features can be checked "
                                         r"in it: no column 'flight_id'"):
        run_drift(forced)


def test_profile_of_a_profile_and_empty_baselines_exit_2(tmp_path: Path) -> None:
    profile = tmp_path / "p.parquet"
    assert runner.invoke(app, ["profile", str(FLIGHTS_BASELINE), "--out", str(profile),
                               "-q"]).exit_code == 0
    again = runner.invoke(app, ["profile", str(profile), "--out", str(tmp_path / "pp.parquet")])
    assert again.exit_code == 2 and "already a baseline profile" in again.output
    pl.read_parquet(FLIGHTS_BASELINE).head(0).write_parquet(tmp_path / "empty.parquet")
    empty = runner.invoke(app, ["profile", str(tmp_path / "empty.parquet"), "--out",
                                str(tmp_path / "e.parquet")])
    assert empty.exit_code == 2 and "baseline has no rows" in empty.output
    code, output = _cli_run(tmp_path, str(tmp_path / "empty.parquet"), str(FLIGHTS_CURRENT))
    assert code == 2 and "baseline has no rows" in output


def test_a_list_segment_column_is_named(tmp_path: Path) -> None:
    for name, path in (("base", FLIGHTS_BASELINE), ("cur", FLIGHTS_CURRENT)):
        pl.read_parquet(path).with_columns(tags=pl.concat_list("origin", "dest")
                                           ).write_parquet(tmp_path / f"{name}.parquet")
    code, output = _cli_run(tmp_path, str(tmp_path / "base.parquet"),
                            str(tmp_path / "cur.parquet"), "--segment", "tags")
    assert code == 2 and "column 'tags': segment column has type List(String)" in output


# -- object stores ----------------------------------------------------------------------------

def test_object_store_folder_glob_and_errors(s3: S3, tmp_path: Path) -> None:
    frame = pl.read_parquet(FLIGHTS_CURRENT)
    for origin, part in frame.partition_by("origin", as_dict=True).items():
        part.drop("origin").write_parquet(tmp_path / "p.parquet")
        s3.upload(str(tmp_path / "p.parquet"), f"hive/origin={origin[0]}/p.parquet")
    frame.write_csv(tmp_path / "f.csv")
    s3.upload(str(tmp_path / "f.csv"), "csv/f.csv")
    options = s3.options
    hive = scan_source("s3://data/hive/", storage_options=options).collect()
    assert hive.height == frame.height and set(hive["origin"]) == set(frame["origin"])
    assert len(source_files("s3://data/hive/", storage_options=options)) == 3
    assert scan_source("s3://data/csv/*.csv", storage_options=options).collect().height == (
        frame.height)
    secret = options["aws_secret_access_key"]
    with pytest.raises(InputError, match="access denied; check the credentials") as info:
        scan_source("s3://data/csv/f.csv",
                    storage_options={**options, "aws_secret_access_key": "wrong"}).collect()
    assert secret not in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(InputError, match=r"s3://data/nope.parquet': not found"):
        scan_source("s3://data/nope.parquet", storage_options=options)
    closed = {**options, "aws_endpoint_url": "http://127.0.0.1:1", "max_retries": 0}
    with pytest.raises(InputError, match="cannot reach the storage endpoint"):
        scan_source("s3://data/csv/f.csv", storage_options=closed)


def test_validate_describes_any_source(tmp_path: Path) -> None:
    frame = pl.read_parquet(FLIGHTS_CURRENT)
    frame.write_ndjson(tmp_path / "cur.ndjson")
    result = runner.invoke(app, ["validate", str(tmp_path / "cur.ndjson")])
    assert result.exit_code == 0 and f"raw table, {frame.height:,} rows" in result.output
    assert json.loads((tmp_path / "cur.ndjson").read_text().splitlines()[0])


def test_histogram_tables_read_alike_from_every_file_format(tmp_path: Path) -> None:
    table = pl.DataFrame({"region": ["EU", "EU", "US"], "feature": ["f", "f", "f"],
                          "bin": ["a", "b", "a"], "count": [3.0, 1.0, 2.0]})
    table.write_parquet(tmp_path / "h.parquet")
    table.write_csv(tmp_path / "h.csv")
    table.write_ndjson(tmp_path / "h.jsonl")
    table.write_delta(tmp_path / "delta")
    table.write_csv(tmp_path / "h.txt")
    expected = read_histograms(tmp_path / "h.parquet")
    for source in ("h.csv", "h.jsonl", "delta", "h.txt"):
        prefix = "csv:" if source.endswith(".txt") else ""
        got = read_histograms(prefix + str(tmp_path / source))
        assert got.sort("region", "bin").equals(expected.sort("region", "bin")), source
