"""An INSERT compiled once and run on the driver's cursor: the intake's hot statements.

Running a Core statement through SQLAlchemy costs ~0.2-0.3 ms of Python per execution beyond
the database's own work (an execution context, parameter processing, events, a result object),
as much as the rest of storing a call (docs/performance.md, Intake). `PreparedInsert` keeps
what SQLAlchemy would do, worked out once per database: the SQL its compiler renders (so
dialects, ON CONFLICT, RETURNING and casts are SQLAlchemy's), the statement's own constant
values, every column default the statement would compute in Python (scalar defaults as
constants; a callable default must be given by the caller, else building fails, naming the
column, so a new column with such a default cannot be left unset in silence), and each value's
bind processor from its column type (UTCDateTime, JSON …). Running it is then a dict merge, the
processors and one execution on a cursor of the session's connection, by the path SQLAlchemy
itself takes for a statement on a cursor (`Connection._cursor_execute`: the engine's
before/after_cursor_execute events still see it, and a driver error comes out as SQLAlchemy's:
OperationalError stays OperationalError).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert


@dataclass(frozen=True)
class PreparedInsert:
    """One INSERT … RETURNING <one column>, as the driver of `dialect` takes it."""

    sql: str
    names: tuple[str, ...] | None  # positional drivers (SQLite's qmark): the values' order
    constants: Mapping[str, Any]
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]

    @classmethod
    def build(cls, statement: Insert, dialect: Dialect, given: Collection[str]) -> PreparedInsert:
        """Compile `statement` for `dialect`; `given` are the bound names each run supplies.
        ValueError when a column default would need SQLAlchemy's execution to compute."""
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.escaped_bind_names:
            raise ValueError(f"bound names needing escapes: {compiled.escaped_bind_names}")
        constants = {
            name: value
            for name, value in compiled.construct_params(dict.fromkeys(given)).items()
            if name not in given
        }
        for column in compiled.insert_prefetch:
            if column.key in given:
                continue
            default = column.default
            if default is None or not getattr(default, "is_scalar", False):
                raise ValueError(
                    f"{column.table.name}.{column.key} has a default computed per row: "
                    "give it a value in the statement"
                )
            constants[column.key] = default.arg  # type: ignore[attr-defined]
        processors = []
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((name, process))
        names = tuple(compiled.positiontup or ()) if dialect.positional else None
        return cls(compiled.string, names, constants, tuple(processors))

    def arguments(self, values: Mapping[str, Any]) -> Any:
        """What the driver takes with `sql` for `values`: the constants merged in, each value
        through its bind processor; a dict, or a tuple in `names`' order (positional drivers)."""
        params = {**self.constants, **values}
        for name, process in self.processors:
            params[name] = process(params[name])
        return params if self.names is None else tuple(params[n] for n in self.names)

    def run(self, connection: Connection, values: Mapping[str, Any]) -> Any:
        """Execute with `values` in the connection's transaction; the returned column, or None
        when no row was inserted (ON CONFLICT DO NOTHING)."""
        arguments = self.arguments(values)
        cursor = connection.connection.cursor()
        try:
            # SQLAlchemy's own path for a statement on a cursor (it runs column defaults and
            # sequences with it): the engine's before/after_cursor_execute events, echo, and its
            # error handling (DBAPIError subclasses, a lost connection invalidated)
            connection._cursor_execute(cursor, self.sql, arguments)
            row = cursor.fetchone()
        except connection.dialect.loaded_dbapi.Error as error:
            dbapi_error = connection.dialect.loaded_dbapi.Error
            raise DBAPIError.instance(
                self.sql, arguments, error, dbapi_error, dialect=connection.dialect
            ) from error
        finally:
            cursor.close()
        return None if row is None else row[0]
