"""Database sources: a SQLAlchemy URL plus a table or one SELECT query.

Connections and SQL generation go through SQLAlchemy Core (already a dependency of Prefect;
dialects quote identifiers, values travel as bound parameters, never spliced into SQL text).
A query is checked with sqlglot to be exactly one read-only SELECT before anything runs, and
it runs in a read-only transaction where the database has one (PostgreSQL) or on a
read-only connection (DuckDB files). Errors are one line naming the source with its
password masked: unreachable server, denied login, missing table or column, a query that is
not a SELECT.

Needs the ``[sql]`` extra (``pip install 'kl-drift[sql]'``: SQLAlchemy, sqlglot, duckdb and
its SQLAlchemy driver, psycopg for PostgreSQL).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

from pipeline.errors import InputError
from pipeline.read.location import Location, redact

_CONNECT_TIMEOUT = 10  # seconds to wait for a server before saying it is unreachable
_DENIED = re.compile(r"authentication failed|password|permission denied|access denied|"
                     r"not authori[sz]ed|role .* does not exist", re.IGNORECASE)
_UNREACHABLE = re.compile(r"connection refused|could not connect|timeout|timed out|"
                          r"could not translate host|name or service not known|"
                          r"connection to server .* failed|no route", re.IGNORECASE)
_MISSING = re.compile(r"does not exist|not found|no such|undefined (?:table|column)|"
                      r"Table with name|Referenced column|binder error", re.IGNORECASE)
# polars types of PostgreSQL type OIDs (pg_type), for empty results; arrays are lists.
_PG_TYPES: dict[Any, pl.DataType] = {
    16: pl.Boolean(), 20: pl.Int64(), 21: pl.Int16(), 23: pl.Int32(), 26: pl.Int64(),
    700: pl.Float32(), 701: pl.Float64(), 1700: pl.Float64(), 25: pl.String(),
    1042: pl.String(), 1043: pl.String(), 19: pl.String(), 1082: pl.Date(),
    1114: pl.Datetime("us"), 1184: pl.Datetime("us", "UTC"), 1083: pl.Time(),
    **dict.fromkeys((1000, 1005, 1007, 1016, 1021, 1022, 1009, 1015, 1231, 1115, 1182,
                     1185), pl.List(pl.Null())),
}
# sqlglot dialect names of SQLAlchemy dialects whose names differ.
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "mssql": "tsql", "sqlite": "sqlite",
                     "duckdb": "duckdb", "mysql": "mysql", "oracle": "oracle"}


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ModuleNotFoundError:
        raise InputError("database sources need the [sql] extra: pip install "
                         "'kl-drift[sql]'") from None
    return sqlalchemy


def sql_error(error: BaseException, location: Location) -> InputError:
    """A one-line InputError for a database error, naming the source (password masked)."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = redact(lines[0]) if lines else type(error).__name__
    source = location.shown
    if _DENIED.search(first):
        return InputError("access denied; check the user and password (from ~/.pgpass, "
                          "PGPASSWORD or the URL) and the grants", source=source)
    if _UNREACHABLE.search(first):
        return InputError(f"cannot reach the database ({first}); check the host, port and "
                          "network", source=source)
    if _MISSING.search(first):
        return InputError(f"table or column not found: {first}", source=source)
    return InputError(f"database error: {first}", source=source)


def check_select(query: str, dialect: str, location: Location) -> None:
    """Raise InputError unless ``query`` is exactly one read-only SELECT statement.

    >>> from pipeline.read.location import parse_location
    >>> check_select("DELETE FROM t", "duckdb", parse_location("duckdb:///x.db#t"))
    Traceback (most recent call last):
    ...
    pipeline.errors.InputError: source 'duckdb:///x.db#t': the query must be one SELECT ...
    """
    import sqlglot
    from sqlglot import exp

    problem = None
    try:
        statements = [s for s in sqlglot.parse(query, read=_SQLGLOT_DIALECTS.get(dialect))
                      if s is not None]
    except sqlglot.errors.SqlglotError as error:
        raise InputError(f"cannot parse the query: {str(error).splitlines()[0]}",
                         source=location.shown) from None
    writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop,
              exp.Alter, exp.Command, exp.Into, exp.Copy)
    if len(statements) != 1:
        problem = f"found {len(statements)} statements"
    elif not isinstance(statements[0], exp.Query):
        problem = f"found {statements[0].key.upper()}"
    elif any(isinstance(node, writes) for node in statements[0].walk()):
        problem = "it writes data"
    if problem:
        raise InputError(f"the query must be one SELECT statement ({problem}); give a "
                         f"table name or a single SELECT after '#'", source=location.shown)


