"""run_drift end to end: inputs of every kind, run folder contents, reruns, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.bins.profile import build_profile, read_profile, write_profile
from pipeline.config import RunConfig, load_config
from pipeline.errors import ConfigError
from pipeline.formats import ALERTS_FILE, DRIFT_FILE, RESOLVED_FILE
from pipeline.read.sources import scan_raw
from pipeline.run import PROFILE_FILE, run_drift, run_in_memory
from pipeline.write.documents import AlertsDocument
from tests.conftest import categorical_histogram, numeric_histogram

DATA = Path(__file__).parents[1] / "data"
FLIGHTS = {"input.baseline": str(DATA / "flights_baseline.parquet"),
           "input.current": str(DATA / "flights_current.parquet"),
           "input.timestamp": "scheduled_departure", "input.period": "1w",
           "input.exclude": ["flight_id"]}


def strict_json(path: Path) -> dict:
    """Parse JSON, failing on NaN/Infinity (which json.loads accepts by default)."""
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} in {path}")
    return json.loads(path.read_text(), parse_constant=reject)


def flights_config(tmp_path: Path, **overrides: object) -> RunConfig:
    return load_config(None, {**FLIGHTS, "output.dir": str(tmp_path / "runs"), **overrides})


@pytest.fixture(scope="module")
def flights_run(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("flights")
    messages: list[str] = []
    config = flights_config(tmp_path, **{"input.segments": ["origin"],
                                         "output.run_id": "june"})
    return run_drift(config, progress=messages.append), messages, config


def test_flights_run_folder_is_complete_and_consistent(flights_run) -> None:
    result, messages, config = flights_run
    assert result.run_dir.name == "june" and result.run_id == "june"
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted(
        [ALERTS_FILE, DRIFT_FILE, PROFILE_FILE, RESOLVED_FILE, "report.md", "report.html"])
    on_disk = pl.read_parquet(result.run_dir / DRIFT_FILE)
    assert on_disk.equals(result.drift)
    document = AlertsDocument.model_validate(strict_json(result.run_dir / ALERTS_FILE))
    assert document.model_dump(mode="json", exclude_unset=True)["summary"] == (
        result.alerts["summary"])
    counts = dict(result.drift["status"].value_counts().iter_rows())
    assert document.summary.critical == counts.get("critical", 0)
    assert document.summary.total == result.drift.height == 3 * 7 * 7  # origins x feats x weeks
    # new alerts first, then by severity
    order = [(a.lifecycle != "new", a.status == "warn") for a in document.alerts]
    assert order == sorted(order) and document.alerts[0].lifecycle == "new"
    assert document.run.metric == "js_distance" and document.run.base == 2
    assert document.run.config["output"]["run_id"] == "june"
    assert document.run.config_hash == config.config_hash()
    assert document.run.inputs == {"baseline": FLIGHTS["input.baseline"],
                                   "current": FLIGHTS["input.current"]}
    assert messages[0].startswith("reading baseline") and messages[-1] == "rendering reports"


def test_flights_drift_is_found_where_the_data_says(flights_run) -> None:
    result, *_ = flights_run
    # Each airport is compared with its own January: summer winds move `air_time` in every
    # window of every airport, while its carrier and route mix (`carrier`, `distance`) stays.
    complete = result.drift.filter(~pl.col("partial"))
    status = dict(complete.group_by("feature").agg("status").iter_rows())
    assert set(status["air_time"]) <= {"warn", "critical"}
    # the 2-day first week is held back, whatever it shows, until a run sees it complete
    partial = result.drift.filter(pl.col("partial"))
    assert partial["window"].unique().to_list() == ["2013-05-27T00:00:00"]
    assert (partial["status"] == "insufficient_data").all()
    assert partial["reason"].str.starts_with("partial window: the data cover 26%").all()
    assert "critical" not in {*status["carrier"], *status["distance"]}
    assert result.worst_status == "critical" and result.exit_code == 1
    assert set(result.drift["segment"]) == {"origin=EWR", "origin=JFK", "origin=LGA"}
    assert result.drift["window"].str.contains(r"^2013-\d\d-\d\dT00:00:00$").all()


def test_rerun_same_id_replaces_files_identically(tmp_path: Path) -> None:
    config = flights_config(tmp_path, **{"input.features": ["dep_delay", "carrier"],
                                         "output.run_id": "same"})
    first = run_drift(config)
    files = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}
    second = run_drift(config)
    assert second.run_dir == first.run_dir
    assert sorted(p.name for p in second.run_dir.iterdir()) == sorted(files)  # no temp files
    # same rows; the footer stamp names the run that wrote the file
    assert pl.read_parquet(second.run_dir / DRIFT_FILE).equals(first.drift)
    before, after = json.loads(files[ALERTS_FILE]), strict_json(second.run_dir / ALERTS_FILE)
    for document in (before, after):
        del document["run"]["created_at"]
    assert before == after
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [".kl-drift", "history", "same"]
    assert not any((runs / ".kl-drift" / "staging").iterdir())  # nothing left staged


@pytest.fixture
def frozen_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run starts at 2026-11-30 16:07:56 UTC (automatic id ``20261130T160756Z``)."""
    import pipeline.run

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            return cls(2026, 11, 30, 16, 7, 56, tzinfo=tz)

    monkeypatch.setattr(pipeline.run, "datetime", Frozen)


