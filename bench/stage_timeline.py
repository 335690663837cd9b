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

With ``--threads`` it also reads every thread's CPU time (``/proc/self/task``: polars' and
numpy's native threads included, named by their thread name) and lists, per stage of the
thread that used it (Python threads by their own innermost ``--depth`` project frames):
its CPU seconds, and the core-seconds left idle while it was the busiest thread (what
running it beside something else could win).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

PROJECT = ("/pipeline/", "/kl_metrics/", "/flows/")


def _stage(frame: FrameType | None, depth: int, *, innermost: bool = False) -> str:
    """The project frames of a stack below ``pipeline.run._run``: the ``depth`` outermost
    (or, with ``innermost``, the ``depth`` innermost)."""
    names = []
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in PROJECT):
            names.append(frame.f_code.co_name)
        frame = frame.f_back
    names.reverse()
    start = names.index("_run") + 1 if "_run" in names else 0
    shown = names[start:][-depth:] if innermost else names[start:start + depth]
    return " > ".join(shown) or "(start-up and arguments)"


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """Every thread of this process: native id -> (its name, CPU seconds so far)."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    for task in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        name = re.sub(r"[0-9]+", "#", stat[stat.index("(") + 1:stat.rindex(")")])
        threads[int(task)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


class _Threads:
    """Per-stage CPU of every thread, and the idle core-seconds while each stage was the
    busiest (``--threads``)."""

    def __init__(self, depth: int) -> None:
        self.depth, self.before = depth, _thread_cpu()
        self.cpu: Counter[str] = Counter()
        self.idle: Counter[str] = Counter()

    def sample(self, interval: float) -> None:
        frames = sys._current_frames()
        python = {t.native_id: t.ident for t in threading.enumerate()}
        used: Counter[str] = Counter()
        for tid, (name, cpu) in _thread_cpu().items():
            if tid == threading.get_native_id():  # the sampler itself
                continue
            ident = python.get(tid)
            stage = (_stage(frames.get(ident), self.depth, innermost=True)
                     if ident is not None else f"(native: {name})")
            used[stage] += cpu - self.before.get(tid, (name, cpu))[1]
            self.before[tid] = (name, cpu)
        self.cpu.update(used)
        busiest = max(used, key=used.__getitem__, default="(none)")
        self.idle[busiest] += max(0.0, (os.cpu_count() or 1) * interval - sum(used.values()))

    def report(self, shortest: float) -> None:
        print(f"\n{'CPU s':>7} {'idle':>7}  stage of the thread (all threads)")
        for stage, cpu in self.cpu.most_common():
            if cpu >= shortest or self.idle[stage] >= shortest:
                print(f"{cpu:7.2f} {self.idle[stage]:7.2f}  {stage}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--shortest", type=float, default=0.1)
    parser.add_argument("--threads", action="store_true",
                        help="also every thread's CPU by its own stage (/proc/self/task)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    main_thread = threading.get_ident()
    stages: list[list] = []  # [stage, wall, cpu]
    done = threading.Event()

    threads = _Threads(args.depth) if args.threads else None

    def sample() -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        while not done.wait(args.every):
            now, used = time.perf_counter(), time.process_time()
            if threads is not None:
                threads.sample(now - wall)
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
    if threads is not None:
        threads.report(args.shortest)


if __name__ == "__main__":
    main()
