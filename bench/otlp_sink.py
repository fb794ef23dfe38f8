"""A tiny local OTLP/HTTP receiver: accepts ``POST /v1/traces`` and counts the spans.

It stands in for Jaeger's OTLP port during the benchmark, so the books contender pays the
whole export path (batching, protobuf encoding, an HTTP POST per batch) without a real backend.
It listens on 127.0.0.1 only and runs on a daemon thread of the benchmark process, or as a
process of its own (``python bench/otlp_sink.py PORT``: until SIGTERM, then it prints what it
received), where its CPU is not the benchmark's.
"""

from __future__ import annotations

import gzip
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class OtlpSink:
    """``with OtlpSink() as sink: ... sink.endpoint ... sink.spans``"""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self.requests = 0
        self.errors = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path != "/v1/traces":
                    self._reply(404, b"")
                    return
                try:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception:
                    sink._count(0, error=True)
                    self._reply(400, b"")
                    return
                spans = sum(
                    len(scope.spans)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                sink._count(spans)
                self._reply(200, _EMPTY_RESPONSE)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-sink", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _count(self, spans: int, *, error: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.spans += spans
            self.errors += int(error)

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(port: int) -> int:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with OtlpSink(port=port) as sink:
        while not stopped.wait(0.5):
            pass
    print(f"spans {sink.spans} requests {sink.requests} errors {sink.errors}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
