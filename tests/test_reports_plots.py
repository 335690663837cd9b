"""The SVG plots and the rounded bin labels: what is drawn where, escaped, compact."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.bins.layout import bin_label
from pipeline.write.reports import plots
from pipeline.write.reports.bin_labels import format_edge, short_labels
from pipeline.write.reports.summary import compact_time_labels
from tests.report_data import ParsedPage


def _bins(labels: list[str], contributions: list[float],
          shares: list[float] | None = None) -> pl.DataFrame:
    n = len(labels)
    shares = shares or [1 / n] * n
    return pl.DataFrame({"bin": labels, "lower": [None] * n, "upper": [None] * n,
                         "baseline_share": [1 / n] * n, "current_share": shares,
                         "contribution": contributions},
                        schema_overrides={"lower": pl.Float64, "upper": pl.Float64})


def _series(values: list[float | None], warn: list[float], critical: list[float]
            ) -> pl.DataFrame:
    status = ["ok" if v is None else "critical" if v >= c else "warn" if v >= w else "ok"
              for v, w, c in zip(values, warn, critical, strict=True)]
    labels = [f"2024-06-{d + 1:02d}T00:00:00+00:00" for d in range(len(values))]
    return pl.DataFrame({"label": labels, "value": values, "status": status,
                         "warn_threshold": warn, "critical_threshold": critical},
                        schema_overrides={"value": pl.Float64})


def _paths(svg: str, css: str) -> list[list[tuple[float, float]]]:
    return [[(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+) (-?[\d.]+)", d)]
            for d in re.findall(rf'<path class="{css}" d="M([^"]*)"', svg)]


def _y_scale(svg: str) -> tuple[float, float]:
    """Pixel y of the value 0 and pixels per unit, from two labelled y ticks."""
    ticks = [(float(v), float(y) - 4) for y, v in re.findall(
        r'<text class="tick" x="[\d.]+" y="([\d.]+)" text-anchor="end">([\d.]+)</text>', svg)]
    (v0, y0), (v1, y1) = ticks[0], ticks[-1]
    return y0 - v0 * (y1 - y0) / (v1 - v0), (y1 - y0) / (v1 - v0)


def test_series_draws_value_and_per_window_thresholds() -> None:
    svg = plots.series_svg(_series([0.05, 0.15, 0.3], warn=[0.1, 0.1, 0.12],
                                   critical=[0.2, 0.2, 0.25]), "js_distance across windows")
    zero, per_unit = _y_scale(svg)

    def values(css: str) -> list[float]:
        (path,) = _paths(svg, css)
        return [round((y - zero) / per_unit, 3) for _, y in path]

    assert values("val") == [0.05, 0.15, 0.3]
    assert values("thr-warn") == [0.1, 0.1, 0.12, 0.12]  # a step where the level changes
    assert values("thr-critical") == [0.2, 0.2, 0.25, 0.25]
    (value_path,), (warn_path,) = _paths(svg, "val"), _paths(svg, "thr-warn")
    midway = (value_path[1][0] + value_path[2][0]) / 2  # between the 2nd and 3rd windows
    assert warn_path[1][0] == warn_path[2][0] == pytest.approx(midway, abs=0.1)
    dots = ParsedPage(svg).all("circle")
    assert [d["class"] for d in dots] == ["dot", "dot s-warn", "dot s-critical"]
    assert ">2024-06-01</text>" in svg
    assert "2024-06-03: 0.3 (critical)" in svg  # tooltip of the last point


def test_long_series_mark_only_alerting_and_partial_points() -> None:
    n = plots.MAX_DOTS + 10
    values = [0.3 if i % 10 == 0 else 0.05 for i in range(n)]
    series = _series(values, [0.1] * n, [0.2] * n).with_columns(
        partial=pl.Series([i == n - 1 for i in range(n)]))
    dots = ParsedPage(plots.series_svg(series, "t")).all("circle")
    assert len(dots) == n // 10 + 1  # the 4 critical windows and the partial last one
    short = _series(values[:10], [0.1] * 10, [0.2] * 10)
    assert len(ParsedPage(plots.series_svg(short, "t")).all("circle")) == 10


def test_series_breaks_the_line_at_a_missing_value_and_marks_partial_windows() -> None:
    series = _series([0.1, None, 0.3, 0.25], [0.1] * 4, [0.2] * 4).with_columns(
        partial=pl.Series([False, False, False, True]),
        coverage=pl.Series([1.0, 1.0, 1.0, 0.42]))
    svg = plots.series_svg(series, "t")
    assert [len(p) for p in _paths(svg, "val")] == [1, 2]
    partial = [d for d in ParsedPage(svg).all("circle") if "partial" in (d["class"] or "")]
    assert len(partial) == 1
    assert "partial window, coverage 42%" in svg


def test_feature_svgs_has_series_panels_only_with_more_than_one_point() -> None:
    one = _series([0.3], warn=[0.1], critical=[0.2])
    two = _series([0.3, 0.1], warn=[0.1, 0.1], critical=[0.2, 0.2])
    titles = [[ParsedPage(svg).text[0] for svg in plots.feature_svgs(
        _bins(["a"], [0.3]), metric="m", windows=w, runs=r)]
        for w, r in ((one, None), (two, None), (two, two))]
    assert titles[0] == ["Share of rows per bin", "Contribution to m"]
    assert titles[1][2:] == ["m across windows"]
    assert titles[2][2:] == ["m across windows", "m across runs (worst window)"]


def test_shares_and_contributions_are_drawn_to_scale() -> None:
    bins = _bins(["a", "b", "c"], [0.2, -0.1, 0.05], shares=[0.5, 0.2, 0.3])
    share = plots.share_svg(bins, ["a", "b", "c"], n_total=3)
    (outline,) = _paths(share, "cur")
    # Each bin's vertical step sits at its share: x offsets proportional to 0.5, 0.2, 0.3.
    left = outline[0][0]
    steps = [outline[1 + 2 * i][0] - left for i in range(3)]
    np.testing.assert_allclose(np.array(steps) / steps[0], [1, 0.4, 0.6], rtol=0.02)
    contrib = plots.contribution_svg(bins, ["a", "b", "c"], metric="kl")
    bars = ParsedPage(contrib).all("rect")
    assert [b["class"] for b in bars] == ["pos", "neg", "pos"]
    widths = [float(b["width"]) for b in bars]
    np.testing.assert_allclose(np.array(widths) / widths[0], [1, 0.5, 0.25], rtol=0.02)


def test_shown_bins_keeps_largest_contributors_in_display_order() -> None:
    bins = _bins([f"b{i}" for i in range(6)], [0.1, -0.5, 0.0, 0.3, 0.05, 0.2])
    assert plots.shown_bins(bins, limit=3)["bin"].to_list() == ["b1", "b3", "b5"]
    assert plots.shown_bins(bins, limit=6)["bin"].to_list() == bins["bin"].to_list()
    many = _bins([f"b{i}" for i in range(40)], list(np.linspace(0, 1, 40)))
    assert "Share of rows per bin (top 25 of 40)" in plots.feature_svgs(many, metric="m")[0]


def test_svg_is_compact_and_escapes_text() -> None:
    labels = ["[0.123456, 1.987654)", "$x$ & <y>", "__missing__"]
    svgs = plots.feature_svgs(_bins(labels, [0.1, 0.2, 0.05]), metric="k<l>",
                              windows=_series([0.1, 0.3], [0.1, 0.1], [0.2, 0.2]))
    for svg in svgs:
        assert svg.startswith("<svg") and svg.endswith("</svg>")
        assert not re.search(r'="[^"]*\d\.\d{2,}', svg)  # coordinates rounded to 0.1 px
        assert "<k" not in svg and "<y>" not in svg and "style=" not in svg
        assert len(svg) < 8_000
    assert ">$x$ &amp; &lt;y&gt;<title>" in svgs[0]  # verbatim, escaped
    assert "Contribution to k&lt;l&gt;" in svgs[1]
    assert all(not re.search(r"\bid=", svg) for svg in svgs)  # no ids to clash across plots


@given(st.floats(-1e9, 1e9), st.floats(1e-9, 1e9))
def test_nice_ticks_cover_the_range_in_even_round_steps(low: float, span: float) -> None:
    high = low + span
    if span < 1e-6 * abs(low):  # beyond what an axis of float64 values can resolve
        return
    ticks = plots.nice_ticks(low, high)
    steps = np.diff(ticks)
    assert ticks[0] <= low + 1e-6 * steps[0] and ticks[-1] >= high - 1e-6 * steps[0]
    assert 2 <= len(ticks) <= 7
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert round(mantissa, 6) in (1, 2, 2.5, 5, 10)


@given(st.lists(st.floats(-1e7, 1e7, allow_nan=False), min_size=1, max_size=30, unique=True))
def test_rounded_labels_stay_distinct_and_close_to_the_edges(edges: list[float]) -> None:
    edges = sorted(edges)
    lower, upper = [-math.inf, *edges], [*edges, math.inf]
    labels = [bin_label(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
    shown = short_labels(labels, lower, upper)
    assert len(set(shown)) == len(shown)
    for text, label, lo, hi in zip(shown, labels, lower, upper, strict=True):
        a, b = (float(v) for v in text[1:-1].split(", "))
        assert a == pytest.approx(lo, rel=5e-3, abs=1e-300) or math.isinf(lo)
        assert b == pytest.approx(hi, rel=5e-3, abs=1e-300) or math.isinf(hi)
        assert (text[0], text[-1]) == (label[0], label[-1])  # same kind of interval
        assert len(text) <= len(bin_label(lo, hi))


def test_rounded_labels_use_more_digits_only_where_needed() -> None:
    lower = [-math.inf, 1.6431714216404367, 1.6437, 2.5]
    upper = [1.6431714216404367, 1.6437, 2.5, math.inf]
    labels = [bin_label(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
    assert short_labels(labels, lower, upper) == [
        "[-inf, 1.643)", "[1.643, 1.644)", "[1.644, 2.5)", "[2.5, inf)"]  # 4 digits here
    point = [3.0, math.nextafter(3.0, math.inf)]  # a point-mass bin keeps its closed form
    after = [math.nextafter(3.0, math.inf), 7.123456]
    assert short_labels([bin_label(3.0, point[1]), bin_label(after[0], after[1])],
                        [point[0], after[0]], [point[1], after[1]]) == ["[3, 3]", "(3, 7.12)"]
    assert short_labels(["a", "__missing__"], [None, None], [None, None]) == ["a", "__missing__"]
    assert format_edge(-0.0000123456, 3) == "-1.23e-5" and format_edge(99999.4, 3) == "99999"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["2024-06-01T00:00:00+00:00", "2024-06-02T00:00:00+00:00"],
         ["2024-06-01", "2024-06-02"]),
        (["2024-06-01T00:00:00Z", "2024-06-01T13:00:00Z"],
         ["2024-06-01 00:00", "2024-06-01 13:00"]),
        (["all"], ["all"]),
        (["week 1", "2024-06-01"], ["week 1", "2024-06-01"]),
    ],
)
def test_compact_time_labels(labels: list[str], expected: list[str]) -> None:
    assert compact_time_labels(labels) == expected
