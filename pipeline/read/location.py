"""The source syntax shared by config, CLI and API: one string says where data lives.

``[FORMAT:]LOCATION`` where LOCATION is

- a local file, glob or folder (``data/cur.parquet``, ``data/*.csv``, ``data/features/``);
- an object-store URL of a file, glob or folder (``s3://``, ``gs://``, ``az://``,
  ``abfss://``, ``https://``; ``file://`` too), read by polars itself;
- a Delta Lake table (a folder holding ``_delta_log/``, or ``delta:`` + folder or URL) or
  an Iceberg table (``iceberg:`` + the table's ``metadata.json``, or a path ending in
  ``.metadata.json``);
- a database: a SQLAlchemy URL (``duckdb:///wh.duckdb``, ``postgresql+psycopg://u@h/db``)
  followed by ``#`` and a table (``#features``, ``#analytics.features``) or one SELECT query
  (``#SELECT * FROM features WHERE region = 'EU'``).

FORMAT (``parquet``, ``csv``, ``ndjson``, ``delta``, ``iceberg``) overrides the format the
extension gives (``.parquet``/``.pq``, ``.csv``, ``.ndjson``/``.jsonl``; anything else is
read as Parquet). A path that exists as written is always taken literally, so
``cur[1].parquet`` is a file, not a glob.

Credentials never go in the string: they come from the standard environment and config
chains (``AWS_*``, ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_*``, ``PGPASSFILE``
...) or from ``storage_options``. A password or token written in a URL anyway is masked by
:func:`redact` wherever a source is shown (messages, progress, alerts.json).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import InputError

Format = Literal["parquet", "csv", "ndjson", "delta", "iceberg", "sql"]
#: Formats a ``FORMAT:`` prefix may name.
FORMATS: tuple[Format, ...] = ("parquet", "csv", "ndjson", "delta", "iceberg")
#: URL schemes polars reads files from (object stores, HTTP, local files).
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss",
                                  "adl", "http", "https", "file", "hf"})
_FORMAT_NAMES: dict[str, Format] = {name: name for name in FORMATS}
_EXTENSIONS: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
                                  ".ndjson": "ndjson", ".jsonl": "ndjson"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PREFIX = re.compile(r"^(" + "|".join(FORMATS) + r"):(?!//)")
_TABLE = re.compile(r"^[\w$]+(?:\.[\w$]+)*$")  # name or schema.name; anything else: a query
_SECRET_QUERY = re.compile(r"([?&][^=&#]*(?:sig|signature|token|key|secret|password|"
                           r"credential)[^=&#]*=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True)
class Location:
    """A parsed source string.

    Attributes
    ----------
    text : str
        The source as given (may hold a password: show :attr:`shown` instead).
    format : str
        ``parquet``, ``csv``, ``ndjson``, ``delta``, ``iceberg`` or ``sql``.
    path : str
        File, glob, folder, URL or table root; for ``sql`` the connection URL.
    remote : bool
        An object-store or HTTP URL (polars lists and reads it; no local checks).
    table, query : str or None
        For ``sql``: the table (``schema.table`` allowed) or the SELECT query.
    """

    text: str
    format: Format
    path: str
    remote: bool = False
    table: str | None = None
    query: str | None = None

    @property
    def shown(self) -> str:
        """The source for messages and outputs, secrets masked."""
        return redact(self.text)

    @property
    def is_files(self) -> bool:
        """Parquet, CSV or NDJSON files (a file, glob, folder or URL of them)."""
        return self.format in ("parquet", "csv", "ndjson")


def redact(text: str) -> str:
    """``text`` with URL passwords and secret-looking query values masked as ``***``.

    >>> redact("postgresql://monitor:s3cret@db:5432/ml#features")
    'postgresql://monitor:***@db:5432/ml#features'
    >>> redact("https://host/f.parquet?X-Amz-Signature=abc&x=1")
    'https://host/f.parquet?X-Amz-Signature=***&x=1'
    """
    match = _SCHEME.match(text)
    if not match:
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
    shown = urlunsplit(parts._replace(netloc=netloc)) if netloc != parts.netloc else text
    return _SECRET_QUERY.sub(r"\1***", shown)


def _file_format(path: str) -> Format:
    name = path.rstrip("/").lower()
    if name.endswith(".metadata.json"):
        return "iceberg"
    for extension, fmt in _EXTENSIONS.items():
        if name.endswith(extension):
            return fmt
    return "parquet"


def parse_location(source: str | os.PathLike[str]) -> Location:
    """Parse a source string (see the module docstring).

    Raises
    ------
    InputError
        An empty source, or a database URL without ``#table`` or ``#SELECT ...``.

    Examples
    --------
    >>> parse_location("s3://bucket/features/*.csv").format
    'csv'
    >>> parse_location("duckdb:///wh.duckdb#features").table
    'features'
    >>> parse_location("delta:s3://bucket/tables/features").format
    'delta'
    """
    text = os.fspath(source)
    if not text.strip():
        raise InputError("empty source; give a path, a URL or a database URL#table")
    if os.path.lexists(text):
        if os.path.isdir(text) and os.path.isdir(os.path.join(text, "_delta_log")):
            return Location(text, "delta", text)
        return Location(text, _file_format(text), text)
    prefix = _PREFIX.match(text)
    rest = text[prefix.end():] if prefix else text
    forced = _FORMAT_NAMES[prefix.group(1)] if prefix else None
    scheme = _SCHEME.match(rest)
    if scheme and scheme.group(1).lower() not in OBJECT_STORE_SCHEMES and forced is None:
        return _sql_location(text)
    remote = scheme is not None and scheme.group(1).lower() != "file"
    return Location(text, forced or _file_format(rest), rest, remote=remote)


def _sql_location(text: str) -> Location:
    uri, hash_sign, target = text.partition("#")
    target = target.strip()
    shown = redact(uri)
    if not hash_sign or not target:
        raise InputError("a database source needs a table or a query after '#', e.g. "
                         f"'{shown}#features' or '{shown}#SELECT * FROM features'",
                         source=shown)
    if _TABLE.match(target):
        return Location(text, "sql", uri, table=target)
    return Location(text, "sql", uri, query=target)
