"""End to end against Evidently: 1M rows x 25 numeric columns, JS drift, in one run.

Run: ``.venv/bin/python bench/bench_vs_evidently.py [--rows 1000000]
[--evidently-python .venv-evidently/bin/python]``.

Evidently lives in its own virtualenv (its pins clash with ours, and it needs pandas < 3):
``python3 -m venv .venv-evidently && .venv-evidently/bin/pip install evidently "pandas<3"
pyarrow``. Both tools read the same Parquet files; each side is timed inside its own process
from reading the files to a written report, best of ``--repeats``:

- Evidently: ``pd.read_parquet`` of reference and current, ``Report([DataDriftPreset(
  method="jensenshannon")]).run(current, reference)``, ``save_html``.
- kl-drift: ``run_drift`` with the saved baseline profile (built once beforehand, as in
  production: the reference is never recomputed), writing drift.parquet, alerts.json,
  report.md and report.html; and, for reference, the same run profiling the raw baseline
  in the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.bins.profile import write_profile
from pipeline.config import load_config
from pipeline.run import build_baseline_profile, run_drift

EVIDENTLY = r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

reference_path, current_path, html_path, repeats = sys.argv[1:5]
times = []
for _ in range(int(repeats)):
    start = time.perf_counter()
    reference, current = pd.read_parquet(reference_path), pd.read_parquet(current_path)
    snapshot = Report([DataDriftPreset(method="jensenshannon")]).run(current, reference)
    snapshot.save_html(html_path)
    times.append(time.perf_counter() - start)
print(json.dumps({"best": min(times)}))
"""


def make_data(root: Path, rows: int, columns: int) -> tuple[Path, Path]:
    """Seeded reference and current tables; a fifth of the current columns drift."""
    rng = np.random.default_rng(20261124)
    names = [f"f{i:02d}" for i in range(columns)]
    shift = np.where(np.arange(columns) % 5 == 0, 0.3, 0.0)
    reference = pl.DataFrame(rng.normal(size=(rows, columns)), schema=names)
    current = pl.DataFrame(rng.normal(size=(rows, columns)) + shift, schema=names)
    paths = root / "reference.parquet", root / "current.parquet"
    reference.write_parquet(paths[0])
    current.write_parquet(paths[1])
    return paths


def time_kl_drift(reference: Path, current: Path, root: Path, repeats: int) -> dict[str, float]:
    settings = {"input.baseline": str(reference), "input.current": str(current),
                "output.dir": str(root / "runs"), "output.fail_on": "never"}
    profile = write_profile(build_baseline_profile(load_config(None, settings)),
                            root / "profile.parquet")
    best = {}
    for name, baseline in (("profile", profile), ("raw baseline", reference)):
        config = load_config(None, settings | {"input.baseline": str(baseline),
                                               "output.run_id": name.replace(" ", "-")})
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_drift(config)
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--evidently-python", default=".venv-evidently/bin/python")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference, current = make_data(root, args.rows, args.columns)
        print(f"rows={args.rows:,} columns={args.columns} (best of {args.repeats})")
        ours = time_kl_drift(reference, current, root, args.repeats)
        try:
            out = subprocess.run(
                [args.evidently_python, "-c", EVIDENTLY, str(reference), str(current),
                 str(root / "evidently.html"), str(args.repeats)],
                capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            sys.exit(f"Evidently did not run ({error}); see this script's docstring")
        theirs = json.loads(out.stdout.strip().splitlines()[-1])["best"]
        print(f"Evidently DataDriftPreset(js)      {theirs:8.2f} s")
        for name, seconds in ours.items():
            print(f"kl-drift run, {name:<20} {seconds:8.2f} s   Evidently / kl-drift = "
                  f"{theirs / seconds:.1f}x")


if __name__ == "__main__":
    main()
