"""Readable numeric bin labels: edges rounded to a few significant digits.

A profile's quantile edges are full-precision floats (``[1.6431714216404367, inf)``), too
long to read or to fit a plot's label column. The reports show each edge with the fewest
significant digits (at least `MIN_DIGITS`) that keep every bin of the feature distinct and
non-empty-looking, and put the exact label in a tooltip; the data keep full precision.
Categorical bins, ``__other__`` and ``__missing__`` are shown as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

MIN_DIGITS = 3
MAX_DIGITS = 17  # enough for any float64


def format_edge(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits; integer digits are never dropped.

    >>> format_edge(1.6431714216404367, 3), format_edge(1643.17, 3), format_edge(-0.5, 3)
    ('1.64', '1643', '-0.5')
    >>> format_edge(math.inf, 3), format_edge(2.5e-7, 3), format_edge(123456789.0, 3)
    ('inf', '2.5e-7', '1.23e8')
    """
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    exact = _compact_exponent(repr(value))  # shortest text that reads back as value
    exponent = math.floor(math.log10(abs(value)))
    if exponent < -4 or exponent >= 6:
        text = _compact_exponent(f"{value:.{digits - 1}e}")
    else:
        text = f"{value:.{max(0, digits - 1 - exponent)}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return exact if len(exact) <= len(text) else text


def _compact_exponent(text: str) -> str:
    """``1.50e+06`` -> ``1.5e6``; text without an exponent is returned as it is."""
    mantissa, marker, power = text.partition("e")
    if not marker:
        return text.removesuffix(".0")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(power)}"


def _rounded(label: str, lower: float, upper: float, digits: int) -> str:
    # Keep the label's own brackets: "[c, c]" and "(c, u)" (point masses) stay recognisable.
    # A closed "]" or open "(" end names the float just below the stored edge (bin_label).
    left = "(" if label[:1] == "(" else "["
    right = "]" if label[-1:] == "]" else ")"
    if left == "(":
        lower = math.nextafter(lower, -math.inf)
    if right == "]":
        upper = math.nextafter(upper, -math.inf)
    return f"{left}{format_edge(lower, digits)}, {format_edge(upper, digits)}{right}"


@lru_cache(maxsize=4096)
def _short_labels(bins: tuple[tuple[str, float | None, float | None], ...]) -> tuple[str, ...]:
    numeric = [i for i, (_, lo, hi) in enumerate(bins)
               if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi))]
    if not numeric:
        return tuple(label for label, _, _ in bins)
    for digits in range(MIN_DIGITS, MAX_DIGITS + 1):
        shown = {i: _rounded(bins[i][0], bins[i][1], bins[i][2], digits)  # type: ignore[arg-type]
                 for i in numeric}
        # Distinct labels, and no half-open bin that reads as empty ("[1.2, 1.2)").
        collapsed = any(text.startswith("[") and text.endswith(")")
                        and text[1:-1].split(", ")[0] == text[1:-1].split(", ")[1]
                        for text in shown.values())
        if len(set(shown.values())) == len(shown) and not collapsed:
            return tuple(shown.get(i, label) for i, (label, _, _) in enumerate(bins))
    return tuple(label for label, _, _ in bins)


def short_labels(labels: Sequence[str], lower: Sequence[float | None],
                 upper: Sequence[float | None]) -> list[str]:
    """Display labels of one feature's bins (same order as ``labels``).

    Parameters
    ----------
    labels : sequence of str
        The bins' labels as in the drift table.
    lower, upper : sequence of float or None
        Their edges; ``None``/NaN for categorical, ``__other__`` and ``__missing__`` bins.

    Examples
    --------
    >>> short_labels(["[-inf, 1.6431714216404367)", "[1.6431714216404367, inf)", "__missing__"],
    ...              [-math.inf, 1.6431714216404367, None], [1.6431714216404367, math.inf, None])
    ['[-inf, 1.64)', '[1.64, inf)', '__missing__']
    >>> short_labels(["[1.001, 1.002)", "[1.002, 1.003)"], [1.001, 1.002], [1.002, 1.003])
    ['[1.001, 1.002)', '[1.002, 1.003)']
    """
    return list(_short_labels(tuple(zip(labels, lower, upper, strict=True))))


def label_map(bins: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """Full label -> display label for one window's ``bins`` list (drift table structs)."""
    if not bins:
        return {}
    labels = [b["bin"] for b in bins]
    return dict(zip(labels, short_labels(labels, [b.get("lower") for b in bins],
                                         [b.get("upper") for b in bins]), strict=True))
