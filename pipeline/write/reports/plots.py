"""The report's plots, written as small inline SVG straight from the data (`svg.Svg`).

Per feature: baseline vs current share per bin (grey filled steps, blue outline), each bin's
contribution to the alert metric, and the metric across windows and across runs against its
thresholds; for model outputs, baseline vs current mean probability per class; for joint
drift, baseline and current heat maps of the top feature pair. Each panel is
its own SVG about as wide as it is shown (`PANEL_WIDTH`), so the page lays the panels side by
side on a wide screen and stacks them on a phone, and text keeps its size. Colours come from
the page's CSS classes (light and dark schemes). Rendering a feature takes about a
millisecond: no plotting library, no layout engine, no post-processing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from pipeline.labels import MISSING
from pipeline.write.reports.bin_labels import short_labels
from pipeline.write.reports.summary import compact_time_labels, fmt_share, fmt_value
from pipeline.write.reports.svg import Svg, text_width

PANEL_WIDTH = 420
ROW = 16  # px per bin
TOP = 38  # title, then the legend, above the plot area
LEGEND = 22  # y of the legend line
BOTTOM = 22  # tick labels below it
MAX_BINS = 25
MAX_LABEL = 24  # characters of a bin or class label; the tooltip has all of it
MAX_PANELS = 12  # segments drawn in the class means
SERIES_HEIGHT = 190
MAX_DOTS = 30  # longer series mark (and give tooltips to) only alerting and partial points


def _short(label: str, limit: int = MAX_LABEL) -> str:
    label = " ".join(label.split())
    return label if len(label) <= limit else label[: limit - 1] + "…"


def shown_bins(bins: pl.DataFrame, limit: int = MAX_BINS) -> pl.DataFrame:
    """The bins to draw, in display order: all of them, or the ``limit`` largest contributors.

    Parameters
    ----------
    bins : polars.DataFrame
        One row per bin in display order, with a ``contribution`` column.
    limit : int
        Most bins to keep; a histogram of hundreds of categories would be unreadable.

    Examples
    --------
    >>> bins = pl.DataFrame({"bin": list("abcd"), "contribution": [0.1, -0.5, 0.0, 0.3]})
    >>> shown_bins(bins, limit=2)["bin"].to_list()
    ['b', 'd']
    """
    if bins.height <= limit:
        return bins
    keep = bins.with_row_index("_order").top_k(limit, by=pl.col("contribution").abs())
    return keep.sort("_order").drop("_order")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]`` (steps of 1, 2, 2.5, 5 x 10^k).

    >>> nice_ticks(0, 0.213)
    [0.0, 0.1, 0.2, 0.3]
    >>> nice_ticks(-0.02, 0.13)
    [-0.05, 0.0, 0.05, 0.1, 0.15]
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1 if math.isfinite(low) else 1.0
        low = low if math.isfinite(low) else 0.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    decimals = max(0, 3 - math.floor(math.log10(step)))  # no 0.30000000000000004
    return [round(i * step, decimals) + 0.0 for i in range(first, last + 1)]


def _percent(value: float) -> str:
    return f"{value:.0%}" if round(value * 100, 6) == round(value * 100) else f"{value:.1%}"


def _tick(value: float) -> str:
    return f"{value:.3g}"


class _Axis:
    """A linear scale from data values to pixels, with round ticks."""

    def __init__(self, low: float, high: float, start: float, end: float,
                 fmt: Callable[[float], str] = _tick, count: int = 5) -> None:
        self.ticks = nice_ticks(low, high, count)
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.start, self.end, self.fmt = start, end, fmt

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _x_axis(svg: Svg, axis: _Axis, y: float) -> None:
    svg.line(axis.start, y, axis.end, y, "axis")
    for tick in axis.ticks:
        x = axis(tick)
        svg.line(x, y, x, y + 3, "axis")
        svg.text(x, y + 14, axis.fmt(tick), css_class="tick", anchor="middle")


def _bin_rows(svg_label: str, labels: Sequence[str], full: Sequence[str],
              tooltips: Sequence[str], title: str) -> tuple[Svg, float, float]:
    """An SVG with a title and one labelled row per bin; returns it and the plot's x range."""
    shown = [_short(label) for label in labels]
    left = min(170.0, max((text_width(s) for s in shown), default=20.0) + 10)
    svg = Svg(PANEL_WIDTH, TOP + ROW * max(len(labels), 2) + BOTTOM, label=svg_label)
    svg.text(0, 13, title, css_class="title")
    for i, (text, label, tip) in enumerate(zip(shown, full, tooltips, strict=True)):
        svg.text(left - 6, TOP + ROW * i + 11.5, text, css_class="tick", anchor="end",
                 title=f"{label}: {tip}")
    return svg, left, PANEL_WIDTH - 14


