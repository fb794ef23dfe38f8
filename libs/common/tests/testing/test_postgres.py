from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from chassis.testing import postgres
from chassis.testing.plugin import running_in_ci
from chassis.testing.postgres import (
    LocalPostgresServer,
    PostgresServer,
    PostgresUnavailable,
    start_postgres,
)

needs_postgres = pytest.mark.postgres


def engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})


def scalar(url: str, query: str) -> object:
    with engine(url).connect() as connection:
        return connection.execute(sa.text(query)).scalar()


def database_exists(server: PostgresServer, name: str) -> bool:
    query = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    return scalar(server.admin_url, query) == 1


@pytest.fixture
def own_server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A server of its own, for tests that stop or close it (skip/fail policy as the session's)."""
    with start_postgres() as server:
        yield server


@needs_postgres
def test_server_starts_and_answers(postgres_server: PostgresServer) -> None:
    url = sa.make_url(postgres_server.admin_url)

    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.database) == (
        postgres_server.host,
        postgres_server.port,
        "postgres",
    )
    assert scalar(postgres_server.admin_url, "SELECT 1") == 1


@needs_postgres
def test_created_database_accepts_a_connection_and_a_table(postgres_url: str) -> None:
    with engine(postgres_url).begin() as connection:
        connection.execute(sa.text("CREATE TABLE book (id int PRIMARY KEY, title text)"))
        connection.execute(sa.text("INSERT INTO book VALUES (1, 'Dune')"))

    assert scalar(postgres_url, "SELECT title FROM book WHERE id = 1") == "Dune"


@needs_postgres
def test_created_databases_are_isolated(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    try:
        with engine(first).begin() as connection:
            connection.execute(sa.text("CREATE TABLE only_here (id int)"))

        assert first != second
        assert scalar(first, "SELECT to_regclass('only_here') IS NOT NULL") is True
        assert scalar(second, "SELECT to_regclass('only_here') IS NOT NULL") is False
    finally:
        for url in (first, second):
            postgres_server.drop_database(sa.make_url(url).database or "")


@needs_postgres
def test_create_database_uses_the_given_name(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("named_db")
    try:
        assert sa.make_url(url).database == "named_db"
        assert database_exists(postgres_server, "named_db")
    finally:
        postgres_server.drop_database("named_db")


@needs_postgres
def test_drop_database_removes_it_even_with_open_connections(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("dropped_db")
    with engine(url).connect():
        postgres_server.drop_database("dropped_db")

    assert not database_exists(postgres_server, "dropped_db")
    postgres_server.drop_database("dropped_db")  # dropping again is fine


@needs_postgres
@pytest.mark.parametrize("name", ["Robert'); DROP", "UPPER", "with-dash", "9lives", "x" * 64])
def test_unsafe_database_names_are_refused(postgres_server: PostgresServer, name: str) -> None:
    with pytest.raises(ValueError, match="database name"):
        postgres_server.create_database(name)


@needs_postgres
def test_stop_refuses_connections_and_start_restores_them_with_data(
    own_server: PostgresServer,
) -> None:
    url = own_server.create_database("kept")
    with engine(url).begin() as connection:
        connection.execute(sa.text("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"))
    port = own_server.port

    own_server.stop()
    with pytest.raises(sa.exc.OperationalError):
        scalar(url, "SELECT 1")

    own_server.start()
    assert own_server.port == port
    assert scalar(url, "SELECT n FROM kept") == 42


@needs_postgres
def test_close_stops_the_server_and_deletes_its_files(postgres_server: PostgresServer) -> None:
    with start_postgres() as server:
        url = server.create_database()
    directory = server.directory if isinstance(server, LocalPostgresServer) else None

    with pytest.raises(sa.exc.OperationalError):
        scalar(url, "SELECT 1")
    assert directory is None or not directory.exists()
    server.close()  # closing twice is fine


def test_missing_binaries_are_reported_helpfully(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(postgres, "BINARY_DIRS", "/nonexistent/postgresql/*/bin")

    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql"):
        postgres.find_binaries()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("false", False), ("0", False), ("true", True), ("1", True)],
)
def test_ci_is_detected_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)

    assert running_in_ci() is expected
