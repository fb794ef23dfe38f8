"""chassis.otlp: the span encoder writes the very bytes the SDK's encoder would, faster."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from chassis import otlp
from chassis.otlp import OTLPSpanExporter, encode_spans

REMOTE_PARENT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x=1")]),
)


def record(
    resource: Resource | None = None, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=resource or Resource({"service.name": "svc"}))
    if limits is not None:
        provider = TracerProvider(resource=provider.resource, span_limits=limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def assert_same_bytes(spans: Sequence[ReadableSpan]) -> None:
    ours = encode_spans(spans)
    theirs = sdk_encode(spans).SerializePartialToString()
    assert ours == theirs
    assert ExportTraceServiceRequest.FromString(ours) == sdk_encode(spans)


def test_a_server_and_a_sql_span_encode_as_the_sdk_encodes_them() -> None:
    provider, exporter = record()
    tracer = provider.get_tracer("chassis")
    server = tracer.start_span(
        "GET /books/{book_id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "http.route": "/books/{book_id}",
            "url.path": "/books/1",
            "url.scheme": "http",
            "client.address": "127.0.0.1",
            "user_agent.original": "wrk",
        },
    )
    sql = provider.get_tracer("chassis.db").start_span(
        "SELECT books.db",
        context=set_span_in_context(server),
        kind=SpanKind.CLIENT,
        attributes={"db.system.name": "sqlite", "db.query.text": "SELECT 1", "server.port": 5432},
    )
    sql.end()
    server.set_attribute("http.response.status_code", 200)
    server.end()

    assert_same_bytes(exporter.get_finished_spans())


def test_every_kind_of_value_status_event_and_link_encodes_as_the_sdk_encodes_it() -> None:
    provider, exporter = record()
    tracer = provider.get_tracer("tests", "1.2.3", schema_url="https://schema/1")
    span = tracer.start_span(
        "everything",
        context=set_span_in_context(NonRecordingSpan(REMOTE_PARENT)),
        kind=SpanKind.PRODUCER,
        links=[Link(REMOTE_PARENT, {"link.n": 1}), Link(REMOTE_PARENT)],
        attributes={
            "str": "text with ünïcödé and \x00",
            "empty": "",
            "true": True,
            "false": False,
            "zero": 0,
            "int": 123456789,
            "negative": -42,
            "big": 2**62,
            "float": 1.5,
            "nan": float("nan"),
            "bytes": b"\x00\xff",
            "strings": ["a", "b"],
            "ints": [1, -2],
            "bools": (True, False),
            "floats": [0.25],
            "empty_list": [],
        },
    )
    span.add_event("plain")
    span.add_event("with attributes", {"k": "v", "n": 7}, timestamp=1)
    span.record_exception(ValueError("boom"))
    span.set_status(Status(StatusCode.ERROR, "it broke"))
    span.end()
    ok = tracer.start_span("ok")
    ok.set_status(StatusCode.OK)
    ok.end()

    assert_same_bytes(exporter.get_finished_spans())


def test_spans_group_by_resource_then_scope_in_order_of_appearance() -> None:
    first, first_spans = record(Resource({"service.name": "a"}, schema_url="https://r"))
    second, second_spans = record(Resource({"service.name": "b", "n": 2}))
    twin, twin_spans = record(Resource({"service.name": "a"}, schema_url="https://r"))
    for provider, scope in ((first, "x"), (second, "y"), (first, "y"), (twin, "x"), (first, "x")):
        provider.get_tracer(scope).start_span(scope).end()
    spans = [
        *first_spans.get_finished_spans()[:1],
        *second_spans.get_finished_spans(),
        *first_spans.get_finished_spans()[1:],
        *twin_spans.get_finished_spans(),
    ]

    assert_same_bytes(spans)


def test_dropped_attributes_events_and_links_are_counted_as_the_sdk_counts_them() -> None:
    provider, exporter = record(limits=SpanLimits(max_attributes=2, max_events=1, max_links=1))
    span = provider.get_tracer("t").start_span(
        "limited",
        attributes={"a": 1, "b": 2, "c": 3},
        links=[Link(REMOTE_PARENT), Link(REMOTE_PARENT)],
    )
    span.add_event("one")
    span.add_event("two")
    span.end()

    assert_same_bytes(exporter.get_finished_spans())


def test_repeated_batches_reuse_cached_fields_and_still_match() -> None:
    provider, exporter = record()
    tracer = provider.get_tracer("t")
    for n in range(50):
        tracer.start_span("GET /x", attributes={"url.path": f"/x/{n % 5}", "n": n}).end()
    spans = exporter.get_finished_spans()

    assert_same_bytes(spans)
    assert_same_bytes(spans[10:20])
    assert encode_spans([]) == sdk_encode([]).SerializePartialToString() == b""


def test_the_string_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "_MAX_CACHED", 8)
    provider, exporter = record()
    for n in range(30):
        provider.get_tracer("t").start_span("s", attributes={"path": f"/{n}"}).end()

    assert_same_bytes(exporter.get_finished_spans())
    assert len(otlp._span_strings) <= 8


def test_an_unexpected_value_falls_back_to_the_sdk_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = record()
    provider.get_tracer("t").start_span("s", attributes={"a": "b"}).end()
    spans = exporter.get_finished_spans()

    def broken(_: Any) -> bytes:
        raise TypeError("not today")

    monkeypatch.setattr(otlp, "encode_spans", broken)

    assert otlp._encode(spans) == sdk_encode(spans).SerializePartialToString()


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_the_exporter_posts_the_encoded_batch(receiver: Receiver) -> None:
    provider, exporter = record()
    provider.get_tracer("t").start_span("s", attributes={"a": "b"}).end()
    spans = exporter.get_finished_spans()
    otlp_exporter = OTLPSpanExporter(endpoint=receiver.endpoint, compression=None)

    assert otlp_exporter.export(spans) is SpanExportResult.SUCCESS
    assert receiver.bodies == [sdk_encode(spans).SerializePartialToString()]
    otlp_exporter.shutdown()  # type: ignore[no-untyped-call]


def test_the_exporter_reports_a_refused_batch(receiver: Receiver) -> None:
    receiver.status = 400
    provider, exporter = record()
    provider.get_tracer("t").start_span("s").end()
    otlp_exporter = OTLPSpanExporter(endpoint=receiver.endpoint)

    assert otlp_exporter.export(exporter.get_finished_spans()) is SpanExportResult.FAILURE
    otlp_exporter.shutdown()  # type: ignore[no-untyped-call]


def test_the_exporter_drops_a_batch_over_the_size_limit(receiver: Receiver) -> None:
    provider, exporter = record()
    provider.get_tracer("t").start_span("s", attributes={"big": "x" * 1000}).end()
    otlp_exporter = OTLPSpanExporter(endpoint=receiver.endpoint, max_request_size=100)

    assert otlp_exporter.export(exporter.get_finished_spans()) is SpanExportResult.FAILURE
    assert receiver.bodies == []
    otlp_exporter.shutdown()  # type: ignore[no-untyped-call]


def test_after_shutdown_the_exporter_refuses_like_the_sdk_one(receiver: Receiver) -> None:
    provider, exporter = record()
    provider.get_tracer("t").start_span("s").end()
    otlp_exporter = OTLPSpanExporter(endpoint=receiver.endpoint)
    otlp_exporter.shutdown()  # type: ignore[no-untyped-call]

    assert otlp_exporter.export(exporter.get_finished_spans()) is SpanExportResult.FAILURE
    assert receiver.bodies == []
