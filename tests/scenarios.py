"""Statistical scenarios of the alert decision, shared by the tests (bounded repetitions) and
``bench/bench_alert_rates.py`` (the larger runs whose rates docs/alerts.md reports).

Every scenario draws with fixed seeds and runs the product's own path: a profile built from
raw baseline rows (or a histogram baseline), current histograms on its bins, then
:func:`pipeline.bins.align.align`, :func:`pipeline.measure.drift.compute_drift` and
:func:`pipeline.decide.alerts.decide` with the default configuration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from kl_metrics import divergences, g_test
from pipeline.bins.align import align
from pipeline.bins.profile import build_profile
from pipeline.config import RunConfig, load_config
from pipeline.decide.alerts import decide
from pipeline.labels import OTHER
from pipeline.measure.drift import compute_drift

ALERTING = ("warn", "critical")


def zipf(k: int, s: float = 1.0) -> np.ndarray:
    """Zipf(s) probabilities of k categories."""
    weights = 1 / np.arange(1, k + 1) ** s
    return weights / weights.sum()


def decided(baseline: pl.DataFrame, current: pl.DataFrame,
            singletons: pl.DataFrame | None = None,
            config: RunConfig | None = None) -> pl.DataFrame:
    """The decided drift table of histogram long tables (default config)."""
    config = config or load_config(None)
    drift = compute_drift(align(baseline, current), config.drift, singletons=singletons)
    return decide(drift, config.alerts)


def windows_table(feature: str, labels: list[str], counts: np.ndarray) -> pl.DataFrame:
    """Current histogram long table: row i of ``counts`` is window ``w{i:04d}``."""
    n_windows, width = counts.shape
    return pl.DataFrame({
        "feature": feature, "window": np.repeat([f"w{i:04d}" for i in range(n_windows)], width),
        "bin": labels * n_windows, "count": counts.ravel().astype(float)})


def small_categorical_baseline(seed: int, *, categories: int = 50, n_baseline: int = 200,
                               n_window: int = 100_000, windows: int = 10,
                               new_share: float = 0.0,
                               config: RunConfig | None = None) -> pl.DataFrame:
    """Decided rows of a profiled ``n_baseline``-row Zipf baseline against ``windows``
    windows of ``n_window`` rows from the same distribution (no drift at all), or with
    ``new_share`` of the rows moved to a category the baseline's population never had."""
    rng = np.random.default_rng([seed, categories, n_baseline])
    probs = zipf(categories)
    names = np.array([f"c{i:03d}" for i in range(categories)])
    profile = build_profile(pl.LazyFrame({"c": rng.choice(names, n_baseline, p=probs)}))
    kept = profile.layout.filter(pl.col("bin") != "__missing__")["bin"].to_list()
    # current counts per kept category; every other category falls into __other__
    draws = rng.multinomial(n_window, np.append(probs * (1 - new_share), new_share),
                            size=windows)
    index = {name: i for i, name in enumerate(names)}
    unkept = [index[n] for n in names if n not in kept] + [categories]
    columns = [draws[:, index[b]] if b != OTHER else draws[:, unkept].sum(axis=1)
               for b in kept]
    return decided(profile.histograms(), windows_table("c", kept, np.column_stack(columns)),
                   singletons=profile.singletons(), config=config)


def small_numeric_baseline(seed: int, *, n_baseline: int = 200, n_window: int = 100_000,
                           windows: int = 10) -> pl.DataFrame:
    """Decided rows of a profiled ``n_baseline``-row N(0, 1) baseline (20 quantile bins)
    against ``windows`` windows of ``n_window`` rows of N(0, 1)."""
    rng = np.random.default_rng([seed, n_baseline, 7])
    profile = build_profile(pl.LazyFrame({"x": rng.standard_normal(n_baseline)}))
    layout = profile.layout.filter(pl.col("lower").is_not_null())
    edges = layout["lower"].to_numpy()[1:]
    values = rng.standard_normal((windows, n_window))
    counts = np.stack([np.bincount(np.searchsorted(edges, v, side="right"),
                                   minlength=len(edges) + 1) for v in values])
    return decided(profile.histograms().filter(pl.col("bin") != "__missing__"),
                   windows_table("x", layout["bin"].to_list(), counts))


