"""deploy/compose/postgres/init-databases.sh against a real PostgreSQL: run as the postgres
image runs it (POSTGRES_USER, POSTGRES_DB set, psql on PATH), each service gets a database
only its own role can use."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import psycopg2
import pytest
from deploy_support import COMPOSE_DIR, require
from psycopg2 import sql

from chassis.testing.postgres import PostgresServer

SCRIPT = COMPOSE_DIR / "postgres" / "init-databases.sh"
PASSWORD = "a password with 'quotes'"


@pytest.fixture
def names(postgres_server: PostgresServer) -> Iterator[list[str]]:
    """Unique service names (the server is shared with the other tests); dropped afterwards."""
    suffix = secrets.token_hex(4)
    chosen = [f"books_{suffix}", f"shop_{suffix}", f"chat_{suffix}"]
    yield chosen
    connection = _connect(postgres_server, postgres_server.user, postgres_server.password)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in chosen:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    connection.close()


def _connect(
    server: PostgresServer, user: str, password: str, database: str = "postgres"
) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=server.host, port=server.port, user=user, password=password, dbname=database
    )


def test_each_service_gets_its_own_database_and_role(
    postgres_server: PostgresServer, names: list[str]
) -> None:
    require("psql")
    assert os.access(SCRIPT, os.X_OK), "the entrypoint executes it (else it would source it)"
    environ = {
        **os.environ,
        "PGHOST": postgres_server.host,
        "PGPORT": str(postgres_server.port),
        "PGPASSWORD": postgres_server.password,
        "POSTGRES_USER": postgres_server.user,
        "POSTGRES_DB": "postgres",
        "SERVICE_DATABASES": " ".join(names),
        "SERVICE_DATABASE_PASSWORD": PASSWORD,
    }
    result = subprocess.run(
        [str(SCRIPT)], env=environ, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr

    for name in names:
        with _connect(postgres_server, name, PASSWORD, name) as connection:
            with connection.cursor() as cursor:  # migrations create tables in public
                cursor.execute("CREATE TABLE probe (id integer)")
                cursor.execute("SELECT current_user, current_database()")
                assert cursor.fetchone() == (name, name)
            connection.rollback()
        connection.close()
    books, shop = names[0], names[1]
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        _connect(postgres_server, books, PASSWORD, shop)


def test_it_refuses_to_run_without_its_settings() -> None:
    result = subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "SERVICE_DATABASES" in result.stderr