@pytest.mark.usefixtures("frozen_second")
def test_runs_without_an_id_in_the_same_second_keep_their_own_folders(
        tmp_path: Path) -> None:
    """Back-to-back runs without output.run_id are new runs, not reruns of each other."""
    config = flights_config(tmp_path, **{"input.features": ["dep_delay"]})
    ids = [run_drift(config).run_id for _ in range(3)]
    assert ids == ["20261130T160756Z", "20261130T160756Z-2", "20261130T160756Z-3"]
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [".kl-drift", *ids, "history"]
    assert sorted(p.name for p in (runs / "history").iterdir()) == [f"run_id={i}" for i in ids]


@pytest.mark.usefixtures("frozen_second")
def test_a_run_of_the_same_second_in_another_process_takes_the_next_id(
        tmp_path: Path) -> None:
    """Two processes starting in one second pick their automatic ids before either has a
    folder: the id one of them holds is skipped by the other (not replaced), and freed when
    the holder dies."""
    config = flights_config(tmp_path, **{"input.features": ["dep_delay"]})
    runs = tmp_path / "runs"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nfrom pipeline.write.run_folder import claimed_run_id\n"
         f"with claimed_run_id({str(runs)!r}, ['20261130T160756Z'], lambda _: False) as i:\n"
         "    print(i, flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=DATA.parent)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "20261130T160756Z\n"
        assert run_drift(config).run_id == "20261130T160756Z-2"
        # its histograms were encoded for the id it measured with, then written for this one
        assert pl.read_parquet(runs / "history" / "run_id=20261130T160756Z-2" /
                               "histograms.parquet")["run_id"].unique().to_list() == [
            "20261130T160756Z-2"]
    finally:
        holder.kill()
        holder.wait()
    # the OS released the dead holder's claim; its id has no run yet
    assert run_drift(config).run_id == "20261130T160756Z"
    assert sorted(p.name for p in runs.iterdir()) == [
        ".kl-drift", "20261130T160756Z", "20261130T160756Z-2", "history"]


def test_a_published_run_keeps_its_current_histograms_only_as_their_encoding(
        tmp_path: Path) -> None:
    """Publishing hands the history's rows of the current histograms (10^7 at scale) to
    their encoding, done beside the measurement: only the encoding is kept through the
    decisions and the writes, and a result measured in memory keeps the rows to write
    them later."""
    config = flights_config(tmp_path, **{"input.features": ["dep_delay", "origin"],
                                         "output.run_id": "r"})
    published = run_drift(config)
    features = published._measured.features
    assert features is not None and features.histograms is None
    assert features.encoded is not None
    stored = pl.read_parquet(tmp_path / "runs" / "history" / "run_id=r" / "histograms.parquet")
    assert_frame_equal(features.encoded.result().rows(), stored)
    kept = run_in_memory(config)._measured.features
    assert kept is not None and kept.encoded is None and kept.histograms is not None
    assert_frame_equal(kept.histograms, stored.drop("run_id", "created_at"))
    # written again elsewhere, from the encoding alone: the same rows, for that run
    again = published.write(tmp_path / "elsewhere" / "r2")
    moved = pl.read_parquet(tmp_path / "elsewhere" / "history" / "run_id=r2" /
                            "histograms.parquet")
    assert moved["run_id"].unique().to_list() == ["r2"] and again.run_id == "r2"
    assert_frame_equal(moved.drop("run_id", "created_at"), stored.drop("run_id", "created_at"))


