"""The cross-run history dataset: layout, replace-on-rerun, union of columns, empty cases."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.write.history import (
    append_history,
    encode_history,
    partition_dir,
    read_history,
    stage_history,
)
from tests.report_data import make_drift


def test_append_writes_a_compact_hive_partition(tmp_path: Path) -> None:
    drift = make_drift(3, 2)
    path = append_history(tmp_path / "history", drift, "r1", "2024-06-01T06:00:00Z")
    assert path == tmp_path / "history" / "run_id=r1" / "part.parquet"
    stored = pl.read_parquet(path)
    assert "bins" not in stored.columns and "top_bins" in stored.columns
    assert_frame_equal(stored.drop("run_id", "created_at"), drift.drop("bins"))
    assert stored["run_id"].unique().to_list() == ["r1"]
    assert stored["created_at"].unique().to_list() == [datetime(2024, 6, 1, 6, tzinfo=UTC)]
    assert [p.name for p in path.parent.iterdir()] == ["part.parquet"]  # no temp file left


def test_rerunning_a_run_id_replaces_its_rows(tmp_path: Path) -> None:
    history = tmp_path / "history"
    append_history(history, make_drift(3, 2, seed=1), "r1", "2024-06-01T00:00:00Z")
    append_history(history, make_drift(4, 1, seed=2), "r2", "2024-06-02T00:00:00Z")
    rerun = make_drift(2, 2, seed=3)
    append_history(history, rerun, "r1", "2024-06-03T00:00:00Z")
    rows = read_history(history)
    assert rows is not None
    assert dict(rows.group_by("run_id").len().iter_rows()) == {"r1": 4, "r2": 4}
    again = rows.filter(pl.col("run_id") == "r1").sort("feature", "window")
    # rows from before reference modes read as compared with the baseline
    assert again["reference"].unique().to_list() == ["baseline"]
    assert_frame_equal(again.drop("run_id", "created_at", "reference"),
                       rerun.drop("bins").sort("feature", "window"))
    assert again["created_at"].unique().to_list() == [datetime(2024, 6, 3, tzinfo=UTC)]


def test_runs_with_different_segment_columns_read_as_one_table(tmp_path: Path) -> None:
    history = tmp_path / "history"
    append_history(history, make_drift(2, 1, problems=False), "flat", "2024-06-01T00:00:00Z")
    segmented = make_drift(2, 1, segments={"region": ["EU", "US"]}, problems=False)
    append_history(history, segmented, "seg", "2024-06-02T00:00:00Z")
    rows = read_history(history)
    assert rows is not None and rows.height == 2 + 4
    by_run = dict(rows.group_by("run_id").agg(pl.col("region").drop_nulls().n_unique())
                  .iter_rows())
    assert by_run == {"flat": 0, "seg": 2}


def test_unsafe_run_id_gets_a_safe_folder_and_keeps_its_name(tmp_path: Path) -> None:
    history = tmp_path / "history"
    run_id = "2024-06-01T00:00:00+00:00/../x"
    path = append_history(history, make_drift(1, 1), run_id, "2024-06-01T00:00:00Z")
    assert path.parent == partition_dir(history, run_id)
    assert path.parent.parent == history and "/" not in path.parent.name[len("run_id="):]
    rows = read_history(history)
    assert rows is not None and rows["run_id"].unique().to_list() == [run_id]


def test_created_at_is_stored_in_utc(tmp_path: Path) -> None:
    history = tmp_path / "history"
    paris = timezone(timedelta(hours=2))
    append_history(history, make_drift(1, 1), "a", datetime(2024, 6, 1, 8, tzinfo=paris))
    append_history(history, make_drift(1, 1), "b", datetime(2024, 6, 1, 8))  # naive = UTC
    append_history(history, make_drift(1, 1), "c", "2024-06-01T08:00:00-05:00")
    rows = read_history(history)
    assert rows is not None
    times = dict(rows.group_by("run_id").agg(pl.col("created_at").first()).iter_rows())
    assert times == {"a": datetime(2024, 6, 1, 6, tzinfo=UTC),
                     "b": datetime(2024, 6, 1, 8, tzinfo=UTC),
                     "c": datetime(2024, 6, 1, 13, tzinfo=UTC)}


def test_missing_or_empty_history_reads_as_none(tmp_path: Path) -> None:
    assert read_history(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    assert read_history(tmp_path / "empty") is None
    append_history(tmp_path / "no-rows", make_drift(2, 1).clear(), "r", "2024-06-01T00:00:00Z")
    assert read_history(tmp_path / "no-rows") is None


def test_drop_history_removes_only_that_run(tmp_path: Path) -> None:
    from pipeline.write.history import drop_history

    table = pl.DataFrame({"feature": ["a"], "value": [0.1]})
    for run_id in ("r1", "r2"):
        append_history(tmp_path, table, run_id, "2026-01-01T00:00:00Z")
    drop_history(tmp_path, "r1")
    drop_history(tmp_path, "never-written")  # nothing to drop is fine
    assert read_history(tmp_path)["run_id"].to_list() == ["r2"]


def test_a_staged_part_joins_the_history_only_when_committed(tmp_path: Path) -> None:
    history = tmp_path / "history"
    append_history(history, make_drift(3, 2, seed=1), "r1", "2024-06-01T00:00:00Z")
    rerun = make_drift(2, 2, seed=2)
    staged = stage_history(history, rerun, "r1", "2024-06-02T00:00:00Z")
    before = read_history(history)
    assert before is not None and before.height == 6  # readers still see the first run
    assert staged.commit() == partition_dir(history, "r1") / "part.parquet"
    after = read_history(history)
    assert after is not None
    assert_frame_equal(after.drop("run_id", "created_at", "reference"), rerun.drop("bins"))
    dropped = stage_history(history, make_drift(1, 1), "r2", "2024-06-03T00:00:00Z")
    dropped.discard()  # a run that failed: nothing of it stays
    assert sorted(p.name for p in history.rglob("*") if p.is_file()) == ["part.parquet"]


def test_a_part_encoded_ahead_is_the_file_staging_writes_for_its_run_only(
        tmp_path: Path) -> None:
    history, drift = tmp_path / "history", make_drift(3, 2)
    encoded = encode_history(drift, "r1", "2024-06-01T06:00:00+02:00")
    direct = stage_history(history, drift, "r1", "2024-06-01T04:00:00Z").staged.read_bytes()
    assert encoded.data == direct  # the same file, bytes for bytes (times compared in UTC)
    # written as encoded for its run and time: not encoded again, so not the table given
    ahead = stage_history(history, make_drift(1, 1), "r1", datetime(2024, 6, 1, 4, tzinfo=UTC),
                          encoded=encoded).commit()
    assert ahead.read_bytes() == direct
    # another run id (one claimed after encoding) or time: the table is encoded for it
    for run_id, created_at in (("r2", "2024-06-01T04:00:00Z"), ("r1", "2024-06-02T04:00:00Z")):
        stored = pl.read_parquet(stage_history(history, drift, run_id, created_at,
                                               encoded=encoded).commit())
        assert stored["run_id"].unique().to_list() == [run_id]
        assert stored["created_at"].unique().to_list() == [
            datetime.fromisoformat(created_at)]
        assert_frame_equal(stored.drop("run_id", "created_at"), drift.drop("bins"))
        # the encoding the only copy kept: its rows, read back, are encoded for the run
        alone = stage_history(history, None, run_id, created_at, encoded=encoded)
        direct_part = stage_history(history, drift, run_id, created_at)
        assert alone.staged.read_bytes() == direct_part.staged.read_bytes()
        alone.discard()
        direct_part.discard()
    with pytest.raises(ValueError, match="table or its encoding"):
        stage_history(history, None, "r1", "2024-06-01T04:00:00Z")


def test_staged_parts_of_killed_runs_are_removed(tmp_path: Path) -> None:
    history = tmp_path / "history"
    partition = partition_dir(history, "r1")
    partition.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    staged = f".part.parquet.{dead}.abc123.tmp"  # killed after its staged part was written
    alive = f".histograms.parquet.{os.getppid()}.abc123.tmp"  # a run still writing
    for name in (staged, alive):
        (partition / name).write_text("partial")
    append_history(history, make_drift(1, 1), "r2", "2024-06-01T00:00:00Z")
    assert sorted(p.name for p in partition.iterdir()) == [alive]
