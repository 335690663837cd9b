"""The Python API: profile a table, check current data against it, in a few lines.

``pipeline.profile`` and ``pipeline.check`` (exported lazily by ``pipeline/__init__.py``)
take in-memory tables — polars DataFrames and LazyFrames, pandas DataFrames, pyarrow Tables
— or any source string (:mod:`pipeline.read.location`), with the options of a run config:
a :class:`~pipeline.config.RunConfig`, a TOML path, and keyword overrides. A check runs
exactly what ``kl-drift run`` runs (:func:`pipeline.run.run_in_memory`) and writes nothing
until :meth:`~pipeline.run.CheckResult.write`. docs/python-api.md has the whole tour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.bins.profile import Profile
from pipeline.config import (
    AlertsConfig,
    DriftConfig,
    InputConfig,
    OutputConfig,
    ProfileConfig,
    RunConfig,
    load_config,
)
from pipeline.errors import ConfigError
from pipeline.read.frames import Frame, as_frame
from pipeline.run import (
    CheckResult,
    FeatureInputs,
    Progress,
    build_baseline_profile,
    run_in_memory,
)

#: A config: the object, a TOML file, or nothing (defaults).
Config = RunConfig | str | os.PathLike[str] | None
#: Sections whose keys may be given bare (``warn=0.05`` for ``alerts.warn``), in the order
#: that settles a name two sections share: ``features`` is ``input.features``.
_BARE_SECTIONS: dict[str, type[BaseModel]] = {
    "input": InputConfig, "profile": ProfileConfig, "drift": DriftConfig,
    "alerts": AlertsConfig, "output": OutputConfig}
_BARE_KEYS = {key: section for section, model in reversed(_BARE_SECTIONS.items())
              for key in model.model_fields}


def _settings(config: Config = None, **options: Any) -> RunConfig:
    """A run config from ``config`` with ``options`` on top, validated as a TOML file is.

    Parameters
    ----------
    config : RunConfig, path or None
        A config object, a TOML file (relative paths in it are resolved against its
        folder) or ``None`` for the defaults.
    **options
        Config keys: dotted (``**{"alerts.warn": 0.05}``), a section name with a dict
        (``alerts={"warn": 0.05}``), or a bare key of ``[input]``, ``[profile]``,
        ``[drift]``, ``[alerts]`` or ``[output]`` (``timestamp="ts"``, ``bins=10``,
        ``metric="psi"``, ``warn=0.05``, ``run_id="r1"``; ``features`` is
        ``input.features``). ``None`` values are ignored.

    Raises
    ------
    ConfigError
        An unknown key or an invalid value, named as in a TOML file.

    Examples
    --------
    >>> _settings(timestamp="ts", period="1d", warn=0.05).alerts.warn
    0.05
    >>> _settings(**{"drift.metric": "psi"}).drift.metric
    'psi'
    """
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        if key in RunConfig.model_fields and isinstance(value, Mapping):
            # one key per field, so that the section merges into the config's section
            overrides.update({f"{key}.{field}": v for field, v in value.items()})
        elif "." in key or key in RunConfig.model_fields:
            overrides[key] = value
        elif key in _BARE_KEYS:
            overrides[f"{_BARE_KEYS[key]}.{key}"] = value
        else:
            raise ConfigError(f"unknown option {key!r}: give a config key as 'section.key' "
                              "(e.g. 'alerts.warn'), a section with a dict, or a key of "
                              f"{', '.join(f'[{s}]' for s in _BARE_SECTIONS)} "
                              "(docs/config.md)")
    if isinstance(config, RunConfig):
        return load_config(None, {**config.model_dump(), **overrides})
    return load_config(None if config is None else Path(config), overrides)


def _source(data: object, role: str) -> str | Frame:
    """A source string as it is; anything else as an in-memory table."""
    if isinstance(data, str | os.PathLike):
        return os.fspath(data)
    return as_frame(data, role)


def profile(data: object, *, config: Config = None, **options: Any) -> Profile:
    """Profile baseline rows: bin edges, kept categories and counts of every feature.

    Parameters
    ----------
    data : DataFrame, LazyFrame, pandas DataFrame, pyarrow Table or str
        Raw baseline rows, or a source string (a file, glob, folder, URL, table or
        ``URL#table``; docs/config.md#sources).
    config : RunConfig, path or None
        Options of ``[input]`` (``features``, ``exclude``, ``segments``, ``timestamp``,
        which is never a feature) and ``[profile]`` (``strategy``, ``bins``, ``top_k``,
        ``fixed_edges``).
    **options
        Config keys on top of ``config``, as in :func:`_settings`.

    Returns
    -------
    Profile
        Save it with ``pipeline.write_profile(profile, path)``; ``pipeline.read_profile``
        reads it back, and :func:`check` takes either.

    Raises
    ------
    InputError, ConfigError
        One-line messages naming the table (e.g. ``'baseline polars DataFrame (1,000
        rows)'``), column or key.

    Examples
    --------
    >>> import polars as pl
    >>> table = pl.DataFrame({"x": [float(i % 10) for i in range(100)], "c": ["a", "b"] * 50})
    >>> profile(table, bins=5).features
    ['x', 'c']
    """
    return build_baseline_profile(_settings(config, **options), _source(data, "baseline"))


def check(current: object = None, baseline: object = None, *, config: Config = None,
          history: str | os.PathLike[str] | None = None, progress: Progress | None = None,
          **options: Any) -> CheckResult:
    """Check current data against a baseline, as ``kl-drift run`` would; write nothing.

    Parameters
    ----------
    current : DataFrame, LazyFrame, pandas DataFrame, pyarrow Table or str, optional
        Raw rows (binned against the baseline, in windows with ``timestamp`` and
        ``period``) or a histogram table. Default: ``input.current`` of the config.
    baseline : Profile, DataFrame, LazyFrame, pandas DataFrame, pyarrow Table or str, optional
        A profile (:func:`profile`, ``pipeline.read_profile``), raw baseline rows (profiled
        here, as a run profiles a raw baseline) or a histogram table. Default:
        ``input.baseline`` of the config.
    config : RunConfig, path or None
        The run's options (docs/config.md). ``[models]`` and ``[estimate]`` run too when the
        config has them.
    history : path, optional
        A history dataset (``<output.dir>/history``) to decide persistence and alert
        lifecycles against. Default: none, as for a first run (every alert is new).
    progress : callable, optional
        Called with a short message at each stage.
    **options
        Config keys on top of ``config``, as in :func:`_settings`: ``timestamp="ts"``,
        ``period="1d"``, ``segments=["region"]``, ``metric="psi"``, ``warn=0.05``, ...

    Returns
    -------
    CheckResult
        ``drift`` (polars), ``alerts`` (the alerts.json document), ``models``,
        ``estimates``, ``exit_code``; ``write(run_dir)`` writes the run folder;
        ``report_html()`` is report.html, shown inline by Jupyter.

    Raises
    ------
    InputError, ConfigError
        One-line messages naming the table, feature, column or key; also when no row at
        all could be compared.
    """
    run_config = _settings(config, **options)
    inputs = None
    if current is not None or baseline is not None:
        inputs = FeatureInputs(
            baseline=(baseline if isinstance(baseline, Profile) else
                      _source(baseline, "baseline") if baseline is not None else
                      _configured(run_config.input.baseline, "baseline")),
            current=(_source(current, "current") if current is not None else
                     _configured(run_config.input.current, "current")))
    return run_in_memory(run_config, inputs=inputs, progress=progress, history_dir=history)


def _configured(source: str | None, key: str) -> str:
    if not source:
        raise ConfigError(f"input.{key}: required; pass {key}= (a table, a profile or a "
                          "source string) or set it in the config")
    return source

