"""One run end to end: read -> bin/align -> measure -> decide -> write.

A run checks what its config holds — feature drift (``[input]``), model-output drift
(``[models]``) and KL estimates (``[estimate]``) — and writes everything into ONE run
folder: each part's Parquet tables, one ``alerts.json`` and the reports. The write stage
also adds feature drift to the history dataset at ``<output.dir>/history`` and renders the
reports from the folder's files, exactly as ``kl-drift report`` would re-render them later.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from warnings import catch_warnings, simplefilter

import polars as pl

from pipeline.baseline import build_baseline_profile
from pipeline.bins.align import align, pool_segments, segment_columns
from pipeline.bins.binning import Binned, bin_windows, retyped_features
from pipeline.bins.profile import Profile, read_profile, write_profile
from pipeline.config import InputConfig, RunConfig
from pipeline.decide.alerts import decide
from pipeline.decide.state import apply_state, previous_points
from pipeline.errors import ConfigError, InputError, KLDriftWarning
from pipeline.files import safe_filename, tool_version
from pipeline.formats import ALERTS_FILE, DRIFT_FILE, ESTIMATES_FILE, PROFILE_FILE
from pipeline.labels import private_segment_columns, public_segment_columns, segment_name
from pipeline.measure.drift import compute_drift
from pipeline.read.histograms import read_histograms
from pipeline.read.location import parse_location, redact
from pipeline.read.sources import (
    ambiguous_columns,
    check_scalar_columns,
    classify_columns,
    describe_source,
    is_profile_file,
    scan_raw,
    source_schema,
)
from pipeline.windows import timestamp_expr, window_coverage
from pipeline.write.documents import alerts_document, models_block
from pipeline.write.history import (
    HISTORY_DIR,
    append_history,
    drop_history,
    run_created_at,
    scan_decisions,
)
from pipeline.write.reports import write_reports
from pipeline.write.run_folder import (
    model_tables,
    publish,
    run_lock,
    staging_folder,
    write_run_outputs,
)

if TYPE_CHECKING:
    from pipeline.measure.models import ModelDrift

#: Severity order of row statuses, least severe first (for ``worst_status``).
SEVERITY = ("ok", "insufficient_data", "error", "warn", "critical")
#: The parts a run can check; each writes its own tables into the run folder.
FEATURES, MODELS, ESTIMATES = "features", "models", "estimates"

Progress = Callable[[str], None]
#: Bins the raw current rows of ``settings.current`` against a profile (e.g. on Dask).
BinCurrent = Callable[[Profile, InputConfig, list[str]], Binned]


def bin_current_locally(profile: Profile, settings: InputConfig, features: list[str]) -> Binned:
    """Bin ``settings.current`` in this process, in one streamed pass over all files, or
    in the database for a database source (push-down: only counts leave it).

    ``missing="skip"``: a profile feature absent from the current rows becomes an error row
    for that feature instead of stopping the run. The result also holds the rows' time
    range, from which the coverage of each window follows.
    """
    current = _input_path(settings.current, "current")
    location = parse_location(current)
    if location.format == "sql":
        from pipeline.bins.pushdown import bin_in_database  # only for database sources

        return bin_in_database(location, profile, timestamp=settings.timestamp,
                               period=settings.period, segments=settings.segments,
                               features=features, missing="skip",
                               window_timezone=settings.window_timezone)
    return bin_windows(scan_raw(current, storage_options=settings.storage_options), profile,
                       timestamp=settings.timestamp, period=settings.period,
                       segments=settings.segments, features=features, missing="skip",
                       source=location.shown, window_timezone=settings.window_timezone)


def _input_path(path: str | None, key: str) -> str:
    """``input.baseline`` or ``input.current`` (named by ``key``): feature drift needs both."""
    if not path:
        raise ConfigError(f"input.{key}: required for feature drift (a file, folder, URL "
                          "or database source)")
    return path


@dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes
    ----------
    run_id : str
    run_dir : Path
        ``<output.dir>/<safe run_id>``, holding the run's tables, alerts.json and reports.
    drift : pl.DataFrame or None
        The decided drift table; ``None`` when the run checked no features.
    alerts : dict
        The alerts.json document.
    worst_status : str
        Most severe status of a drift or model row, in the order ``ok < insufficient_data
        < error < warn < critical`` (``ok`` for a run without rows).
    exit_code : int
        0, or 1 when a drift or model row's status is at or above ``output.fail_on``.
    models : ModelDrift or None
        The model-output comparison, when the run had one.
    estimates : pl.DataFrame or None
        The KL estimates (estimates.parquet), when the run had them.
    """

    run_id: str
    run_dir: Path
    drift: pl.DataFrame | None
    alerts: dict
    worst_status: str
    exit_code: int
    models: ModelDrift | None = None
    estimates: pl.DataFrame | None = None


