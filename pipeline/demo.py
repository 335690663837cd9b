"""The bundled demo: profile January 2013 NYC flights, then check six summer weeks.

It runs exactly what a user would run by hand (``kl-drift profile`` then ``kl-drift run``
with ``data/demo.toml``), so the demo doubles as an end-to-end check of the product.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.bins.profile import write_profile
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.run import RunResult, build_baseline_profile, run_drift

DEMO_CONFIG = "demo.toml"
PROFILE_FILE = "flights_profile.parquet"


def run_demo(data_dir: str | Path, out_dir: str | Path, *,
             progress: Callable[[str], None] | None = None) -> RunResult:
    """Build the flights profile into ``out_dir`` and run the demo config against it.

    Parameters
    ----------
    data_dir : path
        The repository's ``data/`` folder (holding ``demo.toml`` and the Parquet files).
    out_dir : path
        Where the profile, the run folder and the history dataset are written. Rerunning
        replaces the run (fixed run id ``demo-flights``), never duplicates it.
    progress : callable, optional
        Called with a short message at each stage.
    """
    config_path = Path(data_dir) / DEMO_CONFIG
    if not config_path.is_file():
        raise InputError("demo config not found: run the demo from a clone of the kl-drift "
                         "repository (it ships data/demo.toml)", source=str(config_path))
    say = progress or (lambda _message: None)
    config = load_config(config_path, {"output.dir": str(out_dir)})
    say(f"profiling the baseline {config.input.baseline}")
    profile_path = write_profile(build_baseline_profile(config), Path(out_dir) / PROFILE_FILE)
    config = load_config(config_path, {"output.dir": str(out_dir),
                                       "input.baseline": str(profile_path)})
    return run_drift(config, progress=progress)
