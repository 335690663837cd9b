"""The cross-run history dataset: every run's compact decisions, hive-partitioned by run id.

Layout: ``<history_dir>/run_id=<safe_filename(run_id)>/part.parquet`` (feature drift rows
without the per-bin ``bins`` list), ``histograms.parquet`` (the run's current histograms, one
row per segment x feature x window x bin: what moving references and trends are computed
from, so no raw data is read again), ``models.parquet`` (model-output rows) and
``joint.parquet`` (joint drift rows, without the 2-D ``view``), each with
``run_id`` (the original id, which the folder name may have had to alter) and ``created_at``
(UTC). Writing a run id again replaces its files, so reruns never duplicate rows. Later runs
read the decisions back (:func:`scan_decisions`) to carry persistence and alert lifecycles
from run to run, and the histograms (:func:`scan_histograms`, lazily: the caller filters
them before anything is loaded); the reports read the newest runs (:func:`read_recent_runs`).
A partition that cannot be read — not Parquet, truncated, corrupt pages, missing or mistyped
columns — is skipped with a warning naming it (a run warning, or a :class:`KLDriftWarning`).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipeline.errors import KLDriftWarning
from pipeline.files import (
    commit_staged,
    parquet_bytes,
    remove_orphans,
    safe_filename,
    stage_bytes,
    stage_parquet,
)

#: Folder of the history dataset inside ``output.dir``, next to the run folders.
HISTORY_DIR = "history"
PART_FILE = "part.parquet"
#: The file of each part of a run in its partition.
PART_FILES = {"features": PART_FILE, "histograms": "histograms.parquet",
              "models": "models.parquet", "joint": "joint.parquet"}
CREATED_AT = pl.Datetime("us", "UTC")
#: Types of the history columns the readers use; a partition whose values do not cast to
#: them is unreadable.
_TYPES: dict[str, pl.DataType] = {
    "run_id": pl.String(), "created_at": CREATED_AT, "segment": pl.String(),
    "feature": pl.String(), "window": pl.String(), "metric": pl.String(),
    "status": pl.String(), "window_status": pl.String(), "value": pl.Float64(),
    "warn_threshold": pl.Float64(), "critical_threshold": pl.Float64(),
    "partial": pl.Boolean(), "coverage": pl.Float64()}
# What reading a damaged partition raises (a bad created_at text is a ValueError).
_UNREADABLE = (OSError, ValueError, pl.exceptions.PolarsError)
#: Columns of ``histograms.parquet`` besides ``run_id`` and ``created_at``: each window's
#: current histogram, keyed by the segment and window labels of the drift table. ``start`` is
#: the window's start in UTC (a run without windows: the run's time), ``layout`` a
#: fingerprint of the feature's bins (counts binned against another profile are never
#: compared), ``partial`` whether the data covered only part of the window.
HISTOGRAM_COLUMNS: dict[str, pl.DataType] = {
    "segment": pl.String(), "feature": pl.String(), "window": pl.String(), "start": CREATED_AT,
    "partial": pl.Boolean(), "layout": pl.String(), "bin": pl.String(), "lower": pl.Float64(),
    "upper": pl.Float64(), "count": pl.Float64()}
#: Columns added to the history after runs were written, with the value their rows mean
#: in the older partitions that lack them (every earlier check was against the baseline).
ADDED_COLUMNS = {"reference": "baseline"}


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
    table: pl.DataFrame,
    run_id: str,
    created_at: datetime | str,
    *,
    part: str = "features",
) -> Path:
    """Add (or replace) one run's rows of one part in the history dataset.

    Parameters
    ----------
    history_dir : path
        Root of the dataset, e.g. ``<out>/history``; created when missing.
    table : polars.DataFrame
        The run's drift table (``drift.parquet``; its ``bins`` column is dropped), with
        ``part="histograms"`` its current histograms (:data:`HISTOGRAM_COLUMNS`, sorted by
        ``start`` so a reader filtering on it skips the other row groups), with
        ``part="models"`` its model-output table (``models.parquet``), or with
        ``part="joint"`` its joint drift table (``joint.parquet``; without ``view``).
    run_id : str
        The run id; its rows of this part are replaced if they already exist.
    created_at : datetime or str
        When the run was created (ISO-8601 string or datetime; naive means UTC).
    part : {"features", "histograms", "models", "joint"}
        Which of the run's tables this is.

    Returns
    -------
    pathlib.Path
        The partition file written (atomically).
    """
    return stage_history(history_dir, table, run_id, created_at, part=part).commit()


@dataclass(frozen=True)
class StagedPart:
    """A run's part written next to its partition file but not yet in the dataset
    (:func:`stage_history`): readers do not see it until :meth:`commit`."""

    staged: Path
    target: Path

    def commit(self) -> Path:
        """Put the part in the dataset (an atomic rename; it replaces the run's old one)."""
        return commit_staged(self.staged, self.target)

    def discard(self) -> None:
        """Remove the staged file (a run that failed before it could be added)."""
        self.staged.unlink(missing_ok=True)


def stage_history(
    history_dir: str | os.PathLike[str],
    table: pl.DataFrame | None,
    run_id: str,
    created_at: datetime | str,
    *,
    part: str = "features",
    encoded: EncodedPart | None = None,
) -> StagedPart:
    """Write one run's rows of one part beside the history dataset, to be added later.

    :func:`append_history` in two steps: the file is written now (a run writes it while its
    other files are written) and joins the dataset with :meth:`StagedPart.commit` once the
    run is complete. Until then it is a temp file of this process, which a later run
    removes if the process was killed. The parameters are those of :func:`append_history`;
    ``encoded`` is ``table`` encoded ahead (:func:`encode_history`): its bytes are written
    when they were encoded for this run id and time, else ``table`` is encoded now. Without
    ``table`` (its encoding the only copy kept), the rows are read back from ``encoded``.
    """
    _remove_orphans(history_dir)
    target = partition_dir(history_dir, run_id) / PART_FILES[part]
    if encoded is not None and (encoded.run_id, encoded.created_at) == (run_id,
                                                                         as_utc(created_at)):
        return StagedPart(stage_bytes(target, encoded.data), target)
    if table is None:
        if encoded is None:
            raise ValueError("stage_history needs the table or its encoding")
        table = encoded.rows()
    return StagedPart(stage_parquet(target, _rows(table, run_id, created_at)), target)


@dataclass(frozen=True)
class EncodedPart:
    """One run's rows of one part as its partition file holds them (:func:`encode_history`):
    the Parquet encoding done ahead, e.g. while the run still measures, so that staging
    them (:func:`stage_history`) only writes the bytes."""

    run_id: str
    created_at: datetime  # UTC
    data: bytes

    def rows(self) -> pl.DataFrame:
        """The rows encoded, read back (``run_id`` and ``created_at`` included)."""
        return pl.read_parquet(io.BytesIO(self.data))


def encode_history(table: pl.DataFrame, run_id: str, created_at: datetime | str) -> EncodedPart:
    """The partition file :func:`stage_history` writes of ``table`` for ``run_id`` and
    ``created_at``, as bytes."""
    return EncodedPart(run_id, as_utc(created_at),
                       parquet_bytes(_rows(table, run_id, created_at)))


def _rows(table: pl.DataFrame, run_id: str, created_at: datetime | str) -> pl.DataFrame:
    """A part's rows as the history keeps them: without the per-bin lists, with the run."""
    return table.drop("bins", "view", strict=False).with_columns(
        run_id=pl.lit(run_id, dtype=pl.String),
        created_at=pl.lit(as_utc(created_at), dtype=CREATED_AT),
    )


def _remove_orphans(history_dir: str | os.PathLike[str]) -> None:
    """Delete the temp files of killed writers in every partition (of any run id)."""
    for partition in Path(history_dir).glob("run_id=*"):
        for name in PART_FILES.values():
            remove_orphans(partition / name)  # staged parts (stage_history) among them


def drop_history(history_dir: str | os.PathLike[str], run_id: str, *,
                 part: str = "features") -> None:
    """Remove ``run_id``'s rows of one part (a rerun of that id that did not check it)."""
    _remove_orphans(history_dir)
    partition = partition_dir(history_dir, run_id)
    (partition / PART_FILES[part]).unlink(missing_ok=True)
    if partition.is_dir() and not any(partition.iterdir()):
        partition.rmdir()


def _scan(file: Path) -> pl.LazyFrame:
    # the file's own name: a `[` in the output folder's path is not a glob
    return pl.scan_parquet(file, glob=False, hive_partitioning=False)


def _typed(name: str, names: Sequence[str]) -> pl.Expr:
    """Column ``name`` of a partition cast to its history type (null when the run lacks it)."""
    column = pl.col(name) if name in names else pl.lit(None)
    return column.cast(_TYPES[name]).alias(name) if name in _TYPES else column.alias(name)


def _run_of(file: Path) -> tuple[str, datetime] | None:
    """The run id and creation time of a partition (None: it has no rows)."""
    first = _scan(file).select(_typed("run_id", ["run_id"]),
                               _typed("created_at", ["created_at"])).head(1).collect()
    if not first.height:
        return None
    return first["run_id"][0], as_utc(first["created_at"][0])


def skipped_partition(file: Path, error: BaseException) -> str:
    """The warning for a partition that cannot be read, which is skipped."""
    why = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"history partition {file} is unreadable and was skipped ({why})"


def run_created_at(history_dir: str | os.PathLike[str], run_id: str) -> datetime | None:
    """When ``run_id`` was first written to the history (None: never, or unreadable)."""
    for name in PART_FILES.values():
        try:
            run = _run_of(partition_dir(history_dir, run_id) / name)
        except _UNREADABLE:
            continue
        if run is not None:
            return run[1]
    return None


def _earlier_runs(history_dir: str | os.PathLike[str], *, exclude_run_id: str, part: str,
                  required: Sequence[str], before: datetime | None
                  ) -> tuple[list[tuple[Path, list[str]]], list[str]]:
    """The partition files of ``part`` of the runs before this one, oldest first, with
    their column names.

    Runs are ordered by ``created_at`` (then run id); ``exclude_run_id``'s own partition and
    runs created at or after ``before`` are left out. A file that cannot be read, or lacks
    a ``required`` column (one of :data:`ADDED_COLUMNS` may be missing), is skipped with a
    warning naming it.
    """
    own = partition_dir(history_dir, exclude_run_id)
    runs: list[tuple[datetime, str, Path, list[str]]] = []
    problems = []
    for file in sorted(Path(history_dir).glob(f"run_id=*/{PART_FILES[part]}")):
        if file.parent == own:
            continue
        try:
            run = _run_of(file)
            if run is None or (before is not None and run[1] >= before):
                continue
            names = _scan(file).collect_schema().names()
            missing = [c for c in required if c not in names and c not in ADDED_COLUMNS]
            if missing:
                raise ValueError(f"no column {missing[0]!r}")
        except _UNREADABLE as error:
            problems.append(skipped_partition(file, error))
            continue
        runs.append((run[1], run[0], file, names))
    return [(file, names) for _, _, file, names in sorted(runs, key=lambda r: r[:2])], problems


def _column(name: str, names: Sequence[str]) -> pl.Expr:
    """Column ``name`` of a partition (typed), or the value older partitions without it
    mean (:data:`ADDED_COLUMNS`)."""
    if name in names or name not in ADDED_COLUMNS:
        return _typed(name, names)
    return pl.lit(ADDED_COLUMNS[name], pl.String).alias(name)


def scan_decisions(history_dir: str | os.PathLike[str], *, exclude_run_id: str,
                   series: Sequence[str], part: str = "features",
                   before: datetime | None = None, extra: Sequence[str] = ()
                   ) -> tuple[pl.LazyFrame | None, list[str]]:
    """Earlier runs' decisions of one part, for :mod:`pipeline.decide.state`.

    Parameters
    ----------
    history_dir : path
        The history dataset (missing: no earlier runs).
    exclude_run_id : str
        The run being written: its own earlier rows are not "earlier runs", so rerunning a
        run id gives the same decisions.
    series : sequence of str
        The columns identifying a series (e.g. ``segment``, ``feature``, ``reference``;
        partitions written before ``reference`` existed read as ``"baseline"``).
    part : {"features", "models", "joint"}
    before : datetime, optional
        Only runs created before this time (a rerun of an old run id sees the runs that
        came before it, not those written since).
    extra : sequence of str
        More columns to read (e.g. ``value``); a partition without one is skipped.

    Returns
    -------
    (pl.LazyFrame or None, list of str)
        The rows (the ``series`` columns, ``window``, ``window_status`` (``status`` for
        runs written before it existed), ``status``, ``partial``, the ``extra`` columns,
        ``run_order`` ranking the runs oldest first, ``row_order`` within run and series),
        or None when there are none; and one warning per unreadable partition, which is
        skipped.
    """
    runs, problems = _earlier_runs(history_dir, exclude_run_id=exclude_run_id, part=part,
                                   required=(*series, "window", "status", *extra),
                                   before=before)
    frames = []
    for file, names in runs:
        # Read whole (a few columns), so that a partition damaged anywhere is found here.
        try:
            frames.append(_scan(file).select(
                *(_column(c, names).cast(pl.String) for c in series),
                _typed("window", names),
                _typed("window_status" if "window_status" in names else "status", names)
                .alias("window_status"),
                _typed("status", names), _typed("partial", names),
                *(_typed(c, names) for c in extra)).collect())
        except _UNREADABLE as error:
            problems.append(skipped_partition(file, error))
    if not frames:
        return None, problems
    parts = [rows.with_columns(run_order=pl.lit(order, pl.Int64),
                               row_order=pl.int_range(pl.len(), dtype=pl.Int64)
                               .over(list(series)))
             for order, rows in enumerate(frames)]
    return pl.concat(parts, how="vertical_relaxed").lazy(), problems


def scan_histograms(history_dir: str | os.PathLike[str], *, exclude_run_id: str,
                    before: datetime | None = None, max_runs: int | None = None
                    ) -> tuple[list[tuple[Path, pl.LazyFrame]], list[str]]:
    """Earlier runs' current histograms (``histograms.parquet``), lazily, per partition.

    Nothing but the Parquet footers is read here: filter the scans (features, ``start``)
    before collecting them, and only the row groups that can match are read. A partition
    damaged inside its pages is found only then: collect the partitions one by one to skip
    it (:func:`skipped_partition`).

    Parameters
    ----------
    history_dir : path
        The history dataset (missing: no earlier runs).
    exclude_run_id : str
        The run being written (its own earlier rows are not earlier runs).
    before : datetime, optional
        Only runs created before this time.
    max_runs : int, optional
        Only the newest this many of those runs.

    Returns
    -------
    (list of (Path, pl.LazyFrame), list of str)
        Each partition file and its rows (:data:`HISTOGRAM_COLUMNS` and ``run_order``,
        ranking the runs oldest first), oldest first; and one warning per partition whose
        footer cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = pl.DataFrame({"segment": "all", "feature": "x", "window": "2024-06-01",
    ...                      "start": None, "partial": False, "layout": "l1", "bin": "a",
    ...                      "lower": None, "upper": None, "count": [3.0]},
    ...                     schema_overrides=HISTOGRAM_COLUMNS)
    >>> _ = append_history(folder, rows, "r1", "2024-06-02T00:00:00Z", part="histograms")
    >>> parts, warnings = scan_histograms(folder, exclude_run_id="r2")
    >>> parts[0][1].select("feature", "count", "run_order").collect().rows()
    [('x', 3.0, 0)]
    """
    runs, warnings = _earlier_runs(history_dir, exclude_run_id=exclude_run_id,
                                   part="histograms", required=list(HISTOGRAM_COLUMNS),
                                   before=before)
    if max_runs is not None:
        offset = max(len(runs) - max_runs, 0)
        runs = runs[offset:]
    else:
        offset = 0
    return [(file, _scan(file).select(*(pl.col(c).cast(t) for c, t in HISTOGRAM_COLUMNS.items()),
                                      run_order=pl.lit(offset + order, pl.Int64)))
            for order, (file, _) in enumerate(runs)], warnings


def history_files(history_dir: str | os.PathLike[str]) -> list[Path]:
    """The partition files of the dataset (one per run), or ``[]`` when it is missing."""
    return sorted(Path(history_dir).glob(f"run_id=*/{PART_FILE}"))


def scan_history(history_dir: str | os.PathLike[str], *,
                 files: Sequence[Path] | None = None) -> pl.LazyFrame | None:
    """A lazy scan of the runs' rows (all runs, or the partition ``files`` given).

    Runs may have different segment columns: the scan has the union of the columns, with
    nulls where a run lacks one (and the value of :data:`ADDED_COLUMNS` for those). Only
    the Parquet footers are read here; select columns and filter rows before collecting,
    so a report reads only what it shows.
    """
    files = history_files(history_dir) if files is None else list(files)
    if not files:
        return None
    schema: dict[str, pl.DataType] = {}
    for file in files:
        for name, dtype in _scan(file).collect_schema().items():
            if schema.get(name, pl.Null) == pl.Null:  # an all-null column says nothing
                schema[name] = dtype
    for name in ADDED_COLUMNS:
        if schema.get(name, pl.Null) == pl.Null:
            schema[name] = pl.String()
    # The folder name is only a safe form of the id: read the original from the files.
    return pl.scan_parquet(files, hive_partitioning=False, schema=schema,
                           missing_columns="insert", glob=False).with_columns(
        pl.col(name).fill_null(default) for name, default in ADDED_COLUMNS.items())


def read_history(history_dir: str | os.PathLike[str]) -> pl.DataFrame | None:
    """All runs' rows, or None when the dataset is missing or empty.

    Loads everything: reports use `read_recent_runs`, which reads only what they show.
    """
    scan = scan_history(history_dir)
    history = None if scan is None else scan.collect()
    return history if history is not None and history.height else None


def stored_runs(history_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """One row per stored run, oldest first: ``run_id``, ``created_at``, ``file``.

    Reads one row of two columns per partition file, whatever the runs' sizes; a file that
    cannot be read is left out.
    """
    return _stored_runs(history_dir)[0]


def _stored_runs(history_dir: str | os.PathLike[str]) -> tuple[pl.DataFrame, list[str]]:
    """:func:`stored_runs`, and a warning for each partition left out as unreadable."""
    rows, problems = [], []
    for file in history_files(history_dir):
        try:
            run = _run_of(file)
        except _UNREADABLE as error:
            problems.append(skipped_partition(file, error))
            continue
        if run is not None:
            rows.append({"run_id": run[0], "created_at": run[1], "file": str(file)})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "created_at": CREATED_AT,
                                      "file": pl.String}).sort("created_at", "run_id"), problems


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
    (streamed). A partition that cannot be read is left out with a
    :class:`~pipeline.errors.KLDriftWarning` naming it.

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
    runs, problems = _stored_runs(history_dir)
    if exclude_run_id is not None:
        runs = runs.filter(pl.col("run_id") != exclude_run_id)
    wanted = list(dict.fromkeys(["run_id", "created_at", "segment", "feature", *columns]))
    features = keys["feature"].unique().implode()
    parts = []
    for file in [] if keys.is_empty() else runs["file"].tail(max_runs).to_list():
        # One partition at a time: one damaged partition is skipped, not the whole plot.
        try:
            names = _scan(Path(file)).collect_schema().names()
            missing = [c for c in ("segment", "feature") if c not in names]
            if missing:
                raise ValueError(f"no column {missing[0]!r}")
            parts.append(
                _scan(Path(file)).select(*(_column(c, names) for c in wanted))
                .filter(pl.col("feature").is_in(features))
                .join(keys.lazy().select("segment", "feature").unique(),
                      on=["segment", "feature"], how="semi")
                .collect(engine="streaming"))
        except _UNREADABLE as error:
            problems.append(skipped_partition(Path(file), error))
    for problem in problems:
        warnings.warn(problem, KLDriftWarning, stacklevel=2)
    rows = pl.concat(parts, how="vertical_relaxed") if parts else None
    return (rows if rows is not None and rows.height else None), runs.height
