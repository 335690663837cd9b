"""Segments: a run must split the data as its baseline does, a segment column is never a
feature, and any column name can be a segment column, end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from flows.cli import app
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.formats import HISTOGRAM_COLUMNS, TABLE_COLUMNS
from pipeline.run import run_drift

DATA = Path(__file__).parents[1] / "data"


def invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def origin_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("segments") / "profile.parquet"
    result = invoke("profile", DATA / "flights_baseline.parquet", "--out", path, "--exclude",
                    "flight_id", "--exclude", "scheduled_departure", "--segment", "origin")
    assert result.exit_code == 0, result.output
    return path


def test_segment_mismatch_exits_2_with_one_line_naming_both_sets(
        origin_profile: Path, tmp_path: Path) -> None:
    result = invoke("run", "--baseline", origin_profile, "--current",
                    DATA / "flights_current.parquet", "--timestamp", "scheduled_departure",
                    "--period", "1w", "--segment", "carrier", "--out", tmp_path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert ("input.segments: the baseline is segmented by ['origin'] but this run by "
            "['carrier']") in lines[0]
    assert "input.pool_segments = true" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_pooled_segments_only_when_asked_and_never_as_a_feature(
        origin_profile: Path, tmp_path: Path) -> None:
    # two carriers keep the run (and its report, one figure per alert) small
    pl.read_parquet(DATA / "flights_current.parquet").filter(
        pl.col("carrier").is_in(["UA", "DL"])).write_parquet(tmp_path / "current.parquet")
    settings = {"input.baseline": str(origin_profile),
                "input.current": str(tmp_path / "current.parquet"),
                "input.segments": ["carrier"], "alerts.calibrated": False,
                "input.exclude": ["flight_id", "scheduled_departure"],
                "output.dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"segmented by \['origin'\] but this run by "
                                          r"\['carrier'\]"):
        run_drift(load_config(None, settings))
    result = run_drift(load_config(None, {**settings, "input.pool_segments": True}))
    # the carrier column is a segment: never checked as a feature on either side
    assert "carrier" not in set(result.drift["feature"])
    assert set(result.drift["feature"]) == {"dep_delay", "arr_delay", "air_time", "distance",
                                            "dest", "hour"}
    assert result.drift.columns[:2] == ["carrier", "segment"]
    (warning,) = result.alerts["warnings"]
    assert warning.startswith("input.pool_segments: the baseline is segmented by ['origin'], "
                              "this run by ['carrier']: each segment is compared with the "
                              "baseline pooled over every segment")
    # the pooled baseline is the profile's counts added up over origin
    profile = pl.read_parquet(origin_profile)
    row = result.drift.filter(feature="distance").row(0, named=True)
    assert row["n_baseline"] == profile.filter(feature="distance")["count"].sum()


def test_a_segment_listed_as_a_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"input.features: 'origin' is also in "
                                          r"input.segments"):
        load_config(None, {"input.features": ["origin", "distance"],
                           "input.segments": ["origin"]})


def test_finer_run_segments_than_the_baseline_are_refused_too(origin_profile: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"segmented by \['origin'\] but this run by "
                                          r"\['origin', 'carrier'\]"):
        run_drift(load_config(None, {
            "input.baseline": str(origin_profile),
            "input.current": str(DATA / "flights_current.parquet"),
            "input.segments": ["origin", "carrier"], "output.dir": str(tmp_path)}))


# --- any name can be a segment column ----------------------------------------------------------

# Columns kl-drift uses itself, inside a run, beyond those of its output tables.
INTERNAL = ("row", "slot", "order", "n", "numeric", "special", "has_base", "b_count",
            "c_count", "c_bin", "__slot", "__row", "__outputs", "__unparsed", "label",
            "segment_in_base", "feature_in_base", "feature_in_current", "previous_upper",
            "parsed_lower", "side", "len")


def _files(root: Path, segments: dict[str, list[str]], n: int = 240) -> dict[str, Path]:
    """Raw baseline and current rows, two models' outputs and log-probs, all carrying the
    segment columns, plus the run config."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    columns = {name: values * (n // len(values)) for name, values in segments.items()}
    start = datetime(2024, 1, 1)
    stamps = [start + timedelta(hours=int(h)) for h in np.sort(rng.integers(0, 24 * 14, n))]
    raw = pl.DataFrame({"ts": stamps, "x": rng.normal(size=n),
                        "c": rng.choice(["a", "b", "c"], n), **columns})
    paths = {name: root / f"{name}.parquet" for name in ("base", "cur", "m1", "m2", "lp")}
    raw.write_parquet(paths["base"])
    raw.with_columns(pl.col("x") + 0.5).write_parquet(paths["cur"])
    ids = pl.Series("id", range(n))
    for name, shift in (("m1", 0.0), ("m2", 0.3)):
        pl.DataFrame([ids, pl.Series("logits", (rng.normal(size=(n, 3)) + shift).tolist()),
                      raw["ts"], *raw.select(list(segments))]).write_parquet(paths[name])
    raw.select("ts", *segments, logq=-rng.exponential(size=n),
               logp=-rng.exponential(size=n)).write_parquet(paths["lp"])
    listed = json.dumps(list(segments))
    paths["config"] = root / "run.toml"
    paths["config"].write_text(f"""
[input]
baseline = "{root / 'profile.parquet'}"
baseline_format = "profile"
current = "{paths['cur']}"
current_format = "raw"  # rows with feature/bin/count columns would look like histograms
timestamp = "ts"
period = "1w"
segments = {listed}

[output]
dir = "{root / 'runs'}"
run_id = "names"
fail_on = "never"

[models]
baseline = "{paths['m1']}"
current = "{paths['m2']}"
outputs = "logits"
timestamp = "ts"
period = "1w"
segments = {listed}

[estimate]
source = "{paths['lp']}"
timestamp = "ts"
period = "1w"
segments = {listed}
""")
    return paths


