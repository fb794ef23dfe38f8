"""A service whose own database cannot serve answers 503 problem+json with Retry-After, naming
the database but never its URL, host, port, user or password, logs it once at WARNING without
them, and recovers by itself once the database is back.

The tiny service (tests/tiny_service) serves every case: a closed port (refused), a port that
never answers (connect timeout), an exhausted pool (SQLite), and a real PostgreSQL stopped,
restarted, or terminating the request's backend mid-transaction.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from chassis import Service, current_service
from chassis.errors import DATABASE_POOL_EXHAUSTED_DETAIL, DATABASE_UNAVAILABLE_DETAIL
from chassis.testing import SpanRecorder, assert_problem, capture_logs, hermetic_settings
from chassis.testing import service_client as client_of
from chassis.testing.postgres import PostgresServer

PASSWORD = "Recognisable-Pa55word"
USER = "chassis_probe_user"
DATABASE = "probe_database"
RETRY_AFTER = "5"
POSTGRES_SCHEMA = "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL UNIQUE)"

Events = list[MutableMapping[str, Any]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_url(port: int) -> str:
    return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def build(tiny: ModuleType, recorder: SpanRecorder) -> Callable[..., Service]:
    """The tiny service on ``url`` without creating its table (the database may be away);
    ``handlers`` replaces some of its handlers. Close it with ``service_client``."""

    def build(url: str, handlers: dict[str, Any] | None = None, **environ: str) -> Service:
        settings = hermetic_settings(
            tiny.TinySettings, tiny.SERVICE_DIR, database_url=url, environ=environ
        )
        module = ModuleType("tiny_handlers_for_outages")
        module.__dict__.update(vars(tiny.load_handlers()))
        module.__dict__.update(handlers or {})
        return Service(
            settings,
            spec=tiny.SERVICE_DIR / "openapi.yaml",
            handlers=module,
            span_processors=[recorder.processor],
        )

    return build


def assert_unavailable(
    response: httpx.Response, leaks: list[str], detail: str = DATABASE_UNAVAILABLE_DETAIL
) -> None:
    body = assert_problem(response, 503)
    assert body["title"] == "Service Unavailable"
    assert body["detail"] == detail
    assert "database" in body["detail"]
    assert response.headers["retry-after"] == RETRY_AFTER
    assert set(body) == {"type", "title", "status", "detail", "trace_id"}
    for leak in [*leaks, "Traceback", "SELECT", "psycopg2", "sqlalche.me"]:
        assert leak not in response.text, leak


def warnings_of(
    events: Events, event: str = "database unavailable"
) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["log_level"] == "warning" and e["event"] == event]


def assert_logs_leak_nothing(
    events: Events, caplog: pytest.LogCaptureFixture, leaks: list[str]
) -> None:
    logged = json.dumps(events, default=repr)
    logged += "\n".join(caplog.text.splitlines())
    for leak in leaks:
        assert leak not in logged, leak


def leaks_of(url: str) -> list[str]:
    """The URL and its parts (the port as the driver quotes it: a bare number could turn up in
    a trace id)."""
    parsed = make_url(url)
    leaks = [url, parsed.password, parsed.username, parsed.host, parsed.database]
    if parsed.port:
        leaks += [f":{parsed.port}", f"port {parsed.port}"]
    return [leak for leak in leaks if leak]


# -- no server needed ---------------------------------------------------------------------------


def test_a_refused_connection_is_a_503_naming_the_database_and_nothing_else(
    build: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    url = unreachable_url(closed_port())
    leaks = [*leaks_of(url), "Connection refused"]
    caplog.set_level(logging.DEBUG)

    with client_of(build(url)) as client:
        with capture_logs() as events:
            response = client.get("/items/count")
        ready = client.get("/health/ready")
        live = client.get("/health/live")

    assert_unavailable(response, leaks)
    (warning,) = warnings_of(events)
    assert warning["error"] == "OperationalError"
    assert warning["trace_id"] == response.json()["trace_id"]
    assert not [e for e in events if e["log_level"] in ("error", "critical")]
    assert_logs_leak_nothing(events, caplog, leaks)
    assert (ready.status_code, ready.json()["checks"]["database"]["status"]) == (503, "DOWN")
    assert live.status_code == 200


def test_a_connect_timeout_is_a_503(
    build: Callable[..., Service], silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = unreachable_url(silent_port)
    service = build(url, DATABASE__CONNECT_TIMEOUT_SECONDS="1")

    with client_of(service) as client, capture_logs() as events:
        response = client.post("/items", json={"name": "dune"})

    assert_unavailable(response, leaks_of(url))
    (warning,) = warnings_of(events)
    assert warning["error"] == "OperationalError"
    assert_logs_leak_nothing(events, caplog, [*leaks_of(url), "timeout expired"])


def test_an_exhausted_pool_is_a_503_naming_the_pool(
    make_service: Callable[..., Service], caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(
        DATABASE__POOL_SIZE="1",
        DATABASE__MAX_OVERFLOW="0",
        DATABASE__POOL_TIMEOUT_SECONDS="0.2",
    )

    with client_of(service) as client:
        with service.database.engine.connect(), capture_logs() as events:  # the only connection
            exhausted = client.get("/items/count")
        afterwards = client.get("/items/count")

    assert_unavailable(
        exhausted, leaks_of(str(service.database.url)), DATABASE_POOL_EXHAUSTED_DETAIL
    )
    assert "pool" in exhausted.json()["detail"]
    (warning,) = warnings_of(events, "database connection pool exhausted")
    assert warning["error"] == "TimeoutError"
    assert afterwards.json() == {"count": 0}


async def _count_in_session() -> dict[str, Any]:
    count = await current_service().in_session(
        lambda session: session.execute(sa.text("SELECT count(*) FROM item")).scalar_one()
    )
    return {"count": count}


async def _count_on_own_connection() -> dict[str, Any]:
    with current_service().database.engine.connect() as connection:
        return {"count": connection.execute(sa.text("SELECT count(*) FROM item")).scalar_one()}


@pytest.mark.parametrize("handler", [_count_in_session, _count_on_own_connection])
def test_an_async_handler_without_its_database_is_a_503_too(
    build: Callable[..., Service], handler: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    url = unreachable_url(closed_port())

    with client_of(build(url, {"async_hello": handler})) as client, capture_logs() as events:
        response = client.get("/async")

    assert_unavailable(response, leaks_of(url))
    assert len(warnings_of(events)) == 1
    assert not [e for e in events if e["log_level"] == "error"]
    assert_logs_leak_nothing(events, caplog, leaks_of(url))


def test_a_database_file_that_cannot_be_opened_is_a_503_but_a_missing_table_a_500(
    build: Callable[..., Service], tmp_path: Path
) -> None:
    # SQLite says OperationalError for both: only the first is about reaching the database.
    with client_of(build(f"sqlite:///{tmp_path / 'no-such-dir' / 'tiny.db'}")) as client:
        cannot_open = client.get("/items/count")
    with client_of(build(f"sqlite:///{tmp_path / 'empty.db'}")) as client:
        missing_table = client.get("/items/count")

    assert_unavailable(cannot_open, [str(tmp_path), "unable to open"])
    assert_problem(missing_table, 500)
    assert "retry-after" not in missing_table.headers


# -- a real PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def on_postgres(
    make_service: Callable[..., Service], postgres_url: str
) -> tuple[Service, list[str]]:
    """The tiny service on a fresh PostgreSQL database, and what its answers must not say."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:  # the tiny schema's INTEGER PRIMARY KEY is SQLite's
        connection.execute(sa.text(POSTGRES_SCHEMA))
    engine.dispose()
    service = make_service(DATABASE_URL=postgres_url, DATABASE__CONNECT_TIMEOUT_SECONDS="1")
    return service, leaks_of(postgres_url)


