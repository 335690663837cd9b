"""Wall and CPU time of the measuring stages inside a whole ``kl-drift run`` (issue 12,
500,000-row run).

Run: ``PYTHONPATH=<tree> .venv/bin/python bench/bench_stages_in_run.py <run.toml>``
(e.g. /tmp/hr/run.toml with its own ``[output] dir``). The run goes as ``kl-drift run
--config <run.toml>`` would, with ``align``, ``compute_drift``, ``window_verdicts`` and
``history_rows`` (where :mod:`pipeline.reference_modes` calls them) and ``compare`` wrapped
in timers; at the end one line on stderr gives each stage's wall time and the process's
user + system time during it (threads included: stages that run side by side, such as
``history_rows`` beside ``window_verdicts``, count each other's CPU), the whole run's
and the peak RSS. Inside a run a stage meets the allocator state of the stages before it
(fresh 10^7-cell temporaries fault in pages there), which a benchmark of the stage alone
does not see.
"""

from __future__ import annotations

import os

# as the kl-drift program sets it before numpy loads (flows/cli.py), which the imports below
# do: idle OpenBLAS threads otherwise busy-wait, taking a core from the stages' own threads
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import resource
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import pipeline.reference_modes as reference_modes
import pipeline.run as run

STAGES = ("align", "compute_drift", "window_verdicts", "history_rows")
_times: dict[str, list[float]] = {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(inner)
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), _cpu()
        try:
            return inner(*args, **kwargs)
        finally:
            total = _times.setdefault(name, [0.0, 0.0])
            total[0] += time.perf_counter() - wall
            total[1] += _cpu() - cpu
    return timed


def main() -> None:
    from flows.cli import app

    for name in STAGES:
        setattr(reference_modes, name, _timed(name, getattr(reference_modes, name)))
    run.compare = _timed("compare", run.compare)
    sys.argv = ["kl-drift", "run", "--config", sys.argv[1], "-q"]
    wall, cpu = time.perf_counter(), _cpu()
    try:
        app()
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        stages = ", ".join(f"{name} {times[0]:.2f} s / {times[1]:.2f} s"
                           for name, times in _times.items())
        print(f"wall / CPU: {stages}; run {time.perf_counter() - wall:.2f} s / "
              f"{_cpu() - cpu:.2f} s, peak {peak:.2f} GiB", file=sys.stderr)


if __name__ == "__main__":
    main()
