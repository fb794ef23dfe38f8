"""Binds a spec's ``operationId`` to a function of the service's handler module.

Handlers are plain functions returning a body, ``(body, status)`` or ``(body, status, headers)``;
bodies are rendered as JSON here (connexion's own rendering is slower and insists on a content
type whenever an operation also declares problem+json answers). A synchronous handler runs on the
chassis' worker threads inside a database session scope (commit on success, rollback on error),
so blocking database work never stalls the event loop; an ``async def`` handler runs on the loop
and opens sessions itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import orjson
from connexion.resolver import Resolver
from starlette.responses import Response

from chassis.db import Database


class HandlerResolver(Resolver):  # type: ignore[misc]
    def __init__(self, module: ModuleType, database: Database, executor: ThreadPoolExecutor):
        self.module = module
        self.database = database
        self.executor = executor
        super().__init__(function_resolver=self._resolve)

    def _resolve(self, operation_id: str) -> Callable[..., Any]:
        name = operation_id.rsplit(".", 1)[-1]
        function = getattr(self.module, name, None)
        if not callable(function):
            raise ImportError(
                f"operationId {operation_id!r}: {self.module.__name__} has no function {name!r}"
            )
        if inspect.iscoroutinefunction(function):
            return rendered(function)
        return in_session_thread(function, self.database, self.executor)


def rendered(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def handler(*args: Any, **kwargs: Any) -> Response:
        return to_response(await function(*args, **kwargs))

    return handler


def to_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    body, status, headers = result, 200, None
    if isinstance(result, tuple):
        body, status, *rest = result
        headers = rest[0] if rest else None
    if isinstance(body, Response):
        body.status_code = status
        return body
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def in_session_thread(
    function: Callable[..., Any], database: Database, executor: ThreadPoolExecutor
) -> Callable[..., Any]:
    def call_in_session(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response:
        with database.session_scope():
            result = function(*args, **kwargs)
        return to_response(result)

    @functools.wraps(function)
    async def handler(*args: Any, **kwargs: Any) -> Response:
        # The copied context carries the request's span into the thread (SQL spans nest).
        request_context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            executor, request_context.run, call_in_session, args, kwargs
        )

    return handler
