"""The suite's own databases (tests/conftest.py): each test's database is a copy of a template
migrated once per session. The copy must be exactly what the migrations make, and the test's
alone: what a test writes never reaches the template the next test is copied from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from b24app.cli import upgrade_database
from tests.conftest import PostgresTemplate


def describe(database_url: str) -> dict[str, Any]:
    """Every table's columns, keys, indexes and constraints, and Alembic's revision."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        found = inspect(engine)
        tables = {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in found.get_columns(table)
                ],
                "primary_key": found.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted(
                    (str(fk["constrained_columns"]), fk["referred_table"], str(fk["options"]))
                    for fk in found.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (i["name"], str(i["column_names"]), i["unique"])
                    for i in found.get_indexes(table)
                ),
                "unique": sorted(
                    str(u["column_names"]) for u in found.get_unique_constraints(table)
                ),
                "checks": sorted(str(c["sqltext"]) for c in found.get_check_constraints(table)),
            }
            for table in found.get_table_names()
        }
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        return {"tables": tables, "revision": revision}
    finally:
        engine.dispose()


def migrated_anew(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the same backend, migrated here and now."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'anew.sqlite3'}"
        upgrade_database(url)
        return url
    template: PostgresTemplate = request.getfixturevalue("migrated_postgres")
    schema = template._create_schema()
    request.addfinalizer(lambda: template._execute(f'DROP SCHEMA "{schema}" CASCADE'))
    upgrade_database(template.url(schema))
    return template.url(schema)


def test_each_tests_database_is_what_the_migrations_make(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    copied = describe(database_url)
    assert copied["tables"], "the copy has the migrated tables"
    assert copied == describe(migrated_anew(database_url, tmp_path, request))


def test_what_a_test_writes_stays_in_its_own_database(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'written-by-a-test'"))
    engine.dispose()
    if database_url.startswith("sqlite"):
        template_url = f"sqlite:///{request.getfixturevalue('migrated_sqlite')}"
    else:
        template = request.getfixturevalue("migrated_postgres")
        template_url = template.url(template.name)
    assert describe(template_url)["revision"] != [("written-by-a-test",)]
    assert describe(database_url)["revision"] == [("written-by-a-test",)]
