"""Where a ``kl-drift`` command's CPU goes in native code: polars' and numpy's own functions,
and the kernel's page faults by the code that touched the memory.

Run: ``.venv/bin/python bench/native_profile.py [--frequency 250] [--top 40] -- run --config
run.toml -q`` (any ``kl-drift`` arguments after ``--``; needs Linux ``perf`` with DWARF
unwinding, e.g. the Debian package ``linux-perf``).

``bench/stage_timeline.py`` names the Python stage of every thread but sees polars' threads
only as a total; this samples every thread's native stack (``perf record --call-graph
dwarf``), so polars' Rust functions, numpy's loops and the kernel are named. It prints:

- CPU seconds in all, in the kernel, and in page faults (first touches of memory: on a VM
  each costs far more than on bare metal);
- the page-fault seconds by the function that touched the memory (the first frame outside
  the kernel and libc) and its caller: the allocations worth reusing or avoiding;
- the ``--top`` polars and numpy functions by inclusive CPU seconds (each function counted
  once per sample, wherever it is on the stack).

Python functions show as ``_PyEval_EvalFrameDefault`` (Python 3.11 has no perf map): read
this beside the stage timeline.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# frames that only pass work on (thread pools, executors, dispatch), not listed
_PLUMBING = re.compile(
    r"rayon|closure|call_once|join_context|bridge|StackJob|helper|install|in_worker"
    r"|wait_until|thread_start|backtrace|trampoline|core::iter|Task::run|Executor::runner"
    r"|::next$|::execute$|::evaluate(_impl)?$|collect_with_engine|__pymethod_|run_exprs"
    r"|call_udf|generic_wrapped_legacy_loop|ufunc_generic_fastcall|dispatcher_vectorcall"
    r"|execute_ufunc_loop|ZSTD_(?!compress2)|HUF_|^0x|unknown")


def _outside(text: str, needle: str) -> int:
    """Where ``needle`` first starts in ``text`` outside angle brackets (the opening one of
    ``text`` itself counts as outside for ``>``), else ``len(text)``."""
    depth = 0
    for at, char in enumerate(text):
        if depth <= (needle == ">") and text.startswith(needle, at):
            return at
        depth += {"<": 1, ">": -1}.get(char, 0)
    return len(text)


def _short(symbol: str) -> str:
    """A Rust or C symbol as ``Type::function``: ``<Type as Trait>::f`` as ``Type::f``,
    without generic arguments or module paths, at most 90 characters."""
    while symbol.startswith("<"):  # <Self as Trait>::rest -> Self::rest
        end = _outside(symbol, ">") + 1
        inner = symbol[1:end - 1]
        symbol = inner[:_outside(inner, " as ")] + symbol[end:]
    previous = None
    while previous != symbol:
        previous, symbol = symbol, re.sub(r"<[^<>]*>", "", symbol)
    return "::".join(symbol.rstrip(":").split("::")[-2:])[:90]


def samples(script: str) -> Iterator[list[tuple[str, str]]]:
    """The stacks of ``perf script -F tid,ip,sym,dso`` output, innermost frame first, as
    (function, library file name)."""
    stack: list[tuple[str, str]] | None = None
    for line in script.splitlines():
        if not line.strip():
            if stack:
                yield stack
            stack = None
        elif re.fullmatch(r"\s*\d+\s*", line):  # a sample's thread id, padded to a width
            stack = []
        elif stack is not None:
            frame = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
            if frame:
                stack.append((_short(frame.group(1)), Path(frame.group(2)).name))
    if stack:
        yield stack


def summarize(stacks: list[list[tuple[str, str]]], frequency: float, top: int) -> str:
    """The report of the module docstring, from the sampled stacks."""
    seconds = 1 / frequency
    kernel = faults = 0.0
    by_toucher: Counter[str] = Counter()  # samples
    inclusive: Counter[str] = Counter()  # samples
    for stack in stacks:
        in_kernel = "kernel" in stack[0][1]
        kernel += seconds * in_kernel
        if in_kernel and any(name == "exc_page_fault" for name, _ in stack):
            faults += seconds
            user = [name for name, library in stack
                    if "kernel" not in library and not library.startswith("libc")]
            by_toucher[" < ".join(user[:2]) or "(no user frame)"] += 1
        for name, library in {(n, lib) for n, lib in stack
                              if lib.startswith(("_polars", "_multiarray"))}:
            if not _PLUMBING.search(name):
                inclusive[f"{name} [{library.split('.')[0]}]"] += 1
    lines = [f"{len(stacks) * seconds:6.2f} CPU s sampled, {kernel:.2f} in the kernel, "
             f"{faults:.2f} in page faults", "", "page-fault CPU s by the code touching memory:"]
    lines += [f"  {n * seconds:5.2f}  {name}" for name, n in by_toucher.most_common(15)]
    lines += ["", "polars and numpy functions by inclusive CPU s:"]
    lines += [f"  {n * seconds:5.2f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frequency", type=float, default=250.0, help="samples a second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("native_profile: needs Linux perf on the PATH (Debian: apt install linux-perf)")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    kl_drift = Path(sys.executable).with_name("kl-drift")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(args.frequency),
                        "--call-graph", "dwarf,32768", "-o", str(data), "--",
                        str(kl_drift), *command], check=True)
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso",
                                 "--no-inline"], check=True, capture_output=True,
                                text=True, errors="replace").stdout
    print(summarize(list(samples(script)), args.frequency, args.top))


if __name__ == "__main__":
    main()