def _stairs(axis: _Axis, values: Sequence[float], top: float) -> list[tuple[float, float]]:
    """Step outline of horizontal bars, from the zero line round to the zero line."""
    points = [(axis(0.0), top)]
    for i, value in enumerate(values):
        points += [(axis(value), top + ROW * i), (axis(value), top + ROW * (i + 1))]
    return [*points, (axis(0.0), top + ROW * len(values))]


def share_svg(bins: pl.DataFrame, labels: Sequence[str], *, n_total: int,
              reference: str = "baseline") -> str:
    """Share of rows per bin: the reference (filled steps) and current (outline).

    ``bins`` has ``bin``, ``baseline_share``, ``current_share`` in display order; ``labels``
    are the labels to show (`bin_labels.short_labels`); ``n_total`` is the feature's number
    of bins before `shown_bins` (the title says when only the top contributors are drawn);
    ``reference`` names the reference side (``baseline``, or a moving reference such as
    ``previous``: the ``baseline_*`` columns then hold its counts).
    """
    base = [v or 0.0 for v in bins["baseline_share"].to_list()]
    cur = [v or 0.0 for v in bins["current_share"].to_list()]
    more = f" (top {bins.height} of {n_total})" if n_total > bins.height else ""
    tips = [f"{reference} {fmt_share(b)}, current {fmt_share(c)}"
            for b, c in zip(base, cur, strict=True)]
    svg, left, right = _bin_rows(f"Share of rows per bin, {reference} and current", labels,
                                 bins["bin"].to_list(), tips, "Share of rows per bin" + more)
    svg.legend(right, LEGEND, [("sw-base", reference), ("sw-cur", "current")])
    axis = _Axis(0.0, max([*base, *cur, 1e-9]), left, right, _percent, count=4)
    bottom = TOP + ROW * bins.height
    svg.path(_stairs(axis, base, TOP), "base", close=True)
    svg.path(_stairs(axis, cur, TOP), "cur")
    svg.line(left, TOP, left, bottom, "axis")
    _x_axis(svg, axis, bottom)
    return svg.render()


def contribution_svg(bins: pl.DataFrame, labels: Sequence[str], *, metric: str) -> str:
    """Each bin's contribution to ``metric`` as a bar (they sum to the metric's value)."""
    # eps = 0 can make a contribution infinite: draw no bar rather than break the axis.
    values = [v if v is not None and math.isfinite(v) else None
              for v in bins["contribution"].to_list()]
    finite = [v for v in values if v is not None]
    tips = [f"contributes {fmt_value(v)}" for v in bins["contribution"].to_list()]
    svg, left, right = _bin_rows(f"Contribution of each bin to {metric}", labels,
                                 bins["bin"].to_list(), tips, f"Contribution to {metric}")
    axis = _Axis(min([0.0, *finite]), max([*finite, 1e-12]), left, right, count=4)
    zero = axis(0.0)
    for i, value in enumerate(values):
        if value is not None:
            svg.rect(min(zero, axis(value)), TOP + ROW * i + 2.5, abs(axis(value) - zero),
                     ROW - 5, "pos" if value >= 0 else "neg")
    bottom = TOP + ROW * bins.height
    svg.line(zero, TOP, zero, bottom, "axis")
    _x_axis(svg, axis, bottom)
    return svg.render()