def test_every_reserved_name_works_end_to_end(tmp_path: Path) -> None:
    # first a run without segments gives the columns of every table a run writes
    plain = _files(tmp_path / "plain", {"region": ["EU"]})
    (tmp_path / "plain" / "runs").mkdir()
    assert invoke("profile", plain["base"], "--out", tmp_path / "plain" / "profile.parquet",
                  "--exclude", "ts", "--exclude", "region").exit_code == 0
    text = plain["config"].read_text().replace('segments = ["region"]', "segments = []")
    plain["config"].write_text(text)
    assert invoke("run", "--config", plain["config"]).exit_code == 0, "plain run"
    folder = tmp_path / "plain" / "runs" / "names"
    tables = {p.name: list(pl.read_parquet_schema(p)) for p in folder.glob("*.parquet")}
    profile_columns = list(pl.read_parquet_schema(tmp_path / "plain" / "profile.parquet"))
    written_columns = {c for names in tables.values() for c in names}
    # the documented list of names a segment column is renamed away from is complete
    assert written_columns - {"id"} <= TABLE_COLUMNS
    reserved = sorted({*HISTOGRAM_COLUMNS, *profile_columns, *INTERNAL, *written_columns}
                      - {"id", "logits", "logq", "logp", "ts", "x", "c"})
    assert len(reserved) > 80 and {"status", "segment", "window", "kind", "value",
                                   "n_current", "count", "bin", "feature"} <= set(reserved)

    # then every one of those names as a segment column at once, two of them varying
    segments = {name: ["v"] for name in reserved} | {"status": ["x", "y"],
                                                      "window": ["w1", "w1", "w2", "w2"]}
    paths = _files(tmp_path, segments)
    profiled = invoke("profile", paths["base"], "--out", tmp_path / "profile.parquet",
                      "--config", paths["config"])
    assert profiled.exit_code == 0, profiled.output
    run = invoke("run", "--config", paths["config"])
    assert run.exit_code == 0, run.output
    run_dir = tmp_path / "runs" / "names"
    report = invoke("report", run_dir)
    assert report.exit_code == 0, report.output

    drift = pl.read_parquet(run_dir / "drift.parquet")
    assert set(drift["feature"]) == {"x", "c"}  # no segment column became a feature
    labels = set(drift["segment"])
    assert len(labels) == 4
    assert all("status=x" in s or "status=y" in s for s in labels)
    assert all("window=w1" in s or "window=w2" in s for s in labels)
    for name, table in {"drift.parquet": drift, **{
            n: pl.read_parquet(run_dir / n) for n in ("models.parquet", "estimates.parquet",
                                                      "model_classes.parquet",
                                                      "model_examples.parquet")}}.items():
        own = tables[name]
        for segment in reserved:
            # one name in every table: renamed when any kl-drift table has such a column
            written = f"segment:{segment}" if segment in TABLE_COLUMNS else segment
            assert written in table.columns, (name, segment)
            assert set(table[written]) <= {"v", "x", "y", "w1", "w2"}, (name, segment)
        assert table.columns[len(reserved):] == own  # the table's own columns, unchanged
    statuses = dict(drift.group_by("segment:status").len().iter_rows())
    assert statuses == {"x": drift.height // 2, "y": drift.height // 2}
    assert set(drift["window"]) == {"2024-01-01T00:00:00", "2024-01-08T00:00:00"}
    # the profile stores them the same way and reads back by name
    stored = list(pl.read_parquet_schema(tmp_path / "profile.parquet"))
    assert "segment:kind" in stored and "segment:count" in stored and "status" in stored
    assert "status=x" in (run_dir / "report.md").read_text()
