"""Synthetic drift tables and alerts documents that follow docs/architecture.md exactly.

The report and history tests build on these, so they do not depend on the drift pipeline.
Run as a script to write a realistic run folder (used for docs/report-screenshot.png)::

    python -m tests.report_data OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.formats import DRIFT_FILE
from pipeline.write.documents import alerts_document
from pipeline.write.run_folder import write_run_outputs

WARN, CRITICAL = 0.1, 0.2

TOP_BIN = pl.Struct(
    {"bin": pl.String, "contribution": pl.Float64, "baseline_share": pl.Float64,
     "current_share": pl.Float64}
)
BIN = pl.Struct(
    {"bin": pl.String, "lower": pl.Float64, "upper": pl.Float64,
     "baseline_count": pl.Float64, "current_count": pl.Float64,
     "baseline_share": pl.Float64, "current_share": pl.Float64, "contribution": pl.Float64}
)
METRIC_COLUMNS = ("kl", "reverse_kl", "symmetric_kl", "psi", "js_divergence", "js_distance",
                  "hellinger")
FEATURE_NAMES = ("dep_delay", "arr_delay", "distance", "air_time", "carrier", "origin",
                 "dest", "hour", "month", "tailnum", "sched_dep_time", "flight")
CATEGORIES = {
    "carrier": ["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN"],
    "origin": ["EWR", "JFK", "LGA"],
    "dest": ["ATL", "ORD", "LAX", "BOS", "MCO", "CLT", "SFO", "FLL"],
    "tailnum": ["N725MQ", "N722MQ", "N723MQ", "N713MQ", "N711MQ"],
}


def _numeric_bins(rng: np.random.Generator, k: int) -> tuple[list[str], list[float], list[float]]:
    inner = np.round(np.sort(rng.normal(0, 30, k - 1)), 1)
    lower = [-math.inf, *inner.tolist()]
    upper = [*inner.tolist(), math.inf]
    labels = [f"[{lo:g}, {hi:g})" for lo, hi in zip(lower, upper, strict=True)]
    return [*labels, "__missing__"], [*lower, math.nan], [*upper, math.nan]


def _js(p: np.ndarray, q: np.ndarray) -> dict[str, float | np.ndarray]:
    """Divergences of current ``p`` from baseline ``q`` (bits), smoothed like kl_metrics."""
    p = np.maximum(p / p.sum(), 1e-6)
    q = np.maximum(q / q.sum(), 1e-6)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    terms = 0.5 * p * np.log2(p / m) + 0.5 * q * np.log2(q / m)
    jsd = float(terms.sum())
    dist = math.sqrt(jsd)
    kl = float((p * np.log2(p / q)).sum())
    rkl = float((q * np.log2(q / p)).sum())
    return {
        "kl": kl, "reverse_kl": rkl, "symmetric_kl": kl + rkl, "psi": kl + rkl,
        "js_divergence": jsd, "js_distance": dist,
        "hellinger": float(np.sqrt(0.5 * ((np.sqrt(p) - np.sqrt(q)) ** 2).sum())),
        # Per-bin contributions to js_distance, summing to it.
        "contributions": terms * (dist / jsd) if jsd > 0 else terms,
    }


def make_drift(
    n_features: int = 8,
    n_windows: int = 4,
    *,
    alert_fraction: float = 0.3,
    names: list[str] | None = None,
    bin_labels: list[str] | None = None,
    segments: dict[str, list[str]] | None = None,
    problems: bool = True,
    seed: int = 0,
) -> pl.DataFrame:
    """A drift table (one row per segment x feature x window) as `drift.parquet` holds it.

    Parameters
    ----------
    n_features, n_windows : int
        Table size. Windows are consecutive days; one window is labelled ``"all"``.
    alert_fraction : float
        About this share of rows is drawn with a shift large enough to alert: twice that
        share of the features drift, in about half of their windows.
    names : list of str, optional
        Feature names (default: flight-like names, then ``feature_<i>``).
    bin_labels : list of str, optional
        Bin labels used for every feature instead of generated ones (categorical).
    segments : dict, optional
        Segment column name -> values; rows are repeated for each combination.
    problems : bool
        Add one ``error`` and one ``insufficient_data`` row.
    seed : int
        Random seed: the same arguments give the same table.
    """
    rng = np.random.default_rng(seed)
    names = names or [FEATURE_NAMES[i] if i < len(FEATURE_NAMES) else f"feature_{i}"
                      for i in range(n_features)]
    start = datetime(2024, 6, 1, tzinfo=UTC)
    windows = (["all"] if n_windows == 1 else
               [(start + timedelta(days=d)).isoformat() for d in range(n_windows)])
    seg_values = [{}] if not segments else [
        dict(zip(segments, combo, strict=True))
        for combo in np.array(np.meshgrid(*segments.values())).T.reshape(-1, len(segments))
    ]
    rows = []
    for seg in seg_values:
        for i, feature in enumerate(names):
            if bin_labels is not None:
                labels, lower, upper = bin_labels, [math.nan] * len(bin_labels), [
                    math.nan] * len(bin_labels)
                kind = "categorical"
            elif feature in CATEGORIES or i % 3 == 2:
                labels = [*CATEGORIES.get(feature, [f"c{j}" for j in range(6)]), "__other__",
                          "__missing__"]
                lower = upper = [math.nan] * len(labels)
                kind = "categorical"
            else:
                labels, lower, upper = _numeric_bins(rng, 10)
                kind = "numeric"
            k = len(labels)
            base_p = rng.dirichlet(np.full(k, 4.0))
            base_p[-1] *= 0.05  # rare missing / last category
            base_p /= base_p.sum()
            n_base = 20_000.0
            base_counts = np.round(base_p * n_base)
            drifting = rng.random() < 2 * alert_fraction
            for w in windows:
                alerting = drifting and rng.random() < 0.5
                shift = rng.uniform(0.25, 0.7) if alerting else rng.uniform(0.0, 0.04)
                cur_p = (1 - shift) * base_p + shift * rng.dirichlet(np.full(k, 0.7))
                n_cur = float(rng.integers(2_000, 6_000))
                cur_counts = rng.multinomial(int(n_cur), cur_p).astype(float)
                d = _js(cur_counts, base_counts)
                value = d["js_distance"]
                status = "critical" if value >= CRITICAL else "warn" if value >= WARN else "ok"
                bins = [
                    {"bin": b, "lower": lo, "upper": hi, "baseline_count": bc,
                     "current_count": cc, "baseline_share": bc / base_counts.sum(),
                     "current_share": cc / cur_counts.sum(), "contribution": float(c)}
                    for b, lo, hi, bc, cc, c in zip(labels, lower, upper, base_counts,
                                                   cur_counts, d["contributions"], strict=True)
                ]
                top = sorted(bins, key=lambda b: -b["contribution"])[:3]
                rows.append({
                    **seg,
                    "segment": ", ".join(f"{c}={v}" for c, v in seg.items()) or "all",
                    "feature": feature, "window": w, "kind": kind,
                    "n_baseline": float(base_counts.sum()), "n_current": n_cur,
                    **{m: float(d[m]) for m in METRIC_COLUMNS},
                    "metric": "js_distance", "value": value,
                    "warn_threshold": WARN, "critical_threshold": CRITICAL,
                    "p_value": 1e-12 if status != "ok" else float(rng.uniform(0.001, 1)),
                    "q_value": 1e-10 if status != "ok" else float(rng.uniform(0.01, 1)),
                    "status": status, "reason": None,
                    "top_bins": [{k2: b[k2] for k2 in TOP_BIN.to_schema()} for b in top],
                    "bins": bins,
                })
    if problems and len(rows) >= 2:
        err, small = rows[-1], rows[-2]
        err.update({m: None for m in (*METRIC_COLUMNS, "value", "p_value", "q_value")})
        err.update(status="error", reason="current histogram is all zeros", top_bins=[])
        small.update(status="insufficient_data", n_current=12.0,
                     reason="n_current 12 < min_count 50")
    schema = {**{c: pl.String for c in (segments or {})}, "segment": pl.String,
              "feature": pl.String, "window": pl.String, "kind": pl.String,
              "n_baseline": pl.Float64, "n_current": pl.Float64,
              **{m: pl.Float64 for m in METRIC_COLUMNS}, "metric": pl.String,
              "value": pl.Float64, "warn_threshold": pl.Float64,
              "critical_threshold": pl.Float64, "p_value": pl.Float64, "q_value": pl.Float64,
              "status": pl.String, "reason": pl.String, "top_bins": pl.List(TOP_BIN),
              "bins": pl.List(BIN)}
    return pl.DataFrame(rows, schema=schema)


def with_verdicts(verdicts: dict[str, tuple[str, float | None]]) -> pl.DataFrame:
    """A one-window table of the given features, each with the given (status, value)."""
    drift = make_drift(len(verdicts), 1, names=list(verdicts), problems=False)
    status = pl.col("feature").replace_strict({f: s for f, (s, _) in verdicts.items()})
    value = pl.col("feature").replace_strict({f: v for f, (_, v) in verdicts.items()},
                                             return_dtype=pl.Float64)
    reason = pl.when(status.is_in(["error", "insufficient_data"])).then(pl.lit("because"))
    return drift.with_columns(status=status, value=value, reason=reason)


def make_alerts(drift: pl.DataFrame, *, run_id: str = "2024-06-08T00-00-00Z",
                created_at: str = "2024-06-08T00:05:12Z") -> dict:
    """The alerts.json document of ``drift``, built by the pipeline's own writer."""
    config = {"metric": "js_distance", "base": 2,
              "thresholds": {"warn": WARN, "critical": CRITICAL}, "fdr_q": 0.01,
              "min_count": 50}
    run = {"run_id": run_id, "created_at": created_at, "tool_version": "0.1.0",
           "inputs": {"baseline": "data/baseline_profile.parquet",
                      "current": "data/flights/2024-06-*.parquet"},
           "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
           "metric": "js_distance", "base": 2, "config": config}
    return alerts_document(drift, run)


def write_run(run_dir: Path, drift: pl.DataFrame, alerts: dict) -> Path:
    """Write ``drift.parquet`` and ``alerts.json`` into ``run_dir`` as a drift run does."""
    write_run_outputs(run_dir, {DRIFT_FILE: drift}, alerts)
    return run_dir


class ParsedPage(HTMLParser):
    """Tags (with attributes), text and script bodies of an HTML page, for assertions."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        """Attributes of every ``tag`` element."""
        return [attrs for name, attrs in self.tags if name == tag]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-output/synthetic")
    table = make_drift(24, 14, alert_fraction=0.25, seed=7)
    print(write_run(out, table, make_alerts(table)))