def run_drift(config: RunConfig, *, progress: Progress | None = None,
              bin_current: BinCurrent = bin_current_locally) -> RunResult:
    """Run every check the config holds and write one run folder (``kl-drift run``).

    Feature drift runs when ``[input]`` names data (``input.baseline`` and
    ``input.current``, both required then); the model comparison when ``[models]`` is
    present; the estimates when ``[estimate]`` is. A config with only ``[models]`` runs just
    the models.

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
    parts = {part for part, wanted in ((FEATURES, bool(settings.baseline or settings.current)),
                                       (MODELS, config.models is not None),
                                       (ESTIMATES, config.estimate is not None)) if wanted}
    if not parts:
        raise ConfigError("nothing to check: set input.baseline and input.current (feature "
                          "drift), or add a [models] or [estimate] section")
    if FEATURES in parts:
        _input_path(settings.baseline, "baseline")
        _input_path(settings.current, "current")
        if settings.executor == "dask" and bin_current is bin_current_locally:
            raise ConfigError("input.executor: 'dask' bins on a Dask cluster, which only the "
                              "Prefect flow starts (kl-drift run --prefect, kl-drift serve, "
                              "flows.flows.drift_check); set executor = 'local' to bin here")
    return _run(config, parts, progress, bin_current)


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


def _run(config: RunConfig, parts: set[str], progress: Progress | None,
         bin_current: BinCurrent = bin_current_locally) -> RunResult:
    """Measure and decide the requested parts, then publish them as one run folder.

    Everything is written into a staging folder first; under the run id's lock the
    history is updated, the reports are rendered from the staged files and the folder is
    switched in at once (:func:`pipeline.write.run_folder.publish`), so a run folder always
    holds exactly one run, whenever a run is killed.
    """
    say = progress or (lambda _message: None)
    created_at = datetime.now(UTC)
    run_id = config.output.run_id or created_at.strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(config.output.dir)
    run_dir = out_dir / safe_filename(run_id)
    history_dir = out_dir / HISTORY_DIR

    features = _feature_drift(config, say, bin_current) if FEATURES in parts else None
    # run_models, run_estimate and run_drift ask only for the parts the config has
    # Model outputs and estimates import their modules only when the run has them:
    # start-up time counts for small scheduled runs.
    models = None
    if config.models is not None and MODELS in parts:
        from pipeline.measure.models import compare_models

        say(f"comparing model outputs {config.models.baseline} -> {config.models.current}")
        models = compare_models(config.models, window_timezone=config.input.window_timezone,
                                min_coverage=config.input.min_coverage)
    estimates = estimates_summary = None
    if config.estimate is not None and ESTIMATES in parts:
        from pipeline.measure.estimate import estimate_kl
        from pipeline.write.documents import estimates_block

        say(f"estimating KL from {config.estimate.source}")
        estimates = estimate_kl(config.estimate, window_timezone=config.input.window_timezone,
                                min_coverage=config.input.min_coverage)
        estimates_summary = estimates_block(estimates, config.estimate)

    say("comparing with earlier runs")
    # A rerun keeps its place among the runs: it is compared with the runs before it.
    as_of = run_created_at(history_dir, run_id) or created_at
    warnings = [] if features is None else list(features.warnings)
    drift, resolved = None, None
    if features is not None:
        drift, resolved = _across_runs(features.drift, history_dir, run_id, as_of, config,
                                       warnings)
    models_resolved = None
    if models is not None:
        models, models_resolved = _models_across_runs(models, history_dir, run_id, as_of,
                                                      warnings)
    effective = config.model_copy(
        update={"output": config.output.model_copy(update={"run_id": run_id})})
    inputs = ({} if features is None else
              {"baseline": describe_source(config.input.baseline or ""),
               "current": describe_source(config.input.current or "")})
    document = alerts_document(
        drift, {
            "run_id": run_id,
            "created_at": created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "tool_version": tool_version(),
            "inputs": inputs,
            "config_hash": config.config_hash(),
            "metric": config.drift.metric,
            "base": config.drift.base,
            "config": public_config(effective),
        },
        warnings=warnings, resolved=resolved,
        models=None if models is None else models_block(models, models_resolved),
        estimates=estimates_summary, max_rows=config.output.max_alerts)

    say(f"writing {run_dir}")
    with staging_folder(out_dir, run_id) as staging:
        if features is not None and features.baseline.built and features.baseline.profile:
            write_profile(features.baseline.profile, staging / PROFILE_FILE)
        write_run_outputs(staging, {
            DRIFT_FILE: drift,
            **({} if models is None else model_tables(models)),
            ESTIMATES_FILE: estimates,
        }, document)
        with run_lock(out_dir, run_id):
            for part, table in (("features", drift),
                                ("models", None if models is None else models.summary)):
                if table is None:  # a rerun must not keep rows it no longer has
                    drop_history(history_dir, run_id, part=part)
                else:
                    append_history(history_dir, table, run_id, as_of, part=part)
            say("rendering reports")
            with catch_warnings():
                # the run's warnings (alerts.json) already name unreadable history partitions
                simplefilter("ignore", KLDriftWarning)
                write_reports(staging, history_dir=history_dir)
            publish(staging, run_dir)

    statuses = {*(() if drift is None else drift["status"].unique()),
                *(() if models is None else models.summary["status"].unique())}
    if drift is not None and drift.height and statuses <= {"error"}:
        first = drift.select(pl.col("reason").drop_nulls().first()).item()
        raise InputError(f"nothing could be compared: all {drift.height} rows are errors "
                         f"(first: {first}); {run_dir / ALERTS_FILE} lists them")
    worst = max(statuses, key=SEVERITY.index, default="ok")
    exit_code = int(bool(statuses & config.output.fail_statuses))
    return RunResult(run_id=run_id, run_dir=run_dir, drift=drift, alerts=document,
                     worst_status=worst, exit_code=exit_code, models=models,
                     estimates=estimates)


def _across_runs(drift: pl.DataFrame, history_dir: Path, run_id: str, as_of: datetime,
                 config: RunConfig, warnings: list[str]
                 ) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Persistence, partial windows and lifecycles of the drift rows, with earlier runs."""
    series = ("segment", "feature")
    decisions, problems = scan_decisions(history_dir, exclude_run_id=run_id, series=series,
                                         before=as_of)
    warnings += problems
    previous = (None if decisions is None
                else previous_points(decisions, series).collect())
    state = apply_state(drift, previous, persistence=config.alerts.persistence,
                        hold_partial=config.alerts.partial_windows == "hold", series=series)
    return state.table, state.resolved


