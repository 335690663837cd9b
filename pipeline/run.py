"""One run end to end: read -> bin/align -> measure -> decide -> write.

A run checks what its config holds — feature drift (``[input]``), model-output drift
(``[models]``) and KL estimates (``[estimate]``) — and writes everything into ONE run
folder: each part's Parquet tables, one ``alerts.json`` and the reports. The write stage
also adds feature drift to the history dataset at ``<output.dir>/history`` and renders the
reports from the folder's files, exactly as ``kl-drift report`` would re-render them later.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.bins.align import align, segment_columns
from pipeline.bins.binning import bin_raw, retyped_features
from pipeline.bins.profile import Profile, build_profile, read_profile, write_profile
from pipeline.bins.pushdown import bin_in_database, profile_in_database
from pipeline.config import InputConfig, RunConfig
from pipeline.decide.alerts import decide
from pipeline.errors import ConfigError, InputError
from pipeline.files import safe_filename, tool_version
from pipeline.formats import DRIFT_FILE, ESTIMATES_FILE, MODELS_FILES, PROFILE_FILE
from pipeline.measure.drift import compute_drift
from pipeline.measure.estimate import estimate_kl
from pipeline.measure.models import ModelDrift, compare_models
from pipeline.read.histograms import read_histograms
from pipeline.read.location import parse_location, redact
from pipeline.read.sources import (
    ambiguous_columns,
    check_scalar_columns,
    classify_columns,
    describe_source,
    scan_raw,
    source_schema,
)
from pipeline.write.documents import alerts_document, estimates_block, models_block
from pipeline.write.history import HISTORY_DIR, append_history, drop_history
from pipeline.write.reports import write_reports
from pipeline.write.run_folder import model_tables, write_run_outputs

#: Severity order of row statuses, least severe first (for ``worst_status``).
SEVERITY = ("ok", "insufficient_data", "error", "warn", "critical")
#: The parts a run can check; each writes its own tables into the run folder.
FEATURES, MODELS, ESTIMATES = "features", "models", "estimates"
_FAIL_ON = {"never": frozenset(), "critical": frozenset({"critical"}),
            "warn": frozenset({"warn", "critical"})}

Progress = Callable[[str], None]
#: Bins the raw current rows of ``settings.current`` against a profile (e.g. on Dask).
BinCurrent = Callable[[Profile, InputConfig, list[str]], pl.DataFrame]


def bin_current_locally(profile: Profile, settings: InputConfig,
                        features: list[str]) -> pl.DataFrame:
    """Bin ``settings.current`` in this process, in one streamed pass over all files, or
    in the database for a database source (push-down: only counts leave it).

    ``missing="skip"``: a profile feature absent from the current rows becomes an error row
    for that feature instead of stopping the run.
    """
    location = parse_location(settings.current)
    if location.format == "sql":
        return bin_in_database(location, profile, timestamp=settings.timestamp,
                               period=settings.period, segments=settings.segments,
                               features=features, missing="skip")
    return bin_raw(scan_raw(settings.current, storage_options=settings.storage_options),
                   profile, timestamp=settings.timestamp, period=settings.period,
                   segments=settings.segments, features=features, missing="skip",
                   source=location.shown)


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
        returning the histogram long table; :func:`bin_current_locally` by default
        (``flows.dask_histograms.bin_on_dask`` bins file by file on a Dask cluster).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, InputError
        One-line messages for a bad configuration (also: nothing to check, or only one of
        ``input.baseline``/``input.current``) or unreadable/malformed input. Problems
        limited to one feature or window do not raise: they become ``error`` or
        ``insufficient_data`` rows.
    """
    settings = config.input
    parts = {part for part, wanted in ((FEATURES, bool(settings.baseline or settings.current)),
                                       (MODELS, config.models is not None),
                                       (ESTIMATES, config.estimate is not None)) if wanted}
    if not parts:
        raise ConfigError("nothing to check: set input.baseline and input.current (feature "
                          "drift), or add a [models] or [estimate] section")
    if FEATURES in parts:
        for key in ("baseline", "current"):
            if not getattr(settings, key):
                raise ConfigError(f"input.{key}: required for feature drift (a Parquet path)")
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
    """Measure the requested parts, then write them into one run folder."""
    say = progress or (lambda _message: None)
    created_at = datetime.now(UTC)
    run_id = config.output.run_id or created_at.strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(config.output.dir) / safe_filename(run_id)

    features = _feature_drift(config, say, bin_current) if FEATURES in parts else None
    models = None
    if MODELS in parts:
        say(f"comparing model outputs {config.models.baseline} -> {config.models.current}")
        models = compare_models(config.models)
    estimates = None
    if ESTIMATES in parts:
        say(f"estimating KL from {config.estimate.source}")
        estimates = estimate_kl(config.estimate)

    drift = None if features is None else features.drift
    effective = config.model_copy(
        update={"output": config.output.model_copy(update={"run_id": run_id})})
    inputs = ({} if features is None else
              {"baseline": describe_source(config.input.baseline),
               "current": describe_source(config.input.current)})
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
        warnings=[] if features is None else features.warnings,
        models=None if models is None else models_block(models),
        estimates=None if estimates is None else estimates_block(estimates, config.estimate))

    say(f"writing {run_dir}")
    profile_path = run_dir / PROFILE_FILE
    if features is not None and features.baseline.built:
        write_profile(features.baseline.profile, profile_path)  # atomic
    else:
        profile_path.unlink(missing_ok=True)  # a rerun must not leave a stale profile
    # A part this run did not check maps to None: its files from an earlier run are removed.
    write_run_outputs(run_dir, {
        DRIFT_FILE: drift,
        **(dict.fromkeys(MODELS_FILES.values()) if models is None else model_tables(models)),
        ESTIMATES_FILE: estimates,
    }, document)
    history_dir = Path(config.output.dir) / HISTORY_DIR
    if drift is None:
        drop_history(history_dir, run_id)  # a rerun must not keep rows it no longer has
    else:
        append_history(history_dir, drift, run_id, created_at)
    say("rendering reports")
    write_reports(run_dir, history_dir=history_dir)

    statuses = {*(() if drift is None else drift["status"].unique()),
                *(() if models is None else models.summary["status"].unique())}
    worst = max(statuses, key=SEVERITY.index, default="ok")
    exit_code = int(bool(statuses & _FAIL_ON[config.output.fail_on]))
    return RunResult(run_id=run_id, run_dir=run_dir, drift=drift, alerts=document,
                     worst_status=worst, exit_code=exit_code, models=models,
                     estimates=estimates)


