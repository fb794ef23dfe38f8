"""Alembic, one migration folder per service, driven by the service's own settings.

A service's ``migrations/env.py`` is two lines::

    from chassis.migrations import run_migrations
    run_migrations()

`<service> migrate` asks :func:`is_up_to_date` first: on a database already at the head of a
plain line of migrations it answers without importing Alembic (15 MiB and most of the command's
time), from the version files' ``revision``/``down_revision`` (read, not imported) and the
``alembic_version`` table. Anything else (a branch, a merge, an unreadable file, a missing
table) is Alembic's to decide.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import column, create_engine, inspect, pool, select, table

from chassis.database_url import normalise_url

if TYPE_CHECKING:
    from alembic.config import Config

URL_ATTRIBUTE = "chassis.database_url"
VERSION_TABLE = "alembic_version"  # Alembic's default, which run_migrations keeps (read below)


def head_revision(migrations_dir: Path) -> str | None:
    """The one head of ``versions/*.py`` when they form a single line (each revision has at
    most one parent and no labels or dependencies); None otherwise."""
    parents: dict[str, str | None] = {}
    for path in sorted((migrations_dir / "versions").glob("*.py")):
        values = _module_constants(path)
        if values is None or values.get("branch_labels") or values.get("depends_on"):
            return None
        revision, parent = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not (parent is None or isinstance(parent, str)):
            return None
        parents[revision] = parent
    heads = set(parents) - set(parents.values())
    if len(heads) != 1 or list(parents.values()).count(None) != 1:
        return None
    return heads.pop()


def _module_constants(path: Path) -> dict[str, object] | None:
    """The module's top-level ``name = <literal>`` assignments, without importing it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        # revision = "..." or revision: str = "..." (Alembic's template writes the latter)
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                values[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue  # not a literal: head_revision gives up if it was one it needs
    return values


def is_up_to_date(migrations_dir: Path, database_url: str) -> bool:
    """Whether the database is at the head of a single line of migrations (see the module)."""
    head = head_revision(migrations_dir)
    if head is None:
        return False
    engine = create_engine(normalise_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return False
            version = table(VERSION_TABLE, column("version_num"))
            rows = connection.execute(select(version.c.version_num)).all()
    finally:
        engine.dispose()
    return [row[0] for row in rows] == [head]


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes[URL_ATTRIBUTE] = normalise_url(database_url)
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def downgrade(migrations_dir: Path, database_url: str, revision: str) -> None:
    from alembic import command

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
    from alembic import context

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
