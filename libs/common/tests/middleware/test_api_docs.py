"""ApiDocsMiddleware answers exactly as connexion's SwaggerUIMiddleware, skipping its router for
requests it cannot serve."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from connexion.middleware.swagger_ui import SwaggerUIMiddleware

import chassis.service
from chassis import Service
from chassis.middleware.api_docs import ApiDocsMiddleware, _prefixes
from chassis.testing import service_client

REQUESTS = [
    ("GET", "/openapi.json"),
    ("GET", "/openapi.json/"),
    ("GET", "/openapi.yaml"),
    ("POST", "/openapi.json"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/index.html"),
    ("GET", "/ui/swagger-ui.css"),
    ("GET", "/ui/no-such-asset.js"),
    ("GET", "/uix"),
    ("GET", "/"),
    ("GET", "/items/count"),
    ("GET", "/items/count/"),
    ("GET", "/items/1"),
    ("GET", "/items/x"),
    ("DELETE", "/items/count"),
    ("GET", "/nowhere"),
    ("GET", "/whereami?x=1"),
    ("GET", "/health/live"),
]
TRACE_ID = re.compile(rb'"trace_id":"[0-9a-f]{32}"')


def answers(service: Service) -> list[tuple[Any, ...]]:
    found = []
    with service_client(service, follow_redirects=False) as client:
        for method, path in REQUESTS:
            response = client.request(method, path)
            headers = {k: v for k, v in response.headers.items() if k not in ("date", "etag")}
            body = TRACE_ID.sub(b'"trace_id":"-"', response.content)
            found.append((method, path, response.status_code, headers, body))
    return found


def test_every_request_is_answered_as_connexion_answers_it(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = answers(make_service())
    monkeypatch.setattr(chassis.service, "ApiDocsMiddleware", SwaggerUIMiddleware)
    theirs = answers(make_service())

    assert ours == theirs
    assert {status for _, _, status, _, _ in ours} >= {200, 307, 404, 405}


def test_only_paths_the_docs_router_could_match_enter_it(service: Service) -> None:
    with service_client(service):
        docs = next(m for m in service.api.middleware_stack if isinstance(m, ApiDocsMiddleware))
        prefixes = docs._prefixes

    assert "/openapi.json" in prefixes
    assert "/ui" in prefixes
    assert not any(prefix == "" for prefix in prefixes)
    assert not "/items/1".startswith(prefixes)


def test_an_api_under_a_base_path_sends_everything_under_it_through_the_router() -> None:
    from starlette.routing import Mount, Route, Router

    async def endpoint(*_: Any) -> None:
        pass

    routes = [
        Mount(
            "/api",
            app=Router([Route("/openapi.json", endpoint), Mount("/ui", app=endpoint)]),
        ),
        Route("/elsewhere/{x}/", endpoint),
    ]

    assert sorted(_prefixes(routes, "")) == [
        "/api",
        "/api/openapi.json",
        "/api/ui",
        "/elsewhere",
    ]


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def nothing() -> Any:
        return {}

    async def ignore(_: Any) -> None:
        pass

    scope = {"type": "websocket", "path": "/ui"}
    asyncio.run(ApiDocsMiddleware(app)(scope, nothing, ignore))

    assert seen == [scope]