@pytest.mark.postgres
def test_postgres_stopped_is_503_then_200_once_it_is_back_without_a_restart(
    on_postgres: tuple[Service, list[str]],
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, leaks = on_postgres

    with client_of(service) as client:
        assert client.post("/items", json={"name": "kept"}).status_code == 201
        postgres_server.stop()
        try:
            with capture_logs() as events:
                outage = [client.get("/items/count"), client.post("/items", json={"name": "x"})]
            ready_during = client.get("/health/ready").status_code
        finally:
            postgres_server.start()
        back = [client.get("/items/count"), client.post("/items", json={"name": "new"})]

    for response in outage:
        assert_unavailable(response, leaks)
    assert len(warnings_of(events)) == 2
    assert_logs_leak_nothing(events, caplog, leaks)
    assert ready_during == 503
    assert back[0].json() == {"count": 1}
    assert back[1].status_code == 201


@pytest.mark.postgres
def test_a_connection_terminated_mid_request_is_a_503_rolled_back_and_recovered(
    on_postgres: tuple[Service, list[str]],
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, leaks = on_postgres
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    terminated: list[int] = []

    def terminate_after_the_first_statement(
        connection: sa.Connection, _: Any, statement: str, *__: Any
    ) -> None:
        """pg_terminate_backend on the request's own backend, as an operator (or a fail-over)
        would, between the handler's read and its write."""
        if statement.startswith("SELECT 1 FROM item") and not terminated:
            pid = connection.connection.dbapi_connection.get_backend_pid()  # type: ignore[union-attr]
            with admin.connect() as killer:
                killer.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            terminated.append(pid)

    sa.event.listen(
        service.database.engine, "after_cursor_execute", terminate_after_the_first_statement
    )
    try:
        with client_of(service) as client:
            with capture_logs() as events:
                lost = client.post("/items", json={"name": "lost"})
            count = client.get("/items/count")
            kept = client.post("/items", json={"name": "kept"})
    finally:
        admin.dispose()

    assert terminated
    assert_unavailable(lost, leaks)
    (warning,) = warnings_of(events)
    assert warning["error"] == "OperationalError"
    assert_logs_leak_nothing(events, caplog, leaks)
    assert count.json() == {"count": 0}  # the half-done request left nothing behind
    assert kept.status_code == 201
