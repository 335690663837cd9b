"""The bin layout: which bins a feature has, how they are labelled and in which order.

Numeric features have contiguous bins ``[lower, upper)`` from ``-inf`` to ``+inf`` labelled by
:func:`bin_label`; categorical features one bin per kept category, then ``__other__``; both
end with ``__missing__``. The profile stores the layout (with counts), binning reads it to
bin raw rows, and alignment orders bins the same way for display.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from pipeline.labels import MISSING, OTHER

# A number as bin_label writes it, or as other tools do ("0.10", "1e-1", "+inf", "Infinity").
_NUMBER = r"[+-]?(?:inf(?:inity)?|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)"
_INTERVAL = re.compile(rf"(?i)^\s*([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])\s*$")

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


def label_edges(labels: pl.Series) -> pl.DataFrame:
    """The exact edges of the bins that interval labels denote: the inverse of
    :func:`bin_label`.

    ``[a, b)`` holds ``a <= x < b``; a parenthesis at the left or a bracket at the right
    moves that edge to the next float (``(a, …`` = ``[nextafter(a), …``, ``…, b]`` =
    ``…, nextafter(b))``), so every form :func:`bin_label` writes reads back to exactly its
    edges, and ``(a, b]`` (the bins of other tools) is a different bin from ``[a, b)``.
    Numbers may be spelled any way Python reads them (``0.10``, ``1e-1``, ``Infinity``).

    Parameters
    ----------
    labels : polars Series of str

    Returns
    -------
    polars.DataFrame
        ``bin`` (the labels), ``lower``, ``upper`` (Float64): null for a label that is not
        an interval, or whose lower edge lies above its upper edge.

    Examples
    --------
    >>> label_edges(pl.Series(["[0.10, 0.3)", "[3, 3]", "carrier"])).rows()
    [('[0.10, 0.3)', 0.1, 0.3), ('[3, 3]', 3.0, 3.0000000000000004), ('carrier', None, None)]
    """
    parts = labels.cast(pl.String).str.extract_groups(_INTERVAL.pattern).struct
    lower, upper = (parts.field(i).cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
                    for i in ("2", "3"))
    with np.errstate(invalid="ignore"):
        lower = np.where((parts.field("1") == "(").fill_null(False).to_numpy() & np.isfinite(lower),
                         np.nextafter(lower, np.inf), lower)
        upper = np.where((parts.field("4") == "]").fill_null(False).to_numpy() & np.isfinite(upper),
                         np.nextafter(upper, np.inf), upper)
        interval = lower <= upper  # False for NaN (not an interval)
    return pl.DataFrame({"bin": labels.cast(pl.String),
                         "lower": np.where(interval, lower, np.nan),
                         "upper": np.where(interval, upper, np.nan)},
                        schema={"bin": pl.String, "lower": pl.Float64, "upper": pl.Float64},
                        nan_to_null=True)


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
        labels = [*(categories or []), OTHER, MISSING]
        lower = upper = [None] * len(labels)
    n = len(labels)  # lists, not broadcast scalars: 3x faster, and profiles have 1000s
    return pl.DataFrame({"feature": [name] * n, "kind": [kind] * n, "bin": labels,
                         "bin_index": list(range(n)), "lower": lower, "upper": upper,
                         "count": [0.0] * n}, schema=PROFILE_SCHEMA)
