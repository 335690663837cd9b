"""Per-feature plots: what is drawn, and the compact inline SVG they become."""

from __future__ import annotations

import re

import matplotlib as mpl
import numpy as np
import polars as pl
import pytest

from pipeline.write.reports import plots
from pipeline.write.reports.summary import compact_time_labels


def _bins(labels: list[str], contributions: list[float]) -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame({"bin": labels, "baseline_share": [1 / n] * n,
                         "current_share": [1 / n] * n, "contribution": contributions})


def _series(values: list[float], warn: list[float], critical: list[float]) -> pl.DataFrame:
    status = ["critical" if v >= c else "warn" if v >= w else "ok"
              for v, w, c in zip(values, warn, critical, strict=True)]
    labels = [f"2024-06-{d + 1:02d}T00:00:00+00:00" for d in range(len(values))]
    return pl.DataFrame({"label": labels, "value": values, "status": status, "warn_threshold": warn,
                         "critical_threshold": critical})


def test_series_draws_value_and_per_window_thresholds() -> None:
    windows = _series([0.05, 0.15, 0.3], warn=[0.1, 0.1, 0.12], critical=[0.2, 0.2, 0.25])
    with mpl.rc_context(plots.STYLE):
        fig = plots.feature_figure(_bins(["a", "b"], [0.1, 0.2]), metric="js_distance",
                                   windows=windows)
    ax = next(a for a in fig.axes if a.get_title(loc="left") == "Across windows")
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["value"].get_ydata(), [0.05, 0.15, 0.3])
    np.testing.assert_allclose(lines["warn"].get_ydata(), [0.1, 0.1, 0.12])
    np.testing.assert_allclose(lines["critical"].get_ydata(), [0.2, 0.2, 0.25])
    assert lines["warn"].get_linestyle() == "--"
    assert ax.get_xticklabels()[0].get_text() == "2024-06-01"


def test_series_panels_only_with_more_than_one_point() -> None:
    one = _series([0.3], warn=[0.1], critical=[0.2])
    two = _series([0.3, 0.1], warn=[0.1, 0.1], critical=[0.2, 0.2])
    with mpl.rc_context(plots.STYLE):
        titles = [{a.get_title(loc="left") for a in plots.feature_figure(
            _bins(["a"], [0.3]), metric="m", windows=w, runs=r).axes}
            for w, r in ((one, None), (two, None), (two, two))]
    assert "Across windows" not in titles[0]
    assert "Across windows" in titles[1] and "Across runs (worst window)" not in titles[1]
    assert {"Across windows", "Across runs (worst window)"} <= titles[2]


def test_shown_bins_keeps_largest_contributors_in_display_order() -> None:
    bins = _bins([f"b{i}" for i in range(6)], [0.1, -0.5, 0.0, 0.3, 0.05, 0.2])
    assert plots.shown_bins(bins, limit=3)["bin"].to_list() == ["b1", "b3", "b5"]
    assert plots.shown_bins(bins, limit=6)["bin"].to_list() == bins["bin"].to_list()


def test_svg_is_compact_and_keeps_text_verbatim() -> None:
    labels = ["[0.123456, 1.987654)", "$x$ & <y>", "__missing__"]
    svg = plots.feature_svg(_bins(labels, [0.1, 0.2, 0.05]), metric="kl", salt="t1",
                            windows=_series([0.1, 0.3], [0.1, 0.1], [0.2, 0.2]))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<metadata" not in svg and "DOCTYPE" not in svg
    assert "font-family" not in svg  # the page's font applies
    assert not re.search(r'id="[A-Za-z][\w.]*_\d+"', svg)  # no ids repeated across figures
    assert not re.search(r'="[^"]*\d\.\d{2,}', svg)  # coordinates rounded to 0.1 pt
    # Labels are text, escaped, never rounded or parsed as mathtext.
    assert ">[0.123456, 1.987654)</text>" in svg
    assert ">$x$ &amp; &lt;y&gt;</text>" in svg
    assert len(svg) < 30_000


def test_svg_ids_depend_on_salt_only() -> None:
    bins = _bins(["a", "b"], [0.1, 0.2])
    first = plots.feature_svg(bins, metric="kl", salt="s1")
    assert first == plots.feature_svg(bins, metric="kl", salt="s1")
    other = plots.feature_svg(bins, metric="kl", salt="s2")
    ids = set(re.findall(r'id="([^"]+)"', first))
    assert ids and ids.isdisjoint(re.findall(r'id="([^"]+)"', other))


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
