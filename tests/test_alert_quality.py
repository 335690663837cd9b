"""Alert quality with the default configuration (DESIGN.md targets).

Baseline: 20 quantile bins of a large N(0, 1) sample. Windows are multinomial draws from
the binned normal (optionally shifted), which is what binning raw samples would give.
Same-distribution windows must raise <= 1% alerts at every size; a 0.5 sigma mean shift
must be flagged in >= 95% of windows from 500 rows on, a 0.25 sigma shift from 50,000.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from kl_metrics import divergences
from pipeline.bins.align import align
from pipeline.config import load_config
from pipeline.decide.alerts import decide
from pipeline.measure.drift import compute_drift

N_BASELINE = 2_000_000
WINDOWS = 200
SEED = 20261124


def _setup() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    sample = rng.standard_normal(N_BASELINE)
    edges = np.quantile(sample, np.arange(1, 20) / 20)
    counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=20)
    return edges, counts.astype(float)


EDGES, BASELINE = _setup()
LABELS = [f"bin{i:02d}" for i in range(20)]


def probabilities(shift: float) -> np.ndarray:
    """Bin probabilities of N(shift, 1) over the baseline's quantile bins."""
    return np.diff(stats.norm.cdf(np.concatenate([[-np.inf], EDGES, [np.inf]]) - shift))


def alert_rate(n: int, shift: float) -> float:
    """Fraction of WINDOWS windows of n rows from N(shift, 1) that end warn/critical."""
    rng = np.random.default_rng([SEED, n, int(shift * 100)])
    windows = rng.multinomial(n, probabilities(shift), size=WINDOWS).astype(float)
    baseline = pl.DataFrame({"feature": "x", "bin": LABELS, "count": BASELINE})
    current = pl.DataFrame({
        "feature": "x",
        "window": np.repeat(np.arange(WINDOWS), 20),
        "bin": LABELS * WINDOWS,
        "count": windows.ravel(),
    })
    config = load_config(None)  # the defaults
    aligned = align(baseline, current)
    drift = compute_drift(aligned, config.drift)
    drift = decide(drift, config.alerts)
    assert drift.height == WINDOWS and drift["status"].is_in(["ok", "warn", "critical"]).all()
    return drift["status"].is_in(["warn", "critical"]).mean()


@pytest.mark.parametrize(("shift", "expected"), [(0.25, 0.105), (0.5, 0.207)])
def test_population_effect_sizes(shift: float, expected: float) -> None:
    value = divergences(probabilities(shift), probabilities(0.0), metrics=("js_distance",),
                        base=2)["js_distance"]
    assert value == pytest.approx(expected, abs=0.001)


@pytest.mark.parametrize("n", [50, 500, 5_000, 500_000])
def test_same_distribution_windows_rarely_alert(n: int) -> None:
    assert alert_rate(n, 0.0) <= 0.01


@pytest.mark.parametrize("n", [500, 5_000, 50_000])
def test_half_sigma_shift_is_flagged(n: int) -> None:
    assert alert_rate(n, 0.5) >= 0.95


@pytest.mark.parametrize("n", [50_000, 500_000])
def test_quarter_sigma_shift_is_flagged_in_large_windows(n: int) -> None:
    assert alert_rate(n, 0.25) >= 0.95
