"""Errors raised for bad user input: one line, naming the file/feature/column and the fix."""

from __future__ import annotations


class KLDriftError(Exception):
    """Base class of every error kl-drift raises on purpose."""


class InputError(KLDriftError, ValueError):
    """Malformed data file, column or value. The CLI prints it as one line and exits 2.

    Parameters
    ----------
    message : str
        What is wrong and what to fix.
    source : str, optional
        The file, glob or folder the problem was found in.
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
        where = [f"{label} {value!r}" for label, value in
                 (("file", source), ("feature", feature), ("column", column)) if value is not None]
        text = " ".join(message.split())  # always one line
        super().__init__(f"{', '.join(where)}: {text}" if where else text)


class ConfigError(KLDriftError, ValueError):
    """Invalid configuration: names the key and the accepted values. CLI exit status 2."""


class OutputError(KLDriftError):
    """An output location that cannot be written (not a folder, read-only, disk full).

    Names the path and the OS reason in one line; CLI exit status 2. ``errno`` is the OS
    error code.
    """

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
