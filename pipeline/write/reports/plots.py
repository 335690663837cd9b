"""Drift plots, drawn with matplotlib and returned as small inline SVG.

One figure per alerting feature: baseline vs current share per bin, each bin's contribution
to the alert metric, and the metric across windows (and across runs) against its thresholds.
One figure for model outputs: baseline vs current mean predicted probability per class.
Text stays text (``svg.fonttype="none"``) so the SVG is small and uses the page's font.
"""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter

from pipeline.write.reports.summary import STATUS_COLORS, compact_time_labels

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

BASELINE_COLOR = "#94a3b8"
CURRENT_COLOR = "#2563eb"
INK = "#1f2937"
MUTED = "#6b7280"
AXIS_COLOR = "#cbd5e1"
WIDTH = 9.2  # inches; the page scales the SVG to its column
MAX_BINS = 25
MAX_LABEL = 28
MAX_PANELS = 12  # segments drawn in the class-means figure

STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "text.parse_math": False,  # data-derived labels may contain "$": never mathtext
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": AXIS_COLOR,
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.major.size": 2,
    "ytick.major.size": 2,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.dpi": 72,
    "savefig.transparent": True,  # no background rectangles: the page colour shows
    "lines.linewidth": 1.5,
}
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)
_TAG = re.compile(r"<[^<>]+>")
_BETWEEN_TAGS = re.compile(r">\s+<")
_WRAPPER_ID = re.compile(r'\s+id="[A-Za-z][\w.]*_\d+"')
_FONT_FAMILY = re.compile(r"font-family:[^;\"]*;?\s*")
_NOOP_ROTATE = re.compile(r'\s+transform="rotate\(-?0 [^"]*\)"')
_DECIMALS = re.compile(r"(\d\.\d)\d+")


def _short(label: str) -> str:
    label = " ".join(label.split())
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def shown_bins(bins: pl.DataFrame, limit: int = MAX_BINS) -> pl.DataFrame:
    """The bins to draw, in display order: all of them, or the ``limit`` largest contributors.

    Parameters
    ----------
    bins : polars.DataFrame
        One row per bin in display order, with a ``contribution`` column.
    limit : int
        Most bins to keep; a histogram of hundreds of categories would be unreadable.
    """
    if bins.height <= limit:
        return bins
    keep = bins.with_row_index("_order").top_k(limit, by=pl.col("contribution").abs())
    return keep.sort("_order").drop("_order")


def _legend_above(ax: Axes) -> None:
    # Right-aligned on the title's line, so it never covers data.
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=3, borderaxespad=0.2,
              handlelength=1.4, columnspacing=1)


def _draw_bins(hist: Axes, contrib: Axes, bins: pl.DataFrame, metric: str, n_total: int) -> None:
    y = np.arange(bins.height)
    edges = np.arange(bins.height + 1) - 0.5
    # Step outlines are one SVG path per series: small, and the overlay stays legible.
    hist.stairs(bins["baseline_share"].to_numpy(), edges, orientation="horizontal", fill=True,
                color=BASELINE_COLOR, alpha=0.6, label="baseline")
    hist.stairs(bins["current_share"].to_numpy(), edges, orientation="horizontal",
                color=CURRENT_COLOR, linewidth=1.6, label="current")
    hist.set_yticks(y, [_short(b) for b in bins["bin"].to_list()])
    hist.set_ylim(bins.height - 0.5, -0.5)
    hist.set_xlim(left=0)
    hist.xaxis.set_major_locator(MaxNLocator(5))
    hist.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    hist.set_title("Share of rows per bin" + (f" (top {bins.height} of {n_total})"
                                              if n_total > bins.height else ""))
    _legend_above(hist)
    # eps = 0 can make a contribution infinite: draw no bar rather than break the axis.
    values = bins["contribution"].to_numpy().astype(float)
    values[~np.isfinite(values)] = np.nan
    contrib.barh(y, values, height=0.7,
                 color=np.where(values >= 0, STATUS_COLORS["critical"], CURRENT_COLOR))
    contrib.axvline(0, color=AXIS_COLOR, linewidth=0.8)
    contrib.set_ylim(bins.height - 0.5, -0.5)
    contrib.yaxis.set_major_locator(NullLocator())  # bins are labelled once, on the left
    contrib.xaxis.set_major_locator(MaxNLocator(5))
    contrib.set_title(f"Contribution to {metric}")


