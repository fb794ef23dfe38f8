"""SQLAlchemy 2: one engine per service, one session per request, SQL spans, a readiness check.

PostgreSQL (psycopg2) and SQLite both work; SQLite gets foreign keys, WAL and a busy timeout so
that it behaves like a real database under a threaded server.

A database that cannot serve (unreachable, the connection lost, the pool exhausted) is one
exception, :class:`~chassis.errors.DatabaseUnavailable` (503 with Retry-After): see
:func:`database_unavailable` for which errors count, logged once and without connection details.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry.semconv.attributes import db_attributes, error_attributes, server_attributes
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from chassis.config import DatabaseSection
from chassis.database_url import normalise_url
from chassis.errors import (
    DATABASE_POOL_EXHAUSTED_DETAIL,
    DATABASE_UNAVAILABLE_DETAIL,
    DatabaseUnavailable,
)
from chassis.health import DOWN, UP, CheckResult
from chassis.logging import get_logger

log = get_logger("chassis.db")

# Constraint names every service's MetaData uses, so migrations can name what they alter.
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}

_current_session: ContextVar[Session | None] = ContextVar("chassis_session", default=None)


def current_session() -> Session:
    """The session of the request being handled (opened and closed by the chassis)."""
    session = _current_session.get()
    if session is None:
        raise RuntimeError("no database session: call this inside a request handler")
    return session


class Database:
    def __init__(self, section: DatabaseSection, tracer_provider: TracerProvider | None = None):
        self.url = normalise_url(section.url.get_secret_value())
        self.engine = _create_engine(self.url, section)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if tracer_provider is not None:
            SqlSpans(self.engine, tracer_provider)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Commit when the block succeeds, roll back when it raises: nothing half-written.

        When the database cannot serve, the session's connection is discarded (never pooled
        again) and the error leaves as :class:`DatabaseUnavailable`: the next session connects
        afresh, so the service recovers by itself once the database is back.
        """
        session = self.sessions()
        token = _current_session.set(session)
        try:
            with _unavailable_as_problem():
                try:
                    yield session
                    session.commit()
                except BaseException as exc:
                    if _unavailable_detail(exc) is None:
                        session.rollback()
                    else:
                        session.invalidate()
                    raise
        finally:
            _current_session.reset(token)
            session.close()

    def health_check(self) -> DatabaseCheck:
        return DatabaseCheck(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


class DatabaseCheck:
    """Critical: the service cannot serve without its own database."""

    name = "database"
    critical = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def check(self) -> CheckResult:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            # The class name only: driver messages can hold host names and user names.
            original = getattr(exc, "orig", None)
            error = type(original if original is not None else exc).__name__
            return CheckResult(DOWN, {"error": error})
        return CheckResult(UP, {"dialect": self.engine.dialect.name})


def database_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The chassis' error for a SQLAlchemy error that means the database cannot serve, logged
    here once at WARNING; ``None`` for any other error (an integrity error, a bad statement, a
    deadlock: the service's to map, or a 500).

    Counted: a connection that could not be made (refused, timed out, authentication) or was
    lost (SQLAlchemy's disconnect detection, extended by :func:`_flag_lost_connections`), a
    ``DisconnectionError``, and the pool's ``TimeoutError`` (no connection came free within
    ``pool_timeout_seconds``). The log names the error class and the SQLSTATE, never the
    driver's message: psycopg2's name the host, the port and at times the user.
    """
    detail = _unavailable_detail(exc)
    if detail is None:
        return None
    original = getattr(exc, "orig", None) or exc
    facts: dict[str, Any] = {"error": type(original).__name__}
    if sqlstate := _sqlstate(original):
        facts["sqlstate"] = sqlstate
    if detail == DATABASE_POOL_EXHAUSTED_DETAIL:
        log.warning("database connection pool exhausted", **facts)
    else:
        log.warning("database unavailable", **facts)
    return DatabaseUnavailable(detail)


def _unavailable_detail(exc: BaseException) -> str | None:
    if isinstance(exc, sa_exc.TimeoutError):  # only the pool raises it
        return DATABASE_POOL_EXHAUSTED_DETAIL
    if isinstance(exc, sa_exc.DisconnectionError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return DATABASE_UNAVAILABLE_DETAIL
    return None


@contextmanager
def _unavailable_as_problem() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        unavailable = database_unavailable(exc)
        if unavailable is None:
            raise
        # from None: a traceback logged anywhere (a background loop's) must not print the
        # driver's message; the original stays on __context__.
        raise unavailable from None


# SQLSTATEs of a connection that is gone: class 08 (connection exception), and the server
# shutting down, crashed or still starting (57P01 admin_shutdown, as after pg_terminate_backend,
# 57P02 crash_shutdown, 57P03 cannot_connect_now).
_GONE_CLASS = "08"
_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


def _flag_lost_connections(context: ExceptionContext) -> None:
    """``handle_error`` hook: SQLAlchemy's disconnect detection (message patterns of the
    driver) extended to a connection that could not be made at all and to the SQLSTATEs
    above. A flagged error says ``connection_invalidated`` and its connection is
    discarded rather than pooled again."""
    if context.is_disconnect:
        return
    connecting = context.connection is None and not context.is_pre_ping
    sqlstate = _sqlstate(context.original_exception)
    if connecting or sqlstate.startswith(_GONE_CLASS) or sqlstate in _GONE_STATES:
        context.is_disconnect = True


def _sqlstate(error: BaseException) -> str:
    """The SQLSTATE a driver attached (psycopg2 ``pgcode``, psycopg 3 ``sqlstate``), or ''."""
    code = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
    return code if isinstance(code, str) else ""


def _create_engine(url: str, section: DatabaseSection) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    # Bound values (a customer's name, a token, whatever a handler stores) never reach an
    # exception's text, and so never an "unhandled error" log line or database.echo's output.
    options: dict[str, Any] = {"echo": section.echo, "hide_parameters": True}
    pooled = {
        "pool_size": section.pool_size,
        "max_overflow": section.max_overflow,
        "pool_timeout": section.pool_timeout_seconds,
    }
    if backend == "sqlite":
        options["connect_args"] = {"check_same_thread": False, "timeout": 5}
        if parsed.database and parsed.database != ":memory:":  # in-memory: one static connection
            options.update(pooled)
    else:
        options.update(pooled)
        if backend == "postgresql":
            options["connect_args"] = {"connect_timeout": section.connect_timeout_seconds}
    engine = create_engine(url, **options)
    if backend != "sqlite":
        _ping_when_idle(engine)
    event.listen(engine, "handle_error", _flag_lost_connections)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _sqlite_begin_before_writing)
    return engine


# A pooled connection idle for less than this is not pinged before use (HikariCP's "alive
# bypass window" is the same 500 ms): a request checks connections out several times (once per
# transaction), and a ping each time was a round trip per commit.
PING_AFTER_IDLE_SECONDS = 0.5


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping (a database restart must not fail the first request after it), but with a
    round trip only for connections that sat in the pool longer than PING_AFTER_IDLE_SECONDS,
    or that the server wrote to while they idled: a server that stops or ends a backend tells
    the client and closes the socket, which a zero-timeout poll sees without a round trip (a
    restart can take less than the window). A failed ping raises DisconnectionError: the pool
    discards that connection and opens a new one in its place."""

    @event.listens_for(engine.pool, "checkin")
    def _went_idle(_: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_it_idled(dbapi_connection: Any, record: Any, _: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None:
            return  # a new connection
        recent = time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS
        if recent and not _server_wrote(dbapi_connection):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa_exc.DisconnectionError("the pooled connection is gone") from exc
        if not alive:
            raise sa_exc.DisconnectionError("the pooled connection is gone")


def _server_wrote(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has something to read (a closing server's message
    or end of file); True when the driver gives no socket (then it is pinged)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return True
    try:
        poller = select.poll()
        poller.register(fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except Exception:  # a driver that closed it already (InterfaceError), no poll(): ping it
        return True


_SQLITE_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|SAVEPOINT|CREATE|DROP|ALTER)\b", re.I)


def _sqlite_begin_before_writing(
    connection: Any, _: Any, statement: str, __: Any, ___: Any, ____: bool
) -> None:
    """SQLite transactions start at the first write, with the write lock taken at once.

    Reads before it see the latest data (as pysqlite does on its own), so a read-then-write
    request never fails on a snapshot another writer made stale ("database is locked" at once,
    without waiting), and BEGIN IMMEDIATE waits for the lock under busy_timeout. Unlike
    pysqlite's own handling, a SAVEPOINT also begins the transaction, so releasing one no
    longer commits: nested transactions roll back with their request.
    """
    driver = connection.connection.driver_connection
    if not driver.in_transaction and _SQLITE_WRITE.match(statement):
        driver.execute("BEGIN IMMEDIATE")  # on the driver: no SQL span for it


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions begin in the hook above
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class SqlSpans:
    """One CLIENT span per statement, named ``<OPERATION> <database>`` (semconv attributes).

    Written here rather than taken from the contrib SQLAlchemy instrumentation: that one cost
    about 90 us per statement on books' hottest query (attribute dicts for a metrics counter,
    comment handling), this one a third of it; and it attaches to one engine without the
    process-wide instrumentor singleton, so each test can build its own app.
    """

    def __init__(self, engine: Engine, tracer_provider: TracerProvider) -> None:
        self.tracer = tracer_provider.get_tracer("chassis.db")
        url = engine.url
        self.database = url.database or ""
        if engine.dialect.name == "sqlite":
            self.database = self.database.rsplit("/", 1)[-1]  # the file name, not its path
        self.attributes: dict[str, Any] = {
            db_attributes.DB_SYSTEM_NAME: engine.dialect.name,
            db_attributes.DB_NAMESPACE: self.database,
        }
        if url.host:
            self.attributes[server_attributes.SERVER_ADDRESS] = url.host
        if url.port:
            self.attributes[server_attributes.SERVER_PORT] = url.port
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._error)

    def _before(self, _: Any, __: Any, statement: str, ___: Any, context: Any, ____: bool) -> None:
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = self.tracer.start_span(
            f"{operation} {self.database}".rstrip(),
            kind=SpanKind.CLIENT,
            attributes={
                **self.attributes,
                db_attributes.DB_OPERATION_NAME: operation,
                db_attributes.DB_QUERY_TEXT: statement,
            },
        )
        context.chassis_span = span

    @staticmethod
    def _after(_: Any, __: Any, ___: str, ____: Any, context: Any, _____: bool) -> None:
        span = getattr(context, "chassis_span", None)
        if span is not None:
            span.end()
            context.chassis_span = None

    @staticmethod
    def _error(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, "chassis_span", None) if context is not None else None
        if span is not None:
            error = exception_context.original_exception
            span.record_exception(error)
            span.set_attribute(error_attributes.ERROR_TYPE, type(error).__name__)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            context.chassis_span = None
