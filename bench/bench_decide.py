"""Significance at scale: the alert decision against computing the divergences of the same table.

Run: ``.venv/bin/python bench/bench_decide.py [--features 2000] [--windows 50] [--segments 5]
[--bins 20]`` (defaults: the 500,000-row histogram run of issue 12).

A histogram run is generated in memory: per feature x segment a baseline of 10^5 rows over
``bins`` bins with Dirichlet proportions; windows of 100 to 50,000 rows (log-uniform, so about
a tenth of the rows have expected counts below 5 and need simulation); 2% of the windows
drifted by a warn-sized amount and 0.5% by a critical-sized one. Timed in one process, each
the best of ``--repeats`` rounds (wall and CPU): the seven divergences of every row in one
``kl_metrics.divergences`` call on the aligned arrays (the reference), ``compute_drift``
(divergences, effects, per-bin lists), ``decide`` (p-values, BH, statuses) and
``apply_state`` on its result (persistence and lifecycles, as a run decides across runs
without history). Prints the ratios, the wall and CPU time of the p-values within
``decide`` and where they spent their draws (per round: the same seed draws the same in
every round).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from kl_metrics import divergences
from pipeline.bins.align import align
from pipeline.config import METRICS, load_config
from pipeline.decide import alerts, significance
from pipeline.decide.alerts import window_verdicts
from pipeline.decide.state import apply_state
from pipeline.measure.drift import compute_drift


def generate(features: int, windows: int, segments: int, bins: int,
             seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Baseline and current histogram long tables of the benchmark run."""
    rng = np.random.default_rng(seed)
    series = features * segments
    probs = rng.dirichlet(np.full(bins, 20.0), size=series)
    baseline = np.stack([rng.multinomial(100_000, p) for p in probs]).astype(float)
    sizes = np.exp(rng.uniform(np.log(100), np.log(50_000), size=(series, windows)))
    shift = rng.random((series, windows))
    tilt = np.where(shift < 0.005, 1.2, np.where(shift < 0.025, 0.6, 0.0))
    grid = np.linspace(-1, 1, bins)
    drifted = probs[:, None, :] * np.exp(tilt[..., None] * grid)
    drifted /= drifted.sum(axis=-1, keepdims=True)
    current = rng.multinomial(np.rint(sizes).astype(np.int64), drifted).astype(float)
    feature = np.repeat([f"f{i:04d}" for i in range(features)], segments)
    segment = np.tile([f"s{j}" for j in range(segments)], features)
    labels = [f"b{i:02d}" for i in range(bins)]
    base = pl.DataFrame({"segment_id": np.repeat(segment, bins),
                         "feature": np.repeat(feature, bins),
                         "bin": labels * series, "count": baseline.ravel()})
    cur = pl.DataFrame({
        "segment_id": np.repeat(segment, windows * bins),
        "feature": np.repeat(feature, windows * bins),
        "window": np.tile(np.repeat([f"w{w:03d}" for w in range(windows)], bins), series),
        "bin": labels * (series * windows), "count": current.ravel()})
    return base, cur


def table_arguments(doc: str | None) -> argparse.Namespace:
    """The command line of the benchmarks on a generated histogram run: its size, seed and
    number of timed rounds (``doc``: the script's docstring, for ``--help``)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args()


def timed(repeats: int, run: object) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``run()`` over ``repeats`` calls, and its last result."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()  # type: ignore[operator]
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


class _Counting:
    """Counts how many rows reach each stage of the p-value computation, and times the
    p-values (``alerts._p_values``: counts read, chi-square pass, simulations) in wall and
    CPU seconds."""

    def __init__(self) -> None:
        self.permuted: dict[int, int] = {}
        self.tails = 0
        self.p_values_cpu: list[float] = []
        self.p_values_wall: list[float] = []
        self._permute = significance._permutation_exceedances
        self._tails = significance._tails
        self._p_values = alerts._p_values

    def __enter__(self) -> _Counting:
        def permute(current: np.ndarray, total: np.ndarray, draws: int,
                    streams: significance.Streams) -> np.ndarray:
            self.permuted[draws] = self.permuted.get(draws, 0) + len(current)
            return self._permute(current, total, draws, streams)

        def tails(current: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
            self.tails += len(current)
            return self._tails(current, *args, **kwargs)  # type: ignore[arg-type]

        def p_values(*args: object) -> np.ndarray:
            wall, cpu = time.perf_counter(), time.process_time()
            p = self._p_values(*args)  # type: ignore[arg-type]
            self.p_values_wall.append(time.perf_counter() - wall)
            self.p_values_cpu.append(time.process_time() - cpu)
            return p

        significance._permutation_exceedances = permute  # type: ignore[assignment]
        significance._tails = tails  # type: ignore[assignment]
        alerts._p_values = p_values  # type: ignore[assignment]
        return self

    def __exit__(self, *_: object) -> None:
        significance._permutation_exceedances = self._permute  # type: ignore[assignment]
        significance._tails = self._tails  # type: ignore[assignment]
        alerts._p_values = self._p_values  # type: ignore[assignment]


def main() -> None:
    args = table_arguments(__doc__)
    config = load_config(None)
    base, cur = generate(args.features, args.windows, args.segments, args.bins, args.seed)
    aligned = align(base, cur)
    rows = aligned.rows.height
    print(f"{rows:,} rows x {args.bins} bins")

    def reference() -> object:
        return divergences(aligned.current, aligned.baseline, metrics=METRICS,
                           base=config.drift.log_base, eps=config.drift.eps)

    ref_wall, ref_cpu, _ = timed(args.repeats, reference)
    measure_wall, measure_cpu, drift = timed(
        args.repeats, lambda: compute_drift(aligned, config.drift))
    assert isinstance(drift, pl.DataFrame)
    with _Counting() as counts:
        decide_wall, decide_cpu, decided = timed(args.repeats,
                                                 lambda: window_verdicts(drift, config.alerts))
    assert isinstance(decided, pl.DataFrame)
    state_wall, state_cpu, _ = timed(args.repeats, lambda: apply_state(
        decided, None, persistence=config.alerts.persistence))
    print(f"divergences (7 metrics, all rows): {ref_wall:7.2f} s wall {ref_cpu:7.2f} s CPU")
    print(f"compute_drift:                     {measure_wall:7.2f} s wall {measure_cpu:7.2f} s CPU"
          f"  ({measure_wall / ref_wall:.1f}x)")
    print(f"window_verdicts (decide):          {decide_wall:7.2f} s wall {decide_cpu:7.2f} s CPU"
          f"  ({decide_wall / ref_wall:.1f}x the divergences)")
    print(f"  of which p-values (_p_values):   {min(counts.p_values_wall):7.2f} s wall "
          f"{min(counts.p_values_cpu):7.2f} s CPU")
    print(f"apply_state:                       {state_wall:7.2f} s wall {state_cpu:7.2f} s CPU"
          f"  ({state_wall / ref_wall:.1f}x)")
    sparse = int(significance.is_sparse(aligned.current, aligned.baseline).sum())
    rounds = ", ".join(f"{rows // args.repeats:,} rows x {draws} draws"
                       for draws, rows in counts.permuted.items())
    print(f"p-values: {sparse:,} sparse rows; permutations: {rounds or 'none'}; "
          f"{counts.tails // args.repeats:,} importance-sampled tails")
    print("window statuses:", dict(decided["window_status"].value_counts().iter_rows()))


if __name__ == "__main__":
    main()
