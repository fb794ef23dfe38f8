"""SQLAlchemy 2: one engine per service, one session per request, SQL spans, a readiness check.

PostgreSQL (psycopg2) and SQLite both work; SQLite gets foreign keys, WAL and a busy timeout so
that it behaves like a real database under a threaded server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from chassis.config import DatabaseSection
from chassis.health import DOWN, UP, CheckResult

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
            _trace_sql(self.engine, tracer_provider)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Commit when the block succeeds, roll back when it raises: nothing half-written."""
        session = self.sessions()
        token = _current_session.set(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
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


def _create_engine(url: str, section: DatabaseSection) -> Engine:
    backend = make_url(url).get_backend_name()
    options: dict[str, Any] = {"echo": section.echo, "pool_pre_ping": True}
    if backend == "sqlite":
        options["connect_args"] = {"check_same_thread": False, "timeout": 5}
    else:
        options.update(
            pool_size=section.pool_size,
            max_overflow=section.max_overflow,
            pool_timeout=section.pool_timeout_seconds,
        )
        if backend == "postgresql":
            options["connect_args"] = {"connect_timeout": section.connect_timeout_seconds}
    engine = create_engine(url, **options)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg2, the driver the chassis ships with
    (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def _sqlite_begin(connection: Any) -> None:
    # With the driver's own transaction handling off (below), SQLAlchemy starts every
    # transaction itself, so SAVEPOINTs nest inside it instead of committing on RELEASE.
    connection.connection.driver_connection.execute("BEGIN")  # below tracing: no span


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.isolation_level = None  # pysqlite would not BEGIN before a SAVEPOINT
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _trace_sql(engine: Engine, tracer_provider: TracerProvider) -> None:
    """One span per statement, via the contrib instrumentation's per-engine tracer.

    The instrumentor's ``instrument()`` is a process-wide singleton that ignores every engine
    after the first; tracing each engine directly keeps one app per test possible.
    """
    tracer = tracer_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    usage = (
        NoOpMeterProvider()
        .get_meter("chassis")
        .create_up_down_counter("db.client.connections.usage")
    )
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