def test_profile_baseline_is_detected_and_stale_profile_copy_removed(tmp_path: Path) -> None:
    profile = build_profile(scan_raw(FLIGHTS["input.baseline"]), features=["distance", "dest"])
    write_profile(profile, tmp_path / "profile.parquet")
    raw = run_drift(flights_config(tmp_path, **{"input.features": ["distance", "dest"],
                                                "output.run_id": "r"}))
    assert (raw.run_dir / PROFILE_FILE).exists()
    again = run_drift(flights_config(tmp_path, **{"input.baseline": str(
        tmp_path / "profile.parquet"), "output.run_id": "r"}))
    assert not (again.run_dir / PROFILE_FILE).exists()
    assert again.drift.select("feature", "window", "js_distance").equals(
        raw.drift.select("feature", "window", "js_distance"))


def test_histogram_inputs_with_segments_and_per_segment_baseline(tmp_path: Path) -> None:
    baseline = pl.concat([numeric_histogram("x", [0, 1], [30, 40, 30], region=r)
                          for r in ("EU", "US")])
    current = pl.concat([
        numeric_histogram("x", [0, 1], counts, region=r, window=w)
        for r, w, counts in [("EU", "2024-01-01", [31, 38, 31]),
                             ("EU", "2024-01-02", [90, 5, 5]),
                             ("US", "2024-01-01", [29, 41, 30])]])
    baseline.write_parquet(tmp_path / "b.parquet")
    current.write_parquet(tmp_path / "c.parquet")
    config = load_config(None, {"input.baseline": str(tmp_path / "b.parquet"),
                                "input.current": str(tmp_path / "c.parquet"),
                                "output.dir": str(tmp_path), "alerts.calibrated": False})
    result = run_drift(config)
    assert result.drift.columns[0] == "region"
    assert result.drift.select("segment", "window", "status").rows() == [
        ("region=EU", "2024-01-01", "ok"), ("region=EU", "2024-01-02", "critical"),
        ("region=US", "2024-01-01", "ok")]
    assert re.fullmatch(r"\d{8}T\d{6}Z", result.run_id)
    assert not (result.run_dir / PROFILE_FILE).exists()


@pytest.mark.parametrize(("fail_on", "exit_code"), [("critical", 1), ("warn", 1),
                                                    ("never", 0)])
def test_exit_code_follows_fail_on(tmp_path: Path, fail_on: str, exit_code: int) -> None:
    categorical_histogram("c", {"a": 100, "b": 100}).write_parquet(tmp_path / "b.parquet")
    categorical_histogram("c", {"a": 190, "b": 10}).write_parquet(tmp_path / "c.parquet")
    config = load_config(None, {"input.baseline": str(tmp_path / "b.parquet"),
                                "input.current": str(tmp_path / "c.parquet"),
                                "output.dir": str(tmp_path), "output.fail_on": fail_on})
    result = run_drift(config)
    assert result.worst_status == "critical" and result.exit_code == exit_code


def test_infinite_values_become_null_with_reasons(tmp_path: Path) -> None:
    categorical_histogram("c", {"a": 100, "b": 0}).write_parquet(tmp_path / "b.parquet")
    categorical_histogram("c", {"a": 50, "b": 50}).write_parquet(tmp_path / "c.parquet")
    config = load_config(None, {"input.baseline": str(tmp_path / "b.parquet"),
                                "input.current": str(tmp_path / "c.parquet"),
                                "output.dir": str(tmp_path), "drift.metric": "kl",
                                "drift.eps": 0.0, "alerts.critical": 5.0,
                                "output.run_id": "../../escape"})
    result = run_drift(config)
    assert result.run_dir.parent == tmp_path  # the run id cannot leave the output folder
    document = strict_json(result.run_dir / ALERTS_FILE)
    AlertsDocument.model_validate(document)
    (alert,) = document["alerts"]
    assert alert["value"] is None and "inf" in alert["null_reasons"]["value"]
    assert alert["top_bins"][0]["contribution"] is None
    assert result.drift["kl"][0] == float("inf")  # the Parquet table keeps the exact value


# --- per-segment baselines and retyped columns, end to end ---------------------------------

def _sites(rng: np.random.Generator, sizes: dict[str, int]) -> pl.DataFrame:
    """Rows of sites whose x and c distributions differ: site i has x ~ N(3i, 1)."""
    parts = [pl.DataFrame({"site": site, "x": rng.normal(3 * i, 1, n),
                           "c": rng.choice(["u", "v", "w"], n, p=np.roll([0.8, 0.15, 0.05], i))})
             for i, (site, n) in enumerate(sizes.items())]
    return pl.concat(parts)


