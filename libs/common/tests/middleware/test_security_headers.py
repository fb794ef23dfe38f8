"""SecurityHeadersMiddleware: nosniff on every answer, a Content-Security-Policy without inline
script on pages, headers the application set kept; Swagger UI's page allows its own inline
blocks by hash (api_docs.py), under any root path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from chassis import Service
from chassis.middleware.security_headers import (
    SecurityHeadersMiddleware,
    content_security_policy,
    source_hash,
)
from chassis.testing import service_client

INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def answering(
    body: bytes = b"{}", media_type: str | None = "application/json", **headers: str
) -> Callable[[Scope, Receive, Send], Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(body, media_type=media_type, headers=headers)
        if media_type is None:
            del response.headers["content-type"]
        await response(scope, receive, send)

    return app


def get(app: Callable[[Scope, Receive, Send], Any]) -> Any:
    return TestClient(SecurityHeadersMiddleware(app)).get("/")


def policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def assert_page_policy(response: Any) -> dict[str, list[str]]:
    found = policy(response.headers["content-security-policy"])
    assert "'unsafe-inline'" not in found["script-src"]
    assert "'unsafe-eval'" not in found["script-src"]
    assert found["script-src"][0] == "'self'"
    assert found["frame-ancestors"] == ["'none'"]
    assert found["object-src"] == ["'none'"]
    assert found["base-uri"] == ["'none'"]
    assert response.headers["x-frame-options"] == "DENY"
    return found


# -- the middleware -------------------------------------------------------------------------------


def test_json_says_nosniff_and_carries_no_page_policy() -> None:
    response = get(answering())

    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers
    assert "x-frame-options" not in response.headers
    assert response.json() == {}


@pytest.mark.parametrize("media_type", [None, "text/plain", "text/event-stream", "text/css"])
def test_what_is_not_a_page_says_nosniff_only(media_type: str | None) -> None:
    response = get(answering(b"x", media_type))

    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize(
    "content_type", ["text/html", "text/html; charset=utf-8", "Text/HTML", "image/svg+xml"]
)
def test_a_page_gets_a_policy_that_forbids_inline_script(content_type: str) -> None:
    response = get(answering(b"<p>hi</p>", content_type))

    found = assert_page_policy(response)
    assert found["style-src"] == ["'self'"]
    assert found["default-src"] == ["'self'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == b"<p>hi</p>"


def test_headers_the_app_set_are_kept_and_never_doubled() -> None:
    own = {
        "Content-Security-Policy": "default-src 'none'",
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
    }
    response = get(answering(b"<p>hi</p>", "text/html", **own))

    for name, value in own.items():
        assert response.headers.get_list(name) == [value], name


def test_only_the_start_of_a_response_is_changed() -> None:
    sent: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async def collect(message: Any) -> None:
        sent.append(message)

    async def nothing() -> Any:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(SecurityHeadersMiddleware(app)(scope, nothing, collect))

    assert sent[0]["headers"] == [(b"x-content-type-options", b"nosniff")]
    assert sent[1:] == [
        {"type": "http.response.body", "body": b"a", "more_body": True},
        {"type": "http.response.body", "body": b"b"},
    ]


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def nothing() -> Any:
        return {}

    async def ignore(_: Any) -> None:
        pass

    scope = {"type": "lifespan"}
    asyncio.run(SecurityHeadersMiddleware(app)(scope, nothing, ignore))

    assert seen == [scope]


def test_source_hash_is_the_one_browsers_compute() -> None:
    # The example of CSP Level 2 (and MDN): <script>alert('Hello, world.');</script>
    expected = "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
    assert source_hash("alert('Hello, world.');") == expected
    # the HTML parser normalises line breaks before the browser hashes the text
    assert source_hash("a;\r\nb;\rc;") == source_hash("a;\nb;\nc;")


def test_a_policy_adds_sources_after_self() -> None:
    found = policy(content_security_policy(scripts=["'sha256-a'"], styles=["'sha256-b'"]))

    assert found["script-src"] == ["'self'", "'sha256-a'"]
    assert found["style-src"] == ["'self'", "'sha256-b'"]


# -- in the service -------------------------------------------------------------------------------


def test_every_answer_of_a_service_says_nosniff(service: Service) -> None:
    with service_client(service) as client:
        for path in ("/health/live", "/metrics", "/openapi.json", "/items/count", "/nowhere"):
            response = client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert "content-security-policy" not in response.headers, path


@pytest.mark.parametrize("root_path", ["", "/bookshop/tiny"])
def test_swagger_ui_allows_exactly_its_own_inline_blocks_by_hash(
    make_service: Callable[..., Service], root_path: str
) -> None:
    with service_client(make_service(), root_path=root_path) as client:
        page = client.get("/ui/")

    assert page.status_code == 200
    found = assert_page_policy(page)
    (script,) = INLINE_SCRIPT.findall(page.text)  # SwaggerUIBundle({url: ..., ...})
    assert f'url: "{root_path}/openapi.json"' in script
    assert found["script-src"] == ["'self'", source_hash(script)]
    styles = INLINE_STYLE.findall(page.text)
    assert found["style-src"] == ["'self'", *map(source_hash, styles)]
    assert "'unsafe-inline'" not in found["style-src"]
