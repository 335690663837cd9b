"""CPU of ``compute_drift`` inside a whole ``kl-drift run`` (issue 12, 500,000-row run).

Run: ``PYTHONPATH=<tree> .venv/bin/python bench/bench_compute_drift_in_run.py <run.toml>``
(e.g. /tmp/hr/run.toml with its own ``[output] dir``). The run goes as ``kl-drift run
--config <run.toml>`` would, with :func:`pipeline.measure.drift.compute_drift` wrapped in a
timer; its wall time and the process's user and system time during the call go to stderr.
Inside a run the stage meets the allocator state of the stages before it (its fresh 10^7-cell
temporaries fault in pages there), which a benchmark of the stage alone does not see.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import pipeline.reference_modes as reference_modes

_inner = reference_modes.compute_drift


def _timed(*args: Any, **kwargs: Any) -> Any:
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = _inner(*args, **kwargs)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"compute_drift: wall {time.perf_counter() - wall:.2f} s, "
          f"user {after.ru_utime - before.ru_utime:.2f} s, "
          f"sys {after.ru_stime - before.ru_stime:.2f} s", file=sys.stderr)
    return result


def main() -> None:
    from flows.cli import app

    reference_modes.compute_drift = _timed
    sys.argv = ["kl-drift", "run", "--config", sys.argv[1]]
    app()


if __name__ == "__main__":
    main()