def _models_across_runs(models: ModelDrift, history_dir: Path, run_id: str,
                        as_of: datetime, warnings: list[str]
                        ) -> tuple[ModelDrift, list[dict[str, Any]]]:
    """Lifecycles of the model-output rows (one series per segment), with earlier runs."""
    series = ("segment",)
    decisions, problems = scan_decisions(history_dir, exclude_run_id=run_id, series=series,
                                         part="models", before=as_of)
    warnings += problems
    previous = (None if decisions is None
                else previous_points(decisions, series).collect())
    rows = models.summary.with_columns(window_status="status",
                                       reason=pl.lit(None, pl.String))
    state = apply_state(rows, previous, persistence=1, hold_partial=False, series=series)
    summary = state.table.select(*models.summary.columns, "lifecycle")
    return replace(models, summary=summary), state.resolved


def _feature_drift(config: RunConfig, say: Progress, bin_current: BinCurrent) -> _FeatureDrift:
    """Feature drift of ``[input]``: read -> bin/align -> measure -> decide."""
    baseline_path = _input_path(config.input.baseline, "baseline")
    current_path = _input_path(config.input.current, "current")
    say(f"reading baseline {describe_source(baseline_path)}")
    baseline = _read_baseline(config, baseline_path)
    say(f"reading current data {describe_source(current_path)}")
    current = _read_current(config, current_path, baseline, bin_current)
    _check_features(config, current.reference, current.histograms)
    say(f"aligning {current.histograms.height:,} current histogram rows")
    aligned = align(current.reference, current.histograms, reasons=current.reasons,
                    coverage=current.coverage)
    say(f"computing drift for {aligned.rows.height:,} segment x feature x window rows")
    # the categories each baseline saw once: the unseen-mass estimate (docs/alerts.md)
    profile = baseline.profile
    singletons = None if profile is None else profile.singletons(
        [segment_name(c) for c in segment_columns(current.reference)])
    drift = compute_drift(aligned, config.drift, singletons=singletons)
    say("deciding alerts")
    # segment columns get their own names back (or segment:<name>) only now, for output
    drift = public_segment_columns(decide(drift, config.alerts))
    features = drift["feature"].unique().to_list()
    return _FeatureDrift(drift, baseline, [
        *current.warnings, *_unmatched_patterns(config, drift),
        *([] if profile is None else profile.warnings(features))])


