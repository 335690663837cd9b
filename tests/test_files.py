"""pipeline.files: atomic writes, permissions, orphaned temp files, safe names, OS errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import OutputError
from pipeline.files import (
    atomic_write,
    atomic_write_text,
    output_error,
    safe_filename,
    write_parquet,
)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "alerts.json"
    atomic_write_text(target, "old")

    def half(file: BinaryIO) -> None:
        file.write(b"new, but only ha")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["alerts.json"]


def test_the_rename_is_the_last_step(tmp_path: Path) -> None:
    """While the new content is written, readers still see the old file."""
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")
    seen = []

    def write(file: BinaryIO) -> None:
        file.write(b"new")
        file.flush()
        seen.append(target.read_text())

    atomic_write(target, write)
    assert seen == ["old"] and target.read_text() == "new"


def test_files_get_the_permissions_a_plain_open_would(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        plain = tmp_path / "b.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_missing_folders_are_made_and_parquet_footers_kept(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "2024-06-08" / "drift.parquet"
    write_parquet(target, pl.DataFrame({"x": [1, 2]}), {"kl_drift.run": "r1"})
    assert pl.read_parquet(target)["x"].to_list() == [1, 2]
    assert pl.read_parquet_metadata(target)["kl_drift.run"] == "r1"


def test_temp_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "drift.parquet"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = tmp_path / f".drift.parquet.{dead}.abc123.tmp"
    alive = tmp_path / f".drift.parquet.{os.getppid()}.def456.tmp"  # a writer still running
    other = tmp_path / f".other.parquet.{dead}.abc123.tmp"  # not this target's
    for path in (orphan, alive, other):
        path.write_text("partial")
    atomic_write_text(target, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, other.name, target.name])


def test_os_failures_become_one_line_output_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(OutputError, match=r"^cannot write .*file/sub: Not a directory"):
        atomic_write_text(blocker / "sub" / "x.txt", "x")
    assert output_error(ValueError("not an OS error"), "x") is None
    assert output_error(OSError("no errno"), "x") is None


@pytest.mark.parametrize("writer", ["own error", "parquet"])
def test_a_full_disk_is_reported_as_such_however_the_writer_words_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    """Polars wraps a full disk met while writing a footer as "Invalid thrift: transport
    error", without the errno: the file itself remembers the OS error."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    target = tmp_path / "drift.parquet"
    monkeypatch.setattr(tempfile, "mkstemp", lambda **_kw: (
        os.open("/dev/full", os.O_WRONLY), str(tmp_path / ".drift.parquet.tmp")))

    def own_error(file: BinaryIO) -> None:
        try:
            file.write(b"x" * 100_000)  # larger than the buffer: reaches the disk now
        except OSError:
            raise pl.exceptions.ComputeError("parquet: Invalid thrift: transport error") from None

    write = own_error if writer == "own error" else (
        lambda file: pl.DataFrame({"x": range(100_000)}).write_parquet(file))
    with pytest.raises(OutputError, match=r"^cannot write .*drift.parquet: No space left on "
                                          r"device; check the output folder"):
        atomic_write(target, write)
    assert os.listdir(tmp_path) == []


@given(st.text(max_size=120))
def test_safe_names_are_one_plain_path_component(name: str) -> None:
    safe = safe_filename(name)
    assert safe and all(c.isascii() and (c.isalnum() or c in "._-") for c in safe)
    assert not safe.startswith(".") and "/" not in safe and len(safe) <= 80 + 9
    if len(safe) <= 80:
        assert safe_filename(safe) == safe  # a safe name stays as it is


@given(st.text(max_size=40), st.text(max_size=40))
def test_different_names_never_share_a_safe_name(a: str, b: str) -> None:
    if a != b:
        assert safe_filename(a) != safe_filename(b)
