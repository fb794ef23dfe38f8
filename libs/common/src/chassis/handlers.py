"""Binds a spec's ``operationId`` to a function of the service's handler module.

Handlers are plain functions returning a body, ``(body, status)`` or ``(body, status, headers)``;
bodies are rendered as JSON here (connexion's own rendering is slower and insists on a content
type whenever an operation also declares problem+json answers). A synchronous handler runs on the
chassis' worker threads (:mod:`chassis.threads`) inside a database session scope (commit on
success, rollback on error; a database that cannot serve leaves as ``DatabaseUnavailable``, a
503), so blocking database work never stalls the event loop; an
``async def`` handler runs on the loop and opens sessions itself. :class:`HandlerApp`, the
innermost app under connexion's middlewares, calls them with the arguments connexion extracts,
each operation bound once at start-up.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from types import ModuleType
from typing import Any

import orjson
from connexion.decorators.parameter import get_arguments, pythonic, sanitized
from connexion.http_facts import FORM_CONTENT_TYPES
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.abstract import RoutedAPI, RoutedMiddleware
from connexion.operations import AbstractOperation, OpenAPIOperation, Swagger2Operation
from connexion.resolver import Resolver
from connexion.utils import inspect_function_arguments
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from chassis.db import Database
from chassis.threads import HandlerThreads


class HandlerResolver(Resolver):  # type: ignore[misc]
    def __init__(self, module: ModuleType, database: Database, executor: Executor):
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
    function: Callable[..., Any], database: Database, executor: Executor
) -> Callable[..., Any]:
    def call_in_session(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response:
        with database.session_scope():
            result = function(*args, **kwargs)
        return to_response(result)

    if isinstance(executor, HandlerThreads):
        call = executor.call

        @functools.wraps(function)
        async def lean_handler(*args: Any, **kwargs: Any) -> Response:
            # The copied context carries the request's span into the thread (SQL spans nest).
            return await call(contextvars.copy_context().run, call_in_session, args, kwargs)

        return lean_handler

    @functools.wraps(function)
    async def handler(*args: Any, **kwargs: Any) -> Response:
        # The copied context carries the request's span into the thread (SQL spans nest).
        request_context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            executor, request_context.run, call_in_session, args, kwargs
        )

    return handler


class BoundOperation:
    """One operation's handler with everything connexion derives from the spec worked out once.

    Per request it does what connexion's parameter decorator does (``get_arguments`` turns the
    path, query and body into the handler's keyword arguments, typed as the spec says) and
    nothing more: handlers bound by :class:`HandlerResolver` already return a Response.
    """

    def __init__(self, operation: AbstractOperation, *, pythonic_params: bool) -> None:
        self.operation = operation
        self.function = operation.function
        self.arguments, self.has_kwargs = inspect_function_arguments(self.function)
        self.uri_parser = operation.uri_parser_class(
            operation.parameters, operation.body_definition()
        )
        # connexion cleans every parameter name with three regular expressions per request.
        self.sanitize = functools.lru_cache(maxsize=1024)(
            pythonic if pythonic_params else sanitized
        )
        # An OpenAPI 3 operation names its body the same whatever the content type: whether the
        # handler takes one is known now.
        self.takes_body = not isinstance(operation, OpenAPIOperation) or (
            self.sanitize(operation.body_name(DEFAULT_CONTENT_TYPE)) in self.arguments
            or self.has_kwargs
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.takes_body and not scope.get("query_string") and not _has_content_type(scope):
            # Nothing to read but the path: what connexion's request would give for a request
            # without a query string or a content type (no query parameters, no form, no
            # files), without building one.
            kwargs = get_arguments(
                self.operation,
                path_params=self.uri_parser.resolve_path(scope.get("path_params", {})),
                query_params={},
                body=None,
                files={},
                arguments=self.arguments,
                has_kwargs=self.has_kwargs,
                sanitize=self.sanitize,
                content_type=DEFAULT_CONTENT_TYPE,
            )
            response = await self.function(**kwargs)
            await response(scope, receive, send)
            return
        request = ConnexionRequest(scope, receive, uri_parser=self.uri_parser)
        body = await self._body(request)
        kwargs = get_arguments(
            self.operation,
            path_params=request.path_params,
            query_params=request.query_params,
            body=body,
            files=await request.files(),
            arguments=self.arguments,
            has_kwargs=self.has_kwargs,
            sanitize=self.sanitize,
            content_type=request.mimetype,
        )
        response = await self.function(**kwargs)
        await response(scope, receive, send)

    async def _body(self, request: ConnexionRequest) -> Any:
        """The parsed body when the handler takes it (connexion's ``_maybe_get_body``)."""
        name = self.sanitize(self.operation.body_name(request.content_type))
        wanted = name in self.arguments or self.has_kwargs
        if not wanted and not (
            request.mimetype in FORM_CONTENT_TYPES and isinstance(self.operation, Swagger2Operation)
        ):
            return None
        body = request.get_body()
        while asyncio.iscoroutine(body):
            body = await body
        return body


DEFAULT_CONTENT_TYPE = "application/octet-stream"  # a request's without the header (connexion)


def _has_content_type(scope: Scope) -> bool:
    return any(name == b"content-type" for name, _ in scope["headers"])


class HandlerApi(RoutedAPI[BoundOperation]):  # type: ignore[misc]
    def __init__(self, *args: Any, pythonic_params: bool, **kwargs: Any) -> None:
        kwargs.pop("jsonifier", None)  # handlers render their own JSON (to_response)
        super().__init__(*args, **kwargs)
        self.pythonic_params = pythonic_params
        self.add_paths()

    def make_operation(self, operation: AbstractOperation) -> BoundOperation:
        return BoundOperation(operation, pythonic_params=self.pythonic_params)


class HandlerApp(RoutedMiddleware[HandlerApi]):  # type: ignore[misc]
    """The innermost app under connexion's middlewares: calls the routed operation's handler.

    It stands where ``connexion.AsyncApp`` puts its own application, which builds its decorator
    chain again on every request (new wrappers, ``inspect.signature`` of the handler, a new URI
    parser, each step reading the operation through a context-local proxy): about 100 µs a
    request, the largest cost connexion added to books' ``GET /books/{book_id}``. Here each
    operation is bound once, when connexion registers the API at start-up.
    """

    api_cls = HandlerApi

    def __init__(self) -> None:
        super().__init__(Router())  # a request that names no operation: 404, as in AsyncApp