def _feature_drift(config: RunConfig, say: Progress, bin_current: BinCurrent) -> _FeatureDrift:
    """Feature drift of ``[input]``: read -> bin/align -> measure -> decide."""
    settings = config.input
    say(f"reading baseline {describe_source(settings.baseline)}")
    baseline = _read_baseline(config)
    say(f"reading current data {describe_source(settings.current)}")
    current, reasons = _read_current(config, baseline.histograms, baseline.profile,
                                     bin_current)
    _check_features(config, baseline.histograms, current)
    say(f"aligning {current.height:,} current histogram rows")
    aligned = align(baseline.histograms, current, reasons=reasons)
    say(f"computing drift for {aligned.rows.height:,} segment x feature x window rows")
    drift = compute_drift(aligned, config.drift)
    say("deciding alerts")
    drift = decide(drift, config.alerts, drift_config=config.drift)
    return _FeatureDrift(drift, baseline, _unmatched_patterns(config, drift))


@dataclass(frozen=True)
class _Baseline:
    histograms: pl.DataFrame
    profile: Profile | None
    built: bool  # profile built from raw baseline data in this run


def _read_baseline(config: RunConfig) -> _Baseline:
    settings = config.input
    kind = settings.baseline_format
    if kind == "auto":
        kind = _detect(settings.baseline, config, "baseline")[0]
    return _BASELINE_READERS[kind](config)


def _detect(source: str, config: RunConfig, role: str) -> tuple[str, pl.Schema]:
    """What ``source`` holds (profile, histogram table or raw rows) from its columns, and
    its schema; a histogram-like table with float data columns is ambiguous: an error."""
    schema = source_schema(source, storage_options=config.input.storage_options)
    kind = classify_columns(set(schema))
    floats = ambiguous_columns(schema) if kind == "histogram" else []
    if floats:
        raise InputError(f"has feature, bin and count columns like a histogram table, but "
                         f"also the number column {floats[0]!r} like raw rows; set "
                         f"input.{role}_format = \"raw\" or \"histogram\"",
                         source=describe_source(source))
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


def _profile_baseline(config: RunConfig) -> _Baseline:
    profile = read_profile(config.input.baseline)
    # profile segment columns the run does not split by are pooled (same bins everywhere)
    segments = [s for s in profile.segments if s in config.input.segments]
    return _Baseline(_selected(config, profile.histograms(segments)), profile, built=False)


def _histogram_baseline(config: RunConfig) -> _Baseline:
    settings = config.input
    with _hinted("baseline", settings.baseline_format, "histogram"):
        histograms = read_histograms(settings.baseline, role="baseline",
                                     duplicates=settings.duplicates,
                                     storage_options=settings.storage_options)
    return _Baseline(_selected(config, histograms), None, built=False)