@contextmanager
def open_relation(location: Location) -> Iterator[tuple[Any, Any]]:
    """A connection and the SQLAlchemy selectable of the source's table or query.

    The table may be ``name`` or ``schema.name`` (quoted by the dialect). The connection
    is read-only where the database allows it and is closed on exit.

    Raises
    ------
    InputError
        Unknown driver, unreachable server, denied login, a query that is not one SELECT.
    """
    sa = _sqlalchemy()
    try:
        url = sa.make_url(location.path)
    except sa.exc.ArgumentError:
        raise InputError("not a database URL (e.g. duckdb:///warehouse.duckdb, "
                         "postgresql+psycopg://user@host/db)", source=location.shown) from None
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = _CONNECT_TIMEOUT
    if backend == "duckdb" and url.database not in (None, "", ":memory:"):
        connect_args["read_only"] = True
    try:
        engine = sa.create_engine(url, connect_args=connect_args)
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as error:
        raise InputError(f"no database driver for {url.drivername!r} ({error}); install "
                         f"kl-drift[sql] or the driver", source=location.shown) from None
    if location.query is not None:
        check_select(location.query, backend, location)
    try:
        with engine.connect() as connection:
            if backend == "postgresql":
                connection = connection.execution_options(postgresql_readonly=True)
            yield connection, _relation(sa, location, connection)
    except sa.exc.SQLAlchemyError as error:
        raise sql_error(error, location) from error
    except Exception as error:  # drivers raise their own types (duckdb.IOException, ...)
        if type(error).__module__.split(".")[0] in ("duckdb", "psycopg", "psycopg2"):
            raise sql_error(error, location) from error
        raise
    finally:
        engine.dispose()


def _relation(sa: Any, location: Location, connection: Any) -> Any:
    """The table (``schema.name`` allowed) or the query as a subquery, with its columns."""
    query = (location.query or "").replace(":", r"\:")  # a literal colon is not a parameter
    if location.table is not None:
        schema, _, name = location.table.rpartition(".")
        bare = sa.table(name, schema=schema or None)
    else:
        bare = sa.text(query).columns().subquery("source")
    names = run_query(connection, sa.select(sa.literal_column("*")).select_from(bare)
                      .limit(0), location).columns
    if location.table is not None:
        return sa.table(bare.name, *(sa.column(n) for n in names), schema=bare.schema)
    return sa.text(query).columns(*(sa.column(n) for n in names)).subquery("source")


def run_query(connection: Any, query: Any, location: Location) -> pl.DataFrame:
    """Run a SQLAlchemy query on ``connection`` into a DataFrame (errors converted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # polars' note on an extra Arrow copy
        return pl.read_database(query, connection)


def columns_of(relation: Any, connection: Any, location: Location) -> pl.Schema:
    """The polars schema of a relation, from a query that returns no rows.

    Drivers that return no types without rows (psycopg) are asked for the column types
    of the result instead (PostgreSQL type OIDs).
    """
    sa = _sqlalchemy()
    query = sa.select(sa.literal_column("*")).select_from(relation).limit(0)
    schema = run_query(connection, query, location).schema
    if all(dtype != pl.Null for dtype in schema.values()):
        return schema
    result = connection.execute(query)
    codes = {entry[0]: entry[1] for entry in result.cursor.description}
    result.close()
    return pl.Schema({name: _PG_TYPES.get(codes.get(name), pl.String)
                      if dtype == pl.Null and isinstance(codes.get(name), int) else dtype
                      for name, dtype in schema.items()})


def sql_schema(location: Location) -> pl.Schema:
    """Columns and polars types of a database table or query (no rows are read)."""
    with open_relation(location) as (connection, relation):
        return columns_of(relation, connection, location)


def sql_row_count(location: Location) -> int:
    """How many rows a database table or query has (counted in the database)."""
    sa = _sqlalchemy()
    with open_relation(location) as (connection, relation):
        query = sa.select(sa.func.count().label("rows")).select_from(relation)
        return int(run_query(connection, query, location).item())


def read_sql(location: Location) -> pl.DataFrame:
    """Every row of a database table or query (for histogram or profile tables, model
    outputs and log-probs; raw rows are binned in the database instead)."""
    sa = _sqlalchemy()
    with open_relation(location) as (connection, relation):
        return run_query(connection, sa.select(sa.literal_column("*")).select_from(relation),
                         location)
