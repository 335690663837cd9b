"""Where a ``kl-drift`` command spends its wall time, and how many cores each stage keeps busy.

Run: ``.venv/bin/python bench/stage_timeline.py [--depth 3] [--every 0.05] -- run --config
run.toml -q`` (any ``kl-drift`` arguments after ``--``).

The command runs in this process while a sampler thread reads, every ``--every`` seconds,
the main thread's stack (its frames in ``pipeline``, ``kl_metrics`` and ``flows``) and the
process's CPU time (every thread's). Consecutive samples in the same stage (the ``--depth``
innermost project frames below ``pipeline.run._run``) are merged into one line: wall
seconds, CPU seconds, and their ratio, the cores in use (2.0 on this machine is both). Work
handed to threads shows under the stage that waits for it. Stages shorter than
``--shortest`` seconds are left out of the listing (their time still counts in the total).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from types import FrameType

PROJECT = ("/pipeline/", "/kl_metrics/", "/flows/")


def _stage(frame: FrameType | None, depth: int) -> str:
    names = []
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in PROJECT):
            names.append(frame.f_code.co_name)
        frame = frame.f_back
    names.reverse()
    start = names.index("_run") + 1 if "_run" in names else 0
    return " > ".join(names[start:start + depth]) or "(start-up and arguments)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--shortest", type=float, default=0.1)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    main_thread = threading.get_ident()
    stages: list[list] = []  # [stage, wall, cpu]
    done = threading.Event()

    def sample() -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        while not done.wait(args.every):
            now, used = time.perf_counter(), time.process_time()
            stage = _stage(sys._current_frames().get(main_thread), args.depth)
            if stages and stages[-1][0] == stage:
                stages[-1][1] += now - wall
                stages[-1][2] += used - cpu
            else:
                stages.append([stage, now - wall, used - cpu])
            wall, cpu = now, used

    sampler = threading.Thread(target=sample, daemon=True)
    start, started_cpu = time.perf_counter(), time.process_time()
    sampler.start()
    from flows.cli import app  # imported under the sampler: start-up counts

    try:
        app(command, standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code not in (0, 1, None):
            raise
    finally:
        done.set()
        sampler.join()
    print(f"{'wall s':>7} {'CPU s':>7} {'cores':>5}  stage")
    for stage, wall, cpu in stages:
        if wall >= args.shortest:
            print(f"{wall:7.2f} {cpu:7.2f} {cpu / wall:5.2f}  {stage}")
    wall, cpu = time.perf_counter() - start, time.process_time() - started_cpu
    print(f"{wall:7.2f} {cpu:7.2f} {cpu / wall:5.2f}  total (pid {os.getpid()})")


if __name__ == "__main__":
    main()
