"""Alert statistics at a size the test suite cannot afford: the rates docs/alerts.md reports.

Run: ``.venv/bin/python bench/bench_alert_rates.py [--quick]`` (about 10 minutes; --quick:
about 1). Every scenario is in ``tests/scenarios.py`` (fixed seeds, default configuration);
``tests/test_alert_statistics.py`` and ``tests/test_significance.py`` run bounded versions.

1. False alerts on unchanged data with small baselines: a 200-row baseline of a 50-category
   Zipf feature (and of a normal feature, 20 quantile bins) against 100,000-row windows.
2. Severity of a fixed true drift (js_distance 0.12 to 0.3, three kinds) at n = 500, 5,000
   and 50,000 rows per window: share of ok / warn / critical windows.
3. p-value accuracy on sparse, skewed tables whose permutation p is 1e-4 to 1e-3: the
   importance-sampled tail and the chi-square tail against 10^6 brute-force permutations,
   and on small tables against exact enumeration down to p ~ 1e-35.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.decide.significance import Streams, chi_square_p, precise_p_values
from tests.scenarios import (
    alert_rate,
    permutation_reference,
    severity_mix,
    skewed_sparse_tables,
    small_categorical_baseline,
    small_numeric_baseline,
)
from tests.test_significance import exact_permutation_p


def false_alerts(baselines: int) -> None:
    for name, scenario in (("categorical (50 Zipf categories)", small_categorical_baseline),
                           ("numeric (20 quantile bins)", small_numeric_baseline)):
        start = time.perf_counter()
        runs = [scenario(seed) for seed in range(baselines)]
        rows = pl.concat(runs)
        per_run = np.mean([alert_rate(r) > 0 for r in runs])
        print(f"  {name}: {alert_rate(rows):.2%} of {rows.height} windows alert, "
              f"{per_run:.1%} of {baselines} baselines have an alert "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def severity(windows: int) -> None:
    sizes = (500, 5_000, 50_000)
    print("  kind    true   " + "".join(f"n={n:<26,}" for n in sizes))
    for kind in ("new", "vanish", "tilt"):
        for target in (0.12, 0.15, 0.18, 0.25, 0.3):
            mixes = [severity_mix(kind, target, n, windows=windows) for n in sizes]
            cells = "".join(f"ok {m['ok']:4.0%} warn {m['warn']:4.0%} crit {m['critical']:4.0%}  "
                            for m in mixes)
            print(f"  {kind:7} {target:.2f}   {cells}", flush=True)


def p_value_accuracy(tables: int, draws: int) -> None:
    rng = np.random.default_rng(1)
    ratios, chi = [], []
    for i, (current, baseline) in enumerate(skewed_sparse_tables(tables, seed=0)):
        reference, hits = permutation_reference(current, baseline, draws, rng)
        tail = precise_p_values(current[None], baseline[None], draws=2000,
                                streams=Streams(1, (0, i)))[0]
        asymptotic = chi_square_p(current[None], baseline[None])[0]
        ratios.append(tail / reference)
        chi.append(asymptotic / reference)
        print(f"  k={len(current):2d} n={current.sum():3.0f}/{baseline.sum():5.0f}  "
              f"brute force {reference:.2e} ({hits} hits)  tilted {tail:.2e} "
              f"(x{tail / reference:.2f})  chi-square {asymptotic:.2e} "
              f"(x{asymptotic / reference:.2f})", flush=True)
    print(f"  tilted / brute force: {min(ratios):.2f} to {max(ratios):.2f}; chi-square / brute "
          f"force: {min(chi):.2f} to {max(chi):.2f}")
    for i, (current, baseline) in enumerate([
            ([0, 0, 0, 2, 10, 14], [400, 300, 200, 80, 15, 5]),
            ([1, 0, 3, 2, 6], [120, 60, 30, 8, 2]),
            ([5, 2, 2, 1, 0, 3, 4], [500, 200, 100, 40, 10, 4, 2]),
            ([9, 4, 0, 1, 2, 4], [300, 150, 60, 20, 6, 2])]):
        cur, base = np.array(current, float), np.array(baseline, float)
        exact = exact_permutation_p(cur, base)
        tails = np.array([precise_p_values(cur[None], base[None], draws=2000,
                                           streams=Streams(1, (1, i, run)))[0]
                          for run in range(20)]) / exact
        print(f"  exact {exact:.2e}: tilted / exact over 20 runs {tails.min():.2f} to "
              f"{tails.max():.2f}, chi-square / exact "
              f"{chi_square_p(cur[None], base[None])[0] / exact:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print("1. false alerts on unchanged data, 200-row baselines, 100,000-row windows:")
    false_alerts(20 if args.quick else 200)
    print("2. severity of a fixed true drift (js_distance, bits; warn 0.1, critical 0.2):")
    severity(50 if args.quick else 200)
    print("3. p-values against brute-force permutations and exact enumeration:")
    p_value_accuracy(4 if args.quick else 12, 200_000 if args.quick else 1_000_000)


if __name__ == "__main__":
    main()
