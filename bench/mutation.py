"""Mutation testing with named mutants: does the test suite catch each planted bug?

Run: ``.venv/bin/python bench/mutation.py [--module NAME ...] [--mutant NAME ...] [--list]``
(all of ``bench/mutants/*.toml`` by default; ``--min-score 0.9`` makes the exit status 1
when a module scores below it).

Each file in ``bench/mutants/`` describes one module (docs/testing.md):

    module = "pipeline/decide/alerts.py"          # the file the mutants edit
    tests = ["tests/test_alerts.py"]               # what must catch them (+ its doctests)

    [[mutant]]
    name = "fdr boundary"                          # unique within the file
    find = "q < config.fdr_q"                      # exact text, found exactly `count` times
    replace = "q <= config.fdr_q"
    count = 1                                      # optional, default 1

For every module the project (kl_metrics, pipeline, flows, tests, data, pyproject.toml) is
copied to a temporary folder, the unmutated tests must pass there, then each mutant is
applied to the copy alone and the tests run with that copy first on ``sys.path`` (the
editable install of the real tree is not touched): a failing run kills the mutant, a
passing one lets it survive. A ``find`` text that no longer occurs as often as stated is an
error, so mutants cannot go stale silently when the module changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "bench" / "mutants"
COPIED = ("kl_metrics", "pipeline", "flows", "tests", "data", "pyproject.toml")
TIMEOUT = 900  # seconds per test run: a mutant that hangs the tests counts as killed


@dataclass(frozen=True)
class Mutant:
    name: str
    find: str
    replace: str
    count: int = 1


@dataclass(frozen=True)
class ModuleMutants:
    """One ``bench/mutants/*.toml`` file."""

    name: str
    module: str
    tests: list[str]
    mutants: list[Mutant]

    @classmethod
    def load(cls, path: Path) -> ModuleMutants:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        mutants = [Mutant(**entry) for entry in data["mutant"]]
        names = [m.name for m in mutants]
        if len(set(names)) != len(names):
            raise SystemExit(f"{path.name}: mutant names must be unique")
        return cls(path.stem, data["module"], list(data["tests"]), mutants)

    def check(self, source: str) -> None:
        for mutant in self.mutants:
            found = source.count(mutant.find)
            if found != mutant.count:
                raise SystemExit(f"{self.name}: mutant {mutant.name!r}: {mutant.find!r} occurs "
                                 f"{found} times in {self.module}, expected {mutant.count}; "
                                 "update bench/mutants/" + f"{self.name}.toml")


def run_tests(copy: Path, spec: ModuleMutants) -> tuple[bool, float]:
    """(tests passed, seconds) in the copy; the module's doctests run too."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-p", "no:randomly", *spec.tests, spec.module]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start
    return done.returncode == 0, time.perf_counter() - start


def score_module(spec: ModuleMutants, only: set[str]) -> tuple[int, int, list[str]]:
    """(killed, run, survivors) of one module's mutants."""
    target = ROOT / spec.module
    source = target.read_text(encoding="utf-8")
    spec.check(source)
    mutants = [m for m in spec.mutants if not only or m.name in only]
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copy = Path(tmp)
        for name in COPIED:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, copy / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, copy / name)
        passed, seconds = run_tests(copy, spec)
        if not passed:
            raise SystemExit(f"{spec.name}: the tests fail without any mutant; fix them first")
        print(f"{spec.module}: {len(mutants)} mutants, tests {' '.join(spec.tests)} "
              f"({seconds:.0f} s unmutated)", flush=True)
        survivors = []
        mutated = copy / spec.module
        for mutant in mutants:
            mutated.write_text(source.replace(mutant.find, mutant.replace), encoding="utf-8")
            survived, seconds = run_tests(copy, spec)
            print(f"  {'SURVIVED' if survived else 'killed  '} {mutant.name} ({seconds:.0f} s)",
                  flush=True)
            if survived:
                survivors.append(mutant.name)
        mutated.write_text(source, encoding="utf-8")
    return len(mutants) - len(survivors), len(mutants), survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", default=[],
                        help="mutants file name (e.g. decide_alerts); default: all")
    parser.add_argument("--mutant", action="append", default=[], help="only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 when a module's share of killed mutants is below this")
    args = parser.parse_args()
    specs = [ModuleMutants.load(p) for p in sorted(MUTANTS.glob("*.toml"))]
    if args.module:
        unknown = set(args.module) - {s.name for s in specs}
        if unknown:
            raise SystemExit(f"no mutants file for {', '.join(sorted(unknown))}")
        specs = [s for s in specs if s.name in args.module]
    if args.list:
        for spec in specs:
            spec.check((ROOT / spec.module).read_text(encoding="utf-8"))
            print(f"{spec.name} ({spec.module}): " + ", ".join(m.name for m in spec.mutants))
        return
    results = []
    for spec in specs:
        killed, run, survivors = score_module(spec, set(args.mutant))
        if run:
            results.append((spec, killed, run, survivors))
    print("\nmodule                                   killed   score   survivors")
    total_killed = total = 0
    low = False
    for spec, killed, run, survivors in results:
        total_killed, total = total_killed + killed, total + run
        low |= killed / run < args.min_score
        print(f"{spec.module:40} {killed:3}/{run:<3} {killed / run:6.0%}   "
              f"{', '.join(survivors) or '-'}")
    if total:
        print(f"{'all':40} {total_killed:3}/{total:<3} {total_killed / total:6.0%}")
    sys.exit(1 if low else 0)


if __name__ == "__main__":
    main()
