"""Drift pipeline: read -> bin/align -> measure -> decide -> write. No Prefect here.

The public Python API (docs/python-api.md)::

    import pipeline as kd

    baseline = kd.profile(january)                      # a DataFrame or a source string
    result = kd.check(july, baseline, timestamp="ts", period="1w")
    result.drift                                        # the drift table (polars)
    result                                              # in Jupyter: the report, inline
    result.write("runs/july")                           # the run folder of `kl-drift run`

Names are imported on first use, so ``import pipeline`` (and ``kl-drift --help``) stays
fast: polars, the pipeline and the report renderer load when a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.api import check, profile
    from pipeline.bins.profile import Profile, read_profile, write_profile
    from pipeline.config import RunConfig, load_config
    from pipeline.errors import ConfigError, InputError, KLDriftError, OutputError
    from pipeline.run import CheckResult, RunResult, run_drift

__all__ = ["CheckResult", "ConfigError", "InputError", "KLDriftError", "OutputError", "Profile",
           "RunConfig", "RunResult", "check", "load_config", "profile", "read_profile",
           "run_drift", "write_profile"]
_HOMES = {
    "check": "pipeline.api", "profile": "pipeline.api",
    "Profile": "pipeline.bins.profile", "read_profile": "pipeline.bins.profile",
    "write_profile": "pipeline.bins.profile",
    "RunConfig": "pipeline.config", "load_config": "pipeline.config",
    "ConfigError": "pipeline.errors", "InputError": "pipeline.errors",
    "KLDriftError": "pipeline.errors", "OutputError": "pipeline.errors",
    "CheckResult": "pipeline.run", "RunResult": "pipeline.run", "run_drift": "pipeline.run",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
