import asyncio
import inspect
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from starlette.responses import PlainTextResponse, Response

from chassis import DatabaseUnavailable, NotFoundError, current_session
from chassis.config import DatabaseSection
from chassis.db import Database
from chassis.handlers import HandlerResolver
from chassis.tracing import current_trace_id


def make_module(**functions: Any) -> ModuleType:
    module = ModuleType("tests_handlers")
    for name, function in functions.items():
        setattr(module, name, function)
    return module


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(DatabaseSection(url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    with database.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE item (name TEXT)"))
    yield database
    database.dispose()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(2, thread_name_prefix="tests-handler")
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture
def resolve(database: Database, executor: ThreadPoolExecutor) -> Callable[..., Callable[..., Any]]:
    def resolve(function: Callable[..., Any], operation_id: str = "handler") -> Callable[..., Any]:
        resolver = HandlerResolver(make_module(handler=function), database, executor)
        resolved: Callable[..., Any] = resolver.function_resolver(operation_id)
        return resolved

    return resolve


def call(handler: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    response = asyncio.run(handler(*args, **kwargs))
    assert isinstance(response, Response)
    return response


def body(response: Response) -> Any:
    return json.loads(bytes(response.body))


def count(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM item")).scalar_one())


def test_an_unknown_operation_id_is_an_import_error_naming_it(
    database: Database, executor: ThreadPoolExecutor
) -> None:
    resolver = HandlerResolver(make_module(value=42), database, executor)

    with pytest.raises(ImportError, match=r"'api\.missing'.*tests_handlers.*'missing'"):
        resolver.function_resolver("api.missing")
    with pytest.raises(ImportError, match="'value'"):
        resolver.function_resolver("value")


def test_a_dotted_operation_id_resolves_its_last_part(
    resolve: Callable[..., Callable[..., Any]],
) -> None:
    handler = resolve(lambda: {"ok": True}, "some.controller.handler")

    assert body(call(handler)) == {"ok": True}


def test_every_handler_is_async_for_connexion(resolve: Callable[..., Callable[..., Any]]) -> None:
    def sync_handler() -> None: ...

    async def async_handler() -> None: ...

    assert inspect.iscoroutinefunction(resolve(sync_handler))
    assert inspect.iscoroutinefunction(resolve(async_handler))
    assert resolve(sync_handler).__name__ == "sync_handler"  # connexion introspects the function


def test_a_sync_handler_runs_on_a_worker_thread_with_a_committed_session(
    resolve: Callable[..., Callable[..., Any]], database: Database
) -> None:
    def create(name: str) -> tuple[dict[str, Any], int]:
        current_session().execute(sa.text("INSERT INTO item VALUES (:n)"), {"n": name})
        return {"name": name, "thread": threading.current_thread().name}, 201

    response = call(resolve(create), name="dune")

    assert response.status_code == 201
    assert body(response)["thread"].startswith("tests-handler")
    assert count(database) == 1


def test_a_failing_sync_handler_rolls_back_and_raises(
    resolve: Callable[..., Callable[..., Any]], database: Database
) -> None:
    def create() -> None:
        current_session().execute(sa.text("INSERT INTO item VALUES ('lost')"))
        current_session().flush()
        raise NotFoundError("book_id: no book 1")

    with pytest.raises(NotFoundError):
        call(resolve(create))

    assert count(database) == 0


def test_a_sync_handler_whose_database_is_unreachable_raises_database_unavailable(
    executor: ThreadPoolExecutor,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    url = f"postgresql+psycopg2://app:s3cret@127.0.0.1:{port}/app"
    database = Database(DatabaseSection(url=url, connect_timeout_seconds=1))

    def count_items() -> dict[str, Any]:
        return {"count": current_session().execute(sa.text("SELECT count(*) FROM item")).scalar()}

    handler = HandlerResolver(make_module(count_items=count_items), database, executor)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            call(handler.function_resolver("count_items"))
    finally:
        database.dispose()

    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"] == "5"
    assert "s3cret" not in str(raised.value)


def test_a_sync_handler_sees_the_request_context(
    resolve: Callable[..., Callable[..., Any]],
) -> None:
    tracer = TracerProvider().get_tracer("tests")

    async def request() -> tuple[Response, str | None]:
        with tracer.start_as_current_span("request"):
            return await resolve(lambda: {"trace_id": current_trace_id()})(), current_trace_id()

    response, trace_id = asyncio.run(request())

    assert trace_id is not None
    assert body(response) == {"trace_id": trace_id}


def test_an_async_handler_runs_on_the_event_loop(
    resolve: Callable[..., Callable[..., Any]],
) -> None:
    async def hello(name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"hello": name, "thread": threading.current_thread().name}

    response = call(resolve(hello), name="ann")

    assert body(response) == {"hello": "ann", "thread": threading.current_thread().name}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("result", "status", "content", "headers"),
    [
        ({"a": 1}, 200, b'{"a":1}', {}),
        ([1, 2], 200, b"[1,2]", {}),
        (({"a": 1}, 201), 201, b'{"a":1}', {}),
        (({"a": 1}, 201, {"Location": "/a/1"}), 201, b'{"a":1}', {"location": "/a/1"}),
        ((None, 204), 204, b"", {}),
        (None, 200, b"", {}),
        (PlainTextResponse("plain", status_code=202), 202, b"plain", {}),
        ((PlainTextResponse("plain"), 418), 418, b"plain", {}),
    ],
)
def test_return_values_become_responses(
    resolve: Callable[..., Callable[..., Any]],
    result: Any,
    status: int,
    content: bytes,
    headers: dict[str, str],
) -> None:
    for handler in (lambda: result, _async_returning(result)):
        response = call(resolve(handler))

        assert response.status_code == status
        assert bytes(response.body) == content
        assert headers.items() <= dict(response.headers).items()


def _async_returning(result: Any) -> Callable[[], Any]:
    async def handler() -> Any:
        return result

    return handler