@dataclass(frozen=True)
class _TimePanel:
    """The x axis of a panel of windows in time order, right of the y axis's tick labels."""

    left: float
    right: float
    step: float

    @classmethod
    def drawn(cls, svg: Svg, y_axis: _Axis, n: int) -> _TimePanel:
        """The panel for ``n`` windows, its y ticks and grid lines drawn."""
        left = 8 + max(text_width(y_axis.fmt(t)) for t in y_axis.ticks)
        right = PANEL_WIDTH - 6
        for tick in y_axis.ticks:
            svg.text(left - 5, y_axis(tick) + 4, y_axis.fmt(tick), css_class="tick",
                     anchor="end")
            svg.line(left, y_axis(tick), right, y_axis(tick), "grid")
        return cls(left, right, (right - left) / max(n, 1))

    def x(self, i: float) -> float:
        """The centre of window ``i``."""
        return self.left + (i + 0.5) * self.step

    def label_windows(self, svg: Svg, labels: Sequence[str]) -> None:
        """The x axis line and as many window labels as fit."""
        svg.line(self.left, SERIES_HEIGHT - BOTTOM, self.right, SERIES_HEIGHT - BOTTOM, "axis")
        widest = max((text_width(label) for label in labels), default=0.0) + 10
        every = max(1, math.ceil(widest / self.step))
        for i in range(0, len(labels), every):
            svg.text(self.x(i), SERIES_HEIGHT - 7, labels[i], css_class="tick",
                     anchor="middle")


def _series_panel(title: str, legend: list[tuple[str, str]] | None) -> Svg:
    """An empty panel of a series across windows: its title and, if given, its legend."""
    svg = Svg(PANEL_WIDTH, SERIES_HEIGHT, label=title)
    svg.text(0, 13, title, css_class="title")
    if legend:
        svg.legend(PANEL_WIDTH - 6, LEGEND, legend)
    return svg


def series_svg(series: pl.DataFrame, title: str, *, legend: bool = True) -> str:
    """The metric per window (or run) against its warn and critical thresholds.

    ``series`` has ``label``, ``value``, ``status``, ``warn_threshold``,
    ``critical_threshold`` in time order, and optionally ``partial`` / ``coverage``
    (partial windows are drawn hollow). Thresholds are dashed steps; alerting points are
    dots in their status colour; every dot has a tooltip (a series longer than `MAX_DOTS`
    has dots for its alerting and partial points only).
    """
    n = series.height
    labels = compact_time_labels(series["label"].to_list())
    values = series["value"].to_list()
    statuses = series["status"].to_list()
    partial = (series["partial"].to_list() if "partial" in series.columns else [None] * n)
    coverage = (series["coverage"].to_list() if "coverage" in series.columns else [None] * n)
    thresholds = {s: series[f"{s}_threshold"].to_list() for s in ("critical", "warn")}
    known = [v for v in [*values, *thresholds["critical"], *thresholds["warn"]]
             if v is not None and math.isfinite(v)]
    svg = _series_panel(title, [("sw-critical", "critical"), ("sw-warn", "warn"),
                                ("sw-val", "value")] if legend else None)
    y_axis = _Axis(0.0, max([*known, 1e-9]) * 1.08, SERIES_HEIGHT - BOTTOM, TOP, count=4)
    panel = _TimePanel.drawn(svg, y_axis, n)
    x = panel.x
    for status in ("critical", "warn"):
        for run in _runs(thresholds[status]):
            # A step per change of level only: a constant threshold is one line.
            points = [(x(run[0] - 0.5), y_axis(thresholds[status][run[0]]))]
            for i in run[1:]:
                if thresholds[status][i] != thresholds[status][i - 1]:
                    points += [(x(i - 0.5), points[-1][1]),
                               (x(i - 0.5), y_axis(thresholds[status][i]))]
            svg.path([*points, (x(run[-1] + 0.5), points[-1][1])], f"thr-{status}")
    for run in _runs(values):
        svg.path([(x(i), y_axis(values[i])) for i in run], "val")
    for i, (value, status) in enumerate(zip(values, statuses, strict=True)):
        if value is None or not math.isfinite(value):
            continue
        if n > MAX_DOTS and status not in ("critical", "warn") and not partial[i]:
            continue  # long series: the line carries the ok points
        where = labels[i]
        tip = f"{where}: {fmt_value(value)} ({status})"
        if partial[i]:
            tip += f", partial window{_coverage(coverage[i])}"
        css = f"dot s-{status}" if status in ("critical", "warn") else "dot"
        svg.circle(x(i), y_axis(value), 3.5 if status in ("critical", "warn") else 2.2,
                   css + (" partial" if partial[i] else ""), title=tip)
    panel.label_windows(svg, labels)
    return svg.render()


