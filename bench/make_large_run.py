"""A synthetic run folder of any size, written as a drift run writes one, for report benchmarks.

Default: 2,000 features x 50 windows x 5 segments = 500,000 drift rows of 20 bins each (3 in 4
features numeric with long-float quantile edges, the rest categorical), about 4% of series
drifting in half of their windows. Values are real JS distances (base 2) of the synthetic
histograms; statuses follow fixed thresholds (warn 0.1, critical 0.2). alerts.json is built by
the pipeline's own writer, so both files follow the contracts (docs/architecture.md).

    .venv/bin/python bench/make_large_run.py OUT_DIR            # writes OUT_DIR/<run_id>/
    .venv/bin/python bench/make_large_run.py OUT_DIR --features 500 --run-id r2 --seed 2
    .venv/bin/python bench/make_large_run.py OUT_DIR --reports  # then time the reports

``--reports`` writes report.md and report.html in a fresh process and prints its time, its
peak RSS and the sizes of the files (targets: report.html <= 2 MB, the whole run <= 2 GiB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.bins.layout import bin_label
from pipeline.formats import DRIFT_FILE
from pipeline.write.documents import alerts_document
from pipeline.write.run_folder import write_run_outputs

WARN, CRITICAL, EPS = 0.1, 0.2, 1e-6
# Peak RSS of a child process: VmHWM belongs to the process's own memory map, whereas
# ru_maxrss survives fork + exec and would report this (larger) parent's peak.
PEAK_RSS = ("def peak_mib():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmHWM:'):\n"
            "            return int(line.split()[1]) / 1024\n")


def _js(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JS distance (bits) of each row of p against q, and per-bin contributions to it."""
    p = np.maximum(p, EPS)
    q = np.maximum(q, EPS)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    m = (p + q) / 2
    terms = 0.5 * p * np.log2(p / m) + 0.5 * q * np.log2(q / m)
    jsd = terms.sum(-1)
    dist = np.sqrt(jsd)
    return dist, terms * (dist / np.where(jsd > 0, jsd, 1))[:, None]


def _labels(rng: np.random.Generator, n_features: int, k: int
            ) -> tuple[list[list[str]], np.ndarray, np.ndarray, list[str]]:
    """Bin labels and edges per feature (numeric: long-float quantile edges)."""
    labels, lower, upper, kinds = [], np.full((n_features, k), np.nan), np.full(
        (n_features, k), np.nan), []
    for f in range(n_features):
        if f % 4 == 3:
            labels.append([f"cat_{f}_{j}" for j in range(k - 2)] + ["__other__", "__missing__"])
            kinds.append("categorical")
            continue
        inner = np.sort(rng.normal(0, 10 ** rng.uniform(-2, 3), k - 2))
        lo = np.concatenate([[-math.inf], inner])
        hi = np.concatenate([inner, [math.inf]])
        labels.append([bin_label(a, b) for a, b in zip(lo, hi, strict=True)] + ["__missing__"])
        lower[f, : k - 1], upper[f, : k - 1] = lo, hi
        kinds.append("numeric")
    return labels, lower, upper, kinds


