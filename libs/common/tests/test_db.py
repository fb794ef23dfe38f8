import asyncio
import json
import socket
import sqlite3
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from chassis import DOWN, UP, CheckResult, DatabaseUnavailable, current_session, db
from chassis.config import DatabaseSection
from chassis.db import Database, database_unavailable
from chassis.errors import DATABASE_POOL_EXHAUSTED_DETAIL, DATABASE_UNAVAILABLE_DETAIL
from chassis.health import HealthRegistry, ShutdownState
from chassis.testing import SpanRecorder, capture_logs
from chassis.testing.postgres import PostgresServer


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    with database.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)"))
    yield database
    database.dispose()


def names(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT name FROM item ORDER BY id")).scalars())


def check(database: Database) -> CheckResult:
    result = database.health_check().check()
    assert isinstance(result, CheckResult)
    return result


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_session_scope_commits_when_the_block_succeeds(database: Database) -> None:
    with database.session_scope() as session:
        session.execute(sa.text("INSERT INTO item (name) VALUES ('a'), ('b')"))

    assert names(database) == ["a", "b"]


def write_then_fail(database: Database, *rows: str) -> None:
    with database.session_scope() as session:
        for row in rows:
            session.execute(sa.text("INSERT INTO item (name) VALUES (:n)"), {"n": row})
            session.flush()
        raise RuntimeError("half way")


def test_session_scope_rolls_back_when_the_block_raises(database: Database) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        write_then_fail(database, "a", "b")

    assert names(database) == []


def test_current_session_is_the_scope_session_only_inside_the_scope(database: Database) -> None:
    with database.session_scope() as session:
        assert current_session() is session
        with database.session_scope() as inner:
            assert current_session() is inner
        assert current_session() is session

    with pytest.raises(RuntimeError, match="no database session"):
        current_session()


def test_current_session_outside_a_request_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="inside a request handler"):
        current_session()


def test_sqlite_enforces_foreign_keys(database: Database) -> None:
    with database.engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    assert database.dialect == "sqlite"


def test_the_check_is_critical_and_up_with_the_dialect(database: Database) -> None:
    health_check = database.health_check()

    assert (health_check.name, health_check.critical) == ("database", True)
    assert check(database) == CheckResult(UP, {"dialect": "sqlite"})


def test_the_check_is_down_with_only_an_error_class_when_unreachable() -> None:
    url = f"postgresql+psycopg2://app:s3cret@127.0.0.1:{closed_port()}/app"
    database = Database(DatabaseSection(url=url, connect_timeout_seconds=1))
    try:
        result = check(database)
    finally:
        database.dispose()

    assert result == CheckResult(DOWN, {"error": "OperationalError"})
    assert "s3cret" not in json.dumps(result.details)
    assert "127.0.0.1" not in str(result)