def trend_svg(series: pl.DataFrame, title: str, *, legend: bool = True) -> str:
    """A statistic per window against its dynamic bounds, with traffic lights.

    ``series`` (one series of trends.parquet, in time order) has ``window``, ``checked``,
    ``value``, ``expected``, ``lower_yellow``, ``upper_yellow``, ``lower_red``, ``upper_red``
    and ``light``. The band within the yellow bounds is shaded green, the band out to the
    red bounds yellow, the median of the earlier windows is dashed; this run's windows are
    dots in their light's colour (grey without bounds), the earlier windows the bounds were
    learned from small grey dots.
    """
    n = series.height
    labels = compact_time_labels(series["window"].to_list())
    column = {c: series[c].to_list() for c in ("value", "expected", "lower_yellow",
                                               "upper_yellow", "lower_red", "upper_red")}
    checked, lights = series["checked"].to_list(), series["light"].to_list()
    known = [v for values in column.values() for v in values
             if v is not None and math.isfinite(v)]
    svg = _series_panel(title, [("sw-green", "green"), ("sw-yellow", "yellow"),
                                ("sw-val", "value")] if legend else None)
    low, high = min(known, default=0.0), max(known, default=1.0)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    y_axis = _Axis(low - pad, high + pad, SERIES_HEIGHT - BOTTOM, TOP, count=4)
    panel = _TimePanel.drawn(svg, y_axis, n)
    x = panel.x
    for outer, inner in (("red", "band-yellow"), ("yellow", "band-green")):
        lower, upper = column[f"lower_{outer}"], column[f"upper_{outer}"]
        bounded = [u if lo is not None else None for lo, u in zip(lower, upper, strict=True)]
        for run in _runs(bounded):
            top = [(x(i), y_axis(upper[i])) for i in run]
            bottom = [(x(i), y_axis(lower[i])) for i in reversed(run)]
            svg.path([*top, *bottom], inner, close=True)
    for run in _runs(column["expected"]):
        svg.path([(x(i), y_axis(column["expected"][i])) for i in run], "expected")
    for run in _runs(column["value"]):
        svg.path([(x(i), y_axis(column["value"][i])) for i in run], "val")
    for i, value in enumerate(column["value"]):
        if value is None or not math.isfinite(value):
            continue
        light = lights[i]
        if not checked[i]:
            svg.circle(x(i), y_axis(value), 1.8, "dot earlier",
                       title=f"{labels[i]}: {fmt_value(value)} (earlier window)")
            continue
        tip = f"{labels[i]}: {fmt_value(value)}, " + (
            f"{light} (median {fmt_value(column['expected'][i])})" if light
            else "no bounds yet")
        svg.circle(x(i), y_axis(value), 3.2, f"dot t-{light or 'none'}", title=tip)
    panel.label_windows(svg, labels)
    return svg.render()


