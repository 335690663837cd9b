"""The cross-run history dataset: every run's compact drift rows, hive-partitioned by run id.

Layout: ``<history_dir>/run_id=<safe_filename(run_id)>/part.parquet``. Each file holds one
run's drift rows without the per-bin ``bins`` list, plus ``run_id`` (the original id, which
the folder name may have had to alter) and ``created_at`` (UTC). Writing a run id again
replaces its partition, so reruns never duplicate rows.
"""

from __future__ import annotations

import os
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


def read_history(history_dir: str | os.PathLike[str]) -> pl.DataFrame | None:
    """All runs' rows, or None when the dataset is missing or empty.

    Runs may have different segment columns: the union of the columns is returned, with
    nulls where a run lacks one.
    """
    files = sorted(Path(history_dir).glob(f"run_id=*/{PART_FILE}"))
    if not files:
        return None
    schema: dict[str, pl.DataType] = {}
    for file in files:
        for name, dtype in pl.read_parquet_schema(file).items():
            if schema.get(name, pl.Null) == pl.Null:  # an all-null column says nothing
                schema[name] = dtype
    # The folder name is only a safe form of the id: read the original from the files.
    history = pl.scan_parquet(files, hive_partitioning=False, schema=schema,
                              missing_columns="insert").collect()
    return history if history.height else None