def build_baseline_profile(config: RunConfig, source: str | None = None) -> Profile:
    """Profile raw baseline rows as ``[input]`` and ``[profile]`` say.

    Features follow ``input.features``/``input.exclude`` (the timestamp is never one);
    ``input.segments`` get their own baseline histograms. ``source`` (any source string)
    defaults to ``input.baseline``; a database source is profiled in the database (only
    quantiles, top categories and counts leave it). Used by runs with a raw baseline,
    ``kl-drift profile`` and the ``build_baseline`` flow alike.
    """
    settings, options = config.input, config.profile
    source = source or settings.baseline
    if not source:
        raise ConfigError("input.baseline: required to build a profile (a Parquet path)")
    shown = describe_source(source)
    if settings.baseline_format == "raw":
        schema, kind = source_schema(source, storage_options=settings.storage_options), "raw"
    else:
        kind, schema = _detect(source, config, "baseline")
    if kind != "raw":
        raise InputError(f"is already a {'baseline profile' if kind == 'profile' else kind} "
                         f"table, not raw rows; use it as input.baseline directly"
                         + ("" if kind == "profile" else
                            " (raw rows with feature, bin and count columns: set "
                            "input.baseline_format = \"raw\")"), source=shown)
    check_scalar_columns(schema, settings.segments, shown)
    location = parse_location(source)
    build = partial(profile_in_database, location) if location.format == "sql" else partial(
        build_profile, scan_raw(source, storage_options=settings.storage_options),
        source=shown)
    profile = build(
        features=settings.features,
        exclude=(*settings.exclude, *([settings.timestamp] if settings.timestamp else [])),
        segments=settings.segments, strategy=options.strategy, bins=options.bins,
        top_k=options.top_k, fixed_edges=options.fixed_edges or None)
    if not profile.metadata.get("row_count"):
        raise InputError("baseline has no rows, so there is nothing to compare with; check "
                         "input.baseline", source=shown)
    return profile


def _raw_baseline(config: RunConfig) -> _Baseline:
    profile = build_baseline_profile(config)
    return _Baseline(profile.histograms(), profile, built=True)


_BASELINE_READERS: dict[str, Callable[[RunConfig], _Baseline]] = {
    "profile": _profile_baseline, "histogram": _histogram_baseline, "raw": _raw_baseline}


def _read_current(config: RunConfig, baseline: pl.DataFrame, profile: Profile | None,
                  bin_current: BinCurrent) -> tuple[pl.DataFrame, dict[str, str]]:
    """Current histograms, and why some features could not be binned (by feature)."""
    settings = config.input
    reasons: dict[str, str] = {}
    kind = settings.current_format
    if kind == "auto":
        detected, schema = _detect(settings.current, config, "current")
        kind = "raw" if detected == "raw" else "histogram"
    else:
        schema = source_schema(settings.current, storage_options=settings.storage_options)
    shown = describe_source(settings.current)
    check_scalar_columns(schema, settings.segments, shown)
    if kind == "histogram":
        if settings.timestamp is not None:
            raise ConfigError("input.timestamp: windows apply to raw current data; a "
                              "histogram table brings its own 'window' column"
                              + (" " + _format_hint("current", kind)
                                 if settings.current_format == "auto" else ""))
        with _hinted("current", settings.current_format, kind):
            current = read_histograms(settings.current, role="current",
                                      duplicates=settings.duplicates,
                                      storage_options=settings.storage_options)
            _check_shared_features(baseline, current, shown)
        missing = [c for c in settings.segments if c not in segment_columns(current)]
        if missing:
            raise InputError("input.segments names a column the current histogram table "
                             "lacks", source=shown, column=missing[0])
        current = _selected(config, current)
    else:
        if profile is None:
            raise InputError("current data is raw rows, so the baseline must be a profile or "
                             "raw data to bin it with, not a histogram table",
                             source=describe_source(settings.baseline))
        features = [f for f in profile.features if _wanted(config, f)]
        # A feature whose column type changed becomes an error row, not a stopped run.
        reasons = retyped_features(schema, profile, features)
        current = bin_current(profile, settings, [f for f in features if f not in reasons])
    if current.height == 0 or current["count"].sum() == 0:
        raise InputError("the current data has no rows to compare; check input.current and "
                         "the feature filters", source=shown)
    return current, reasons


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


def _wanted(config: RunConfig, feature: str) -> bool:
    settings = config.input
    return ((settings.features is None or feature in settings.features)
            and feature not in settings.exclude)


def _selected(config: RunConfig, histograms: pl.DataFrame) -> pl.DataFrame:
    """Histogram rows of the features selected by ``input.features`` / ``input.exclude``."""
    settings = config.input
    keep = ~pl.col("feature").is_in(settings.exclude)
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