def _coverage(value: float | None) -> str:
    return "" if value is None else f", coverage {value:.0%}"


def _runs(values: Sequence[float | None]) -> list[list[int]]:
    """Indices of the consecutive stretches of finite values (a gap breaks the line)."""
    runs: list[list[int]] = [[]]
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(i)
    return [run for run in runs if run]


def feature_svgs(
    bins: pl.DataFrame,
    *,
    metric: str,
    windows: pl.DataFrame | Mapping[str, pl.DataFrame] | None = None,
    runs: pl.DataFrame | None = None,
    reference: str = "baseline",
) -> list[str]:
    """The panels of one feature, in reading order.

    Parameters
    ----------
    bins : polars.DataFrame
        The ``bins`` of the window shown, in display order: ``bin``, ``lower``, ``upper``,
        ``baseline_share``, ``current_share``, ``contribution``.
    metric : str
        Alert metric name, for titles.
    windows, runs : polars.DataFrame, optional
        The metric across windows of this run / across runs (see `series_svg`). Each is
        drawn only when it has more than one point. ``windows`` may map each reference of
        the feature to its series: one panel per reference, side by side.
    reference : str
        The reference of the window shown (the share plot's filled side).

    Returns
    -------
    list of str
        SVG elements: share per bin, contribution per bin, then the series panels.
    """
    shown = shown_bins(bins)
    lower = shown["lower"].to_list() if "lower" in shown.columns else [None] * shown.height
    upper = shown["upper"].to_list() if "upper" in shown.columns else [None] * shown.height
    labels = short_labels(shown["bin"].to_list(), lower, upper)
    panels = [share_svg(shown, labels, n_total=bins.height, reference=reference),
              contribution_svg(shown, labels, metric=metric)]
    across = (windows.items() if isinstance(windows, Mapping)
              else [(None, windows)] if windows is not None else [])
    titled: list[tuple[pl.DataFrame | None, str]] = [
        (s, f"{metric} across windows" + ("" if ref is None else f" vs {ref}"))
        for ref, s in across]
    titled.append((runs, f"{metric} across runs (worst window"
                   + ("" if reference == "baseline" else f", vs {reference}") + ")"))
    series = [(s, title) for s, title in titled if s is not None and s.height > 1]
    panels += [series_svg(s, title, legend=i == 0) for i, (s, title) in enumerate(series)]
    return panels


def class_means_svgs(means: pl.DataFrame) -> list[str]:
    """Baseline vs current mean predicted probability per class, one panel per segment.

    Parameters
    ----------
    means : polars.DataFrame
        ``segment``, ``class``, ``baseline_mean``, ``current_mean`` (classes in model
        order); the first `MAX_PANELS` segments are drawn, on one shared scale.

    Returns
    -------
    list of str
        One SVG per segment.
    """
    segments = means["segment"].unique(maintain_order=True).head(MAX_PANELS).to_list()
    top = means.select(pl.max_horizontal("baseline_mean", "current_mean").max()).item()
    panels = []
    for segment in segments:
        panel = means.filter(pl.col("segment") == segment)
        classes = panel["class"].to_list()
        base, cur = panel["baseline_mean"].to_list(), panel["current_mean"].to_list()
        tips = [f"baseline {fmt_share(b)}, current {fmt_share(c)}"
                for b, c in zip(base, cur, strict=True)]
        title = "All examples" if segment == "all" else _short(segment, 40)
        svg, left, right = _bin_rows(f"Mean predicted probability per class: {title}",
                                     classes, classes, tips, title)
        svg.legend(right, LEGEND, [("sw-base", "baseline"), ("sw-cur-bar", "current")])
        axis = _Axis(0.0, max(float(top or 0.0), 1e-9), left, right, _percent, count=4)
        for i, (b, c) in enumerate(zip(base, cur, strict=True)):
            y = TOP + ROW * i
            svg.rect(left, y + 1.5, axis(b or 0.0) - left, 6, "base-bar")
            svg.rect(left, y + 7.5, axis(c or 0.0) - left, 6, "cur-bar")
        bottom = TOP + ROW * len(classes)
        svg.line(left, TOP, left, bottom, "axis")
        _x_axis(svg, axis, bottom)
        panels.append(svg.render())
    return panels