@pytest.mark.postgres
def test_the_check_follows_postgres_going_down_and_coming_back(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    database = Database(DatabaseSection(url=postgres_url, connect_timeout_seconds=1))
    try:
        assert check(database) == CheckResult(UP, {"dialect": "postgresql"})

        postgres_server.stop()
        try:
            down = check(database)
        finally:
            postgres_server.start()
        up = check(database)
    finally:
        database.dispose()

    assert down == CheckResult(DOWN, {"error": "OperationalError"})
    assert up.status == UP


@pytest.mark.postgres
def test_session_scope_rolls_back_on_postgres(postgres_url: str) -> None:
    database = Database(DatabaseSection(url=postgres_url))
    try:
        with database.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE item (id serial PRIMARY KEY, name text)"))
        with database.session_scope() as session:
            session.execute(sa.text("INSERT INTO item (name) VALUES ('kept')"))
        with pytest.raises(RuntimeError):
            write_then_fail(database, "lost")

        assert names(database) == ["kept"]
    finally:
        database.dispose()


def test_sql_statements_produce_client_spans_inside_the_request_span(tmp_path: Path) -> None:
    recorder = SpanRecorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"), provider)
    try:
        with (
            provider.get_tracer("tests").start_as_current_span("GET /items") as parent,
            database.session_scope() as session,
        ):
            session.execute(sa.text("SELECT 42"))
    finally:
        database.dispose()

    (sql,) = [span for span in recorder.spans() if span.name != "GET /items"]
    assert sql.name.startswith("SELECT")
    assert sql.kind == SpanKind.CLIENT
    assert sql.attributes is not None
    assert sql.attributes["db.query.text"] == "SELECT 42"
    assert sql.attributes["db.system.name"] == "sqlite"
    assert sql.parent is not None
    assert sql.parent.span_id == parent.get_span_context().span_id


def test_a_failing_statement_ends_its_span_with_the_error(tmp_path: Path) -> None:
    recorder = SpanRecorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"), provider)
    try:
        with pytest.raises(sa.exc.OperationalError), database.session_scope() as session:
            session.execute(sa.text("SELECT * FROM missing_table"))
    finally:
        database.dispose()

    (sql,) = recorder.spans()
    assert sql.name == "SELECT db.sqlite"
    assert sql.status.status_code is StatusCode.ERROR
    assert sql.attributes is not None
    assert sql.attributes["error.type"] == "OperationalError"
    assert sql.events[0].name == "exception"


def test_without_a_tracer_provider_no_spans_are_made(tmp_path: Path) -> None:
    recorder = SpanRecorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    try:
        with provider.get_tracer("tests").start_as_current_span("parent"), database.session_scope():
            current_session().execute(sa.text("SELECT 1"))
    finally:
        database.dispose()

    assert recorder.names() == ["parent"]


def test_the_check_runs_in_the_health_registry(database: Database) -> None:
    health = HealthRegistry(timeout_seconds=2, shutdown=ShutdownState())
    health.add(database.health_check())

    readiness = asyncio.run(health.readiness())

    assert readiness.status == UP
    assert readiness.checks["database"]["dialect"] == "sqlite"


def test_sqlite_read_then_write_after_another_commit_does_not_fail(tmp_path: Path) -> None:
    """A request that reads, then writes after another request committed, must wait for the
    lock, not fail at once on a stale snapshot ("database is locked")."""
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    try:
        with database.session_scope() as session:
            session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
            session.execute(sa.text("INSERT INTO t VALUES (1, 0)"))
        first, second = database.sessions(), database.sessions()
        first.execute(sa.text("SELECT v FROM t WHERE id = 1")).all()
        second.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
        second.commit()
        first.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
        first.commit()
        with database.session_scope() as session:
            assert session.execute(sa.text("SELECT v FROM t")).scalar_one() == 2
        first.close()
        second.close()
    finally:
        database.dispose()


def test_sqlite_savepoints_roll_back_with_their_transaction(tmp_path: Path) -> None:
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    try:
        with database.session_scope() as session:
            session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))

        def failing_request() -> None:
            with database.session_scope() as session:
                with session.begin_nested():
                    session.execute(sa.text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("the request failed after its savepoint was released")

        with pytest.raises(RuntimeError):
            failing_request()
        with database.session_scope() as session:
            assert session.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
    finally:
        database.dispose()


# -- a database that cannot serve: DatabaseUnavailable ---------------------------------------


def _dbapi(kind: type[sa.exc.DBAPIError], message: str, invalidated: bool) -> sa.exc.DBAPIError:
    return kind("SELECT 1", {}, Exception(message), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (
            sa.exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"),
            DATABASE_POOL_EXHAUSTED_DETAIL,
        ),
        (sa.exc.DisconnectionError("connection gone"), DATABASE_UNAVAILABLE_DETAIL),
        (
            _dbapi(sa.exc.OperationalError, "server closed the connection", True),
            DATABASE_UNAVAILABLE_DETAIL,
        ),
        (
            _dbapi(sa.exc.InterfaceError, "connection already closed", True),
            DATABASE_UNAVAILABLE_DETAIL,
        ),
        (_dbapi(sa.exc.OperationalError, "no such table: item", False), None),
        (_dbapi(sa.exc.OperationalError, "deadlock detected", False), None),
        (_dbapi(sa.exc.InterfaceError, "Error binding parameter 1", False), None),
        (_dbapi(sa.exc.IntegrityError, "UNIQUE constraint failed", False), None),
        (sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")), None),
        (RuntimeError("server closed the connection"), None),
    ],
)
def test_only_connectivity_errors_make_the_database_unavailable(
    error: BaseException, detail: str | None
) -> None:
    unavailable = database_unavailable(error)

    if detail is None:
        assert unavailable is None
    else:
        assert isinstance(unavailable, DatabaseUnavailable)
        assert unavailable.detail == detail
        assert unavailable.headers["Retry-After"] == "5"


def test_a_connection_that_cannot_be_made_counts_as_lost() -> None:
    url = f"postgresql+psycopg2://app:s3cret@127.0.0.1:{closed_port()}/app"
    database = Database(DatabaseSection(url=url, connect_timeout_seconds=1))
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            database.engine.connect()
    finally:
        database.dispose()

    assert raised.value.connection_invalidated


def test_session_scope_raises_database_unavailable_without_connection_details() -> None:
    url = f"postgresql+psycopg2://app:s3cret@127.0.0.1:{closed_port()}/app"
    database = Database(DatabaseSection(url=url, connect_timeout_seconds=1))
    try:
        with (
            capture_logs() as events,
            pytest.raises(DatabaseUnavailable) as raised,
            database.session_scope() as session,
        ):
            session.execute(sa.text("SELECT 1"))
    finally:
        database.dispose()

    error = raised.value
    assert (error.status, error.detail) == (503, DATABASE_UNAVAILABLE_DETAIL)
    # The driver's message stays out of any traceback a service logs (a background loop's).
    assert isinstance(error.__context__, sa.exc.OperationalError)
    printed = "".join(traceback.format_exception(error))
    assert "s3cret" not in printed
    assert "127.0.0.1" not in printed
    (warning,) = events
    assert (warning["log_level"], warning["event"]) == ("warning", "database unavailable")
    assert warning["error"] == "OperationalError"
    assert "s3cret" not in json.dumps(events)
    assert "127.0.0.1" not in json.dumps(events)


def test_session_scope_raises_database_unavailable_when_the_pool_is_exhausted(
    tmp_path: Path,
) -> None:
    section = DatabaseSection(
        url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        pool_size=1,
        max_overflow=0,
        pool_timeout_seconds=0.1,
    )
    database = Database(section)
    try:
        with (
            database.engine.connect(),
            pytest.raises(DatabaseUnavailable) as raised,
            database.session_scope() as session,
        ):
            session.execute(sa.text("SELECT 1"))
        with database.session_scope() as session:  # the connection is back: served again
            assert session.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()

    assert raised.value.detail == DATABASE_POOL_EXHAUSTED_DETAIL


def _backend_pid(session: sa.orm.Session) -> int:
    return int(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.postgres
def test_a_connection_lost_mid_transaction_is_discarded_and_the_next_session_works(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    database = Database(DatabaseSection(url=postgres_url, pool_size=1, max_overflow=0))
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    lost: list[int] = []

    def write_terminated_half_way() -> None:
        with database.session_scope() as session:
            session.execute(sa.text("INSERT INTO item (name) VALUES ('lost')"))
            lost.append(_backend_pid(session))
            with admin.connect() as killer:
                killer.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": lost[0]})
            session.execute(sa.text("INSERT INTO item (name) VALUES ('lost too')"))

    try:
        with database.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE item (id serial PRIMARY KEY, name text)"))
        with pytest.raises(DatabaseUnavailable):
            write_terminated_half_way()
        with database.session_scope() as session:
            assert _backend_pid(session) not in lost
            assert session.execute(sa.text("SELECT count(*) FROM item")).scalar_one() == 0
    finally:
        admin.dispose()
        database.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("57P01", True),  # admin_shutdown: pg_terminate_backend, a fast shutdown
        ("57P03", True),  # cannot_connect_now: still starting up
        ("08006", True),  # connection_failure
        ("40001", False),  # serialization_failure: psycopg2 calls it an OperationalError too
        ("57014", False),  # query_canceled (statement_timeout)
    ],
)
def test_only_the_sqlstates_of_a_lost_connection_make_the_database_unavailable(
    postgres_url: str, sqlstate: str, unavailable: bool
) -> None:
    database = Database(DatabaseSection(url=postgres_url))
    raise_it = f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$"
    expected = DatabaseUnavailable if unavailable else sa.exc.DBAPIError
    try:
        with pytest.raises(expected), database.session_scope() as session:
            session.execute(sa.text(raise_it))
        with database.session_scope() as session:  # whichever it was, the next one works
            assert session.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        database.dispose()


def test_a_failing_statement_never_carries_its_bound_values(database: Database) -> None:
    secret = "s3cret-card-4111111111111111"
    with pytest.raises(sa.exc.SQLAlchemyError) as caught, database.engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO missing_table (name) VALUES (:name)"), {"name": secret}
        )

    rendered = "".join(traceback.format_exception(caught.value))
    assert "missing_table" in rendered  # the statement still says what failed
    assert secret not in rendered
    assert "parameters hidden" in rendered


@pytest.mark.postgres
def test_a_pooled_connection_is_pinged_only_when_it_idled_or_the_server_closed_it(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(DatabaseSection(url=postgres_url, pool_size=1, max_overflow=0))
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    pings: list[object] = []
    ping = database.engine.dialect.do_ping
    monkeypatch.setattr(
        database.engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection)
    )
    # "moments ago" whatever the machine's load, until the idle part below
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 30.0)
    try:
        with database.session_scope() as session:
            first = _backend_pid(session)
            session.commit()  # the connection goes back to the pool, and out again
            assert _backend_pid(session) == first
        with database.session_scope() as session:
            assert _backend_pid(session) == first
        assert pings == [], "a connection used moments ago is not pinged"

        with admin.connect() as killer:  # an operator, a fail-over: gone while it idles
            killer.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": first})
        with database.session_scope() as session:  # at once: the server said goodbye, so
            second = _backend_pid(session)  # it is pinged, found dead and replaced: no error
        assert second != first
        assert pings == [1]

        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.2)
        time.sleep(0.3)
        with database.session_scope() as session:  # idle long enough to be pinged anyway
            assert _backend_pid(session) == second
        assert pings == [1, 1]
    finally:
        admin.dispose()
        database.dispose()
