"""A hostile string in a report stays text: checks on report.html and on report.md rendered
by an independent Markdown renderer (markdown-it, CommonMark with tables and raw HTML on, as
a chat or wiki might render it)."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

from tests.report_data import ParsedPage

_STATIC_SCRIPT = (Path(__file__).parents[2]
                  / "pipeline/write/reports/templates/report.js").read_text()
# Elements a payload could create; the reports themselves use none of them.
_FOREIGN = {"img", "iframe", "object", "embed", "b", "i", "form", "base", "frame", "video",
            "audio"}
_OWN_URLS = {"data:,"}  # the page's empty favicon: no request


def _flat(text: str) -> str:
    return " ".join(text.split())


def _assert_inert(page: ParsedPage, payload: str, *, own_scripts: list[str]) -> None:
    tags = [tag for tag, _ in page.tags]
    assert page.scripts == own_scripts, page.scripts  # nothing data-derived runs
    assert not _FOREIGN & set(tags), _FOREIGN & set(tags)
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in ("href", "src", "xlink:href", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert value in _OWN_URLS or not value.startswith(
                ("javascript:", "data:", "http:", "https:")), (tag, attrs)
    # shown, and shown as the user wrote it (whitespace aside)
    assert _flat(payload) in _flat("".join(page.text)), payload


def assert_html_inert(html: str, payload: str) -> None:
    """report.html shows ``payload`` as text and gained no element, attribute or script."""
    page = ParsedPage(html)
    _assert_inert(page, payload, own_scripts=[_STATIC_SCRIPT])


def assert_markdown_inert(markdown: str, payload: str) -> None:
    """report.md, rendered, shows ``payload`` as text: no link, image, HTML, emphasis,
    heading or table row comes from it."""
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").enable(
        "strikethrough").render(markdown)
    page = ParsedPage(rendered)
    _assert_inert(page, payload, own_scripts=[])
    hrefs = [a.get("href") or "" for tag, a in page.tags if tag == "a"]
    assert not [h for h in hrefs if "alert" in h or "evil" in h], hrefs
    for tag in ("code", "strong", "em", "s", "del"):
        assert not re.search(rf"<{tag}>(code|bold|it|s)</{tag}>", rendered), tag
    assert not re.search(r"<h\d>\s*heading", rendered)