HEAT_LEVELS = 6  # shading steps of a 2-D view cell (CSS classes heat-0 .. heat-6)
CELL_W, CELL_H = 34, 18  # px per cell of a 2-D view


def _column_label(label: str) -> str:
    """A 2-D view's column label: a numeric bin's lower edge (``[0.5, 1)`` -> ``0.5``),
    ``NA`` for ``__missing__``, or the category, cut to fit the column."""
    if label == MISSING:
        return "NA"
    if label[:1] in "[(" and ", " in label:
        label = label[1:].split(", ")[0]
    return _short(label, 5)


def joint_view_svgs(view: dict, title: str) -> list[str]:
    """The 2-D view of a joint drift row: baseline and current share of rows per cell of
    the top feature pair, as two heat maps on one scale (joint.parquet's ``view``).

    Parameters
    ----------
    view : dict
        ``x``, ``y`` (feature names), ``x_bins``, ``y_bins`` (labels) and ``baseline``,
        ``current`` (counts, row-major: ``x`` bin, then ``y`` bin).
    title : str
        What the view is of (segment and window), in each panel's title.

    Returns
    -------
    list of str
        Two SVGs: baseline, then current. Rows are ``y`` bins, columns ``x`` bins (labelled
        by their lower edge); darker cells hold a larger share of the rows, and each cell's
        tooltip gives both shares.
    """
    x_bins, y_bins = list(view["x_bins"]), list(view["y_bins"])
    nx, ny = len(x_bins), len(y_bins)
    shares = {}
    for side in ("baseline", "current"):
        counts = [float(c or 0.0) for c in view[side]]
        total = sum(counts) or 1.0
        shares[side] = [c / total for c in counts]
    top = max(*shares["baseline"], *shares["current"], 0.0) or 1.0
    y_shown = [_short(label, 16) for label in y_bins]
    left = min(120.0, max((text_width(s) for s in y_shown), default=20.0) + 10)
    panels = []
    for side in ("baseline", "current"):
        svg = Svg(max(PANEL_WIDTH, left + CELL_W * nx + 14), TOP + CELL_H * ny + BOTTOM + 16,
                  label=f"{side} share of rows by {view['x']} and {view['y']}: {title}")
        svg.text(0, 13, f"{side.capitalize()}: {_short(title, 48)}", css_class="title")
        svg.text(0, 28, f"rows: {_short(str(view['y']), 24)}; columns: "
                        f"{_short(str(view['x']), 24)}", css_class="muted")
        for j, label in enumerate(y_shown):
            svg.text(left - 6, TOP + CELL_H * j + 13, label, css_class="tick", anchor="end",
                     title=f"{view['y']} {y_bins[j]}")
        for i, label in enumerate(x_bins):
            x = left + CELL_W * i
            for j in range(ny):
                cell = i * ny + j
                level = min(HEAT_LEVELS, math.ceil(HEAT_LEVELS * shares[side][cell] / top))
                svg.rect(x, TOP + CELL_H * j, CELL_W - 1, CELL_H - 1, f"heat-{level}",
                         title=f"{view['x']} {label}, {view['y']} {y_bins[j]}: baseline "
                               f"{fmt_share(shares['baseline'][cell])}, current "
                               f"{fmt_share(shares['current'][cell])}")
            svg.text(x + CELL_W / 2, TOP + CELL_H * ny + 14, _column_label(label),
                     css_class="tick", anchor="middle", title=f"{view['x']} {label}")
        panels.append(svg.render())
    return panels
