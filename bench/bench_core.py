"""Core benchmark: KL + JS + PSI over 10^7 histogram cells vs one np.log pass.

1000 features x 100 windows x 100 bins of counts (current) against each feature's baseline
given once (1000 x 1 x 100) and broadcast across its windows, as in a drift run. Times are
the best of several interleaved repeats in one process; the target is a ratio <= 3.

Run: .venv/bin/python bench/bench_core.py
"""

import time

import numpy as np

import kl_metrics

FEATURES, WINDOWS, BINS = 1000, 100, 100
REPEATS = 15
TARGET = ("kl", "js_divergence", "psi")


def best_times(cases: dict, repeats: int) -> dict[str, float]:
    """Best wall time (s) of each case, interleaving the cases so load spikes hit all."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for name, func in cases.items():
            start = time.perf_counter()
            func()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def naive(current: np.ndarray, baseline: np.ndarray) -> None:
    """What a straightforward numpy user writes: one function per metric, no sharing."""
    p = np.maximum(current / current.sum(-1, keepdims=True), 1e-6)
    p /= p.sum(-1, keepdims=True)
    q = np.maximum(baseline / baseline.sum(-1, keepdims=True), 1e-6)
    q /= q.sum(-1, keepdims=True)
    (p * np.log(p / q)).sum(-1)
    m = (p + q) / 2
    0.5 * ((p * np.log(p / m)).sum(-1) + (q * np.log(q / m)).sum(-1))
    ((p - q) * np.log(p / q)).sum(-1)


def main() -> None:
    rng = np.random.default_rng(0)
    # realistic counts: many empty bins on both sides, so smoothing matters
    rates = rng.gamma(0.5, 20, size=(FEATURES, 1, BINS))
    current = rng.poisson(rates, size=(FEATURES, WINDOWS, BINS)).astype(np.float64)
    baseline = rng.poisson(1000 * rng.gamma(0.5, 1, size=(FEATURES, 1, BINS))).astype(np.float64)
    baseline[..., 0] += 1  # no all-zero baseline
    current[..., 0] += 1
    # log(0) takes numpy's slow special-value path: the reference is log of positive cells,
    # the fastest np.log can be on this many cells
    positive = current + 1.0
    buffer = np.empty_like(current)
    cases = {
        "np.log(current)": lambda: np.log(positive),
        "np.log(current, out=buffer)": lambda: np.log(positive, out=buffer),
        "divergences KL+JS+PSI": lambda: kl_metrics.divergences(current, baseline, metrics=TARGET),
        "divergences default set": lambda: kl_metrics.divergences(current, baseline),
        "naive numpy KL+JS+PSI": lambda: naive(current, baseline),
    }
    best = best_times(cases, REPEATS)
    reference = best["np.log(current)"]
    print(f"{current.size:.0e} cells, float64, best of {REPEATS} interleaved repeats")
    for name, seconds in best.items():
        print(f"{name:32s} {seconds * 1e3:8.1f} ms  {seconds / reference:5.2f}x np.log")


if __name__ == "__main__":
    main()
