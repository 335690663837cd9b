"""Compiled report templates kept between runs: Jinja2's bytecode cache in the user's cache.

Compiling ``report.html.j2`` to Python takes 0.1-0.2 s, a sixth of a small ``kl-drift
run``; loading the compiled code takes a millisecond. It is kept in
``$XDG_CACHE_HOME/kl-drift/templates`` (default ``~/.cache/kl-drift/templates``), one file
per template, written atomically by Jinja2 and used only while it matches the template's
source, Jinja2's bytecode version and the Python version (else it is compiled again and
replaced). The folder is the user's own, like Python's ``__pycache__``: whoever can write
there can already run code as the user. A cache that cannot be written or read only costs
the compile; the first run after an install or a template change pays it once.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket

#: Base folder of per-user caches (XDG); ``~/.cache`` when unset.
CACHE_HOME_ENV = "XDG_CACHE_HOME"


def cache_folder() -> Path | None:
    """Where compiled templates are kept; None when there is no home folder to put it in.

    >>> folder = cache_folder()
    >>> folder is None or folder.parts[-2:] == ("kl-drift", "templates")
    True
    """
    base = os.environ.get(CACHE_HOME_ENV)
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home folder (e.g. a service account without one)
            return None
    return Path(base) / "kl-drift" / "templates"


class TemplateCache(FileSystemBytecodeCache):
    """:class:`jinja2.FileSystemBytecodeCache` that creates its folder (private to the
    user) and treats a cache it cannot read or write as empty."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):  # damaged: compile
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:  # read-only or full disk: the next run compiles again
            pass


def template_cache() -> TemplateCache | None:
    """The bytecode cache for the report templates (None: compile in every process)."""
    folder = cache_folder()
    return None if folder is None else TemplateCache(str(folder), "%s.jinja")
