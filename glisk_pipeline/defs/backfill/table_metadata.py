"""Definition metadata for the assets whose rows live in an app table: the table's name and
its column schema, read from the SQLAlchemy table (db/schema.py), so the catalog's Columns
tab shows the schema before anything ran and cannot drift from the migrations."""

from __future__ import annotations

from dagster import (
    TableColumn,
    TableColumnConstraints,
    TableConstraints,
    TableSchema,
)
from sqlalchemy import Table, UniqueConstraint
from sqlalchemy.dialects import postgresql


def table_schema(table: Table) -> TableSchema:
    """The columns with their PostgreSQL types (production's; on SQLite the wei columns are
    text), nullability and uniqueness; multi-column unique keys as table constraints."""
    dialect = postgresql.dialect()
    columns = [
        TableColumn(
            name=column.name,
            type=column.type.compile(dialect=dialect),
            description=column.comment,
            constraints=TableColumnConstraints(
                nullable=bool(column.nullable),
                unique=bool(column.primary_key and len(table.primary_key.columns) == 1),
            ),
        )
        for column in table.columns
    ]
    keys = [f"PRIMARY KEY ({', '.join(c.name for c in table.primary_key.columns)})"]
    keys += [
        f"UNIQUE ({', '.join(c.name for c in constraint.columns)})"
        for constraint in sorted(table.constraints, key=str)
        if isinstance(constraint, UniqueConstraint)
    ]
    return TableSchema(columns=columns, constraints=TableConstraints(other=keys))


def table_definition_metadata(table: Table) -> dict[str, object]:
    """`dagster/table_name` and `dagster/column_schema` of an app table (the keys Dagster's
    catalog reads, as in its table-metadata guide)."""
    return {
        "dagster/table_name": table.name,
        "dagster/column_schema": table_schema(table),
    }
