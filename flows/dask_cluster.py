"""Whether ``executor = "dask"`` can run: the extra installed, raw current data, a scheduler
that answers and has a worker, each checked within ``input.dask_timeout``.

Without these checks a wrong address makes Dask retry its connection (and the run task
retry on top of it) for minutes, and a scheduler without workers accepts tasks and waits
forever. The drift_check flow (`flows.dask_histograms.bin_on_dask`) and ``kl-drift
validate`` call `check_dask`; failures are one-line `ConfigError` naming the key, which the
flow does not retry. Imports ``distributed`` only (no Prefect), so ``validate`` stays quick.
"""

from __future__ import annotations

import importlib.util

from pipeline.config import InputConfig
from pipeline.errors import ConfigError
from pipeline.read.sources import detect_format

_EXTRA = ("input.executor: 'dask' needs the dask extra (prefect-dask, distributed); install "
          "it with pip install 'kl-drift[dask]', or set executor = 'local'")


def check_cluster(address: str, timeout: float) -> int:
    """Connect to the Dask scheduler at ``address`` and wait for a worker, each at most
    ``timeout`` seconds.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``"tcp://scheduler:8786"``.
    timeout : float
        Seconds to wait for the connection, then again for the first worker.

    Returns
    -------
    int
        Workers connected to the scheduler.

    Raises
    ------
    ConfigError
        ``input.dask_address``: unreachable, not a scheduler address, or no worker arrived.
    """
    try:
        import distributed
    except ImportError:
        raise ConfigError(_EXTRA) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"input.dask_address: cannot reach a Dask scheduler at {address!r} "
                          f"within {timeout:g} s ({exc}); check the address and that the "
                          "scheduler runs (input.dask_timeout sets the wait)") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
        return len(client.nthreads())
    except TimeoutError:
        raise ConfigError(f"input.dask_address: the Dask scheduler at {address!r} has no "
                          f"worker (waited {timeout:g} s); start one with 'dask worker "
                          f"{address}', or give an adaptive cluster a minimum of 1 "
                          "worker") from None
    finally:
        client.close()


def check_dask(settings: InputConfig) -> str:
    """Check that ``settings`` (``executor = "dask"``) can run on Dask, and say on what.

    The dask extra must be installed, ``input.current`` must be raw Parquet rows (Dask bins
    them file by file; a histogram table is already binned) and, with ``dask_address``,
    the scheduler must answer and have a worker (`check_cluster`).

    Returns
    -------
    str
        ``"Dask scheduler tcp://... with 3 workers"``, or ``"a local Dask cluster per run"``
        without an address.

    Raises
    ------
    ConfigError
        One line naming the key to fix.
    """
    if not all(importlib.util.find_spec(m) for m in ("distributed", "prefect_dask")):
        raise ConfigError(_EXTRA)
    if (settings.current_format == "auto" and settings.current is not None
            and detect_format(settings.current,
                              storage_options=settings.storage_options) != "raw"):
        raise ConfigError(f"input.executor: 'dask' bins raw current rows, and input.current "
                          f"{settings.current!r} is a histogram table; set executor = 'local'")
    if settings.dask_address is None:
        return "a local Dask cluster per run"
    workers = check_cluster(settings.dask_address, settings.dask_timeout)
    return (f"Dask scheduler {settings.dask_address} with {workers} "
            f"worker{'s' if workers != 1 else ''}")
