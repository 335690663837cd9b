"""Files every stage writes the same way: atomically, with safe names and plain permissions.

A write goes to a temp file in the target's folder and is renamed into place, so a reader
sees the old file or the new one, never a partial one. Names derived from data (feature
names, run ids) go through :func:`safe_filename` before they become paths.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import polars as pl

from pipeline.errors import OutputError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@functools.cache
def _umask() -> int:
    # The only portable way to read the umask is to set it; done once, on first write.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_filename(name: str, *, max_length: int = 80) -> str:
    """Turn any data-derived string (feature name, run id) into one safe path component.

    Path separators, ``..``, control and non-ASCII characters are replaced, so the result
    can never leave the folder it is joined to. A name that had to change gets a short hash
    of the original appended, so two different names never collide.

    >>> safe_filename("dep_delay")
    'dep_delay'
    >>> safe_filename("../../etc/passwd")
    'etc_passwd-3754d6cb'
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_name).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned)[:max_length].strip("._-")
    cleaned = cleaned or "unnamed"
    if cleaned != name:
        cleaned += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def output_error(error: BaseException, path: str | os.PathLike[str]) -> OutputError | None:
    """The one-line :class:`OutputError` for an OS failure writing ``path``, else None."""
    if not isinstance(error, OSError) or error.errno is None:
        return None
    return OutputError(error.errno, f"cannot write {os.fspath(path)}: "
                                    f"{os.strerror(error.errno)}; check the output folder "
                                    "(output.dir / --out) and free space")


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p``, with a one-line OutputError naming the path when it cannot be made."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from error  # type: ignore[misc]
    return folder


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(target: Path) -> None:
    """Delete temp files a killed writer of ``target`` left (their process is gone)."""
    for orphan in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = orphan.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            orphan.unlink(missing_ok=True)


class _RecordedFile(io.FileIO):
    """A file that keeps the OS error of its last failed write.

    Writers that wrap the error in their own (polars: "Invalid thrift: transport error"
    when the disk fills while it writes a footer) lose its errno; this keeps it. A guess
    from the free space afterwards would race with other writers freeing theirs.
    """

    error: OSError | None = None

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as error:
            self.error = error
            raise

    def fileno(self) -> int:
        # Without a descriptor polars writes through write() above, not around it.
        raise io.UnsupportedOperation("fileno")


def write_staged(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temp file next to ``path`` and return it, complete, for
    :func:`commit_staged` to rename into place (or the caller to delete).

    A failed write leaves no temp file behind; one left by a killed process is removed by
    the next writer of ``path`` (:func:`remove_orphans`). OS failures (read-only or full
    disk, a file where a folder should be) raise a one-line :class:`OutputError` naming
    ``path``, also when ``write`` reported them as an error of its own.
    """
    target = Path(path)
    make_dirs(target.parent)
    remove_orphans(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as error:
        raise output_error(error, target) from error  # type: ignore[misc]
    tmp = Path(tmp_name)
    raw = _RecordedFile(fd, "w")
    try:
        with io.BufferedWriter(raw) as file:  # loops over short writes
            write(file)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        tmp.chmod(0o666 & ~_umask())
    except BaseException as error:
        raw.close()
        tmp.unlink(missing_ok=True)
        converted = output_error(raw.error or error, target)
        if converted is not None:
            raise converted from error
        raise
    return tmp


def commit_staged(staged: Path, path: str | os.PathLike[str]) -> Path:
    """Rename the file :func:`write_staged` wrote into place as ``path`` (atomically); on
    failure the staged file is removed and an OS error raised as a one-line
    :class:`OutputError`."""
    try:
        os.replace(staged, path)
    except BaseException as error:
        staged.unlink(missing_ok=True)
        converted = output_error(error, path)
        if converted is not None:
            raise converted from error
        raise
    return Path(path)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it into place.

    Readers see the old file or the new one, never a partial one; a failed write leaves
    the old file untouched and no temp file behind. OS failures raise a one-line
    :class:`OutputError` naming ``path`` (:func:`write_staged`).
    """
    return commit_staged(write_staged(path, write), path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return commit_staged(stage_bytes(path, data), path)


def stage_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`atomic_write_bytes` up to the rename: the temp file, for :func:`commit_staged`."""
    return write_staged(path, lambda file: file.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def tool_version() -> str:
    """The installed kl-drift version, for run metadata (``0+unknown`` from a source tree)."""
    try:
        return importlib.metadata.version("kl-drift")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


#: zstd level of the Parquet tables kl-drift writes. Level 1 instead of polars' default 3:
#: the 500,000-row drift table of the issue-12 benchmark is written with 15% less CPU for
#: 6% more bytes (its per-bin doubles hardly compress at any level), its history
#: partitions 10-30% faster at about the same size; zstd is still the codec every reader has.
PARQUET_ZSTD_LEVEL = 1


def write_parquet(path: str | os.PathLike[str], frame: pl.DataFrame,
                  metadata: dict[str, str] | None = None) -> Path:
    """Write ``frame`` to ``path`` as Parquet (zstd, `PARQUET_ZSTD_LEVEL`), atomically,
    with optional key-value ``metadata`` in the file footer."""
    return atomic_write(path, _parquet(frame, metadata))


def stage_parquet(path: str | os.PathLike[str], frame: pl.DataFrame) -> Path:
    """:func:`write_parquet` up to the rename: the temp file, for :func:`commit_staged`."""
    return write_staged(path, _parquet(frame, None))


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """The bytes :func:`write_parquet` writes of ``frame`` (without metadata)."""
    buffer = io.BytesIO()
    _parquet(frame, None)(buffer)
    return buffer.getvalue()


def _parquet(frame: pl.DataFrame, metadata: dict[str, str] | None
             ) -> Callable[[BinaryIO], object]:
    return lambda file: frame.write_parquet(
        file, metadata=metadata, compression="zstd", compression_level=PARQUET_ZSTD_LEVEL)
