"""The run folder: its files written together, and read back (checked) for the reports.

Writing: the tables, then ``alerts.json``, each atomically. Reading: ``alerts.json`` says
which parts the run checked: feature drift (``drift.parquet``; absent only in a run without
features, whose ``summary.total`` is 0 and which has a ``models`` or ``estimates`` block),
its trends (a ``trends`` block: ``trends.parquet``), model outputs (its ``models`` block: the
three ``MODELS_FILES``), estimates (its ``estimates`` block: ``estimates.parquet``) and joint
drift (its ``joint`` block: ``joint.parquet``). Problems become one-line `InputError`s naming
the file and what is wrong, so ``kl-drift report RUN_DIR`` can print them and exit 2.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import polars as pl
from pydantic import ValidationError

from pipeline.errors import InputError, OutputError
from pipeline.files import (
    atomic_write_text,
    make_dirs,
    output_error,
    pid_alive,
    safe_filename,
    write_parquet,
)
from pipeline.formats import (
    ALERTS_FILE,
    DRIFT_FILE,
    ESTIMATES_FILE,
    JOINT_FILE,
    MODELS_FILES,
    TRENDS_FILE,
)
from pipeline.write.documents import SCHEMA_VERSION, AlertsDocument, dumps_json

if TYPE_CHECKING:  # imported by runs that compare models, not by every run
    from pipeline.measure.models import ModelDrift

# The columns the reports read of each table (docs/architecture.md, docs/models.md and
# docs/estimators.md have the full contracts).
REPORT_COLUMNS = ("segment", "feature", "window", "n_baseline", "n_current", "metric", "value",
                  "warn_threshold", "critical_threshold", "p_value", "q_value", "status",
                  "reason", "top_bins", "bins")
MODEL_COLUMNS = {
    "models": ("segment", "window", "n", "js_distance_mean", "js_distance_p95",
               "js_distance_max", "flip_rate", "metric", "value", "status"),
    "classes": ("segment", "window", "class", "baseline_mean", "current_mean",
                "baseline_predicted_share", "current_predicted_share"),
    "examples": ("segment", "window", "rank", "baseline_class", "current_class",
                 "baseline_probs", "current_probs"),
}
# Required columns the reports format as numbers or show as text; a table whose column has
# another type (edited by hand, written by another tool) is malformed.
_NUMBERS = frozenset({
    "n_baseline", "n_current", "value", "warn_threshold", "critical_threshold", "p_value",
    "q_value", "n", "js_distance_mean", "js_distance_p95", "js_distance_max", "flip_rate",
    "baseline_mean", "current_mean", "baseline_predicted_share", "current_predicted_share",
    "rank", "stderr", "ci_low", "ci_high"})
_TEXTS = frozenset({"segment", "feature", "window", "metric", "status", "reason", "class",
                    "estimator", "baseline_class", "current_class"})
#: Footer key of every table of a run folder: :func:`run_stamp` of the run that wrote it.
RUN_KEY = "kl_drift.run"
ESTIMATE_COLUMNS = ("segment", "window", "estimator", "n", "value", "stderr", "ci_low",
                    "ci_high")
TREND_COLUMNS = ("segment", "feature", "statistic", "reference", "window", "checked", "value",
                 "expected", "lower_red", "lower_yellow", "upper_yellow", "upper_red", "pull",
                 "light")
JOINT_COLUMNS = ("segment", "window", "n_baseline", "n_current", "kl", "kl_low", "kl_high",
                 "reverse_kl", "auc", "q_value", "value", "status", "reason", "top_features",
                 "view")


@dataclass(frozen=True)
class ModelTables:
    """The model comparison of a run: its alerts.json block and its three tables."""

    block: dict[str, Any]
    summary: pl.DataFrame  # models.parquet
    classes: pl.DataFrame  # model_classes.parquet
    examples: pl.DataFrame  # model_examples.parquet


@dataclass(frozen=True)
class RunFolder:
    """Everything the reports show of a run; a part the run did not check is ``None``."""

    alerts: dict[str, Any]
    drift: pl.DataFrame | None
    models: ModelTables | None
    estimates: pl.DataFrame | None
    trends: pl.DataFrame | None = None
    joint: pl.DataFrame | None = None


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path.name} not found; a run folder holds the output of "
                         "`kl-drift run`", source=str(path.parent))


def read_table(path: Path, columns: tuple[str, ...], *, skip: tuple[str, ...] = ()
               ) -> pl.DataFrame:
    """Load one Parquet table of the run folder and check it has ``columns``.

    Columns in ``skip`` are checked but not loaded (the reports load a few rows of the
    drift table's large ``bins`` column themselves).
    """
    _require_file(path)
    try:
        scan = pl.scan_parquet(path, glob=False)  # a `[` in the folder's path is no glob
        schema = scan.collect_schema()
        table = scan.select([c for c in schema if c not in skip]).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})",
                         source=str(path)) from exc
    missing = [c for c in columns if c not in schema]
    if missing:
        raise InputError(f"{path.name} lacks a required column (see docs/reports.md)",
                         source=str(path), column=missing[0])
    for name in columns:
        dtype = schema[name]
        wrong = dtype != pl.Null and (not dtype.is_numeric() if name in _NUMBERS else
                                      name in _TEXTS and dtype != pl.String)
        if wrong:
            raise InputError(f"{path.name} has type {dtype} in this column, not "
                             f"{'numbers' if name in _NUMBERS else 'text'} (see "
                             "docs/reports.md)", source=str(path), column=name)
    return table


def read_drift(path: Path, *, bins: bool = True) -> pl.DataFrame:
    """Load ``drift.parquet`` (without its ``bins`` column unless ``bins``) and check it has
    the columns the reports need."""
    return read_table(path, REPORT_COLUMNS, skip=() if bins else ("bins",))


def read_run(run_dir: Path, *, bins: bool = True) -> RunFolder:
    """Read ``alerts.json`` and every table of the parts it says the run checked.

    ``bins=False`` leaves the drift table's per-bin lists on disk (`read_bins` loads the
    rows a report shows): at 500,000 rows they are most of its memory.
    """
    alerts = read_alerts(run_dir / ALERTS_FILE)
    block = alerts.get("models")
    models = None
    if block is not None:
        # The examples table also has the id column and the ranking metric, named by block.
        columns = {**MODEL_COLUMNS, "examples": (*MODEL_COLUMNS["examples"],
                                                 block["id_column"], block["top_by"])}
        models = ModelTables(block, *(read_table(run_dir / MODELS_FILES[name], columns[name])
                                      for name in ("models", "classes", "examples")))
    has_estimates = alerts.get("estimates") is not None
    features = alerts["summary"]["total"] > 0 or (block is None and not has_estimates)
    return RunFolder(
        alerts=alerts,
        drift=read_drift(run_dir / DRIFT_FILE, bins=bins) if features else None,
        models=models,
        estimates=(read_table(run_dir / ESTIMATES_FILE, ESTIMATE_COLUMNS)
                   if has_estimates else None),
        trends=(read_table(run_dir / TRENDS_FILE, TREND_COLUMNS)
                if alerts.get("trends") is not None else None),
        joint=(read_table(run_dir / JOINT_FILE, JOINT_COLUMNS)
               if alerts.get("joint") is not None else None))


def read_bins(path: Path, rows: pl.Series, *, chunk: int = 50_000) -> pl.Series:
    """The ``bins`` lists of some rows of a ``drift.parquet`` file, in the order of ``rows``.

    Reads the column ``chunk`` rows at a time, and only the chunks holding a row asked for:
    memory holds one chunk and the rows asked for, not the whole column (at 500,000 rows of
    20 bins the column alone takes about 1.5 GB in memory).
    """
    wanted = pl.DataFrame({"_row": rows.cast(pl.Int64)}).with_row_index("_order")
    parts = []
    for (first,), group in wanted.group_by(pl.col("_row") // chunk, maintain_order=True):
        part = (pl.scan_parquet(path, low_memory=True, glob=False).select("bins")
                .slice(int(first) * chunk, chunk).collect())
        parts.append(group.select("_order", part["bins"].gather(group["_row"] - first * chunk)))
    if not parts:
        return pl.Series("bins", [], dtype=pl.Null)
    return pl.concat(parts).sort("_order")["bins"]


def read_alerts(path: Path) -> dict[str, Any]:
    """Load ``alerts.json`` and validate it against `AlertsDocument` (docs/reports.md)."""
    _require_file(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        AlertsDocument.model_validate(doc)
        datetime.fromisoformat(doc["run"]["created_at"])  # the across-runs plot orders by it
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", source=str(path)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise InputError(f"not a valid alerts document (schema_version {SCHEMA_VERSION}): "
                         f"{where}: {first['msg']}", source=str(path)) from exc
    except ValueError as exc:
        raise InputError(f"run.created_at is not an ISO-8601 time: {exc}",
                         source=str(path)) from exc
    return doc


def write_run_outputs(run_dir: str | os.PathLike[str],
                      tables: Mapping[str, pl.DataFrame | None],
                      document: Mapping[str, Any]) -> list[Path]:
    """Write a run's Parquet tables, then its ``alerts.json``, into ``run_dir``, atomically.

    Parameters
    ----------
    run_dir : path
        The run folder.
    tables : mapping of str to DataFrame or None
        File name -> table. ``None`` deletes that file: a rerun of the same run id without
        that part must not leave a stale table behind.
    document : mapping
        The ``alerts.json`` document, written last so it never points at a table that is
        not there yet.

    Returns
    -------
    list of pathlib.Path
        The files written, ``alerts.json`` last. Each table's footer carries the run's
        stamp (:data:`RUN_KEY`), so a reader can check every file is of the same run.
    """
    folder = Path(run_dir)
    written = []
    stamp = run_stamp(document)
    for name, table in tables.items():
        if table is None:
            (folder / name).unlink(missing_ok=True)
        else:
            written.append(write_parquet(folder / name, table, {RUN_KEY: stamp}))
    return [*written, atomic_write_text(folder / ALERTS_FILE, dumps_json(document))]


def run_stamp(document: Mapping[str, Any]) -> str:
    """The run a file belongs to, as stored in each table's footer (``kl_drift.run``):
    the run id and creation time of its ``alerts.json``."""
    run = document.get("run", {})
    return json.dumps({"run_id": run.get("run_id"), "created_at": run.get("created_at")},
                      sort_keys=True)


def model_tables(result: ModelDrift) -> dict[str, pl.DataFrame]:
    """The run-folder files of a comparison: file name -> table (``MODELS_FILES``)."""
    tables = {"models": result.summary, "classes": result.classes, "examples": result.examples}
    return {MODELS_FILES[name]: table for name, table in tables.items()}


# --- publishing a run folder: all of one run, or all of the previous one -------------------

#: Folder of kl-drift's own bookkeeping inside ``output.dir``: staging folders and locks.
INTERNAL_DIR = ".kl-drift"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# errno values meaning "this filesystem or kernel cannot exchange": fall back to two renames
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV}


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False when the
    system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str], run_id: str) -> Iterator[None]:
    """Hold the lock of ``run_id`` in ``out_dir``: concurrent runs of one id publish in turn.

    The lock is an ``flock`` on a file under ``.kl-drift/locks``; the OS releases it when
    a process dies, so a killed run never blocks the next.
    """
    with _lock_file(out_dir, "locks", run_id) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def claimed_run_id(out_dir: str | os.PathLike[str], candidates: Iterable[str],
                   taken: Callable[[str], bool]) -> Iterator[str]:
    """The first of ``candidates`` that is not ``taken`` and that no other process holds,
    held by this process until the block ends (its run published by then).

    Two runs started in the same second pick their automatic ids before either has a
    folder: each holds its id by an ``flock`` on a file under ``.kl-drift/claims``, so the
    second takes the next candidate instead of replacing the first's run. The OS releases
    the lock when a process dies. An id is checked again once held: a run that published
    it meanwhile has taken it.
    """
    for run_id in candidates:
        if taken(run_id):
            continue
        with _lock_file(out_dir, "claims", run_id) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process of the same second holds it
                continue
            if taken(run_id):
                continue
            yield run_id
            return
    raise ValueError("no run id left to claim")


def _lock_file(out_dir: str | os.PathLike[str], kind: str, run_id: str) -> TextIO:
    """The open lock file of ``run_id`` under ``.kl-drift/<kind>``."""
    path = make_dirs(Path(out_dir) / INTERNAL_DIR / kind) / f"{safe_filename(run_id)}.lock"
    try:
        return open(path, "a")
    except OSError as error:
        raise output_error(error, path) from error  # type: ignore[misc]


@contextlib.contextmanager
def staging_folder(out_dir: str | os.PathLike[str], run_id: str) -> Iterator[Path]:
    """An empty folder to write a run into before :func:`publish` switches it in.

    Removed again when the block raises. Staging folders that killed runs left behind
    (their process is gone) are removed first.
    """
    staging = make_dirs(Path(out_dir) / INTERNAL_DIR / "staging")
    for stale in staging.iterdir():
        pid = stale.name.rsplit(".", 2)[-2] if stale.name.count(".") >= 2 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = staging / f"{safe_filename(run_id)}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    make_dirs(folder)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def publish(staging: Path, run_dir: Path) -> Path:
    """Make the staged folder ``run_dir`` in one step: readers see the old run or the new one.

    A first run renames the folder into place. A rerun exchanges the two folders
    atomically (``renameat2``) and deletes the old one; where the filesystem cannot
    exchange, the old folder is renamed aside first, so a reader may briefly find no
    folder, but never a mix of two runs. Call under :func:`run_lock`.

    Raises
    ------
    OutputError
        ``run_dir`` is a file, or the folder cannot be written.
    """
    try:
        if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
            raise OutputError(errno.ENOTDIR, f"cannot write run folder {run_dir}: a file is "
                              "in the way; move it or choose another run id")
        if not run_dir.exists():
            os.rename(staging, run_dir)
        elif _exchange(staging, run_dir):
            shutil.rmtree(staging)  # now the previous run's folder
        else:
            aside = staging.with_name(staging.name + "-old")
            os.rename(run_dir, aside)
            os.rename(staging, run_dir)
            shutil.rmtree(aside)
    except OSError as error:
        raise output_error(error, run_dir) from error  # type: ignore[misc]
    return run_dir
