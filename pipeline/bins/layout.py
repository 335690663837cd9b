"""The bin layout: which bins a feature has, how they are labelled and in which order.

Numeric features have contiguous bins ``[lower, upper)`` from ``-inf`` to ``+inf`` labelled by
:func:`bin_label`; categorical features one bin per kept category, then ``__other__``; both
end with ``__missing__``. The profile stores the layout (with counts), binning reads it to
bin raw rows, and alignment orders bins the same way for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from pipeline.labels import MISSING, OTHER

#: Columns of a profile table (segment columns, Utf8, come before them).
PROFILE_SCHEMA = {
    "feature": pl.String, "kind": pl.String, "bin": pl.String, "bin_index": pl.Int32,
    "lower": pl.Float64, "upper": pl.Float64, "count": pl.Float64,
}


class HasLayout(Protocol):
    """Anything that carries a bin layout table (a baseline profile)."""

    @property
    def layout(self) -> pl.DataFrame:
        """One row per feature bin: ``feature``, ``kind``, ``bin``, ``bin_index``, ``lower``,
        ``upper``."""
        ...


def display_rank(bin_label: pl.Expr) -> pl.Expr:
    """Sort key putting ordinary bins first, then ``__other__``, then ``__missing__``."""
    return bin_label.replace_strict({OTHER: 1, MISSING: 2}, default=0, return_dtype=pl.Int8)


def format_edge(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (``"5"``, ``"0.1"``, ``"inf"``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def bin_label(lower: float, upper: float) -> str:
    """Label of the numeric bin holding ``lower <= x < upper``.

    Written ``"[lower, upper)"`` with the shortest round-trippable numbers and ``-inf``/
    ``inf`` for open tails. When a bound is the float right after a shorter number ``c``
    (the edges of a point-mass bin), the equivalent closed/open form is used instead:
    ``[c, nextafter(c))`` is written ``"[c, c]"`` and ``[nextafter(c), u)`` is ``"(c, u)"``.
    Every form denotes exactly the same set of floats.

    >>> bin_label(-math.inf, 0.5)
    '[-inf, 0.5)'
    >>> bin_label(3.0, math.nextafter(3.0, math.inf))
    '[3, 3]'
    """
    left, right = "[" + format_edge(lower), format_edge(upper) + ")"
    if math.isfinite(lower):
        before = format_edge(math.nextafter(lower, -math.inf))
        if len(before) < len(left) - 1:
            left = "(" + before
    if math.isfinite(upper):
        before = format_edge(math.nextafter(upper, -math.inf))
        if len(before) < len(right) - 1:
            right = before + "]"
    return f"{left}, {right}"


@dataclass(frozen=True)
class FeatureBins:
    """How one profile feature is binned: bins ``0..n_bins-1`` in profile ``bin_index`` order."""

    name: str
    kind: str
    n_bins: int
    edges: np.ndarray  # numeric: interior edges (the finite lower bounds), ascending
    categories: list[str]  # categorical: labels of bins 0..len-1; then __other__, __missing__


def feature_bins(table: pl.DataFrame) -> list[FeatureBins]:
    """Binning specs from the profile layout (one row per bin, ordered by ``bin_index``)."""
    # a stable sort keeps the features in profile order
    grouped = (table.sort("bin_index", maintain_order=True)
               .group_by("feature", maintain_order=True)
               .agg(pl.col("kind").first(), pl.len().alias("n_bins"),
                    pl.col("lower").filter(pl.col("lower").is_finite()).alias("edges"),
                    pl.col("bin").filter(~pl.col("bin").is_in([OTHER, MISSING]))
                    .alias("categories")))
    return [FeatureBins(row["feature"], row["kind"], row["n_bins"],
                     np.asarray(row["edges"], dtype=np.float64), row["categories"])
            for row in grouped.iter_rows(named=True)]


def bins_table(name: str, kind: str, edges: np.ndarray | None,
                categories: list[str] | None) -> pl.DataFrame:
    """The bins of one feature, with count 0 (filled by binning the baseline)."""
    if kind == "numeric":
        bounds = np.concatenate([[-np.inf], edges, [np.inf]])
        lower, upper = bounds[:-1].tolist(), bounds[1:].tolist()
        labels = [bin_label(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
        labels, lower, upper = [*labels, MISSING], [*lower, None], [*upper, None]
    else:
        assert categories is not None  # callers pass the categories of a categorical feature
        labels = [*categories, OTHER, MISSING]
        lower = upper = [None] * len(labels)
    return pl.DataFrame({"feature": name, "kind": kind, "bin": labels,
                         "bin_index": range(len(labels)), "lower": lower, "upper": upper,
                         "count": 0.0}, schema=PROFILE_SCHEMA)
