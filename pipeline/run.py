"""One run end to end: read -> bin/align -> measure -> decide -> write.

A run checks what its config holds — feature drift (``[input]``) and joint drift
(``[joint]``, with it), model-output drift (``[models]``) and KL estimates (``[estimate]``)
— and writes everything into ONE run
folder: each part's Parquet tables, one ``alerts.json`` and the reports. The write stage
also adds feature drift to the history dataset at ``<output.dir>/history`` and renders the
reports from the tables it writes (in memory), as ``kl-drift report`` would re-render them
later from the folder's files.

The path-based run (:func:`run_drift`) and the Python API (:func:`run_in_memory`, behind
``pipeline.check``) share every step: ``_measure`` reads, bins, measures and judges each
window; ``_conclude`` decides across runs and builds alerts.json; ``_publish`` (a run, or
:meth:`CheckResult.write` later) writes the run folder, the history and the exports.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import partial
from itertools import chain, count
from pathlib import Path
from typing import TYPE_CHECKING, Any
from warnings import catch_warnings, simplefilter

import polars as pl

from pipeline.baseline import build_baseline_profile
from pipeline.bins.align import pool_segments, segment_columns
from pipeline.bins.binning import Binned, bin_windows, retyped_features
from pipeline.bins.profile import Profile, read_profile, write_profile
from pipeline.config import InputConfig, RunConfig
from pipeline.decide.state import apply_state, previous_points
from pipeline.errors import ConfigError, InputError, KLDriftWarning
from pipeline.files import safe_filename, tool_version
from pipeline.formats import (  # SEVERITY: also imported from here (flows.publish)
    ALERTS_FILE,
    DRIFT_FILE,
    ESTIMATES_FILE,
    JOINT_FILE,
    PROFILE_FILE,
    RESOLVED_COLUMNS,
    RESOLVED_FILE,
    SEVERITY,
    TRENDS_FILE,
)
from pipeline.labels import private_segment_columns, segment_name
from pipeline.parallel import in_background
from pipeline.read.frames import Frame
from pipeline.read.histograms import read_histograms
from pipeline.read.location import Location, parse_location, redact
from pipeline.read.sources import (
    ambiguous_columns,
    check_scalar_columns,
    classify_columns,
    describe_source,
    is_profile_file,
    scan_raw,
    source_schema,
)
from pipeline.reference_modes import History, compare
from pipeline.windows import timestamp_expr, window_coverage
from pipeline.write.documents import (
    alerts_document,
    estimates_block,
    joint_block,
    models_block,
    trends_block,
)
from pipeline.write.history import (
    HISTORY_DIR,
    PART_FILES,
    EncodedPart,
    StagedPart,
    drop_history,
    encode_history,
    partition_dir,
    run_created_at,
    scan_decisions,
    stage_history,
)
from pipeline.write.reports import write_reports
from pipeline.write.run_folder import (
    ModelTables,
    RunFolder,
    claimed_run_id,
    model_tables,
    publish,
    run_lock,
    staging_folder,
    write_run_outputs,
)

if TYPE_CHECKING:
    from pipeline.measure.models import ModelDrift
#: The parts a run can check; each writes its own tables into the run folder.
FEATURES, MODELS, ESTIMATES = "features", "models", "estimates"
#: The ``monitor`` of exported metrics without export.prometheus.monitor or prefect.name.
DEFAULT_MONITOR = "kl-drift"

Progress = Callable[[str], None]
#: Bins the raw current rows of ``settings.current`` against a profile (e.g. on Dask).
BinCurrent = Callable[[Profile, InputConfig, list[str]], Binned]


def bin_current_locally(profile: Profile, settings: InputConfig, features: list[str], *,
                        source: str | Frame | None = None) -> Binned:
    """Bin ``settings.current`` (or ``source``) in this process, in one streamed pass over all
    files, or in the database for a database source (push-down: only counts leave it).

    ``missing="skip"``: a profile feature absent from the current rows becomes an error row
    for that feature instead of stopping the run. The result also holds the rows' time
    range, from which the coverage of each window follows.
    """
    current = _input_path(settings.current, "current") if source is None else source
    location = _database(current)
    if location is not None:
        from pipeline.bins.pushdown import bin_in_database  # only for database sources

        return bin_in_database(location, profile, timestamp=settings.timestamp,
                               period=settings.period, segments=settings.segments,
                               features=features, missing="skip",
                               window_timezone=settings.window_timezone)
    return bin_windows(scan_raw(current, storage_options=settings.storage_options), profile,
                       timestamp=settings.timestamp, period=settings.period,
                       segments=settings.segments, features=features, missing="skip",
                       source=describe_source(current),
                       window_timezone=settings.window_timezone)


def _database(source: str | Frame) -> Location | None:
    """The parsed source when it is a database table or query (binned by push-down)."""
    if isinstance(source, Frame):
        return None
    location = parse_location(source)
    return location if location.format == "sql" else None


def _input_path(path: str | None, key: str) -> str:
    """``input.baseline`` or ``input.current`` (named by ``key``): feature drift needs both."""
    if not path:
        raise ConfigError(f"input.{key}: required for feature drift (a file, folder, URL "
                          "or database source)")
    return path


@dataclass(frozen=True)
class FeatureInputs:
    """What feature drift compares: by default ``input.baseline`` and ``input.current``; the
    Python API passes in-memory tables (:class:`pipeline.read.frames.Frame`) or a profile.

    Attributes
    ----------
    baseline : str, Frame or Profile
        A source string (profile file, histogram table or raw rows), an in-memory table
        (histogram table or raw rows, told apart by their columns) or a profile.
    current : str or Frame
        A source string or an in-memory table (raw rows or a histogram table).
    """

    baseline: str | Frame | Profile
    current: str | Frame

    @classmethod
    def of(cls, config: RunConfig) -> FeatureInputs:
        """``input.baseline`` and ``input.current`` of ``config`` (both required)."""
        return cls(_input_path(config.input.baseline, "baseline"),
                   _input_path(config.input.current, "current"))

    def described(self) -> dict[str, str]:
        """``run.inputs`` of alerts.json: both sides as messages name them."""
        baseline = self.baseline
        shown = (f"profile of {baseline.metadata.get('source') or 'baseline data'}"
                 if isinstance(baseline, Profile) else describe_source(baseline))
        return {"baseline": shown, "current": describe_source(self.current)}


@dataclass(frozen=True)
class _Measured:
    """Every part a run checked, measured and judged window by window, before the decisions
    across runs (persistence, lifecycles), which depend on where the run is written."""

    config: RunConfig
    created_at: datetime
    history: History  # what the moving references were read from
    inputs: dict[str, str]  # run.inputs of alerts.json
    features: _FeatureDrift | None
    joint: _JointDrift | None
    models: ModelDrift | None
    estimates: pl.DataFrame | None
    estimates_block: dict[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """What a run found, in memory: :func:`run_in_memory` (``pipeline.check``) returns it,
    and :class:`RunResult` is one that has been written into a run folder.

    Attributes
    ----------
    run_id : str
    drift : pl.DataFrame or None
        The decided drift table (docs/architecture.md); ``None`` when the run checked no
        features.
    alerts : dict
        The alerts.json document.
    worst_status : str
        Most severe status of a drift, model or joint row, in the order ``ok <
        insufficient_data < error < warn < critical`` (``ok`` for a run without rows).
    exit_code : int
        0, or 1 when a drift, model or joint row's status is at or above
        ``output.fail_on``.
    models : ModelDrift or None
        The model-output comparison, when the run had one.
    estimates : pl.DataFrame or None
        The KL estimates (estimates.parquet), when the run had them.
    joint : pl.DataFrame or None
        The decided joint drift table (joint.parquet), when the run had ``[joint]``.
    trends : pl.DataFrame or None
        trends.parquet, when the run had ``[trends] enabled``.
    resolved : pl.DataFrame or None
        Every alert episode of feature drift this run resolved (resolved.parquet, columns
        ``RESOLVED_COLUMNS``); alerts.json lists the first ``output.max_alerts``.
        ``None`` when the run checked no features.
    history_dir : Path or None
        The history dataset the decisions across runs were made with (``None``: no earlier
        runs, every alert is new).
    """

    run_id: str
    drift: pl.DataFrame | None
    alerts: dict[str, Any]
    worst_status: str
    exit_code: int
    models: ModelDrift | None = None
    estimates: pl.DataFrame | None = None
    joint: pl.DataFrame | None = None
    trends: pl.DataFrame | None = None
    resolved: pl.DataFrame | None = None
    history_dir: Path | None = None
    _measured: _Measured = field(repr=False, compare=False)

    def write(self, run_dir: str | os.PathLike[str] | None = None, *,
              progress: Progress | None = None) -> RunResult:
        """Write this run into a run folder, exactly as ``kl-drift run`` writes one.

        The tables, alerts.json and the reports are staged and published in one step, the
        run is added to the history dataset next to the folder (``<run_dir>/../history``),
        and metrics are exported when the config has ``[export.prometheus]``. Persistence
        and lifecycles are decided against that history, as a run into that folder would
        decide them, so the written run can differ from this one where earlier runs matter.

        Parameters
        ----------
        run_dir : path, optional
            The run folder; its name is the run id (kept as this run's id when it is that
            id's folder name), and writing into it again is a rerun. Default:
            ``<output.dir>/<run_id>`` of the config; with an automatic run id (no
            ``output.run_id``), each write publishes a run of its own, as each
            ``kl-drift run`` does: the first id of the check's second that no run folder,
            history partition or concurrent writer holds (``-2``, ``-3``, ... after it).
        progress : callable, optional
            Called with a short message at each stage.

        Returns
        -------
        RunResult

        Raises
        ------
        ConfigError
            A folder name that cannot be a run id (``history``, or characters a run folder
            name never has).
        OutputError
            The folder cannot be written, or the metrics cannot be exported.
        """
        say = progress or _silent
        if run_dir is not None:
            folder = Path(run_dir)
            return _publish(self._measured, _folder_run_id(self.run_id, folder), folder, say)
        # an automatic id is claimed now, as a run claims it: a run or check of the same
        # second written meanwhile keeps its folder, and this one takes the next id
        out = Path(self._measured.config.output.dir)
        with _claimed_run_id(self._measured.config, self._measured.created_at,
                             out / HISTORY_DIR) as run_id:
            return _publish(self._measured, run_id, out / safe_filename(run_id), say)

    def report_html(self) -> str:
        """report.html of this run as a string: the page ``write`` puts in the run folder,
        rendered from the tables in memory (with the across-runs plots of `history_dir`)."""
        from pipeline.write.reports.html import render_html

        run = self._folder()
        return render_html(run.drift, run.alerts, self.history_dir, models=run.models,
                           estimates=run.estimates, joint=run.joint, trends=run.trends)

    def _folder(self) -> RunFolder:
        """The run as its run folder holds it (the reports' input), in memory."""
        models = None if self.models is None else ModelTables(
            self.alerts["models"], *(model_tables(self.models).values()))
        return RunFolder(alerts=self.alerts, drift=self.drift, models=models,
                         estimates=self.estimates, trends=self.trends, joint=self.joint)

    def _repr_html_(self) -> str:
        """The report inline in Jupyter: report.html in a sandboxed iframe
        (:func:`pipeline.write.reports.html.notebook_frame`)."""
        from pipeline.write.reports.html import notebook_frame

        return notebook_frame(self.report_html())


@dataclass(frozen=True, kw_only=True)
class RunResult(CheckResult):
    """A run written into its run folder (``kl-drift run``, :func:`run_drift`,
    :meth:`CheckResult.write`).

    Attributes
    ----------
    run_dir : Path
        ``<output.dir>/<safe run_id>`` (or the folder given to ``write``), holding the run's
        tables, alerts.json and reports; ``history_dir`` is the history next to it.
    """

    run_dir: Path


def _silent(_message: str) -> None:
    """A progress callback that shows nothing."""


def _folder_run_id(run_id: str, folder: Path) -> str:
    """The run id of a run written into ``folder``: its name, or ``run_id`` when ``folder``
    is named after it."""
    name = folder.name
    if safe_filename(run_id) == name:
        return run_id
    if not name or safe_filename(name) != name or name == HISTORY_DIR:
        raise ConfigError(f"run folder {str(folder)!r}: its name is the run id, and "
                          f"{name!r} cannot be one; name it with letters, digits, '.', '-' "
                          f"and '_' (not 'history')")
    return name


def _parts(config: RunConfig, features: bool) -> set[str]:
    """The parts a config asks for; feature drift when ``features``."""
    parts = {part for part, wanted in ((FEATURES, features),
                                       (MODELS, config.models is not None),
                                       (ESTIMATES, config.estimate is not None)) if wanted}
    if not parts:
        raise ConfigError("nothing to check: set input.baseline and input.current (feature "
                          "drift), or add a [models] or [estimate] section")
    return parts


def run_drift(config: RunConfig, *, progress: Progress | None = None,
              bin_current: BinCurrent = bin_current_locally) -> RunResult:
    """Run every check the config holds and write one run folder (``kl-drift run``).

    Feature drift runs when ``[input]`` names data (``input.baseline`` and
    ``input.current``, both required then), joint drift with it when ``[joint]`` is present;
    the model comparison when ``[models]`` is present; the estimates when ``[estimate]`` is.
    A config with only ``[models]`` runs just the models.

    Parameters
    ----------
    config : RunConfig
        From :func:`pipeline.config.load_config`.
    progress : callable, optional
        Called with a short message at each stage (for CLI progress or flow logs).
    bin_current : callable, optional
        How raw current rows are binned: ``bin_current(profile, config.input, features)``
        returning a :class:`pipeline.bins.binning.Binned` (histogram long table and time
        range); :func:`bin_current_locally` by default (``flows.dask_histograms.bin_on_dask``
        bins file by file on a Dask cluster).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, InputError
        One-line messages for a bad configuration (also: nothing to check, only one of
        ``input.baseline``/``input.current``, segment columns that differ from the
        baseline's without ``input.pool_segments``, or ``input.executor = "dask"`` with the
        default local ``bin_current``) or unreadable/malformed input. Problems limited to
        one feature or window do not raise: they become ``error`` or ``insufficient_data``
        rows.
    """
    settings = config.input
    parts = _parts(config, bool(settings.baseline or settings.current))
    inputs = FeatureInputs.of(config) if FEATURES in parts else None
    if inputs is not None and bin_current is bin_current_locally:
        _bins_here(settings)
    return _run(config, parts, progress, bin_current, inputs)


def _bins_here(settings: InputConfig) -> None:
    """Binning in this process: a config asking for a Dask cluster is an error here."""
    if settings.executor == "dask":
        raise ConfigError("input.executor: 'dask' bins on a Dask cluster, which only the "
                          "Prefect flow starts (kl-drift run --prefect, kl-drift serve, "
                          "flows.flows.drift_check); set executor = 'local' to bin here")


def run_in_memory(config: RunConfig, *, inputs: FeatureInputs | None = None,
                  progress: Progress | None = None,
                  history_dir: str | os.PathLike[str] | None = None) -> CheckResult:
    """Run every check the config holds, as :func:`run_drift` does, and write nothing.

    The Python API's ``pipeline.check``: feature drift compares ``inputs`` (in-memory tables
    or a profile allowed) when given, else ``input.baseline`` and ``input.current``; models
    and estimates run when the config has them. :meth:`CheckResult.write` writes the result
    as a run folder later.

    Parameters
    ----------
    config : RunConfig
    inputs : FeatureInputs, optional
    progress : callable, optional
    history_dir : path, optional
        A history dataset (``<output.dir>/history``) to decide persistence and lifecycles
        against. Default: none, as for a first run (every alert is new).

    Raises
    ------
    ConfigError, InputError
        As :func:`run_drift`.
    """
    settings = config.input
    parts = _parts(config, inputs is not None or bool(settings.baseline or settings.current))
    if FEATURES in parts and inputs is None:
        inputs = FeatureInputs.of(config)
    if inputs is not None:
        _bins_here(settings)
    bin_current: BinCurrent = bin_current_locally
    if inputs is not None and isinstance(inputs.current, Frame):
        bin_current = partial(bin_current_locally, source=inputs.current)
    say = progress or _silent
    created_at = datetime.now(UTC)
    history = None if history_dir is None else Path(history_dir)
    run_id = _run_id(config, created_at, history)
    measured = _measure(config, parts, say, bin_current, inputs, created_at,
                        _history(history, run_id, created_at))
    result = _conclude(measured, measured.history, say)
    _check_compared(result)
    return result


def run_models(config: RunConfig, *, progress: Progress | None = None) -> RunResult:
    """Compare two models' outputs as ``[models]`` says and write a run folder.

    The run folder holds models.parquet, model_classes.parquet, model_examples.parquet,
    alerts.json (its ``models`` block) and the reports; ``exit_code`` follows
    ``output.fail_on`` on the model rows' statuses. ``[input]`` is not used.

    Raises
    ------
    ConfigError
        Without a ``[models]`` section. ``InputError`` for unreadable or invalid outputs.
    """
    if config.models is None:
        raise ConfigError("models: missing; add a [models] section with baseline, current "
                          "and outputs")
    return _run(config, {MODELS}, progress)


def run_estimate(config: RunConfig, *, progress: Progress | None = None) -> RunResult:
    """Estimate KL from log-prob samples as ``[estimate]`` says and write a run folder.

    The run folder holds estimates.parquet, alerts.json (its ``estimates`` block) and the
    reports. Estimates have no thresholds: ``exit_code`` is 0.

    Raises
    ------
    ConfigError
        Without an ``[estimate]`` section. ``InputError`` for unreadable or invalid samples.
    """
    if config.estimate is None:
        raise ConfigError("estimate: missing; add an [estimate] section with source (and "
                          "logq, logp)")
    return _run(config, {ESTIMATES}, progress)


@dataclass(frozen=True)
class _FeatureDrift:
    drift: pl.DataFrame
    baseline: _Baseline
    warnings: list[str]
    # the run's current histograms for the history; None once handed to ``encoded``
    histograms: pl.DataFrame | None
    trends: pl.DataFrame | None  # trends.parquet ([trends] enabled)
    # the histograms as the history's file, encoded beside the measurement (publishing)
    encoded: Future[EncodedPart] | None = None


def _run_id(config: RunConfig, created_at: datetime, history_dir: Path | None) -> str:
    """``output.run_id``, else the run's UTC start second, with ``-2``, ``-3``, ... when a
    run of that second already has a folder or history partition: runs back to back must
    not replace each other (only a run given the same id is a rerun)."""
    if config.output.run_id:
        return config.output.run_id
    taken = _taken(config, history_dir)
    return next(run_id for run_id in _automatic_ids(created_at) if not taken(run_id))


@contextmanager
def _claimed_run_id(config: RunConfig, created_at: datetime,
                    history_dir: Path | None) -> Iterator[str]:
    """:func:`_run_id` of a run this process publishes, held until the block ends: a run of
    the same second in another process, which picked the same id, takes the next one
    (:func:`pipeline.write.run_folder.claimed_run_id`)."""
    if config.output.run_id:  # a given id: concurrent reruns publish in turn (run_lock)
        yield config.output.run_id
        return
    with claimed_run_id(config.output.dir, _automatic_ids(created_at),
                        _taken(config, history_dir)) as run_id:
        yield run_id


def _automatic_ids(created_at: datetime) -> Iterator[str]:
    """The run's UTC start second, then with ``-2``, ``-3``, ... (lazily: unbounded)."""
    stamp = created_at.strftime("%Y%m%dT%H%M%SZ")
    return chain([stamp], (f"{stamp}-{n}" for n in count(2)))


def _taken(config: RunConfig, history_dir: Path | None) -> Callable[[str], bool]:
    """Whether a run id has a run folder or a history partition already."""
    out = Path(config.output.dir)
    return lambda run_id: (out / safe_filename(run_id)).exists() or (
        history_dir is not None and partition_dir(history_dir, run_id).exists())


def _run(config: RunConfig, parts: set[str], progress: Progress | None,
         bin_current: BinCurrent = bin_current_locally,
         inputs: FeatureInputs | None = None) -> RunResult:
    """Measure and decide the requested parts, then publish them as one run folder
    (:func:`_publish`)."""
    say = progress or _silent
    created_at = datetime.now(UTC)
    history_dir = Path(config.output.dir) / HISTORY_DIR
    run_id = _run_id(config, created_at, history_dir)
    measured = _measure(config, parts, say, bin_current, inputs, created_at,
                        _history(history_dir, run_id, created_at), publishing=True)
    # the id is claimed once there is a run to publish: a run that fails on its input
    # leaves nothing in output.dir
    with _claimed_run_id(config, created_at, history_dir) as run_id:
        result = _publish(measured, run_id, Path(config.output.dir) / safe_filename(run_id),
                          say)
    _check_compared(result)
    return result


def _history(history_dir: Path | None, run_id: str, created_at: datetime) -> History:
    """The history a run is measured with; a rerun keeps its place among the runs (it is
    compared with the runs before it)."""
    return History(history_dir, run_id, _as_of(created_at, run_id, history_dir))


def _measure(config: RunConfig, parts: set[str], say: Progress, bin_current: BinCurrent,
             inputs: FeatureInputs | None, created_at: datetime,
             history: History, *, publishing: bool = False) -> _Measured:
    """Read, bin, measure and judge each window of the requested parts (nothing written);
    moving references and trends read earlier windows from ``history``. ``publishing``:
    the run will be written (:func:`_publish`), so what it writes of the history can be
    encoded ahead."""
    features = None
    if FEATURES in parts:
        inputs = inputs or FeatureInputs.of(config)
        features = _feature_drift(config, say, bin_current, inputs, history,
                                  publishing=publishing)
    joint = None
    if config.joint is not None and features is not None and inputs is not None:
        joint = _joint_drift(config, features, inputs, say)
    # run_models, run_estimate and run_drift ask only for the parts the config has
    # Model outputs and estimates import their modules only when the run has them:
    # start-up time counts for small scheduled runs.
    models = None
    if config.models is not None and MODELS in parts:
        from pipeline.measure.models import compare_models

        say(f"comparing model outputs {config.models.baseline} -> {config.models.current}")
        models = compare_models(config.models, window_timezone=config.input.window_timezone,
                                min_coverage=config.input.min_coverage)
    estimates = block = None
    if config.estimate is not None and ESTIMATES in parts:
        from pipeline.measure.estimate import estimate_kl

        say(f"estimating KL from {config.estimate.source}")
        estimates = estimate_kl(config.estimate, window_timezone=config.input.window_timezone,
                                min_coverage=config.input.min_coverage)
        block = estimates_block(estimates, config.estimate)
    return _Measured(config, created_at, history,
                     {} if features is None or inputs is None else inputs.described(),
                     features, joint, models, estimates, block)


def _conclude(measured: _Measured, history: History, say: Progress) -> CheckResult:
    """Decide across runs (with ``history``: its folder, if any, the run id and the run's
    place among the runs) and build the alerts.json document: the run as it would be
    written under that run id."""
    config, features, models, joint = (measured.config, measured.features, measured.models,
                                       measured.joint)
    say("comparing with earlier runs")
    run_id, history_dir, as_of = history.run_id, history.dir, history.as_of
    warnings = [] if features is None else list(features.warnings)
    drift, resolved = None, None
    if features is not None:
        drift, resolved = _across_runs(features.drift, history_dir, run_id, as_of, config,
                                       warnings)
    models_resolved = None
    if models is not None:
        summary, models_resolved = _segments_across_runs(models.summary, "models",
                                                         history_dir, run_id, as_of, warnings)
        models = replace(models, summary=summary)
    joint_table = joint_summary = None
    if joint is not None and config.joint is not None:
        joint_table, joint_resolved = _segments_across_runs(
            joint.table, "joint", history_dir, run_id, as_of, warnings,
            hold_partial=config.alerts.partial_windows == "hold")
        joint_summary = joint_block(joint_table, config.joint, base=config.drift.base,
                                    resolved=joint_resolved, warnings=joint.warnings)
    trends = None if features is None else features.trends
    effective = config.model_copy(
        update={"output": config.output.model_copy(update={"run_id": run_id})})
    document = alerts_document(
        drift, {
            "run_id": run_id,
            "created_at": measured.created_at.isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "tool_version": tool_version(),
            "inputs": measured.inputs,
            "config_hash": config.config_hash(),
            "metric": config.drift.metric,
            "base": config.drift.base,
            "config": public_config(effective),
        },
        warnings=warnings, resolved=resolved,
        trends=None if trends is None else trends_block(trends, config.trends,
                                                        max_rows=config.output.max_alerts),
        models=None if models is None else models_block(models, models_resolved),
        estimates=measured.estimates_block, joint=joint_summary,
        max_rows=config.output.max_alerts)
    statuses = _statuses(drift, models, joint_table)
    return CheckResult(run_id=run_id, drift=drift, alerts=document,
                       worst_status=max(statuses, key=SEVERITY.index, default="ok"),
                       exit_code=int(bool(statuses & config.output.fail_statuses)),
                       models=models, estimates=measured.estimates, joint=joint_table,
                       trends=trends, history_dir=history_dir, _measured=measured,
                       resolved=None if resolved is None else pl.DataFrame(
                           resolved, schema=dict.fromkeys(RESOLVED_COLUMNS, pl.String)))


def _as_of(created_at: datetime, run_id: str, history_dir: Path | None) -> datetime:
    """The run's place among the runs: a rerun keeps its first time (it is compared with
    the runs before it)."""
    return ((None if history_dir is None else run_created_at(history_dir, run_id))
            or created_at)


def _statuses(drift: pl.DataFrame | None, models: ModelDrift | None,
              joint: pl.DataFrame | None) -> set[str]:
    return {*(() if drift is None else drift["status"].unique()),
            *(() if models is None else models.summary["status"].unique()),
            *(() if joint is None else joint["status"].unique())}


def _publish(measured: _Measured, run_id: str, run_dir: Path, say: Progress) -> RunResult:
    """Decide across runs with the history next to ``run_dir`` and write the run there.

    Everything is written into a staging folder first (the reports rendered from the
    tables in memory while the tables are written); the history's parts are written beside
    the history meanwhile and, under the run id's lock, join it once the tables are
    written; the folder is switched in at once (:func:`pipeline.write.run_folder.publish`),
    so a run folder always holds exactly one run, whenever a run is killed. Metrics are
    exported last (``[export.prometheus]``).
    """
    out_dir = run_dir.parent
    history_dir = out_dir / HISTORY_DIR
    history = measured.history
    if (history.dir, history.run_id) != (history_dir, run_id):  # written elsewhere
        history = _history(history_dir, run_id, measured.created_at)
    as_of = history.as_of
    features = measured.features
    # The Parquet files are written on threads beside other work: the current histograms
    # (history) while the run decides across runs, the history's drift rows and the run's
    # tables while the reports render (their summaries are polars queries; 0.1-0.15 s less
    # of the 500k-row run than one after the other, though polars writes through a Python
    # file object and so waits for the GIL the reports' Python holds).
    # The parts are staged beside the history and join it once the tables are written.
    staged: dict[str, Future[StagedPart]] = {}
    try:
        with ThreadPoolExecutor(len(PART_FILES) + 1) as pool:  # the parts and the tables
            def stage(part: str, rows: pl.DataFrame | None,
                      encoded: Future[EncodedPart] | None = None) -> None:
                staged[part] = pool.submit(
                    lambda: stage_history(history_dir, rows, run_id, as_of, part=part,
                                          encoded=None if encoded is None else encoded.result()))

            if features is not None:
                stage("histograms", features.histograms, features.encoded)
            result = _conclude(measured, history, say)
            drift, models, joint = result.drift, result.models, result.joint
            say(f"writing {run_dir}")
            with staging_folder(out_dir, run_id) as staging:
                if (features is not None and features.baseline.built
                        and features.baseline.profile):
                    write_profile(features.baseline.profile, staging / PROFILE_FILE)
                wait(staged.values())  # failures are raised below
                parts = {"features": drift, "models": None if models is None
                         else models.summary, "joint": joint}
                for part, rows in parts.items():
                    if rows is not None:
                        stage(part, rows)
                tables = pool.submit(write_run_outputs, staging, {
                    DRIFT_FILE: drift,
                    TRENDS_FILE: result.trends,
                    **({} if models is None else model_tables(models)),
                    ESTIMATES_FILE: result.estimates,
                    JOINT_FILE: joint,
                    RESOLVED_FILE: result.resolved,
                }, result.alerts)
                say("rendering reports")
                try:
                    with catch_warnings():
                        # the run's warnings (alerts.json) already name unreadable partitions
                        simplefilter("ignore", KLDriftWarning)
                        # from the tables in memory: nothing written is read back
                        write_reports(staging, history_dir=history_dir, run=result._folder())
                finally:
                    wait([tables])  # the staging folder goes only once nothing writes in it
                tables.result()
                written_parts = [future.result() for future in staged.values()]
                with run_lock(out_dir, run_id):
                    for written_part in written_parts:
                        written_part.commit()
                    for part in PART_FILES.keys() - staged.keys():
                        drop_history(history_dir, run_id, part=part)  # a rerun must not keep them
                    publish(staging, run_dir)
    finally:  # the pool is done: a part not committed (the run failed) is removed
        for future in staged.values():
            if future.exception() is None:
                future.result().discard()
    written = RunResult(**{f.name: getattr(result, f.name) for f in fields(result)},
                        run_dir=run_dir)
    config = measured.config
    export = config.export.prometheus
    if export is not None:
        from pipeline.write.prometheus import export_metrics  # prometheus_client: 30 ms

        say("exporting metrics")
        export_metrics(written.drift, written.alerts, export,
                       monitor=export.monitor or config.prefect.name or DEFAULT_MONITOR,
                       models=None if written.models is None else written.models.summary)
    return written


def _check_compared(result: CheckResult) -> None:
    """A run none of whose rows could be compared is bad input, not a finding."""
    drift = result.drift
    if (drift is not None and drift.height
            and _statuses(drift, result.models, result.joint) <= {"error"}):
        first = drift.select(pl.col("reason").drop_nulls().first()).item()
        where = (f"{result.run_dir / ALERTS_FILE} lists them" if isinstance(result, RunResult)
                 else "alerts['problems'] lists them")
        raise InputError(f"nothing could be compared: all {drift.height} rows are errors "
                         f"(first: {first}); {where}")


def _across_runs(drift: pl.DataFrame, history_dir: Path | None, run_id: str, as_of: datetime,
                 config: RunConfig, warnings: list[str]
                 ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Persistence, partial windows and lifecycles of the drift rows, with earlier runs
    (one series per segment x feature x reference)."""
    series = ("segment", "feature", "reference")
    previous = _previous(history_dir, run_id, as_of, series, "features", warnings)
    state = apply_state(drift, previous, persistence=config.alerts.persistence,
                        hold_partial=config.alerts.partial_windows == "hold", series=series)
    return state.table, state.resolved


def _previous(history_dir: Path | None, run_id: str, as_of: datetime, series: tuple[str, ...],
              part: str, warnings: list[str]) -> pl.DataFrame | None:
    """Earlier runs' latest points of each series (``None``: no history, no earlier run)."""
    if history_dir is None:
        return None
    decisions, problems = scan_decisions(history_dir, exclude_run_id=run_id, series=series,
                                         part=part, before=as_of)
    warnings += problems
    return None if decisions is None else previous_points(decisions, series).collect()


def _segments_across_runs(table: pl.DataFrame, part: str, history_dir: Path | None,
                          run_id: str, as_of: datetime, warnings: list[str], *,
                          hold_partial: bool = False
                          ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Lifecycles of the rows of a table with one series per segment (model outputs, joint
    drift), with earlier runs; ``table`` gains ``lifecycle``, and with ``hold_partial`` its
    partial windows are held back (``insufficient_data``) as feature drift's are."""
    series = ("segment",)
    previous = _previous(history_dir, run_id, as_of, series, part, warnings)
    rows = table.with_columns(
        window_status="status",
        reason=pl.col("reason") if "reason" in table.columns else pl.lit(None, pl.String))
    state = apply_state(rows, previous, persistence=1, hold_partial=hold_partial,
                        series=series)
    return state.table.select(*table.columns, "lifecycle"), state.resolved


@dataclass(frozen=True)
class _JointDrift:
    table: pl.DataFrame
    warnings: list[str]


def _joint_drift(config: RunConfig, features: _FeatureDrift, inputs: FeatureInputs,
                 say: Progress) -> _JointDrift:
    """Joint drift of ``[joint]``: the profile's baseline sample against samples of the
    current windows, one classifier per segment x window (docs/joint-drift.md)."""
    from pipeline.decide.joint import decide_joint  # imported by runs with [joint] only
    from pipeline.measure.joint import joint_features, measure_joint, sample_current

    settings, options = config.input, config.joint
    assert options is not None  # called with [joint] only
    profile = features.baseline.profile
    if profile is None or profile.sample is None:
        raise ConfigError("joint: the baseline keeps no sample of rows; use raw baseline rows "
                          "as input.baseline, or a profile built with a [joint] section "
                          "(kl-drift profile --config FILE)")
    current = inputs.current
    if (not isinstance(current, str) or parse_location(current).format == "sql"
            or _detect(current, config, "current")[0] != "raw"):
        raise ConfigError("joint: needs the current data as raw rows from files or object "
                          "stores (not a histogram table, an in-memory table or a database "
                          "query)")
    wanted = [f for f in profile.features if _wanted(config, f, settings.segments)]
    chosen = joint_features(profile.features, options, wanted)
    say(f"sampling current rows for joint drift ({len(chosen)} features)")
    windows, missing = sample_current(
        scan_raw(current, storage_options=settings.storage_options), profile.layout, chosen,
        timestamp=settings.timestamp, period=settings.period, segments=settings.segments,
        size=options.current_rows, seed=options.seed, source=describe_source(current),
        window_timezone=settings.window_timezone)
    used = [f for f in chosen if f not in missing]
    if not used:
        raise InputError("the current data has none of the joint check's features "
                         f"({', '.join(chosen)})", source=describe_source(current))
    say(f"fitting joint drift classifiers for {windows.totals.height:,} segment x window rows")
    measured = measure_joint(profile.sample, windows, profile.layout, used, options,
                             base=config.drift.log_base)
    notes = ([f"joint: the current data lacks {', '.join(missing)}; the joint check leaves "
              "them out"] if missing else [])
    # the windows' coverage, as feature drift measured it (partial windows are held alike)
    drift = features.drift
    coverage = (drift.select("window", "coverage", "partial").unique("window")
                if "partial" in drift.columns else
                pl.DataFrame(schema={"window": pl.String, "coverage": pl.Float64,
                                     "partial": pl.Boolean}))
    decided = decide_joint(measured, fdr_q=config.alerts.fdr_q)
    at = decided.columns.index("window") + 1
    table = decided.join(coverage, on="window", how="left", maintain_order="left").select(
        *decided.columns[:at], "coverage", "partial", *decided.columns[at:])
    return _JointDrift(table, notes)


def _feature_drift(config: RunConfig, say: Progress, bin_current: BinCurrent,
                   inputs: FeatureInputs, history: History, *,
                   publishing: bool = False) -> _FeatureDrift:
    """Feature drift of ``inputs`` as ``[input]`` says: read -> bin/align -> measure ->
    decide, against each reference mode (:func:`pipeline.reference_modes.compare`).

    When ``publishing``, the current histograms are encoded as the history's file as soon
    as they are built, on a thread of their own: the measurement and the decisions keep
    the cores only partly busy (1.6-1.8 of 2 at 500,000 rows), while encoding them beside
    the decisions across runs made the run about 0.3 s longer (of 11-13 s)."""
    shown = inputs.described()
    say(f"reading baseline {shown['baseline']}")
    baseline = _read_baseline(config, inputs.baseline)
    say(f"reading current data {shown['current']}")
    current = _read_current(config, inputs.current, baseline, bin_current)
    say(f"comparing {current.histograms.height:,} current histogram rows")
    # the categories each baseline saw once: the unseen-mass estimate (docs/alerts.md)
    profile = baseline.profile
    singletons = None if profile is None else profile.singletons(
        [segment_name(c) for c in segment_columns(current.reference)])
    encoded: list[Future[EncodedPart]] = []

    def encode(rows: pl.DataFrame) -> None:
        encoded.append(in_background(encode_history, rows, history.run_id, history.as_of))

    compared = compare(config, current.reference, current.histograms, reasons=current.reasons,
                       coverage=current.coverage, history=history, say=say,
                       singletons=singletons, on_histograms=encode if publishing else None)
    drift = compared.drift
    features = drift["feature"].unique().to_list()
    return _FeatureDrift(drift, baseline,
                         [*current.warnings, *_unmatched_patterns(config, drift),
                          *compared.warnings,
                          *([] if profile is None else profile.warnings(features))],
                         compared.histograms, compared.trends,
                         encoded[0] if encoded else None)


@dataclass(frozen=True)
class _Baseline:
    histograms: pl.DataFrame
    profile: Profile | None
    built: bool  # profile built from raw baseline data in this run


def _read_baseline(config: RunConfig, path: str | Frame | Profile) -> _Baseline:
    if isinstance(path, Profile):
        return _profile_baseline(config, path)
    kind: str = config.input.baseline_format
    if kind == "auto":
        kind = _detect(path, config, "baseline")[0]
    return _BASELINE_READERS[kind](config, path)


def _detect(source: str | Frame, config: RunConfig, role: str) -> tuple[str, pl.Schema]:
    """What ``source`` holds (a profile by its footer; a histogram table or raw rows by its
    columns), and its schema; a histogram-like table with float data columns is
    ambiguous: an error."""
    schema = source_schema(source, storage_options=config.input.storage_options)
    if is_profile_file(source):
        return "profile", schema
    kind = classify_columns(set(schema))
    floats = ambiguous_columns(schema) if kind == "histogram" else []
    if floats:
        raise InputError(f"has feature, bin and count columns like a histogram table, but "
                         f"also the number column {floats[0]!r} like raw rows; set "
                         f"input.{role}_format = \"raw\" or \"histogram\"",
                         source=describe_source(source))
    if kind == "raw" and {"feature", "bin"} <= set(schema):
        # a histogram table that lost its counts, more likely than raw rows with such names
        raise InputError(f"has feature and bin columns like a histogram table, but no count "
                         f"column; add the counts, or set input.{role}_format = \"raw\" if "
                         f"these are raw rows", source=describe_source(source), column="count")
    return kind, schema


def _format_hint(role: str, kind: str) -> str:
    """Why auto-detection chose ``kind``, and how to override it."""
    other = "raw" if kind != "raw" else "histogram"
    return (f"(read as a {kind} table because of its columns: a histogram table has "
            f"feature, bin and count, a profile also kind and bin_index; if that is wrong, "
            f"set input.{role}_format = \"{other}\")")


def public_config(config: RunConfig) -> dict[str, Any]:
    """The effective config as alerts.json records it: storage option values and URL
    passwords masked, so no credential reaches an output."""
    def masked(section: dict[str, Any]) -> dict[str, Any]:
        for key, value in section.items():
            if key == "storage_options" and value:
                section[key] = dict.fromkeys(value, "***")
            elif isinstance(value, dict):
                masked(value)  # e.g. [export.prometheus]
            elif isinstance(value, str) and "://" in value:
                section[key] = redact(value)
        return section

    return masked(config.model_dump(mode="json"))


def _profile_baseline(config: RunConfig, path: str | Frame | Profile) -> _Baseline:
    if isinstance(path, Frame):
        raise InputError("an in-memory table cannot be a profile file; pass the Profile "
                         "object, or the table with input.baseline_format = \"auto\"",
                         source=path.name)
    # every segment of the profile: _match_segments compares them with the run's
    profile = path if isinstance(path, Profile) else read_profile(path)
    return _Baseline(_selected(config, profile.histograms()), profile, built=False)


def _read_histogram_table(config: RunConfig, path: str | Frame, role: str) -> pl.DataFrame:
    """A histogram table of ``[input]``, its segment columns under their private names and
    its windows (if any) in the window time zone."""
    settings = config.input
    with _hinted(role, getattr(settings, f"{role}_format"), "histogram"):
        # the current table can hold millions of rows: its labels as categories
        table = read_histograms(path, role=role, duplicates=settings.duplicates,
                                storage_options=settings.storage_options,
                                categorical=role == "current")
    if "window" in table.columns:
        values, _ = timestamp_expr("window", table.schema["window"], period=None,
                                   timezone=settings.window_timezone)
        table = table.with_columns(values)
    return private_segment_columns(table, segment_columns(table))


def _histogram_baseline(config: RunConfig, path: str | Frame) -> _Baseline:
    return _Baseline(_selected(config, _read_histogram_table(config, path, "baseline")), None,
                     built=False)


def _raw_baseline(config: RunConfig, path: str | Frame) -> _Baseline:
    profile = build_baseline_profile(config, path)
    return _Baseline(profile.histograms(), profile, built=True)


_BASELINE_READERS: dict[str, Callable[[RunConfig, str | Frame], _Baseline]] = {
    "profile": _profile_baseline, "histogram": _histogram_baseline, "raw": _raw_baseline}


@dataclass(frozen=True)
class _Current:
    histograms: pl.DataFrame  # private segment columns
    reference: pl.DataFrame  # the baseline histograms to compare with (_match_segments)
    warnings: list[str]
    reasons: dict[str, str]  # why some features could not be binned, by feature
    coverage: pl.DataFrame | None  # window, coverage, partial (raw rows with a period)


def _read_current(config: RunConfig, path: str | Frame, baseline: _Baseline,
                  bin_current: BinCurrent) -> _Current:
    """Current histograms, the baseline they are compared with, why some features could not
    be binned, and window coverage. Segments are matched before raw rows are binned."""
    settings, profile = config.input, baseline.profile
    reasons: dict[str, str] = {}
    coverage = None
    if is_profile_file(path):
        raise InputError("is a baseline profile; the current data must be raw rows or a "
                         "histogram table (a profile is only ever a baseline)",
                         source=describe_source(path))
    kind = settings.current_format
    if kind == "auto":
        detected, schema = _detect(path, config, "current")
        kind = "raw" if detected == "raw" else "histogram"
    else:
        schema = source_schema(path, storage_options=settings.storage_options)
    shown = describe_source(path)
    check_scalar_columns(schema, settings.segments, shown)
    if kind == "histogram":
        if settings.timestamp is not None:
            raise ConfigError("input.timestamp: windows apply to raw current data; a "
                              "histogram table brings its own 'window' column"
                              + (" " + _format_hint("current", kind)
                                 if settings.current_format == "auto" else ""))
        current = _read_histogram_table(config, path, "current")
        # the current table's features, found once (millions of rows)
        present = current.select(pl.col("feature").unique(maintain_order=True))["feature"]
        with _hinted("current", settings.current_format, kind):
            _check_shared_features(baseline.histograms, present, shown)
        names = [segment_name(c) for c in segment_columns(current)]
        missing = [c for c in settings.segments if c not in names]
        if missing:
            raise InputError("input.segments names a column the current histogram table "
                             "lacks", source=shown, column=missing[0])
        _check_features(config, {*baseline.histograms["feature"].unique(), *present})
        current = _selected(config, current, names, present)
        reference, warnings = _match_segments(config, baseline.histograms, names)
    else:
        if profile is None:
            raise InputError("current data is raw rows, so the baseline must be a profile or "
                             "raw data to bin it with, not a histogram table",
                             source=describe_source(settings.baseline or ""))
        reference, warnings = _match_segments(config, baseline.histograms, settings.segments)
        _check_features(config, set(profile.features))
        features = [f for f in profile.features if _wanted(config, f, settings.segments)]
        # A feature whose column type changed becomes an error row, not a stopped run.
        reasons = retyped_features(schema, profile, features)
        if features and all(f in reasons or f not in schema for f in features):
            raise InputError("none of the baseline's features can be checked in it: "
                             + reasons.get(features[0], f"no column {features[0]!r}"),
                             source=shown)
        binned = bin_current(profile, settings, [f for f in features if f not in reasons])
        current = binned.histograms
        if "window" in current.columns:
            coverage = window_coverage(current["window"], binned.span, settings.period,
                                       settings.min_coverage)
    if current.height == 0 or current["count"].sum() == 0:
        raise InputError("the current data has no rows to compare; check input.current and "
                         "the feature filters", source=shown)
    return _Current(current, reference, warnings, reasons, coverage)


def _match_segments(config: RunConfig, baseline: pl.DataFrame,
                    run_names: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """The baseline histograms to compare with, and the run warnings this choice needs.

    The baseline's segment columns must be the run's: otherwise a segment would be compared
    with a baseline of other segments mixed together, and a mere difference in segment mix
    would show as drift. ``input.pool_segments`` allows it explicitly, with a warning:
    baseline segment columns the run lacks are added up, and run segment columns the
    baseline lacks are compared with the baseline of the remaining ones (or the global one).
    A segment column is never a feature (their histograms are dropped on both sides).
    """
    base = segment_columns(baseline)
    base_names, run_names = [segment_name(c) for c in base], list(run_names)
    baseline = _selected(config, baseline, run_names)
    if set(base_names) == set(run_names):
        return baseline, []
    if not config.input.pool_segments:
        raise ConfigError(
            f"input.segments: the baseline is segmented by {base_names} but this run by "
            f"{run_names}; run with the baseline's segment columns, rebuild the baseline with "
            "the run's, or set input.pool_segments = true to compare each segment with the "
            "baseline pooled over the others")
    kept = [c for c in base if segment_name(c) in run_names]
    kept_names = [segment_name(c) for c in kept]
    warning = (f"input.pool_segments: the baseline is segmented by {base_names}, this run by "
               f"{run_names}: each segment is compared with the baseline "
               + (f"of its {kept_names} values" if kept else "pooled over every segment")
               + ", so a difference in segment mix shows as drift")
    return pool_segments(baseline, kept), [warning]


@contextmanager
def _hinted(role: str, setting: str, kind: str) -> Iterator[None]:
    """Add why the table was read as ``kind`` to an InputError, when it was auto-detected."""
    try:
        yield
    except InputError as error:
        if setting != "auto":
            raise
        raise InputError(f"{error} {_format_hint(role, kind)}") from error


def _check_shared_features(baseline: pl.DataFrame, current: pl.Series, source: str) -> None:
    """A histogram table none of whose features (``current``, in order of appearance) is
    in the baseline is not what it seems."""
    if not set(current) & set(baseline["feature"].unique()):
        shown = ", ".join(map(repr, current.head(3)))
        raise InputError(f"none of its features ({shown}, ...) is a baseline feature",
                         source=source, column="feature")


def _wanted(config: RunConfig, feature: str, segments: Sequence[str]) -> bool:
    settings = config.input
    return ((settings.features is None or feature in settings.features)
            and feature not in settings.exclude and feature not in segments)


def _selected(config: RunConfig, histograms: pl.DataFrame, segments: Sequence[str] = (),
              features: pl.Series | None = None) -> pl.DataFrame:
    """Histogram rows of the features selected by ``input.features`` / ``input.exclude``,
    without those named like a segment column (never checked as features)."""
    settings = config.input
    keep = ~pl.col("feature").is_in([*settings.exclude, *segments])
    if settings.features is not None:
        keep &= pl.col("feature").is_in(settings.features)
    # decided per feature (``features``: the distinct ones, when known): filtering would copy
    # every row of a large table to drop none
    distinct = (histograms.select(pl.col("feature").unique()) if features is None
                else features.to_frame("feature"))
    kept = distinct.filter(keep)["feature"]
    if kept.len() == distinct.height:
        return histograms
    return histograms.filter(pl.col("feature").is_in(kept.implode()))


def _check_features(config: RunConfig, available: set[str]) -> None:
    """A listed feature that is not there is a typo: fail (naming the features there are)
    rather than skip it or find nothing to compare."""
    missing = [f for f in config.input.features or () if f not in available]
    if missing:
        known = sorted(available)
        shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20
                                         else "")
        raise ConfigError(f"input.features: {missing[0]!r} is in neither the baseline nor "
                          f"the current data, whose features are {shown or 'none'}; fix the "
                          "name (--feature) or remove it")


def _unmatched_patterns(config: RunConfig, drift: pl.DataFrame) -> list[str]:
    """Warnings for ``[alerts.features]`` patterns that match no feature (likely typos)."""
    features = drift["feature"].unique().to_list()
    return [f"alerts.features pattern {pattern!r} matches no feature"
            for pattern in config.alerts.features
            if not any(fnmatch.fnmatchcase(f, pattern) for f in features)]
