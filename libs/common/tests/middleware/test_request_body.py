import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from chassis.middleware.problems import ProblemMiddleware
from chassis.middleware.request_body import BodyTooLarge, RequestBodyMiddleware

LIMIT = 100


class Reader:
    """Reads the whole body and answers its size; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        if scope["type"] != "http":
            return
        body = await Request(scope, receive).body()
        await JSONResponse({"size": len(body)})(scope, receive, send)


async def streams_then_reads(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts answering before it has read the whole body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.body", "body": b"done"})


def chunks(total: int, size: int = 30) -> Iterator[bytes]:
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


@pytest.fixture
def reader() -> Reader:
    return Reader()


@pytest.fixture
def client(reader: Reader) -> TestClient:
    return TestClient(RequestBodyMiddleware(reader, max_body_bytes=LIMIT))


def assert_refused(response: Any) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 413
    assert problem["title"] == "Request Entity Too Large"
    assert problem["detail"] == f"body: the request body is larger than {LIMIT} bytes"
    assert problem["field"] == "body"
    assert "trace_id" in problem


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_a_body_within_the_limit_passes(client: TestClient, size: int) -> None:
    assert client.post("/", content=b"x" * size).json() == {"size": size}


@pytest.mark.parametrize("size", [0, LIMIT])
def test_a_chunked_body_within_the_limit_passes(client: TestClient, size: int) -> None:
    response = client.post("/", content=chunks(size))

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.json() == {"size": size}


def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs(
    client: TestClient, reader: Reader
) -> None:
    response = client.post("/", content=b"x" * (LIMIT + 1))

    assert_refused(response)
    assert reader.calls == 0


def test_a_chunked_body_over_the_limit_is_refused(client: TestClient) -> None:
    response = client.post("/", content=chunks(LIMIT + 50))

    assert "content-length" not in response.request.headers
    assert_refused(response)


def test_a_chunked_body_over_the_limit_is_refused_behind_the_problem_middleware() -> None:
    # In a service the app that reads the body sits behind the chassis' problem middleware.
    client = TestClient(RequestBodyMiddleware(ProblemMiddleware(Reader()), max_body_bytes=LIMIT))

    assert_refused(client.post("/", content=chunks(LIMIT + 50)))


def test_a_lying_content_length_is_still_counted(client: TestClient) -> None:
    response = client.post("/", content=chunks(LIMIT + 50), headers={"Content-Length": "10"})

    assert_refused(response)


def test_a_bad_content_length_falls_back_to_counting(client: TestClient) -> None:
    response = client.post("/", content=chunks(LIMIT + 50), headers={"Content-Length": "many"})

    assert_refused(response)


def test_an_answer_already_started_cannot_become_a_413() -> None:
    client = TestClient(RequestBodyMiddleware(streams_then_reads, max_body_bytes=LIMIT))

    # A body of unknown length that is not chunked either (a chunked one is read up front)
    with pytest.raises(BodyTooLarge):
        client.post("/", content=chunks(LIMIT + 50), headers={"Content-Length": "many"})


def test_a_chunked_body_reaches_the_app_whole_with_its_length_declared() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["headers"] = dict(scope["headers"])
        body = await Request(scope, receive).body()
        await JSONResponse({"size": len(body)})(scope, receive, send)

    client = TestClient(RequestBodyMiddleware(app, max_body_bytes=LIMIT))
    response = client.post("/", content=chunks(LIMIT))

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.json() == {"size": LIMIT}
    assert seen["headers"][b"content-length"] == str(LIMIT).encode()
    assert b"transfer-encoding" not in seen["headers"]


def test_other_scopes_pass_through(reader: Reader) -> None:
    app = RequestBodyMiddleware(reader, max_body_bytes=LIMIT)

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(_: Any) -> None: ...

    asyncio.run(app({"type": "lifespan"}, nothing, ignore))

    assert reader.calls == 1


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/merge-patch+json; charset=utf-8"]
)
def test_a_json_body_that_is_not_utf8_is_a_400_naming_the_body(
    reader: Reader, content_type: str
) -> None:
    client = TestClient(RequestBodyMiddleware(ProblemMiddleware(reader), max_body_bytes=LIMIT))

    response = client.post(
        "/", content=b'{"name": "\xff\xfe"}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "body: a JSON body must be encoded in UTF-8"


def test_a_character_split_across_chunks_is_still_utf8(reader: Reader) -> None:
    client = TestClient(RequestBodyMiddleware(reader, max_body_bytes=LIMIT))
    body = '{"name": "Édith"}'.encode()
    split = body.index(b"\xc3") + 1  # between the two bytes of "É"

    def in_two() -> Iterator[bytes]:
        yield body[:split]
        yield body[split:]

    response = client.post("/", content=in_two(), headers={"Content-Type": "application/json"})

    assert response.json() == {"size": len(body)}


def test_other_media_types_may_carry_any_bytes(reader: Reader) -> None:
    client = TestClient(RequestBodyMiddleware(reader, max_body_bytes=LIMIT))

    response = client.post(
        "/", content=b"\xff\xfe\x00", headers={"Content-Type": "application/octet-stream"}
    )

    assert response.json() == {"size": 3}