def test_segments_get_their_own_baseline_in_a_run(tmp_path: Path,
                                                  rng: np.random.Generator) -> None:
    _sites(rng, {"A": 2000, "B": 2000, "T": 10}).write_parquet(tmp_path / "base.parquet")
    _sites(rng, {"A": 2000, "B": 2000, "T": 500, "NEW": 500}).write_parquet(
        tmp_path / "cur.parquet")
    settings = {"input.baseline": str(tmp_path / "base.parquet"),
                "input.current": str(tmp_path / "cur.parquet"), "input.segments": ["site"],
                "output.dir": str(tmp_path / "runs"), "output.run_id": "sites"}
    result = run_drift(load_config(None, settings))
    rows = {(r["site"], r["feature"]): r for r in result.drift.iter_rows(named=True)}
    for site in ("A", "B"):  # same distribution as their own baseline: no alert
        assert {rows[site, f]["status"] for f in ("x", "c")} == {"ok"}
        assert rows[site, "x"]["js_distance"] < 0.1
    assert rows["T", "x"]["status"] == "insufficient_data"
    assert rows["T", "x"]["reason"] == "n_baseline=10.0 < min_count=30"
    assert rows["NEW", "c"]["status"] == "error"
    assert rows["NEW", "c"]["reason"] == (
        "segment site=NEW not in the baseline; rebuild the profile or compare globally")
    profile = read_profile(result.run_dir / PROFILE_FILE)
    assert profile.segments == ["site"]
    assert [r["rows"] for r in profile.metadata["segment_rows"]] == [2000, 2000, 10]

    # a segmented profile serves a run without segments only when asked: pooled, warned
    pooled_settings = {**settings, "input.segments": [], "output.run_id": "pooled",
                       "input.baseline": str(result.run_dir / PROFILE_FILE)}
    with pytest.raises(ConfigError, match=r"segmented by \['site'\] but this run by \[\]"):
        run_drift(load_config(None, pooled_settings))
    pooled = run_drift(load_config(None, {**pooled_settings, "input.pool_segments": True}))
    unsegmented = run_drift(load_config(None, {**settings, "input.segments": [],
                                               "input.exclude": ["site"],
                                               "output.run_id": "global"}))
    assert pooled.drift.select("feature", "js_distance").equals(
        unsegmented.drift.select("feature", "js_distance"))
    assert pooled.drift["js_distance"].min() > 0.05  # A and B mixed differently in current
    (warning,) = pooled.alerts["warnings"]
    assert warning.startswith("input.pool_segments: the baseline is segmented by ['site']")


def test_retyped_column_is_an_error_row_and_other_features_still_run(
        tmp_path: Path, rng: np.random.Generator) -> None:
    base = pl.DataFrame({"x": rng.normal(size=500), "y": rng.normal(size=500),
                         "c": rng.choice(["u", "v"], 500)})
    base.write_parquet(tmp_path / "base.parquet")
    base.with_columns(pl.col("x").cast(pl.String)).write_parquet(tmp_path / "cur.parquet")
    result = run_drift(load_config(None, {"input.baseline": str(tmp_path / "base.parquet"),
                                          "input.current": str(tmp_path / "cur.parquet"),
                                          "output.dir": str(tmp_path / "runs")}))
    rows = {r["feature"]: r for r in result.drift.iter_rows(named=True)}
    assert rows["x"]["status"] == "error"
    assert rows["x"]["reason"] == ("feature 'x': profile feature is numeric but the raw "
                                   "column is String; the column type changed since the "
                                   "baseline")
    assert rows["y"]["status"] == rows["c"]["status"] == "ok"
    assert rows["y"]["js_distance"] == 0.0
    (problem,) = result.alerts["problems"]
    assert problem["feature"] == "x" and "String" in problem["reason"]


def test_partial_windows_judged_now_keep_their_own_reason(tmp_path: Path) -> None:
    # partial_windows = "alert": the 2-day first week is judged now, so its reason is the
    # window's own, never "judged when complete" (a run decides persistence once)
    config = flights_config(tmp_path, **{"input.features": ["air_time", "carrier"],
                                         "alerts.partial_windows": "alert"})
    partial = run_drift(config).drift.filter(pl.col("partial"))
    assert partial.height == 2 and (partial["status"] == partial["window_status"]).all()
    assert not partial["reason"].fill_null("").str.starts_with("partial window").any()