def make_run(out: Path, *, n_features: int = 2000, n_windows: int = 50, n_segments: int = 5,
             k: int = 20, seed: int = 0, run_id: str = "large",
             created_at: datetime | None = None) -> Path:
    """Write ``drift.parquet`` and ``alerts.json`` of a synthetic run into ``out/run_id``."""
    rng = np.random.default_rng(seed)
    labels, lower, upper, kinds = _labels(np.random.default_rng(0), n_features, k)
    n = n_features * n_windows * n_segments
    # Row order: segment, feature, window (as the pipeline writes it).
    seg = np.repeat(np.arange(n_segments), n_features * n_windows)
    feat = np.tile(np.repeat(np.arange(n_features), n_windows), n_segments)
    win = np.tile(np.arange(n_windows), n_features * n_segments)
    base = rng.dirichlet(np.full(k, 4.0), size=(n_segments, n_features))
    n_base = 50_000.0
    base_counts = np.round(base * n_base)
    drifting = rng.random((n_segments, n_features)) < 0.04
    shift = np.where(drifting[seg, feat] & (rng.random(n) < 0.5), rng.uniform(0.3, 0.7, n),
                     rng.uniform(0.0, 0.03, n))
    target = rng.dirichlet(np.full(k, 0.7), size=n)
    cur_p = (1 - shift[:, None]) * base[seg, feat] + shift[:, None] * target
    n_cur = rng.integers(1_000, 5_000, n).astype(float)
    cur_counts = np.round(cur_p * n_cur[:, None])
    baseline_share = base_counts[seg, feat] / base_counts[seg, feat].sum(-1, keepdims=True)
    current_share = cur_counts / np.maximum(cur_counts.sum(-1, keepdims=True), 1)
    value, contrib = _js(current_share, baseline_share)
    status = np.where(value >= CRITICAL, "critical", np.where(value >= WARN, "warn", "ok"))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    window_names = [(start + timedelta(days=d)).isoformat() for d in range(n_windows)]
    flat_labels = np.array(labels, dtype=object)[feat].ravel()
    bins = pa.ListArray.from_arrays(np.arange(0, n * k + 1, k, dtype=np.int32), pa.StructArray
                                    .from_arrays([
                                        pa.array(flat_labels, pa.string()),
                                        pa.array(lower[feat].ravel()),
                                        pa.array(upper[feat].ravel()),
                                        pa.array(base_counts[seg, feat].ravel()),
                                        pa.array(cur_counts.ravel()),
                                        pa.array(baseline_share.ravel()),
                                        pa.array(current_share.ravel()),
                                        pa.array(contrib.ravel())],
                                        names=["bin", "lower", "upper", "baseline_count",
                                               "current_count", "baseline_share",
                                               "current_share", "contribution"]))
    top = np.argsort(-contrib, axis=1)[:, :3]
    pick = np.arange(n)[:, None]
    top_bins = pa.ListArray.from_arrays(np.arange(0, n * 3 + 1, 3, dtype=np.int32),
                                        pa.StructArray.from_arrays([
                                            pa.array(np.array(labels, dtype=object)[
                                                feat[:, None], top].ravel(), pa.string()),
                                            pa.array(contrib[pick, top].ravel()),
                                            pa.array(baseline_share[pick, top].ravel()),
                                            pa.array(current_share[pick, top].ravel())],
                                            names=["bin", "contribution", "baseline_share",
                                                   "current_share"]))
    segments = [f"s{i}" for i in range(n_segments)]
    drift = pl.DataFrame({
        "region": np.array(segments)[seg], "segment": np.char.add("region=", np.array(
            segments)[seg]), "feature": np.char.add("feature_", feat.astype(str)),
        "window": np.array(window_names)[win], "kind": np.array(kinds)[feat],
        "n_baseline": np.full(n, n_base), "n_current": n_cur,
        "kl": value ** 2 * 2, "reverse_kl": value ** 2 * 2, "symmetric_kl": value ** 2 * 4,
        "psi": value ** 2 * 4, "js_divergence": value ** 2, "js_distance": value,
        "hellinger": value * 0.9, "metric": "js_distance", "value": value,
        "warn_threshold": WARN, "critical_threshold": CRITICAL,
        "p_value": np.where(status == "ok", rng.uniform(0.001, 1, n), 1e-12),
        "q_value": np.where(status == "ok", rng.uniform(0.01, 1, n), 1e-10),
        "status": status, "window_status": status, "reason": pl.Series([None] * n, dtype=pl.String),
    }).with_columns(top_bins=pl.Series(top_bins), bins=pl.Series(bins))
    config = {"metric": "js_distance", "base": 2, "thresholds": {"warn": WARN,
                                                                 "critical": CRITICAL}}
    run = {"run_id": run_id,
           "created_at": (created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
           "tool_version": "0.1.0", "inputs": {"baseline": "synthetic", "current": "synthetic"},
           "config_hash": hashlib.sha256(json.dumps(config).encode()).hexdigest(),
           "metric": "js_distance", "base": 2, "config": config}
    run_dir = out / run_id
    write_run_outputs(run_dir, {DRIFT_FILE: drift}, alerts_document(drift, run))
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", default="large")
    parser.add_argument("--reports", action="store_true", help="then write and time reports")
    args = parser.parse_args()
    start = time.perf_counter()
    run_dir = make_run(args.out, n_features=args.features, n_windows=args.windows,
                       n_segments=args.segments, seed=args.seed, run_id=args.run_id)
    print(f"{run_dir} in {time.perf_counter() - start:.1f} s")
    if args.reports:
        child = (PEAK_RSS + "import sys, time\n"
                 "from pipeline.write.reports import write_reports\n"
                 "start = time.perf_counter()\nwrite_reports(sys.argv[1])\n"
                 "print(time.perf_counter() - start, peak_mib())")
        seconds, peak = subprocess.run([sys.executable, "-c", child, str(run_dir)], check=True,
                                       capture_output=True, text=True).stdout.split()
        sizes = ", ".join(f"{name} {(run_dir / name).stat().st_size / 1e3:,.0f} kB"
                          for name in ("report.html", "report.md", "alerts.json",
                                       DRIFT_FILE))
        print(f"write_reports: {float(seconds):.1f} s, peak RSS {float(peak):.0f} MiB; {sizes}")


if __name__ == "__main__":
    main()