@dataclass(frozen=True)
class _Baseline:
    histograms: pl.DataFrame
    profile: Profile | None
    built: bool  # profile built from raw baseline data in this run


def _read_baseline(config: RunConfig, path: str) -> _Baseline:
    kind: str = config.input.baseline_format
    if kind == "auto":
        kind = _detect(path, config, "baseline")[0]
    return _BASELINE_READERS[kind](config, path)


def _detect(source: str, config: RunConfig, role: str) -> tuple[str, pl.Schema]:
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
    data = config.model_dump(mode="json")
    for section in data.values():
        if not isinstance(section, dict):
            continue
        if section.get("storage_options"):
            section["storage_options"] = dict.fromkeys(section["storage_options"], "***")
        for key, value in section.items():
            if isinstance(value, str) and "://" in value:
                section[key] = redact(value)
    return data


def _profile_baseline(config: RunConfig, path: str) -> _Baseline:
    # every segment of the profile: _match_segments compares them with the run's
    profile = read_profile(path)
    return _Baseline(_selected(config, profile.histograms()), profile, built=False)


def _read_histogram_table(config: RunConfig, path: str, role: str) -> pl.DataFrame:
    """A histogram table of ``[input]``, its segment columns under their private names and
    its windows (if any) in the window time zone."""
    settings = config.input
    with _hinted(role, getattr(settings, f"{role}_format"), "histogram"):
        table = read_histograms(path, role=role, duplicates=settings.duplicates,
                                storage_options=settings.storage_options)
    if "window" in table.columns:
        values, _ = timestamp_expr("window", table.schema["window"], period=None,
                                   timezone=settings.window_timezone)
        table = table.with_columns(values)
    return private_segment_columns(table, segment_columns(table))


