"""One drift run end to end: read -> bin/align -> measure -> decide -> write.

Reports are not written here: they are built from the run folder's ``drift.parquet`` and
``alerts.json`` by :mod:`pipeline.reports`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipeline.alerts import decide
from pipeline.align import align, segment_columns
from pipeline.binning import bin_raw
from pipeline.config import RunConfig
from pipeline.drift import compute_drift
from pipeline.errors import ConfigError, InputError
from pipeline.outputs import alerts_document, safe_filename, tool_version, write_run_outputs
from pipeline.profile import Profile, build_profile, read_profile, write_profile
from pipeline.readers import collect_schema, read_histograms, scan_raw, scan_source

PROFILE_FILE = "baseline_profile.parquet"
#: Severity order of row statuses, least severe first (for ``worst_status``).
SEVERITY = ("ok", "insufficient_data", "error", "warn", "critical")
_FAIL_ON = {"never": frozenset(), "critical": frozenset({"critical"}),
            "warn": frozenset({"warn", "critical"})}
_HISTOGRAM_KEYS = {"feature", "bin", "count"}
_PROFILE_KEYS = {"feature", "bin", "count", "kind", "bin_index"}


@dataclass(frozen=True)
class RunResult:
    """What a drift run produced.

    Attributes
    ----------
    run_id : str
    run_dir : Path
        ``<output.dir>/<safe run_id>``, holding drift.parquet and alerts.json.
    drift : pl.DataFrame
        The decided drift table.
    alerts : dict
        The alerts.json document.
    worst_status : str
        Most severe row status, in the order ``ok < insufficient_data < error < warn <
        critical`` (``ok`` for a run without rows).
    exit_code : int
        0, or 1 when a row's status is at or above ``output.fail_on``.
    """

    run_id: str
    run_dir: Path
    drift: pl.DataFrame
    alerts: dict
    worst_status: str
    exit_code: int


def run_drift(config: RunConfig, *,
              progress: Callable[[str], None] | None = None) -> RunResult:
    """Run one drift check as configured and write its run folder.

    Parameters
    ----------
    config : RunConfig
        From :func:`pipeline.config.load_config`; ``input.baseline`` and ``input.current``
        are required.
    progress : callable, optional
        Called with a short message at each stage (for CLI progress or flow logs).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError, InputError
        One-line messages for a bad configuration or unreadable/malformed input. Problems
        limited to one feature or window do not raise: they become ``error`` or
        ``insufficient_data`` rows.
    """
    say = progress or (lambda _message: None)
    settings = config.input
    for key in ("baseline", "current"):
        if not getattr(settings, key):
            raise ConfigError(f"input.{key}: required for a drift run (a Parquet path)")
    created_at = datetime.now(UTC)
    run_id = config.output.run_id or created_at.strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(config.output.dir) / safe_filename(run_id)

    say(f"reading baseline {settings.baseline}")
    baseline = _read_baseline(config)
    say(f"reading current data {settings.current}")
    current = _read_current(config, baseline.profile)
    _check_features(config, baseline.histograms, current)
    say(f"aligning {current.height:,} current histogram rows")
    aligned = align(baseline.histograms, current)
    say(f"computing drift for {aligned.rows.height:,} segment x feature x window rows")
    drift = compute_drift(aligned, config.drift)
    say("deciding alerts")
    drift = decide(drift, config.alerts, aligned=aligned, drift_config=config.drift)

    effective = config.model_copy(
        update={"output": config.output.model_copy(update={"run_id": run_id})})
    document = alerts_document(drift, {
        "run_id": run_id,
        "created_at": created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "tool_version": tool_version(),
        "inputs": {"baseline": settings.baseline, "current": settings.current},
        "config_hash": config.config_hash(),
        "metric": config.drift.metric,
        "base": config.drift.base,
        "config": effective.model_dump(mode="json"),
    }, warnings=_unmatched_patterns(config, drift))
    say(f"writing {run_dir}")
    profile_path = run_dir / PROFILE_FILE
    if baseline.built:
        write_profile(baseline.profile, profile_path)  # atomic
    else:
        profile_path.unlink(missing_ok=True)  # a rerun must not leave a stale profile
    write_run_outputs(run_dir, drift, document)

    statuses = set(drift["status"].to_list())
    worst = max(statuses, key=SEVERITY.index, default="ok")
    exit_code = int(bool(statuses & _FAIL_ON[config.output.fail_on]))
    return RunResult(run_id=run_id, run_dir=run_dir, drift=drift, alerts=document,
                     worst_status=worst, exit_code=exit_code)


@dataclass(frozen=True)
class _Baseline:
    histograms: pl.DataFrame
    profile: Profile | None
    built: bool  # profile built from raw baseline data in this run


def _read_baseline(config: RunConfig) -> _Baseline:
    settings = config.input
    kind = settings.baseline_format
    if kind == "auto":
        kind = detect_format(settings.baseline)
    return _BASELINE_READERS[kind](config)


def _profile_baseline(config: RunConfig) -> _Baseline:
    profile = read_profile(config.input.baseline)
    return _Baseline(_selected(config, profile.histograms()), profile, built=False)


def _histogram_baseline(config: RunConfig) -> _Baseline:
    histograms = read_histograms(config.input.baseline, role="baseline",
                                 duplicates=config.input.duplicates)
    return _Baseline(_selected(config, histograms), None, built=False)


def _raw_baseline(config: RunConfig) -> _Baseline:
    settings, options = config.input, config.profile
    profile = build_profile(
        scan_raw(settings.baseline), features=settings.features,
        exclude=(*settings.exclude, *settings.segments,
                 *([settings.timestamp] if settings.timestamp else [])),
        strategy=options.strategy, bins=options.bins, top_k=options.top_k,
        fixed_edges=options.fixed_edges or None, source=settings.baseline)
    return _Baseline(profile.histograms(), profile, built=True)


_BASELINE_READERS: dict[str, Callable[[RunConfig], _Baseline]] = {
    "profile": _profile_baseline, "histogram": _histogram_baseline, "raw": _raw_baseline}


def _read_current(config: RunConfig, profile: Profile | None) -> pl.DataFrame:
    settings = config.input
    kind = settings.current_format
    if kind == "auto":
        kind = "raw" if detect_format(settings.current) == "raw" else "histogram"
    if kind == "histogram":
        if settings.timestamp is not None:
            raise ConfigError("input.timestamp: windows apply to raw current data; a "
                              "histogram table brings its own 'window' column")
        current = read_histograms(settings.current, role="current",
                                  duplicates=settings.duplicates)
        missing = [c for c in settings.segments if c not in segment_columns(current)]
        if missing:
            raise InputError("input.segments names a column the current histogram table "
                             "lacks", source=settings.current, column=missing[0])
        current = _selected(config, current)
    else:
        if profile is None:
            raise InputError("current data is raw rows, so the baseline must be a profile or "
                             "raw data to bin it with, not a histogram table",
                             source=settings.baseline)
        features = [f for f in profile.features if _wanted(config, f)]
        # missing="skip": a profile feature absent from the current rows becomes an
        # error row for that feature instead of stopping the run.
        current = bin_raw(scan_raw(settings.current), profile, timestamp=settings.timestamp,
                          period=settings.period, segments=settings.segments,
                          features=features, missing="skip", source=settings.current)
    if current.height == 0 or current["count"].sum() == 0:
        raise InputError("the current data has no rows to compare; check input.current and "
                         "the feature filters", source=settings.current)
    return current


def detect_format(source: str) -> str:
    """What a Parquet source holds: ``"profile"``, ``"histogram"`` or ``"raw"``.

    Decided from its columns: a profile has ``feature``, ``bin``, ``count``, ``kind`` and
    ``bin_index``; a histogram table ``feature``, ``bin`` and ``count``; anything else is
    raw rows. Only the schema is read.

    Raises
    ------
    InputError
        Missing file, empty glob or folder, or not Parquet.
    """
    columns = set(collect_schema(scan_source(source), source).names())
    if columns >= _PROFILE_KEYS:
        return "profile"
    return "histogram" if columns >= _HISTOGRAM_KEYS else "raw"


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
