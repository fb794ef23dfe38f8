"""shop's migrations apply on an empty database, are reversible, and match its tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from chassis import migrations
from shop.persistence import metadata
from shop.settings import SERVICE_DIR

MIGRATIONS = SERVICE_DIR / "migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    return str(request.getfixturevalue("postgres_url"))


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_up_down_and_up_again(empty_database: str) -> None:
    migrations.upgrade(MIGRATIONS, empty_database)
    assert tables(empty_database) == {"orders", "order_items"}
    migrations.downgrade(MIGRATIONS, empty_database, "base")
    assert tables(empty_database) == set()
    migrations.upgrade(MIGRATIONS, empty_database)
    assert migrations.current_revision(MIGRATIONS, empty_database) == "0003"


def test_the_migrations_match_the_tables_shop_declares(empty_database: str) -> None:
    migrations.upgrade(MIGRATIONS, empty_database)
    engine = create_engine(empty_database, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []
