"""Fixtures of the books suite: a fresh database, a fresh app and a client for every test.

database_kind        "sqlite" (default) or "postgresql"; tests marked ``every_database`` run
                     once on each (PostgreSQL from the chassis plugin's ``postgres_server``)
empty_database_url   a new, empty database of that kind (``postgres_url`` for PostgreSQL)
database_url         a migrated database holding no rows. Migrating costs ~0.1 s, creating a
                     PostgreSQL database ~0.6 s, so both are done once per session: SQLite
                     tests get a copy of a migrated file, PostgreSQL tests share one migrated
                     database emptied (TRUNCATE ... RESTART IDENTITY) before each test
service / client     ``create_service(hermetic_settings(...))`` and its test client, which
                     carries a token with every scope (``catalog:write stock:reserve``)
anonymous            a test client of the same service without a token
token_issuer         (chassis plugin) the issuer books trusts in these tests
recorder             the spans the service finished
engine               a separate SQLAlchemy engine for looking at the tables directly
create_book          posts a valid book (unique ISBN) and returns its JSON
problem              (chassis plugin) checks a problem+json answer: status, trace id, field
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, pool, text
from starlette.testclient import TestClient

from books.app import create_service
from books.persistence import metadata
from books.settings import SERVICE_DIR, BooksSettings
from chassis import Service
from chassis.dev_issuer import DevIssuer
from chassis.migrations import upgrade
from chassis.testing import (
    SpanRecorder,
    hermetic_environment,
    hermetic_settings,
    reset_logging,
    service_client,
)
from chassis.testing.postgres import PostgresServer

SQLITE = "sqlite"
POSTGRES = "postgresql"
MIGRATIONS = SERVICE_DIR / "migrations"
EVERY_SCOPE = ("catalog:write", "stock:reserve")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "every_database: run the test once on SQLite and once on PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not metafunc.definition.get_closest_marker("every_database"):
        return
    if "database_kind" not in metafunc.fixturenames:
        return
    explicit = any(
        "database_kind" in marker.args[0]
        for marker in metafunc.definition.iter_markers("parametrize")
    )
    if not explicit:
        metafunc.parametrize(
            "database_kind", [SQLITE, pytest.param(POSTGRES, marks=pytest.mark.postgres)]
        )


@pytest.fixture(autouse=True)
def _hermetic_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing exports spans, the machine's variables cannot disable or sample tracing, and
    the logging a service configures is undone afterwards."""
    hermetic_environment(monkeypatch)
    yield
    reset_logging()


@pytest.fixture
def database_kind() -> str:
    return SQLITE


@pytest.fixture
def empty_database_url(database_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if database_kind == POSTGRES:
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'books.db'}"


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database()
    upgrade(MIGRATIONS, url)
    yield url
    postgres_server.start()  # no-op unless a test stopped it
    postgres_server.drop_database(str(make_url(url).database))


@pytest.fixture
def database_url(database_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if database_kind == POSTGRES:
        request.getfixturevalue("postgres_server").start()  # no-op unless a test stopped it
        url: str = request.getfixturevalue("shared_postgres_url")
        _delete_every_row(url)
        return url
    copy = tmp_path / "books.db"
    shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), copy)
    return f"sqlite:///{copy}"


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrated") / "books.db"
    upgrade(MIGRATIONS, f"sqlite:///{path}")
    return path


def _delete_every_row(url: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    finally:
        engine.dispose()


@pytest.fixture
def settings(database_url: str, token_issuer: DevIssuer) -> BooksSettings:
    return hermetic_settings(
        BooksSettings,
        SERVICE_DIR,
        database_url=database_url,
        environ={"AUTH__PUBLIC_KEY": token_issuer.public_pem()},
    )


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def service(settings: BooksSettings, recorder: SpanRecorder) -> Service:
    return create_service(settings, span_processors=[recorder.processor])


@pytest.fixture
def client(service: Service, token_issuer: DevIssuer) -> Iterator[TestClient]:
    token = token_issuer.mint(audience="books", scopes=EVERY_SCOPE, subject="books-tests")
    with service_client(service, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def anonymous(service: Service) -> Iterator[TestClient]:
    with service_client(service) as client:
        yield client


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def create_book(client: TestClient) -> Callable[..., dict[str, Any]]:
    numbers = itertools.count(1)

    def create(**fields: Any) -> dict[str, Any]:
        body = {
            "isbn": f"978{next(numbers):010d}",
            "title": "Dune",
            "author": "Frank Herbert",
            "price": "9.99",
            **fields,
        }
        response = client.post("/books", json=body)
        assert response.status_code == 201, response.text
        book: dict[str, Any] = response.json()
        return book

    return create
