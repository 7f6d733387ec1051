"""Many rows into one table through the driver: a multi-row INSERT on SQLite; on PostgreSQL a binary COPY (from
32 rows; below, psycopg's pipelined executemany).

SQLAlchemy's executemany of a Core insert spends more CPU per row on parameter processing than the database
spends storing it (measured: about 17 µs of the 70 µs an event cost to store). Here the statement is compiled once
per dialect and rows go to the driver as plain tuples: on SQLite each column's own SQLAlchemy bind processor is
looked up once and applied (the same stored values as Core would write); on PostgreSQL the binary COPY names each
column's type and psycopg's C dumpers take the Python values directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec
from psycopg.types.json import set_json_dumps
from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, LargeBinary, String, Table, bindparam, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

Processor = Callable[[Any], Any] | None
# COPY takes three round trips (start, data, end) where psycopg's pipelined executemany takes one: it pays off only
# for larger groups (measured on PostgreSQL 15: slower below ~32 rows, 1.5-2x faster per row at 64 and more).
COPY_FROM_ROWS = 32
# Rows per multi-row INSERT on SQLite: 500 rows of 16 columns stay far below its 32,766 bound parameters.
MULTIROW_CHUNK = 500
_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]
# Most specific first: JSONB before JSON (a subclass of it), BigInteger before Integer.
_COPY_TYPES: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (postgresql.JSONB, "jsonb"), (postgresql.JSON, "json"), (DateTime, "timestamptz"), (LargeBinary, "bytea"),
    (BigInteger, "int8"), (Integer, "int4"), (Float, "float8"), (Boolean, "bool"), (String, "text"),
)


def _json_bytes(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _postgresql_type(column_type: TypeEngine[Any]) -> str:
    """The name psycopg knows for a column's PostgreSQL type, for a binary COPY."""
    impl = column_type.dialect_impl(_POSTGRESQL)
    if isinstance(impl, TypeDecorator):
        impl = impl.impl_instance
    for kind, name in _COPY_TYPES:
        if isinstance(impl, kind):
            return name
    raise TypeError(f"no binary COPY type for {column_type!r}")


T = TypeVar("T")


def _as_row(item: Any) -> Sequence[Any]:
    return item  # type: ignore[no-any-return]


class BulkInsert:
    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._compiled: dict[str, tuple[str, bool, tuple[int, ...], tuple[tuple[int, Processor], ...]]] = {}
        self._multirow_sql: dict[tuple[str, int], str] = {}
        self._copy_types: list[str] | None = None

    def execute(
        self, conn: Connection, items: Sequence[T], row_of: Callable[[T], Sequence[Any]] = _as_row,
    ) -> None:
        """Insert one row per item, `row_of(item)` giving its values in the order of `columns`.

        With COPY the rows are made while the previous ones stream to PostgreSQL, which stores them meanwhile.
        """
        if not items:
            return
        if conn.dialect.name == "postgresql" and len(items) >= COPY_FROM_ROWS:
            self._copy(conn, map(row_of, items))
            return
        sql, positional, order, processors = self._compile(conn.dialect)
        encoded = [self._encode(row_of(item), processors) for item in items]
        if conn.dialect.name == "sqlite":
            self._multirow(conn, [[values[i] for i in order] for values in encoded], sql.split(" VALUES ")[0])
            return
        if positional:
            in_order = order == tuple(range(len(order)))
            # SQLAlchemy passes tuples (not lists) through to the driver.
            parameters: list[Any] = (
                [tuple(values) for values in encoded] if in_order
                else [tuple([values[i] for i in order]) for values in encoded])
        else:
            parameters = [dict(zip(self._columns, values, strict=True)) for values in encoded]
        conn.exec_driver_sql(sql, parameters)

    def _multirow(self, conn: Connection, rows: list[list[Any]], into: str) -> None:
        # One INSERT ... VALUES (...), (...) per chunk: SQLite's executemany steps once per row and Python's driver
        # releases and re-takes the GIL around every step, and while the event loop is busy each re-take waits for
        # it; under load the commit thread then spends longer waiting for the GIL than writing.
        width = len(rows[0])
        for start in range(0, len(rows), MULTIROW_CHUNK):
            chunk = rows[start : start + MULTIROW_CHUNK]
            key = (into, len(chunk))
            sql = self._multirow_sql.get(key)
            if sql is None:
                one = "(" + ", ".join("?" * width) + ")"
                sql = self._multirow_sql[key] = f"{into} VALUES " + ", ".join([one] * len(chunk))
            conn.exec_driver_sql(sql, tuple([value for row in chunk for value in row]))

    def _copy(self, conn: Connection, rows: Iterable[Sequence[Any]]) -> None:
        # PostgreSQL's COPY: one statement streaming every row, faster than both an executemany of prepared INSERTs
        # and a multi-row INSERT (which psycopg would parse anew for each group size). A duplicate key fails the
        # whole COPY like any INSERT would: the caller then settles the batch one event at a time.
        # Binary format, each column's PostgreSQL type given: psycopg's C dumpers take the values as they are
        # (bytes stay bytes instead of becoming hex text for PostgreSQL to decode again, aware datetimes go as
        # timestamptz), and JSON goes through msgspec; no SQLAlchemy processor runs.
        columns = ", ".join(self._columns)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            set_json_dumps(_json_bytes, context=cursor)
            with cursor.copy(f"COPY {self._table.name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(self._postgresql_types())
                for row in rows:
                    copy.write_row(row)
        finally:
            cursor.close()

    def _postgresql_types(self) -> list[str]:
        if self._copy_types is None:
            self._copy_types = [_postgresql_type(self._table.c[name].type) for name in self._columns]
        return self._copy_types

    @staticmethod
    def _encode(row: Sequence[Any], processors: tuple[tuple[int, Processor], ...]) -> list[Any]:
        values = list(row)
        for index, process in processors:
            value = values[index]
            if value is not None:
                values[index] = process(value)  # type: ignore[misc]
        return values

    def _compile(self, dialect: Dialect) -> tuple[str, bool, tuple[int, ...], tuple[tuple[int, Processor], ...]]:
        key = dialect.name
        if key not in self._compiled:
            statement = insert(self._table).values({name: bindparam(name) for name in self._columns})
            compiled = statement.compile(dialect=dialect)
            names = list(compiled.positiontup or ()) if compiled.positional else list(self._columns)
            order = tuple(self._columns.index(name) for name in names)
            # Only the columns whose type converts values (timestamps, JSON); the others go to the driver as they are.
            processors = tuple(
                (index, process) for index, name in enumerate(self._columns)
                if (process := self._table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
            )
            self._compiled[key] = (compiled.string, compiled.positional, order, processors)
        return self._compiled[key]
