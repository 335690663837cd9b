"""kl-drift against Evidently, NannyML and popmon on the same Parquet pairs, in one run.

Run (after building the peer venvs and data, see docs/benchmarks.md):
``.venv/bin/python bench/bench_peers.py [--datasets flights,synth_n1000000_f20]
[--systems kl-drift,nannyml,evidently,popmon] [--repeats 3] [--single-if-over 100]
[--timeout 600]``.

Drives the timing scripts of ``../shared/peer-bench`` (``$PEER_BENCH``; Evidently preset
and NannyML, each in its own virtualenv under ``$BENCH_VENVS``, default ``.peers/venvs``)
and ``bench/peers/drift_popmon.py`` (popmon 1.4, venv ``pm``) on the pairs
``$BENCH_DATA/<dataset>_{ref,cur}.parquet`` (default ``.peers/data``, written by the
peer-bench ``make_data.py``). Every measurement is a fresh process, run one after another
and alternating between systems; the table gives medians.

- whole process: wall time of the peer's script (import, read, compute), and for kl-drift
  of ``kl-drift run`` with a profile built beforehand (reports included), and of
  ``kl-drift profile`` + ``kl-drift run`` (two processes, as a user runs them);
- compute: the peer's own ``t_compute_s`` (from in-memory pandas frames; NannyML fit +
  calculate, Evidently report run, popmon stability report + HTML), and for kl-drift
  profile + run in one process after imports (reading the files and writing drift.parquet,
  alerts.json and both reports included);
- the CPU time (user + system, every thread) of the same processes: on a shared machine
  it moves far less with the load than wall time does;
- peak RSS of the whole process (``/usr/bin/time``).

kl-drift's modules are byte-compiled first, as an installed package's are (pip compiles
them at install; a source tree under ``PYTHONDONTWRITEBYTECODE`` would compile them in every
process), and like the peers' packages they then load from ``__pycache__``. Set
``PYTHONPATH`` to time another source tree: the processes started here inherit it.

Ratios are peer / kl-drift (higher: kl-drift faster). A system whose first run of a dataset
took more than ``--single-if-over`` seconds is not repeated on it; one that timed out is not
run on the larger datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_BENCH = Path(os.environ.get("PEER_BENCH", ROOT.parent.parent / "shared" / "peer-bench"))
VENVS = Path(os.environ.get("BENCH_VENVS", ROOT / ".peers" / "venvs"))
DATA = Path(os.environ.get("BENCH_DATA", ROOT / ".peers" / "data"))
KL_DRIFT = Path(sys.executable).parent / "kl-drift"

#: kl-drift profile + run in one process, timed after the imports (the peers' "compute").
IN_PROCESS = r"""
import json, sys, time
start = time.perf_counter()
from pipeline.bins.profile import write_profile
from pipeline.config import load_config
from pipeline.run import build_baseline_profile, run_drift
imported = time.perf_counter()
reference, current, out = sys.argv[1:4]
settings = {"input.baseline": reference, "input.current": current, "output.dir": out,
            "output.fail_on": "never"}
profile = write_profile(build_baseline_profile(load_config(None, settings)),
                        out + "/profile.parquet")
run_drift(load_config(None, settings | {"input.baseline": str(profile)}))
print("RESULT " + json.dumps({"t_import_s": imported - start,
                              "t_compute_s": time.perf_counter() - imported}))
"""


#: Byte-compiles the kl-drift code the timed processes import (wherever PYTHONPATH puts it).
COMPILE = r"""
import compileall, os, sys
import flows, kl_metrics, pipeline
sys.exit(not all(compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)
                 for package in (flows, kl_metrics, pipeline)))
"""


def _compile_kl_drift() -> None:
    """Compile kl-drift's modules once, as installing it does: from a source tree (an
    editable install) under PYTHONDONTWRITEBYTECODE every process would compile the ~60
    modules of a run again, 0.1-0.2 s of a one-second run that no installed kl-drift pays."""
    subprocess.run([sys.executable, "-c", COMPILE], check=True)


def _timed(command: list[str], timeout: float) -> dict[str, float] | None:
    """Wall seconds, CPU seconds (user + system, all threads), peak RSS MiB and the RESULT
    fields of one fresh process; None if it timed out."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        try:
            out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name, *command],
                                 capture_output=True, text=True, timeout=timeout,
                                 env=os.environ | {"PEER_BENCH": str(PEER_BENCH)})
        except subprocess.TimeoutExpired:
            return None
        wall = time.perf_counter() - start
        if out.returncode not in (0, 1):  # kl-drift exits 1 on drift only with fail_on
            sys.exit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
        peak, user, system = rss.read().split()[-3:]
        result = {"wall": wall, "cpu": float(user) + float(system), "rss": int(peak) / 1024}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            found = json.loads(line[len("RESULT "):])
            result["compute"] = float(found["t_compute_s"])
    return result


