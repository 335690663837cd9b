"""A small SVG writer for the report's plots: typed shapes in, one compact ``<svg>`` string out.

Written for speed and safety: every coordinate is rounded to 0.1 px and every piece of text
(labels, tooltips, titles) is XML-escaped here, so callers may pass data-derived strings.
Shapes carry CSS classes rather than colours: the page's stylesheet colours them, so the
plots follow its light and dark schemes.

>>> svg = Svg(100, 40, label="demo")
>>> svg.rect(0, 0, 10, 5, "base")
>>> svg.text(5, 20, "<a & b>", title="full <label>")
>>> svg.render()  # doctest: +NORMALIZE_WHITESPACE
'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 40" width="100" height="40"
 role="img" aria-label="demo"><rect class="base" x="0" y="0" width="10" height="5"/><text
 x="5" y="20">&lt;a &amp; b&gt;<title>full &lt;label&gt;</title></text></svg>'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Literal

Anchor = Literal["start", "middle", "end"]


def num(value: float) -> str:
    """A coordinate with at most one decimal and no trailing ``.0``.

    >>> num(12.0), num(3.14159), num(-0.04)
    ('12', '3.1', '0')
    """
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def _attr(name: str, value: str | None) -> str:
    return "" if value is None else f' {name}="{escape(value)}"'


class Svg:
    """One SVG image, built shape by shape; `render` returns it as a string.

    Parameters
    ----------
    width, height : float
        Size in CSS pixels (also the view box): the page may scale it down, never up.
    label : str
        Accessible name of the image (``aria-label``).
    css_class : str, optional
        Class of the ``<svg>`` element.
    """

    def __init__(self, width: float, height: float, *, label: str,
                 css_class: str | None = None) -> None:
        self.width = width
        self.height = height
        self._head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {num(width)} '
                      f'{num(height)}" width="{num(width)}" height="{num(height)}"'
                      f'{_attr("class", css_class)} role="img"{_attr("aria-label", label)}>')
        self._parts: list[str] = []

    def rect(self, x: float, y: float, width: float, height: float, css_class: str, *,
             title: str | None = None) -> None:
        """A rectangle; ``title`` becomes its tooltip."""
        shape = (f'<rect class="{escape(css_class)}" x="{num(x)}" y="{num(y)}" '
                 f'width="{num(max(width, 0.0))}" height="{num(max(height, 0.0))}"')
        self._parts.append(_closed(shape, "rect", title))

    def line(self, x1: float, y1: float, x2: float, y2: float, css_class: str) -> None:
        """A straight line."""
        self._parts.append(f'<line class="{escape(css_class)}" x1="{num(x1)}" y1="{num(y1)}" '
                           f'x2="{num(x2)}" y2="{num(y2)}"/>')

    def path(self, points: Iterable[tuple[float, float]], css_class: str, *,
             close: bool = False) -> None:
        """A polyline through ``points`` (closed into a polygon when ``close``)."""
        coords = " ".join(f"{num(x)} {num(y)}" for x, y in points)
        if coords:
            self._parts.append(f'<path class="{escape(css_class)}" '
                               f'd="M{coords}{" Z" if close else ""}"/>')

    def circle(self, x: float, y: float, r: float, css_class: str, *,
               title: str | None = None) -> None:
        """A dot; ``title`` becomes its tooltip."""
        shape = (f'<circle class="{escape(css_class)}" cx="{num(x)}" cy="{num(y)}" '
                 f'r="{num(r)}"')
        self._parts.append(_closed(shape, "circle", title))

    def text(self, x: float, y: float, content: str, *, css_class: str | None = None,
             anchor: Anchor = "start", title: str | None = None) -> None:
        """Text whose baseline starts (or centres, or ends) at ``(x, y)``."""
        anchor_attr = "" if anchor == "start" else f' text-anchor="{anchor}"'
        tip = "" if title is None else f"<title>{escape(title)}</title>"
        self._parts.append(f'<text{_attr("class", css_class)} x="{num(x)}" y="{num(y)}"'
                           f'{anchor_attr}>{escape(content)}{tip}</text>')

    def legend(self, right: float, y: float, items: Sequence[tuple[str, str]]) -> None:
        """A right-aligned legend on one line: (swatch class, label) pairs."""
        x = right
        for css_class, label in reversed(items):
            x -= text_width(label)
            self.text(x, y + 4, label, css_class="muted")
            x -= 16
            self.rect(x, y - 1.5, 12, 5, css_class)
            x -= 12

    def render(self) -> str:
        """The ``<svg>`` element as a string."""
        return self._head + "".join(self._parts) + "</svg>"


def _closed(shape: str, tag: str, title: str | None) -> str:
    return shape + ("/>" if title is None else f"><title>{escape(title)}</title></{tag}>")


def text_width(text: str, size: float = 11.0) -> float:
    """Estimated width of ``text`` in the page's sans-serif font at ``size`` px.

    Used for layout only (label columns, legend, tick spacing); generous, so text fits.

    >>> round(text_width("abc"), 1)
    19.8
    """
    return 0.6 * size * len(text)
