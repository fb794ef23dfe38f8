"""Alembic, one migration folder per service, driven by the service's own settings.

A service's ``migrations/env.py`` is two lines::

    from chassis.migrations import run_migrations
    run_migrations()
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, pool

from chassis.db import normalise_url

URL_ATTRIBUTE = "chassis.database_url"


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes[URL_ATTRIBUTE] = normalise_url(database_url)
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def downgrade(migrations_dir: Path, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(migrations_dir, database_url), revision)


def current_revision(migrations_dir: Path, database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(normalise_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def run_migrations() -> None:
    """Body of a service's env.py: online migrations in one transaction."""
    url = context.config.attributes[URL_ATTRIBUTE]
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                render_as_batch=connection.dialect.name == "sqlite",
                transaction_per_migration=False,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
