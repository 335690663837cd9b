"""Errors raised for bad user input: one line, naming the file/feature/column and the fix."""

from __future__ import annotations

import re

# "s3://...", "postgresql://...", "delta:...", "csv:...": a source that is not a local path
_NOT_A_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\\)")


class KLDriftError(Exception):
    """Base class of every error kl-drift raises on purpose."""


class InputError(KLDriftError, ValueError):
    """Malformed data file, column or value. The CLI prints it as one line and exits 2.

    Parameters
    ----------
    message : str
        What is wrong and what to fix.
    source : str, optional
        The file, glob or folder the problem was found in (shown as ``file '...'``), or a
        URL, database or format-prefixed source (shown as ``source '...'``).
    feature, column : str, optional
        The feature or column concerned.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        feature: str | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.feature = feature
        self.column = column
        kind = "source" if source is not None and _NOT_A_PATH.match(source) else "file"
        where = [f"{label} {value!r}" for label, value in
                 ((kind, source), ("feature", feature), ("column", column)) if value is not None]
        text = " ".join(message.split())  # always one line
        super().__init__(f"{', '.join(where)}: {text}" if where else text)


class ConfigError(KLDriftError, ValueError):
    """Invalid configuration: names the key and the accepted values. CLI exit status 2."""


class KLDriftWarning(UserWarning):
    """A problem kl-drift worked around, e.g. an unreadable history partition it skipped.

    One line naming what was skipped; the CLI prints it as ``kl-drift: warning: ...``.
    """


class OutputError(KLDriftError):
    """An output location that cannot be written (not a folder, read-only, disk full).

    Names the path and the OS reason in one line; CLI exit status 2. ``errno`` is the OS
    error code.
    """

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
