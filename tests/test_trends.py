"""Trends with dynamic bounds: statistics from bins, bounds from the windows before, lights.

Statistics are checked against numpy on the same bins (each bin at its midpoint, quantiles
by inverting the piecewise-linear CDF with ``np.interp``), bounds against numpy medians and
MADs of exactly the windows before, the metric's noise floor against simulation, and a run
with a sudden break in the share of nulls lights that window red, and only that one.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kl_metrics import divergences
from pipeline.config import TrendsConfig, load_config
from pipeline.measure.trends import MAD_SCALE, null_spread, trend_table, window_statistics
from pipeline.run import run_drift

START = datetime(2024, 1, 1)


def _bins(edges: list[float], counts: list[float], window: str = "w") -> pl.DataFrame:
    return pl.DataFrame({"segment": "all", "feature": "x", "window": window,
                         "bin": [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(edges)],
                         "lower": edges[:-1], "upper": edges[1:], "count": counts})


@given(st.lists(st.integers(0, 50), min_size=2, max_size=12).filter(lambda c: sum(c) > 0),
       st.floats(0.01, 0.99))
def test_statistics_match_numpy_on_the_bins(counts: list[int], q: float) -> None:
    edges = [float(e) for e in np.cumsum(np.arange(1, len(counts) + 2)) - 1]
    stats = window_statistics(_bins(edges, [float(c) for c in counts]), [q])
    got = dict(stats.select("statistic", "value").rows())
    weights = np.asarray(counts, float)
    mids = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    mean = np.average(mids, weights=weights)
    assert got["mean"] == pytest.approx(mean)
    assert got["std"] == pytest.approx(np.sqrt(np.average((mids - mean) ** 2, weights=weights)))
    # brute force: the CDF, linear within each bin, on a fine grid; the smallest x reaching q
    grid = np.linspace(edges[0], edges[-1], 200_001)
    lower, upper = np.asarray(edges[:-1]), np.asarray(edges[1:])
    cdf = (weights * np.clip((grid[:, None] - lower) / (upper - lower), 0, 1)).sum(axis=1)
    expected = grid[np.argmax(cdf / weights.sum() >= q - 1e-12)]
    assert got[f"p{q * 100:.4g}"] == pytest.approx(expected, abs=grid[1] - grid[0])
    assert got["null_share"] == 0.0 and got["other_share"] is None


def test_open_tails_shares_and_their_standard_errors() -> None:
    bins = pl.DataFrame({"segment": "all", "feature": "x", "window": "w",
                         "bin": ["[-inf, 0)", "[0, 10)", "[10, inf)", "__missing__"],
                         "lower": [-np.inf, 0.0, 10.0, None], "upper": [0.0, 10.0, np.inf, None],
                         "count": [10.0, 70.0, 20.0, 25.0]})
    got = dict(window_statistics(bins, [0.05, 0.95]).select("statistic", "value").rows())
    assert got["mean"] == pytest.approx((10 * 0 + 70 * 5 + 20 * 10) / 100)  # tails at edges
    assert got["p5"] == 0.0 and got["p95"] == 10.0  # quantiles in a tail: its finite edge
    assert got["null_share"] == pytest.approx(25 / 125)
    se = dict(window_statistics(bins, []).select("statistic", "se").rows())
    share = (25 + 0.5) / 126
    assert se["null_share"] == pytest.approx(np.sqrt(share * (1 - share) / 125))
    categorical = pl.DataFrame({"segment": "all", "feature": "c", "window": "w",
                                "bin": ["a", "__other__"], "lower": [None, None],
                                "upper": [None, None], "count": [3.0, 1.0]},
                               schema_overrides={"lower": pl.Float64, "upper": pl.Float64})
    got = dict(window_statistics(categorical, [0.5]).select("statistic", "value").rows())
    assert got["other_share"] == 0.25 and got["mean"] is None and got["p50"] is None


@pytest.mark.parametrize("metric", ["js_distance", "js_divergence", "kl", "psi", "hellinger"])
def test_the_metric_noise_floor_matches_simulation(metric: str) -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(15, 4.0))
    values = divergences(rng.multinomial(800, p, size=3000), rng.multinomial(1200, p, size=3000),
                         metrics=(metric,), base=2)[metric]
    frame = pl.DataFrame({"n1": [800.0], "n2": [1200.0], "k": [15]})
    spread = frame.select(null_spread(metric, pl.col("n1"), pl.col("n2"), pl.col("k"),
                                      2.0)).item()
    assert spread == pytest.approx(values.std(), rel=0.1)


def _series(values: list[float], se: float | None = 0.0) -> tuple[pl.DataFrame, ...]:
    windows = [f"w{i:03d}" for i in range(len(values))]
    statistics = pl.DataFrame({"segment": "all", "feature": "x", "window": windows,
                               "statistic": "mean", "reference": None, "value": values,
                               "se": se}, schema_overrides={"reference": pl.String,
                                                            "se": pl.Float64})
    checked = pl.DataFrame({"segment": "all", "feature": "x", "window": windows,
                            "partial": False})
    earlier = pl.DataFrame([
        {"segment": "all", "feature": "x", "window": windows[i], "reference": windows[j],
         "start": START + timedelta(days=j)}
        for i in range(len(windows)) for j in range(max(0, i - 10), i)])
    return statistics, earlier, checked


def test_bounds_come_from_exactly_the_windows_before() -> None:
    rng = np.random.default_rng(5)
    values = list(rng.normal(10, 1, 40))
    values[30] = 30.0  # a sudden break
    config = TrendsConfig(windows=10, min_windows=5)
    table = trend_table(*_series(values), config)
    assert table.height == 40 and table["checked"].all()
    for i in (5, 20, 31, 39):
        before = np.asarray(values[max(0, i - 10):i])
        median = np.median(before)
        spread = MAD_SCALE * np.median(np.abs(before - median))
        row = table.row(i, named=True)
        assert row["expected"] == pytest.approx(median)
        assert row["spread"] == pytest.approx(spread)
        assert row["upper_red"] == pytest.approx(median + 7 * spread)
        assert row["pull"] == pytest.approx((values[i] - median) / spread)
    lights = table["light"].to_list()
    assert lights[:5] == [None] * 5  # fewer than min_windows earlier windows
    assert lights[30] == "red"
    assert lights.count("red") == 1 and lights.count("yellow") <= 1


def test_a_statistic_that_never_moved_is_judged_by_its_sampling_error() -> None:
    values = [0.0] * 20 + [0.004, 0.05]
    table = trend_table(*_series(values, se=0.002), TrendsConfig(windows=10, min_windows=5))
    assert table["light"].to_list()[-2:] == ["green", "red"]
    without = trend_table(*_series(values, se=None), TrendsConfig(windows=10, min_windows=5))
    assert without["light"].to_list()[-2] == "red"  # MAD 0 and no error: any move is red


@pytest.fixture(scope="module")
def trend_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """40 daily windows of one distribution; from day 30, 30% of x is null."""
    root = tmp_path_factory.mktemp("trends")
    rng = np.random.default_rng(9)
    pl.DataFrame({"x": rng.normal(0, 1, 20_000)}).write_parquet(root / "base.parquet")
    parts = []
    for day in range(40):
        x = rng.normal(0, 1, 1000)
        if day >= 30:
            x[rng.random(1000) < 0.3] = np.nan
        parts.append(pl.DataFrame({
            "ts": [START + timedelta(days=day, seconds=int(s))
                   for s in np.sort(rng.integers(0, 86_400, 1000))], "x": x}))
    pl.concat(parts).with_columns(pl.col("x").fill_nan(None)).write_parquet(root / "cur.parquet")
    config = load_config(None, {
        "input.baseline": str(root / "base.parquet"), "input.current": str(root / "cur.parquet"),
        "input.timestamp": "ts", "input.period": "1d", "trends.enabled": True,
        "references.modes": ["baseline", "previous"],
        "output.dir": str(root / "runs"), "output.run_id": "r", "output.fail_on": "never"})
    result = run_drift(config)
    return {"root": root, "result": result,
            "trends": pl.read_parquet(result.run_dir / "trends.parquet")}


def test_a_break_in_the_null_share_is_red_once(trend_run: dict) -> None:
    trends: pl.DataFrame = trend_run["trends"]  # type: ignore[assignment]
    nulls = trends.filter(pl.col("statistic") == "null_share", pl.col("checked"))
    lights = nulls["light"].to_list()
    break_day = (START + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
    assert nulls.filter(pl.col("window") == break_day)["light"].to_list() == ["red"]
    assert lights[:7] == [None] * 7  # no bounds before 7 earlier windows
    assert set(lights[7:30]) <= {"green", "yellow"} and lights[7:30].count("yellow") <= 1
    # the metric against the previous window is red on the break and back to green after
    previous = trends.filter(pl.col("statistic") == "js_distance",
                             pl.col("reference") == "previous")
    by_window = dict(previous.select("window", "light").rows())
    assert by_window[break_day] == "red"
    assert by_window[(START + timedelta(days=33)).strftime("%Y-%m-%dT%H:%M:%S")] == "green"
    assert set(trends["statistic"]) == {"mean", "std", "p5", "p50", "p95", "null_share",
                                        "other_share", "js_distance"}


def test_trends_in_alerts_json_and_the_reports(trend_run: dict) -> None:
    result = trend_run["result"]
    block = result.alerts["trends"]  # type: ignore[attr-defined]
    trends: pl.DataFrame = trend_run["trends"]  # type: ignore[assignment]
    checked = trends.filter(pl.col("checked"))
    assert block["summary"]["red"] == checked.filter(pl.col("light") == "red").height > 0
    assert sum(block["summary"].values()) == checked.height
    assert block["flags"][0]["light"] == "red"
    assert block["files"] == {"trends": "trends.parquet"}
    run_dir: Path = result.run_dir  # type: ignore[attr-defined]
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="trends">Trends</h2>' in page and 'class="band-green"' in page
    text = (run_dir / "report.md").read_text()
    assert "## Trends" in text and "null\\_share" in text


def test_the_next_run_learns_its_bounds_from_the_history(trend_run: dict,
                                                         tmp_path: Path) -> None:
    """One window per run: the bounds come from the earlier runs' stored histograms, and
    the earlier windows are in trends.parquet as context."""
    root: Path = trend_run["root"]  # type: ignore[assignment]
    day = (START + timedelta(days=40)).isoformat()
    rng = np.random.default_rng(10)
    path = tmp_path / "next.parquet"
    pl.DataFrame({"ts": [datetime.fromisoformat(day) + timedelta(seconds=int(s))
                         for s in np.sort(rng.integers(0, 86_400, 1000))],
                  "x": rng.normal(0, 1, 1000)}).write_parquet(path)
    config = load_config(None, {
        "input.baseline": str(root / "base.parquet"), "input.current": str(path),
        "input.timestamp": "ts", "input.period": "1d", "trends.enabled": True,
        "output.dir": str(root / "runs"), "output.run_id": "next", "output.fail_on": "never"})
    trends = pl.read_parquet(run_drift(config).run_dir / "trends.parquet")
    mean = trends.filter(pl.col("statistic") == "mean")
    assert mean.filter(pl.col("checked")).height == 1
    row = mean.filter(pl.col("checked")).row(0, named=True)
    assert row["n_windows"] == 28 and row["light"] == "green"
    assert mean.filter(~pl.col("checked")).height == 28  # the context it was learned from
    # 10 of the 28 earlier windows had 30% nulls: their median, 0, is this window's share
    nulls = trends.filter(pl.col("statistic") == "null_share", pl.col("checked")).row(
        0, named=True)
    assert nulls["expected"] == 0.0 and nulls["light"] == "green"
