"""Traces, access logs and metrics of books' requests (design §5)."""

from __future__ import annotations

import math

from opentelemetry.trace import SpanKind

from chassis.testing import MetricsSnapshot, capture_logs

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
DURATION_COUNT = "http_server_request_duration_seconds_count"


def hex_trace_id(span):
    return format(span.context.trace_id, "032x")


def access_lines(events):
    # capture_logs swaps the configured pipeline for the processors it is given; the chassis'
    # own add_trace_ids stamps trace_id/span_id exactly as in the JSON lines on stdout.
    return [e for e in events if e.get("logger_name") == "chassis.access"]


def test_a_traceparent_continues_into_the_server_span_sql_spans_and_access_log(
    client, create_book, recorder
):
    book = create_book()
    recorder.clear()

    with capture_logs() as events:
        response = client.get(f"/books/{book['id']}", headers={"traceparent": TRACEPARENT})

    assert response.status_code == 200
    [server] = recorder.spans("GET /books/{book_id}")
    assert server.kind is SpanKind.SERVER
    assert hex_trace_id(server) == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_SPAN_ID
    assert server.attributes["http.route"] == "/books/{book_id}"
    assert server.attributes["http.response.status_code"] == 200
    sql = [span for span in recorder.spans() if "db.query.text" in span.attributes]
    assert sql, recorder.names()
    assert all(hex_trace_id(span) == TRACE_ID for span in sql)
    assert all(span.parent.span_id == server.context.span_id for span in sql)
    assert any("FROM books" in span.attributes["db.query.text"] for span in sql)
    [line] = access_lines(events)
    assert line["event"] == "request"
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == format(server.context.span_id, "016x")
    assert (line["method"], line["route"], line["path"], line["status"]) == (
        "GET",
        "/books/{book_id}",
        f"/books/{book['id']}",
        200,
    )
    assert line["duration_ms"] >= 0


def test_an_error_carries_the_callers_trace_id_in_body_span_and_log(client, recorder, problem):
    with capture_logs() as events:
        response = client.get("/books/404", headers={"traceparent": TRACEPARENT})

    body = problem(response, 404, "book_id")
    assert body["trace_id"] == TRACE_ID
    [server] = recorder.spans("GET /books/{book_id}")
    assert hex_trace_id(server) == TRACE_ID
    assert server.attributes["http.response.status_code"] == 404
    [line] = access_lines(events)
    assert (line["trace_id"], line["status"]) == (TRACE_ID, 404)


def test_without_a_traceparent_the_problem_names_the_new_trace(client, recorder, problem):
    body = problem(client.get("/books/404"), 404)

    [server] = recorder.spans("GET /books/{book_id}")
    assert server.parent is None
    assert body["trace_id"] == hex_trace_id(server)


def test_metrics_label_requests_by_route_template_never_by_raw_path(client, create_book):
    book = create_book()
    client.get(f"/books/{book['id']}")
    client.get("/books/987654")  # 404 from the handler: still the template
    client.get("/no/such/path")
    client.get("/books", params={"limit": 101})  # 400 from validation
    client.put(f"/books/{book['id']}", json={})  # 405
    client.post("/books", json={"title": "no isbn"})  # 400 from body validation

    metrics = MetricsSnapshot(client.get("/metrics").text)

    def count(method, route, status):
        return metrics.value(
            DURATION_COUNT,
            http_request_method=method,
            http_route=route,
            http_response_status_code=str(status),
        )

    assert count("GET", "/books/{book_id}", 200) == 1
    assert count("GET", "/books/{book_id}", 404) == 1
    assert count("GET", "NOT_FOUND", 404) == 1
    assert count("GET", "/books", 400) == 1
    assert count("PUT", "/books/{book_id}", 405) == 1
    assert count("POST", "/books", 400) == 1
    assert count("POST", "/books", 201) == 1
    assert math.isnan(count("GET", f"/books/{book['id']}", 200))
    routes = metrics.label_values(DURATION_COUNT, "http_route")
    assert routes == {"/books", "/books/{book_id}", "NOT_FOUND"}
    every_label_value = {value for _, labels, _ in metrics.samples for value in labels.values()}
    assert not {f"/books/{book['id']}", "/books/987654", "/no/such/path"} & every_label_value
