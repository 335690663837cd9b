"""CLI processes for the crash and concurrency tests, started in milliseconds.

Importing kl-drift (polars, pyarrow, the pipeline) takes seconds on a busy machine, which
would make a hundred kill instants cost minutes. So the processes are forked from
multiprocessing's *forkserver*, a process that imported this module (and with it kl-drift)
once; each child then runs one ``kl-drift`` command line as a user's shell would, with its
own stderr file, and exits with the command's exit code (``-9`` when killed).
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import ForkServerContext
from multiprocessing.synchronize import Event
from pathlib import Path

import flows.cli
import pipeline.run
import pipeline.write.reports.html  # noqa: F401


def cli(args: list[str], stderr: str, log_dir: str, go: Event | None = None) -> None:
    """Run ``kl-drift ARGS`` in this (forked) process; stderr goes to the file ``stderr``.

    With ``go``, wait for it first, so that several runs start at the same instant.
    """
    os.environ[flows.cli.LOG_DIR_ENV] = log_dir
    for fd, path in ((1, os.devnull), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    if go is not None:
        go.wait()
    flows.cli.app(args, prog_name="kl-drift")  # raises SystemExit with the exit code


def context() -> ForkServerContext:
    """The forkserver context whose server has imported kl-drift."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def start(ctx: ForkServerContext, args: list[str], folder: Path, name: str,
          go: Event | None = None) -> tuple[multiprocessing.process.BaseProcess, Path]:
    """Start ``kl-drift ARGS``; returns the process and the file its stderr goes to."""
    stderr = folder / f"{name}.stderr"
    process = ctx.Process(target=cli, args=(args, str(stderr), str(folder / "logs"), go),
                          name=name)
    process.start()
    return process, stderr
