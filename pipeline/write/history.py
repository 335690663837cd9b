"""The cross-run history dataset: every run's compact drift rows, hive-partitioned by run id.

Layout: ``<history_dir>/run_id=<safe_filename(run_id)>/part.parquet``. Each file holds one
run's drift rows without the per-bin ``bins`` list, plus ``run_id`` (the original id, which
the folder name may have had to alter) and ``created_at`` (UTC). Writing a run id again
replaces its partition, so reruns never duplicate rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipeline.files import atomic_write, safe_filename

#: Folder of the history dataset inside ``output.dir``, next to the run folders.
HISTORY_DIR = "history"
PART_FILE = "part.parquet"
CREATED_AT = pl.Datetime("us", "UTC")


def partition_dir(history_dir: str | os.PathLike[str], run_id: str) -> Path:
    """The folder holding ``run_id``'s rows: always inside ``history_dir``."""
    return Path(history_dir) / f"run_id={safe_filename(run_id)}"


def as_utc(created_at: datetime | str) -> datetime:
    """An ISO-8601 string or datetime as an aware UTC datetime (naive means UTC)."""
    moment = datetime.fromisoformat(created_at) if isinstance(created_at, str) else created_at
    # Naive times are taken as UTC, the timezone every run folder uses.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def append_history(
    history_dir: str | os.PathLike[str],
    drift: pl.DataFrame,
    run_id: str,
    created_at: datetime | str,
) -> Path:
    """Add (or replace) one run's drift rows in the history dataset.

    Parameters
    ----------
    history_dir : path
        Root of the dataset, e.g. ``<out>/history``; created when missing.
    drift : polars.DataFrame
        The run's drift table (``drift.parquet``); its ``bins`` column is dropped.
    run_id : str
        The run id; its partition is replaced if it already exists.
    created_at : datetime or str
        When the run was created (ISO-8601 string or datetime; naive means UTC).

    Returns
    -------
    pathlib.Path
        The partition file written (atomically).
    """
    rows = drift.drop("bins", strict=False).with_columns(
        run_id=pl.lit(run_id, dtype=pl.String),
        created_at=pl.lit(as_utc(created_at), dtype=CREATED_AT),
    )
    return atomic_write(partition_dir(history_dir, run_id) / PART_FILE, rows.write_parquet)


def drop_history(history_dir: str | os.PathLike[str], run_id: str) -> None:
    """Remove ``run_id``'s rows (a rerun of that id that checked no features)."""
    partition = partition_dir(history_dir, run_id)
    (partition / PART_FILE).unlink(missing_ok=True)
    if partition.is_dir() and not any(partition.iterdir()):
        partition.rmdir()


def history_files(history_dir: str | os.PathLike[str]) -> list[Path]:
    """The partition files of the dataset (one per run), or ``[]`` when it is missing."""
    return sorted(Path(history_dir).glob(f"run_id=*/{PART_FILE}"))


def scan_history(history_dir: str | os.PathLike[str], *,
                 files: Sequence[Path] | None = None) -> pl.LazyFrame | None:
    """A lazy scan of the runs' rows (all runs, or the partition ``files`` given).

    Runs may have different segment columns: the scan has the union of the columns, with
    nulls where a run lacks one. Only the Parquet footers are read here; select columns
    and filter rows before collecting, so a report reads only what it shows.
    """
    files = history_files(history_dir) if files is None else list(files)
    if not files:
        return None
    schema: dict[str, pl.DataType] = {}
    for file in files:
        for name, dtype in pl.read_parquet_schema(file).items():
            if schema.get(name, pl.Null) == pl.Null:  # an all-null column says nothing
                schema[name] = dtype
    # The folder name is only a safe form of the id: read the original from the files.
    return pl.scan_parquet(files, hive_partitioning=False, schema=schema,
                           missing_columns="insert")


def read_history(history_dir: str | os.PathLike[str]) -> pl.DataFrame | None:
    """All runs' rows, or None when the dataset is missing or empty.

    Loads everything: reports use `read_recent_runs`, which reads only what they show.
    """
    scan = scan_history(history_dir)
    history = None if scan is None else scan.collect()
    return history if history is not None and history.height else None


def stored_runs(history_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """One row per stored run, oldest first: ``run_id``, ``created_at``, ``file``.

    Reads one row of two columns per partition file, whatever the runs' sizes.
    """
    rows = []
    for file in history_files(history_dir):
        first = pl.scan_parquet(file).select("run_id", "created_at").head(1).collect()
        if first.height:
            rows.append({**first.row(0, named=True), "file": str(file)})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "created_at": CREATED_AT,
                                      "file": pl.String}).sort("created_at", "run_id")


def read_recent_runs(
    history_dir: str | os.PathLike[str],
    keys: pl.DataFrame,
    columns: Sequence[str],
    *,
    exclude_run_id: str | None = None,
    max_runs: int = 30,
) -> tuple[pl.DataFrame | None, int]:
    """The rows of the newest ``max_runs`` stored runs for some segment x feature pairs.

    Memory follows what is returned, not the size of the history: only the newest runs'
    files are scanned, only ``columns`` are read, and only rows of the ``keys`` are kept
    (streamed).

    Parameters
    ----------
    history_dir : path
        The history dataset; a missing folder reads as no runs.
    keys : polars.DataFrame
        ``segment`` and ``feature`` of the series wanted.
    columns : sequence of str
        Columns to return (``run_id``, ``created_at``, ``segment`` and ``feature`` are
        always included).
    exclude_run_id : str, optional
        A run to leave out (the one being reported, whose own rows the report has).
    max_runs : int
        Newest runs to read (by ``created_at``).

    Returns
    -------
    (polars.DataFrame or None, int)
        The rows (None when there are none) and how many runs, other than
        ``exclude_run_id``, the dataset holds in all.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for day in (1, 2, 3):
    ...     table = pl.DataFrame({"segment": ["all"] * 2, "feature": ["a", "b"],
    ...                           "value": [0.1 * day, 0.2]})
    ...     _ = append_history(folder, table, f"r{day}", f"2024-06-0{day}T00:00:00Z")
    >>> rows, n_runs = read_recent_runs(folder, pl.DataFrame({"segment": ["all"],
    ...     "feature": ["a"]}), ["value"], exclude_run_id="r3", max_runs=1)
    >>> rows.select("run_id", "feature", "value").rows(), n_runs
    ([('r2', 'a', 0.2)], 2)
    """
    runs = stored_runs(history_dir)
    if exclude_run_id is not None:
        runs = runs.filter(pl.col("run_id") != exclude_run_id)
    scan = scan_history(history_dir, files=[Path(f) for f in runs["file"].tail(max_runs)])
    if scan is None or keys.is_empty():
        return None, runs.height
    wanted = list(dict.fromkeys(["run_id", "created_at", "segment", "feature", *columns]))
    rows = (scan.filter(pl.col("feature").is_in(keys["feature"].unique().implode()))
            .select(wanted)
            .join(keys.lazy().select("segment", "feature").unique(), on=["segment", "feature"],
                  how="semi")
            .collect(engine="streaming"))
    return (rows if rows.height else None), runs.height