def _draw_series(ax: Axes, series: pl.DataFrame, title: str, *, width: float,
                 legend: bool) -> None:
    x = np.arange(series.height)
    value = series["value"].to_numpy()
    for status in ("critical", "warn"):
        ax.plot(x, series[f"{status}_threshold"].to_numpy(), color=STATUS_COLORS[status],
                linestyle="--", linewidth=1, drawstyle="steps-mid", label=status)
    ax.plot(x, value, color=INK, marker="o", markersize=2.5, linewidth=1.2, label="value")
    for status in ("critical", "warn"):
        hit = (series["status"] == status).to_numpy()
        ax.scatter(x[hit], value[hit], s=20, zorder=3, color=STATUS_COLORS[status])
    labels = [_short(label) for label in compact_time_labels(series["label"].to_list())]
    label_width = 0.3 + 0.062 * max(len(label) for label in labels)  # inches, 8.5 pt text
    ticks = np.arange(0, series.height, math.ceil(series.height / max(1, width // label_width)))
    ax.set_xticks(ticks, [labels[i] for i in ticks])
    ax.set_xlim(-0.5, series.height - 0.5)
    ax.margins(y=0.12)  # room above the highest marker
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    if legend:
        _legend_above(ax)


def feature_figure(
    bins: pl.DataFrame,
    *,
    metric: str,
    windows: pl.DataFrame | None = None,
    runs: pl.DataFrame | None = None,
) -> Figure:
    """Build the figure for one feature (call inside ``matplotlib.rc_context(STYLE)``).

    Parameters
    ----------
    bins : polars.DataFrame
        The ``bins`` of the window shown, in display order: ``bin``, ``baseline_share``,
        ``current_share``, ``contribution``.
    metric : str
        Alert metric name, for titles.
    windows, runs : polars.DataFrame, optional
        The metric across windows of this run / across runs: ``label``, ``value``,
        ``status``, ``warn_threshold``, ``critical_threshold`` in time order. Each is drawn
        only when it has more than one point.

    Returns
    -------
    matplotlib.figure.Figure
    """
    series = [(s, title) for s, title in ((windows, "Across windows"),
                                          (runs, "Across runs (worst window)"))
              if s is not None and s.height > 1]
    shown = shown_bins(bins)
    # Fixed margins in inches instead of a layout engine: several times faster to draw.
    label_width = 0.2 + 0.062 * max((len(_short(b)) for b in shown["bin"].to_list()), default=1)
    bins_height = 0.65 + 0.2 * max(shown.height, 3)
    series_height = 1.9 if series else 0.0
    height = bins_height + series_height + 0.1
    fig = Figure(figsize=(WIDTH, height))

    def axes(left: float, bottom: float, width: float, top_pad: float, box: float) -> Axes:
        return fig.add_axes((left / WIDTH, (bottom + 0.3) / height, width / WIDTH,
                             (box - 0.3 - top_pad) / height))

    panel = (WIDTH - label_width - 0.5) / 2
    hist = axes(label_width, series_height, panel, 0.35, bins_height)
    contrib = axes(label_width + panel + 0.3, series_height, panel, 0.35, bins_height)
    _draw_bins(hist, contrib, shown, metric, bins.height)
    width = (WIDTH - 0.9 - 0.5 * (len(series) - 1)) / max(len(series), 1)
    for i, (s, title) in enumerate(series):
        ax = axes(0.7 + i * (width + 0.5), 0.0, width, 0.4, series_height)
        ax.set_ylabel(metric)
        _draw_series(ax, s, title, width=width, legend=i == 0)
    return fig


def _compact_tag(match: re.Match[str]) -> str:
    tag = _WRAPPER_ID.sub("", match.group(0))
    tag = _FONT_FAMILY.sub("", _NOOP_ROTATE.sub("", tag))
    return _DECIMALS.sub(r"\1", " ".join(tag.split()))


def figure_svg(fig: Figure, *, salt: str) -> str:
    """Serialise ``fig`` as a compact inline ``<svg>`` element.

    Drops the XML prologue, metadata, unreferenced group ids (which would repeat across the
    page's SVGs) and the font list (the page's font applies), rounds coordinates to 0.1 pt
    and removes indentation. Text content is left untouched. ``salt`` makes the remaining
    internal ids unique per figure and the output deterministic.
    """
    buffer = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": salt, "svg.id": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _METADATA.sub("", _XML_PROLOGUE.sub("", buffer.getvalue(), count=1))
    return _BETWEEN_TAGS.sub("><", _TAG.sub(_compact_tag, svg)).strip()


def feature_svg(
    bins: pl.DataFrame,
    *,
    metric: str,
    salt: str,
    windows: pl.DataFrame | None = None,
    runs: pl.DataFrame | None = None,
) -> str:
    """`feature_figure` rendered by `figure_svg` with the report's style."""
    with mpl.rc_context(STYLE):
        return figure_svg(feature_figure(bins, metric=metric, windows=windows, runs=runs),
                          salt=salt)


def class_means_figure(means: pl.DataFrame) -> Figure:
    """Baseline vs current mean predicted probability per class, one panel per segment.

    Parameters
    ----------
    means : polars.DataFrame
        ``segment``, ``class``, ``baseline_mean``, ``current_mean`` (classes in model
        order); the first `MAX_PANELS` segments are drawn, on one shared axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    segments = means["segment"].unique(maintain_order=True).head(MAX_PANELS).to_list()
    classes = means["class"].unique(maintain_order=True).to_list()
    columns = min(3, len(segments))
    rows = math.ceil(len(segments) / columns)
    label_width = 0.2 + 0.062 * max(len(_short(c)) for c in classes)
    panel_width = (WIDTH - 0.2) / columns - label_width - 0.15
    panel_height = 0.75 + 0.3 * len(classes)
    height = rows * panel_height + 0.35  # + the legend's row
    fig = Figure(figsize=(WIDTH, height))
    top = float(means.select(pl.max_horizontal("baseline_mean", "current_mean").max()).item())
    y = np.arange(len(classes))
    for i, segment in enumerate(segments):
        row, column = divmod(i, columns)
        left = column * (panel_width + label_width + 0.15) + label_width
        bottom = height - 0.25 - (row + 1) * panel_height + 0.3
        ax = fig.add_axes((left / WIDTH, bottom / height, panel_width / WIDTH,
                           (panel_height - 0.7) / height))
        panel = means.filter(pl.col("segment") == segment)
        ax.barh(y - 0.2, panel["baseline_mean"].to_numpy(), height=0.4,
                color=BASELINE_COLOR, label="baseline")
        ax.barh(y + 0.2, panel["current_mean"].to_numpy(), height=0.4, color=CURRENT_COLOR,
                label="current")
        ax.set_yticks(y, [_short(c) for c in panel["class"].to_list()])
        ax.set_ylim(len(classes) - 0.5, -0.5)
        ax.set_xlim(0, top * 1.05 if top > 0 else 1)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_title("All examples" if segment == "all" else _short(segment))
    # One legend for every panel, on its own row: panel titles can be long.
    fig.legend(*ax.get_legend_handles_labels(), loc="upper right", ncols=2,
               bbox_to_anchor=(1 - 0.15 / WIDTH, 1), handlelength=1.4, columnspacing=1)
    return fig


def class_means_svg(means: pl.DataFrame, *, salt: str) -> str:
    """`class_means_figure` rendered by `figure_svg` with the report's style."""
    with mpl.rc_context(STYLE):
        return figure_svg(class_means_figure(means), salt=salt)
