"""Compiled report templates kept between runs: Jinja2's bytecode cache in the user's cache.

Compiling ``report.html.j2`` to Python takes 0.1-0.2 s, a sixth of a small ``kl-drift
run``; loading the compiled code takes a millisecond. It is kept in
``$XDG_CACHE_HOME/kl-drift/templates`` (default ``~/.cache/kl-drift/templates``), one file
per template, written atomically by Jinja2 and used only while it matches the template's
source, Jinja2's bytecode version and the Python version (else it is compiled again and
replaced). The folder is the user's own (mode 0700), like Python's ``__pycache__``: whoever
can write there can already run code as the user; a folder that others can write to (or
that belongs to someone else) is not used. A cache that cannot be written or read only
costs the compile; the first run after an install or a template change pays it once.
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


def _private(folder: str) -> bool:
    """Whether only the user can put files in ``folder`` (or it does not exist yet): cached
    code from a folder others can write to is never loaded."""
    try:
        status = os.stat(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not hasattr(os, "getuid"):  # Windows: the user's own profile folder
        return True
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


class TemplateCache(FileSystemBytecodeCache):
    """:class:`jinja2.FileSystemBytecodeCache` that creates its folder (private to the
    user), ignores a folder others can write to, and treats a cache it cannot read or
    write as empty."""

    def load_bytecode(self, bucket: Bucket) -> None:
        if not _private(self.directory):
            return
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):  # damaged: compile
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if _private(self.directory):
                super().dump_bytecode(bucket)
        except OSError:  # read-only or full disk: the next run compiles again
            pass


def template_cache() -> TemplateCache | None:
    """The bytecode cache for the report templates (None: compile in every process)."""
    folder = cache_folder()
    return None if folder is None else TemplateCache(str(folder), "%s.jinja")
