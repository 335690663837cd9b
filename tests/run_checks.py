"""Checks of what a run leaves on disk, shared by the monitoring and reliability tests.

A run folder describes exactly one run (:func:`assert_one_run`), an output folder holds no
temp files or staging folders once its runs have ended (:func:`assert_clean`), and a failed
command says what went wrong in exactly one line on stderr (:func:`one_error_line`).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pipeline.formats import ALERTS_FILE, PROFILE_FILE
from pipeline.write.run_folder import INTERNAL_DIR, RUN_KEY


def assert_one_run(run_dir: Path) -> dict[str, str]:
    """Every file of a run folder belongs to the run its alerts.json names: each table's
    footer stamp is the run's, both reports carry its creation time, no temp files."""
    document = json.loads((run_dir / ALERTS_FILE).read_text())
    stamp = {"run_id": document["run"]["run_id"], "created_at": document["run"]["created_at"]}
    for table in run_dir.glob("*.parquet"):
        if table.name == PROFILE_FILE:
            continue
        assert json.loads(pl.read_parquet_metadata(table)[RUN_KEY]) == stamp, table
    for report in ("report.md", "report.html"):
        assert stamp["created_at"] in (run_dir / report).read_text(), report
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files
    return stamp


def run_folders(out_dir: Path) -> list[Path]:
    """The run folders of an output folder (those holding an alerts.json)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if (p / ALERTS_FILE).is_file())


def assert_clean(out_dir: Path, *, whole: bool = True) -> list[dict[str, str]]:
    """Every run folder of ``out_dir`` is one whole run (unless not ``whole``), and no run
    left a temp file or a staging folder anywhere below it. Returns the runs' stamps."""
    stamps = [assert_one_run(folder) for folder in run_folders(out_dir)] if whole else []
    if out_dir.is_dir():
        leftovers = [p for p in out_dir.rglob(".*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
        staging = out_dir / INTERNAL_DIR / "staging"
        assert not staging.is_dir() or not any(staging.iterdir()), list(staging.iterdir())
    return stamps


def one_error_line(stderr: str, *names: str) -> str:
    """The single ``kl-drift: error: ...`` line of a failed command, checked to name each
    of ``names`` (file, feature, column, key or path)."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), stderr
    line = lines[0]
    assert line.startswith("kl-drift: error: "), line
    assert "Traceback" not in line, line
    for name in names:
        assert name in line, (name, line)
    return line
