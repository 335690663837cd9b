"""Check a config or data file the way a run would read it, without running anything."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.bins.profile import read_profile
from pipeline.config import load_config
from pipeline.read.histograms import read_histograms
from pipeline.read.location import parse_location
from pipeline.read.sources import collect, describe_source, detect_format, scan_raw
from pipeline.read.sql import sql_row_count, sql_schema


def _config(path: str) -> str:
    config = load_config(path)
    return (f"config, metric {config.drift.metric} (base {config.drift.base}), "
            f"warn {config.alerts.warn}, critical {config.alerts.critical}")


def _profile(path: str) -> str:
    profile = read_profile(path)
    meta = profile.metadata
    return (f"profile of {len(profile.features)} features from {meta.get('row_count')} rows "
            f"({meta.get('strategy')}, created {meta.get('created_at')})")


def _histogram(path: str) -> str:
    table = read_histograms(path)
    windows = table["window"].n_unique() if "window" in table.columns else 1
    return (f"histogram table, {table.height:,} bins, {table['feature'].n_unique()} features, "
            f"{windows} windows, {table['count'].sum():,.0f} counts")


def _raw(path: str) -> str:
    location = parse_location(path)
    if location.format == "sql":
        columns, rows = len(sql_schema(location)), sql_row_count(location)
    else:
        scan = scan_raw(path)
        rows = collect(scan.select(pl.len()), describe_source(path)).item()
        columns = len(scan.collect_schema())
    return f"raw table, {rows:,} rows, {columns} columns"


_DESCRIBERS = {"profile": _profile, "histogram": _histogram, "raw": _raw}


def describe(path: str) -> tuple[str, str]:
    """Validate ``path`` (a TOML config, a profile, a histogram table or a raw table; any
    source of :mod:`pipeline.read.location`): what it is (``config``, ``profile``,
    ``histogram`` or ``raw``) and a one-line summary of it.

    Raises
    ------
    InputError, ConfigError
        The same one-line errors a run would raise on this file.
    """
    if Path(path).suffix.lower() == ".toml":
        return "config", _config(path)
    kind = detect_format(path)
    return kind, _DESCRIBERS[kind](path)
