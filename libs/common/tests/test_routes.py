import pytest

from chassis.routes import RouteTable, base_path, normalise_method, spec_methods, spec_templates

TEMPLATES = [
    "/books",
    "/books/{book_id}",
    "/books/search",
    "/books/{book_id}/reservations",
    "/books/{book_id}/reservations/{order_id}",
    "/rooms/{room}/messages",
    "/health/live",
]


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(TEMPLATES)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/books", "/books"),
        ("/books/42", "/books/{book_id}"),
        ("/books/search", "/books/search"),
        ("/books/42/reservations", "/books/{book_id}/reservations"),
        ("/books/42/reservations/order-1", "/books/{book_id}/reservations/{order_id}"),
        ("/rooms/book-1/messages", "/rooms/{room}/messages"),
        ("/health/live", "/health/live"),
    ],
)
def test_a_path_is_labelled_by_its_template(table: RouteTable, path: str, template: str) -> None:
    assert table.match(path) == template


@pytest.mark.parametrize(
    "path",
    ["/", "/nope", "/books/", "/books/42/", "/books/42/extra", "/books//reservations", "/BOOKS"],
)
def test_an_unmatched_path_is_not_found(table: RouteTable, path: str) -> None:
    assert table.match(path) == "NOT_FOUND"


def test_a_parameter_never_spans_segments(table: RouteTable) -> None:
    assert table.match("/books/1/2") == "NOT_FOUND"


def test_static_beats_dynamic_whatever_the_order() -> None:
    for templates in (["/books/{book_id}", "/books/search"], ["/books/search", "/books/{book_id}"]):
        table = RouteTable(templates)
        assert table.match("/books/search") == "/books/search"
        assert table.match("/books/7") == "/books/{book_id}"


def test_fewer_parameters_beat_more() -> None:
    table = RouteTable(["/{a}/{b}", "/rooms/{room}"])

    assert table.match("/rooms/lobby") == "/rooms/{room}"
    assert table.match("/other/lobby") == "/{a}/{b}"
    assert RouteTable(["/a/{b}/{c}", "/{a}/b/c"]).match("/a/b/c") == "/{a}/b/c"


def test_literal_characters_in_templates_are_not_patterns() -> None:
    table = RouteTable(["/files/{name}.json", "/a+b"])

    assert table.match("/files/report.json") == "/files/{name}.json"
    assert table.match("/files/report.xml") == "NOT_FOUND"
    assert table.match("/aab") == "NOT_FOUND"
    assert table.match("/a+b") == "/a+b"


def test_spec_templates_prefix_the_base_path_of_the_first_server() -> None:
    spec = {
        "servers": [{"url": "https://api.example.com/v1/"}, {"url": "/v2"}],
        "paths": {"/books": {}, "/books/{book_id}": {}},
    }

    assert spec_templates(spec) == ["/v1/books", "/v1/books/{book_id}"]


@pytest.mark.parametrize("servers", [None, [], [{"url": "/"}], [{"url": ""}]])
def test_spec_templates_without_a_base_path(servers: list[dict[str, str]] | None) -> None:
    spec: dict[str, object] = {"paths": {"/books": {}}}
    if servers is not None:
        spec["servers"] = servers

    assert spec_templates(spec) == ["/books"]


def test_spec_templates_of_a_relative_base_path() -> None:
    spec = {"servers": [{"url": "/api"}], "paths": {"/books/{book_id}": {}}}

    assert RouteTable(spec_templates(spec)).match("/api/books/3") == "/api/books/{book_id}"


@pytest.mark.parametrize(
    ("url", "base"),
    [("/", ""), ("", ""), ("/api/v1", "/api/v1"), ("/api/", "/api"), ("http://h:8000/x/y", "/x/y")],
)
def test_base_path_is_the_path_of_the_first_server(url: str, base: str) -> None:
    assert base_path({"servers": [{"url": url}, {"url": "/other"}]}) == base
    assert base_path({}) == ""


@pytest.mark.parametrize(
    "method", ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
)
def test_known_methods_are_kept(method: str) -> None:
    assert normalise_method(method) == method


@pytest.mark.parametrize("method", ["PURGE", "PROPFIND", "get", "FOO", ""])
def test_other_methods_collapse_to_other(method: str) -> None:
    assert normalise_method(method) == "_OTHER"


def test_spec_methods_lists_each_paths_operations_with_head_beside_get() -> None:
    spec = {
        "servers": [{"url": "/api"}],
        "paths": {
            "/books": {"get": {}, "post": {}, "parameters": [], "summary": "x"},
            "/books/{book_id}/reservations": {"post": {}},
        },
    }

    assert spec_methods(spec) == {
        "/api/books": "GET, HEAD, POST",
        "/api/books/{book_id}/reservations": "POST",
    }
