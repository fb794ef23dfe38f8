"""books' Alembic migrations: reversible, and in step with the tables persistence.py declares."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from books.persistence import metadata
from books.settings import SERVICE_DIR
from chassis.migrations import current_revision, downgrade, upgrade

pytestmark = pytest.mark.every_database

MIGRATIONS = SERVICE_DIR / "migrations"
TABLES = {"books", "reservations"}


def tables(url):
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def schema_drift(url):
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database_url):
    url = empty_database_url
    assert tables(url) == set()

    upgrade(MIGRATIONS, url)
    assert tables(url) == TABLES
    assert current_revision(MIGRATIONS, url) == "0002"

    downgrade(MIGRATIONS, url, "base")
    assert tables(url) == set()
    assert current_revision(MIGRATIONS, url) is None

    upgrade(MIGRATIONS, url)
    assert tables(url) == TABLES
    assert current_revision(MIGRATIONS, url) == "0002"
    upgrade(MIGRATIONS, url)  # already at head: nothing to do, no error


def test_the_migrated_schema_matches_the_declared_tables(database_url):
    assert schema_drift(database_url) == []