def _kl_drift(reference: Path, current: Path, tmp: Path, timeout: float
              ) -> dict[str, float] | None:
    """kl-drift's numbers for one repetition: run, profile + run, and in-process compute."""
    profile, runs = tmp / "profile.parquet", tmp / "runs"
    built = _timed([str(KL_DRIFT), "profile", str(reference), "--out", str(profile), "-q"],
                   timeout)
    run = _timed([str(KL_DRIFT), "run", "--baseline", str(profile), "--current", str(current),
                  "--out", str(runs), "--fail-on", "never", "-q"], timeout)
    compute = _timed([sys.executable, "-c", IN_PROCESS, str(reference), str(current),
                      str(tmp)], timeout)
    if built is None or run is None or compute is None:
        return None
    return {"wall": run["wall"], "profile+run": built["wall"] + run["wall"],
            "cpu": run["cpu"], "profile+run cpu": built["cpu"] + run["cpu"],
            "compute": compute["compute"], "rss": max(built["rss"], run["rss"])}


def _peer(system: str, reference: Path, current: Path, timeout: float
          ) -> dict[str, float] | None:
    script = {"nannyml": ("nm", PEER_BENCH / "drift_nannyml.py", []),
              "evidently": ("ev", PEER_BENCH / "drift_evidently.py",
                            ["--mode", "preset", "--method", "jensenshannon"]),
              "popmon": ("pm", ROOT / "bench" / "peers" / "drift_popmon.py", [])}[system]
    venv, path, extra = script
    return _timed([str(VENVS / venv / "bin" / "python"), str(path), str(reference),
                   str(current), *extra], timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="flights,synth_n1000000_f20")
    parser.add_argument("--systems", default="kl-drift,nannyml,evidently,popmon")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-if-over", type=float, default=100.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    systems = args.systems.split(",")
    if "kl-drift" in systems:
        _compile_kl_drift()
    timed_out: set[str] = set()
    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    for dataset in args.datasets.split(","):
        reference, current = (DATA / f"{dataset}_{side}.parquet" for side in ("ref", "cur"))
        if not reference.exists():
            sys.exit(f"{reference} missing: write it with {PEER_BENCH}/make_data.py")
        runs: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
        for repeat in range(args.repeats):
            for system in systems:
                first = runs[system][0] if runs[system] else None
                if system in timed_out or (repeat and (
                        first is None or first["wall"] > args.single_if_over)):
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    got = (_kl_drift(reference, current, Path(tmp), args.timeout)
                           if system == "kl-drift" else
                           _peer(system, reference, current, args.timeout))
                if got is None:
                    timed_out.add(system)
                    print(f"{dataset}: {system} timed out after {args.timeout:.0f} s",
                          flush=True)
                    continue
                runs[system].append(got)
                print(f"{dataset}: {system} {json.dumps(got)}", flush=True)
        table[dataset] = runs
    _print(table, args.timeout)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _print(table: dict[str, dict[str, list[dict[str, float]]]], timeout: float) -> None:
    print("\n| data | system | whole process s | whole-process CPU s | compute s | peak RSS MiB "
          "| runs | whole: peer / kl-drift run | peer / (profile + run) | compute: peer / "
          "kl-drift | CPU: peer / run (profile + run) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset, runs in table.items():
        ours = runs.get("kl-drift") or []
        for system, got in runs.items():
            if not got:
                print(f"| {dataset} | {system} | > {timeout:.0f} s (not run or timed out) "
                      f"| | | | 0 | | | | |")
                continue
            wall, cpu, compute, rss = (_median(got, k) for k in ("wall", "cpu", "compute", "rss"))
            if system == "kl-drift":
                both, both_cpu = _median(got, "profile+run"), _median(got, "profile+run cpu")
                print(f"| {dataset} | kl-drift run (profile + run) | {wall:.2f} ({both:.2f}) "
                      f"| {cpu:.2f} ({both_cpu:.2f}) | {compute:.2f} | {rss:,.0f} | {len(got)} "
                      f"| | | | |")
                continue
            ratios = "| | | |"
            if ours:
                ratios = (f"| {wall / _median(ours, 'wall'):.1f}x "
                          f"| {wall / _median(ours, 'profile+run'):.1f}x "
                          f"| {compute / _median(ours, 'compute'):.1f}x "
                          f"| {cpu / _median(ours, 'cpu'):.1f}x "
                          f"({cpu / _median(ours, 'profile+run cpu'):.1f}x) |")
            print(f"| {dataset} | {system} | {wall:.2f} | {cpu:.2f} | {compute:.2f} "
                  f"| {rss:,.0f} | {len(got)} {ratios}")


if __name__ == "__main__":
    main()
