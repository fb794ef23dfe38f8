import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from connexion.utils import is_json_mimetype
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from chassis.middleware.json_depth import MAX_JSON_DEPTH, nests_deeper_than
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
    "content_type",
    ["application/json", "Application/JSON", "application/merge-patch+json; charset=utf-8"],
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


# -- JSON nesting depth -------------------------------------------------------------------------


class JsonReader:
    """Parses a JSON body the way connexion and Starlette do (Python's json) and answers its
    type, or the media type it was given."""

    def __init__(self) -> None:
        self.content_types: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        self.content_types.append(request.headers.get("content-type"))
        body = await request.body()
        is_json = is_json_mimetype(request.headers.get("content-type"))
        parsed = json.loads(body) if body and is_json else None
        await JSONResponse({"type": type(parsed).__name__, "size": len(body)})(scope, receive, send)


ROOMY = 100_000  # a body size limit that no body of these tests reaches


@pytest.fixture
def json_reader() -> JsonReader:
    return JsonReader()


def deep_client(app: ASGIApp, **options: Any) -> TestClient:
    return TestClient(
        RequestBodyMiddleware(ProblemMiddleware(app), max_body_bytes=ROOMY, **options)
    )


def nested(levels: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * levels + closing * levels).encode()


def assert_too_deep(response: Any, levels: int = MAX_JSON_DEPTH) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] == f"body: JSON nested deeper than {levels} levels"
    assert problem["field"] == "body"
    assert "trace_id" in problem


@pytest.mark.parametrize(
    "body",
    [
        nested(10_000),  # Python's json raises RecursionError: the 500 this replaces
        nested(MAX_JSON_DEPTH + 1),
        b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
        b'[{"a": ' * 40 + b"null" + b"}]" * 40,
        b"[" * 10_000,  # never closed: a parser still recurses before it fails
    ],
    ids=["10000-arrays", "limit+1-arrays", "limit+1-objects", "mixed", "unclosed"],
)
@pytest.mark.parametrize(
    "content_type",
    ["application/json", "APPLICATION/JSON", "application/merge-patch+json; charset=utf-8"],
)
def test_json_nested_deeper_than_the_limit_is_a_400_naming_the_body(
    json_reader: JsonReader, body: bytes, content_type: str
) -> None:
    response = deep_client(json_reader).post(
        "/", content=body, headers={"Content-Type": content_type}
    )

    assert_too_deep(response)


def test_json_nested_to_the_limit_is_parsed(json_reader: JsonReader) -> None:
    response = deep_client(json_reader).post(
        "/", content=nested(MAX_JSON_DEPTH), headers={"Content-Type": "application/json"}
    )

    assert response.json() == {"type": "list", "size": 2 * MAX_JSON_DEPTH}


def test_the_depth_limit_can_be_set(json_reader: JsonReader) -> None:
    client = deep_client(json_reader, max_json_depth=2)
    json_type = {"Content-Type": "application/json"}

    assert client.post("/", content=b'{"a": [1]}', headers=json_type).status_code == 200
    assert_too_deep(client.post("/", content=b'{"a": [[1]]}', headers=json_type), levels=2)


def test_brackets_inside_strings_do_not_nest(json_reader: JsonReader) -> None:
    text = '\\"[{' * 200 + "\\\\"  # escaped quotes, and an escaped backslash before the end
    body = json.dumps([{"text": "[" * 500, "more": text, "list": [[1]] * 100}]).encode()
    assert json.loads(body)[0]["more"].endswith("\\")

    response = deep_client(json_reader).post(
        "/", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.json() == {"type": "list", "size": len(body)}


def test_a_deep_body_in_chunks_is_refused_when_whole(json_reader: JsonReader) -> None:
    body = nested(1000)

    def in_chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 300):
            yield body[start : start + 300]

    response = deep_client(json_reader).post(
        "/", content=in_chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_too_deep(response)


def test_a_deep_body_of_another_media_type_is_not_measured(reader: Reader) -> None:
    response = deep_client(reader).post(
        "/", content=nested(1000), headers={"Content-Type": "text/plain"}
    )

    assert response.json() == {"size": 2000}


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        (b"", 0, False),
        (b"1", 0, False),
        (b"[]", 0, True),
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b"[[], [], {}]", 2, False),
        (b'{"a": [{"b": {}}]}', 3, True),
        (b'{"a": [{"b": {}}]}', 4, False),
        (b'["[[[[", "]]]]", "{{"]', 1, False),
        (b'["\\"[[["]', 1, False),  # the escaped quote does not end the string
        (b'["\\\\", [[[]]]]', 3, True),  # an escaped backslash does not escape the quote
        (b'"[[[[', 1, False),  # an unterminated string is all string
        (b"[[[[", 3, True),  # unclosed arrays nest as deep as they open
        (b"]]]][[", 1, False),  # a parser stops at the first "]"
        (b"[1]" * 100, 1, False),  # many brackets, shallow
    ],
)
def test_nests_deeper_than(text: bytes, limit: int, deeper: bool) -> None:
    assert nests_deeper_than(text, limit) is deeper


# -- the media type's letter case -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("APPLICATION/JSON", "application/json"),
        ("Application/Json; charset=UTF-8", "application/json; charset=UTF-8"),
        ("application/json ; charset=utf-8", "application/json; charset=utf-8"),
        ("application/json; charset=utf-8", "application/json; charset=utf-8"),
        ("Text/Plain", "text/plain"),
    ],
)
def test_the_media_type_reaches_the_app_in_lower_case(
    json_reader: JsonReader, sent: str, seen: str
) -> None:
    response = deep_client(json_reader).post(
        "/", content=b'{"a": 1}', headers={"Content-Type": sent}
    )

    assert response.status_code == 200
    assert json_reader.content_types == [seen]


def test_a_request_without_a_content_type_gets_none(json_reader: JsonReader) -> None:
    deep_client(json_reader).post("/", content=b"{}")

    assert json_reader.content_types == [None]