def with_drift(probs: np.ndarray, kind: str, amount: float) -> np.ndarray:
    """``probs`` (last cell: a category the baseline never had) drifted by ``amount``:
    ``new`` moves that share to the new category, ``vanish`` removes it from the most
    frequent category, ``tilt`` reweights every category by exp(amount * rank position)."""
    drifted = probs.copy()
    if kind == "new":
        drifted = np.append(probs[:-1] * (1 - amount), amount)
    elif kind == "vanish":
        drifted[0] = max(probs[0] - amount, 0.0)
    else:
        drifted = probs * np.exp(amount * np.linspace(-3, 3, len(probs)))
        drifted[-1] = 0.0
    return drifted / drifted.sum()


def drift_of_size(probs: np.ndarray, kind: str, target: float) -> np.ndarray:
    """The ``with_drift`` distribution whose js_distance (bits) to ``probs`` is ``target``."""
    amounts = np.linspace(1e-4, 0.9, 9000)
    values = divergences(np.stack([with_drift(probs, kind, a) for a in amounts]), probs,
                         metrics=("js_distance",), base=2)["js_distance"]
    return with_drift(probs, kind, amounts[np.argmin(np.abs(values - target))])


def severity_mix(kind: str, target: float, n: int, *, windows: int = 200, categories: int = 50,
                 seed: int = 0) -> dict[str, float]:
    """Share of ``ok``/``warn``/``critical`` windows of n rows drawn from a drift of true
    js_distance ``target`` away from a Zipf baseline of 10^6 rows (``categories`` + one slot
    for a new category)."""
    probs = np.append(zipf(categories), 0.0)
    labels = [f"c{i:03d}" for i in range(categories)] + ["new"]
    rng = np.random.default_rng([seed, n, int(target * 1000), len(kind)])
    counts = rng.multinomial(n, drift_of_size(probs, kind, target), size=windows)
    baseline = pl.DataFrame({"feature": "c", "bin": labels, "count": probs * 10**6})
    status = decided(baseline, windows_table("c", labels, counts))["status"]
    return {s: float((status == s).mean()) for s in ("ok", "warn", "critical")}


def alert_rate(rows: pl.DataFrame) -> float:
    """Share of rows that alert."""
    return float(rows["status"].is_in(ALERTING).mean())


# --- p-value accuracy ----------------------------------------------------------------------

def skewed_sparse_tables(count: int, seed: int = 0, low: float = 1e-4, high: float = 1e-3
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sparse, skewed 2 x k tables (Zipf baselines, small windows drifted towards the rare
    bins) whose permutation p lies in [low, high] by a 20,000-draw brute-force pre-run: too
    small for a few hundred draws to resolve, where the Satterthwaite tail failed."""
    rng = np.random.default_rng(seed)
    tables: list[tuple[np.ndarray, np.ndarray]] = []
    while len(tables) < count:
        k = int(rng.integers(5, 26))
        probs = zipf(k, float(rng.uniform(1.0, 2.5)))
        baseline = np.round(probs * int(rng.integers(60, 5000)))
        mix = float(rng.uniform(0.05, 0.6))
        current = rng.multinomial(int(rng.integers(12, 80)),
                                  (1 - mix) * probs + mix * probs[::-1]).astype(float)
        keep = current + baseline > 0
        current, baseline = current[keep], baseline[keep]
        if baseline.sum() < 2 or not 1e-6 < float(g_test(current, baseline).p_value) < 1e-2:
            continue
        if low <= permutation_reference(current, baseline, 20_000, rng)[0] <= high:
            tables.append((current, baseline))
    return tables


def permutation_reference(current: np.ndarray, baseline: np.ndarray, draws: int,
                          rng: np.random.Generator, chunk: int = 200_000
                          ) -> tuple[float, int]:
    """Brute-force permutation p of the G-test: (#{G_sim >= G} / draws, #exceedances).

    Written independently of pipeline.decide.significance: tables are drawn with numpy's
    multivariate hypergeometric (the current sample as a random subset of the pooled rows).
    """
    total = (current + baseline).astype(np.int64)
    n_current = int(current.sum())
    observed = float(g_test(current, baseline).statistic)
    hits = done = 0
    while done < draws:
        size = min(chunk, draws - done)
        sim = rng.multivariate_hypergeometric(total, n_current, size=size).astype(float)
        g = np.asarray(g_test(sim, total - sim).statistic)
        hits += int((g >= observed * (1 - 1e-9) - 1e-12).sum())
        done += size
    return hits / done, hits


Scenario = Callable[[int], pl.DataFrame]