def _histogram_baseline(config: RunConfig, path: str) -> _Baseline:
    return _Baseline(_selected(config, _read_histogram_table(config, path, "baseline")), None,
                     built=False)


def _raw_baseline(config: RunConfig, path: str) -> _Baseline:
    profile = build_baseline_profile(config, path)
    return _Baseline(profile.histograms(), profile, built=True)


_BASELINE_READERS: dict[str, Callable[[RunConfig, str], _Baseline]] = {
    "profile": _profile_baseline, "histogram": _histogram_baseline, "raw": _raw_baseline}


@dataclass(frozen=True)
class _Current:
    histograms: pl.DataFrame  # private segment columns
    reference: pl.DataFrame  # the baseline histograms to compare with (_match_segments)
    warnings: list[str]
    reasons: dict[str, str]  # why some features could not be binned, by feature
    coverage: pl.DataFrame | None  # window, coverage, partial (raw rows with a period)


def _read_current(config: RunConfig, path: str, baseline: _Baseline,
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
        with _hinted("current", settings.current_format, kind):
            _check_shared_features(baseline.histograms, current, shown)
        names = [segment_name(c) for c in segment_columns(current)]
        missing = [c for c in settings.segments if c not in names]
        if missing:
            raise InputError("input.segments names a column the current histogram table "
                             "lacks", source=shown, column=missing[0])
        current = _selected(config, current, names)
        reference, warnings = _match_segments(config, baseline.histograms, names)
    else:
        if profile is None:
            raise InputError("current data is raw rows, so the baseline must be a profile or "
                             "raw data to bin it with, not a histogram table",
                             source=describe_source(settings.baseline or ""))
        reference, warnings = _match_segments(config, baseline.histograms, settings.segments)
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
        _check_features(config, reference, current)  # a misspelt --feature selects nothing
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


def _check_shared_features(baseline: pl.DataFrame, current: pl.DataFrame, source: str) -> None:
    """A histogram table none of whose features is in the baseline is not what it seems."""
    if not set(current["feature"].unique()) & set(baseline["feature"].unique()):
        shown = ", ".join(map(repr, current["feature"].unique(maintain_order=True).head(3)))
        raise InputError(f"none of its features ({shown}, ...) is a baseline feature",
                         source=source, column="feature")


def _wanted(config: RunConfig, feature: str, segments: Sequence[str]) -> bool:
    settings = config.input
    return ((settings.features is None or feature in settings.features)
            and feature not in settings.exclude and feature not in segments)


def _selected(config: RunConfig, histograms: pl.DataFrame,
              segments: Sequence[str] = ()) -> pl.DataFrame:
    """Histogram rows of the features selected by ``input.features`` / ``input.exclude``,
    without those named like a segment column (never checked as features)."""
    settings = config.input
    keep = ~pl.col("feature").is_in([*settings.exclude, *segments])
    if settings.features is not None:
        keep &= pl.col("feature").is_in(settings.features)
    return histograms.filter(keep)


def _check_features(config: RunConfig, baseline: pl.DataFrame, current: pl.DataFrame) -> None:
    """A listed feature found on neither side is a typo: fail rather than skip it."""
    present = set(baseline["feature"].unique()) | set(current["feature"].unique())
    missing = [f for f in config.input.features or () if f not in present]
    if missing:
        raise ConfigError(f"input.features: {missing[0]!r} is in neither the baseline nor "
                          "the current data; fix the name or remove it")


def _unmatched_patterns(config: RunConfig, drift: pl.DataFrame) -> list[str]:
    """Warnings for ``[alerts.features]`` patterns that match no feature (likely typos)."""
    features = drift["feature"].unique().to_list()
    return [f"alerts.features pattern {pattern!r} matches no feature"
            for pattern in config.alerts.features
            if not any(fnmatch.fnmatchcase(f, pattern) for f in features)]
