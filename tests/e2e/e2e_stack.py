"""The stack the end-to-end scenarios run against, and the tools they observe it with.

    LocalStack   (default) books, shop and chat as ``<service> serve`` processes on free ports,
                 each with its own database on a throwaway PostgreSQL server, a real
                 Prometheus scraping them, fault injection on, and an OTLP/HTTP receiver in
                 this process collecting the spans they export; stdout of each is a log file
    Stack        a stack someone else runs (compose): base URLs from E2E_* variables, traces
                 from Jaeger's HTTP API; scenarios that must kill processes or stop the
                 database skip

Both offer the same surface: ``url(service)``, ``inject``/``heal`` faults, ``readiness``,
``metrics``, ``prometheus.query``, ``traces.spans(trace_id)``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol, TypeVar

import httpx
import pytest
import service_registry
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from chassis.dev_issuer import DevIssuer
from chassis.testing import (
    MetricsSnapshot,
    ServiceProcess,
    clean_environment,
    console_script,
    free_port,
    load_script,
)
from chassis.testing.plugin import running_in_ci
from chassis.testing.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
RENDERER = ROOT / "observability" / "prometheus" / "render.py"
REGISTRY = service_registry.python_services()  # every Python service folder (not yet the gateway)
SERVICES = tuple(REGISTRY)
DEV_FAULTS_TOKEN = "dev-faults-token-not-a-secret"
READY_TIMEOUT = 60.0
# Short timings so that breakers, recovery and spans settle within seconds (design §7 defaults
# are 10 s open, 60 s pending grace).
BREAKER_OPEN_SECONDS = 5.0
PENDING_GRACE_SECONDS = 4.0
RECOVERY_INTERVAL_SECONDS = 1.0
SHUTDOWN_GRACE_SECONDS = 10.0
SCRAPE_INTERVAL = "1s"

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Calls ``probe`` until it returns something truthy; fails with ``message`` at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout:.0f}s: {text}")
        time.sleep(interval)


# -- traces ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # server, client, internal, producer, consumer
    trace_id: str
    span_id: str
    parent_id: str | None


class TraceSource(Protocol):
    def spans(self, trace_id: str) -> list[Span]: ...


_PROTO_KINDS = {
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer",
}


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) trace endpoint: POST /v1/traces, spans kept in memory."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self._spans if span.trace_id == trace_id]

    def _add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "?",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=service,
                            name=span.name,
                            kind=_PROTO_KINDS.get(span.kind, "unspecified"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                        )
                    )
        with self._lock:
            self._spans.extend(spans)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


class JaegerTraces:
    """Spans of a trace from Jaeger's HTTP API (``GET /api/traces/{trace_id}``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def spans(self, trace_id: str) -> list[Span]:
        response = httpx.get(f"{self.url}/api/traces/{trace_id}", timeout=5)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        spans = []
        for trace in response.json().get("data") or []:
            processes = trace.get("processes", {})
            for span in trace["spans"]:
                tags = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
                parents = [r["spanID"] for r in span.get("references", [])]
                spans.append(
                    Span(
                        service=processes.get(span["processID"], {}).get("serviceName", "?"),
                        name=span["operationName"],
                        kind=str(tags.get("span.kind", "internal")),
                        trace_id=span["traceID"].rjust(32, "0"),
                        span_id=span["spanID"].rjust(16, "0"),
                        parent_id=parents[0].rjust(16, "0") if parents else None,
                    )
                )
        return spans


# -- Prometheus -----------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql``: ``[{"metric": {...}, "value": float}, ...]``."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return [
            {"metric": item["metric"], "value": float(item["value"][1])}
            for item in body["data"]["result"]
        ]

    def exemplars(self, promql: str, seconds: float = 120) -> list[dict[str, Any]]:
        now = time.time()
        response = httpx.get(
            f"{self.url}/api/v1/query_exemplars",
            params={"query": promql, "start": now - seconds, "end": now},
            timeout=5,
        )
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def targets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active


# -- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running stack reached over HTTP; what every scenario may use."""

    urls: dict[str, str]
    token: str
    prometheus: Prometheus | None
    traces: TraceSource | None
    breaker_open_seconds: float = 10.0
    settle_seconds: float = 120.0  # time for shop's recovery to settle pending orders
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    canary_book: int | None = None

    local: ClassVar[bool] = False

    def url(self, service: str) -> str:
        return self.urls[service]

    # faults

    def inject(self, service: str, **fault: Any) -> None:
        response = self.http.put(
            f"{self.url(service)}/admin/faults", json=fault, headers=self._auth()
        )
        assert response.status_code == 200, response.text

    def heal(self, service: str) -> None:
        response = self.http.delete(f"{self.url(service)}/admin/faults", headers=self._auth())
        assert response.status_code == 200, response.text

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def books_token(self, *scopes: str) -> str:
        """A token for books' secured operations, e.g. ``books_token("catalog:write")``: a
        running stack's comes from E2E_BOOKS_TOKEN (`make -s token` prints one)."""
        token = os.environ.get("E2E_BOOKS_TOKEN")
        if not token:
            raise RuntimeError(
                "set E2E_BOOKS_TOKEN: make -s token SCOPE=catalog:write [STACK=compose]"
            )
        return token

    # observation

    def readiness(self, service: str) -> httpx.Response:
        return self.http.get(f"{self.url(service)}/health/ready")

    def breaker(self, service: str, peer: str) -> str:
        """The state of ``service``'s breaker to ``peer`` as its readiness reports it."""
        state: str = self.readiness(service).json()["checks"][peer]["breaker"]
        return state

    def metrics(self, service: str) -> MetricsSnapshot:
        response = self.http.get(f"{self.url(service)}/metrics")
        response.raise_for_status()
        return MetricsSnapshot(response.text)

    # domain helpers

    def create_book(self, *, stock: int, price: str = "5.00", title: str = "e2e book") -> int:
        isbn = "979" + "".join(secrets.choice("0123456789") for _ in range(10))
        response = self.http.post(
            f"{self.url('books')}/books",
            json={
                "isbn": isbn,
                "title": title,
                "author": "E2E Tests",
                "price": price,
                "stock": stock,
            },
            headers={"Authorization": f"Bearer {self.books_token('catalog:write')}"},
        )
        assert response.status_code == 201, response.text
        book_id: int = response.json()["id"]
        return book_id

    def stock(self, book_id: int) -> int:
        response = self.http.get(f"{self.url('books')}/books/{book_id}")
        assert response.status_code == 200, response.text
        stock: int = response.json()["stock"]
        return stock

    def order(
        self, items: list[tuple[int, int]], *, key: str | None = None, **headers: str
    ) -> httpx.Response:
        if key:
            headers["Idempotency-Key"] = key
        return self.http.post(
            f"{self.url('shop')}/orders",
            json={"items": [{"book_id": b, "quantity": q} for b, q in items]},
            headers=headers,
        )

    # restoring a healthy stack between scenarios

    def ensure_healthy(self) -> None:
        """No faults, every service ready, shop's breakers (and chat's) closed again."""
        for service in SERVICES:
            self.heal(service)
        for service in SERVICES:
            wait_until(
                lambda s=service: self.readiness(s).status_code == 200,  # type: ignore[misc]
                timeout=30,
                interval=0.2,
                message=f"{service} is not ready",
            )
        wait_until(
            self._breakers_closed,
            timeout=self.breaker_open_seconds * 3 + 15,
            interval=0.3,
            message="shop's/chat's breakers did not close",
        )

    def _breakers_closed(self) -> bool:
        shop = self.readiness("shop").json()["checks"]
        chat = self.readiness("chat").json()["checks"]
        states = [shop["books"]["breaker"], shop["chat"]["breaker"], chat["books"]["breaker"]]
        if all(state == "closed" for state in states):
            return True
        assert self.canary_book is not None
        placed = self.order([(self.canary_book, 1)])  # calls books; its notice calls chat
        if placed.status_code == 201:
            self.http.post(f"{self.url('shop')}/orders/{placed.json()['id']}/cancel")
        self.http.post(  # chat asks books whether this (never cached) book exists
            f"{self.url('chat')}/rooms/book-{secrets.randbelow(10**9) + 10**9}/messages",
            json={"author": "e2e", "text": "closing breakers"},
        )
        return False

    def close(self) -> None:
        self.http.close()


@dataclass
class LocalStack(Stack):
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    issuer: DevIssuer | None = None  # books trusts it; it signed shop's credential

    def books_token(self, *scopes: str) -> str:
        return self.token_for("books", scopes)

    def token_for(self, service: str, scopes: Iterable[str]) -> str:
        """A token the stack's ``service`` accepts, holding ``scopes``."""
        assert self.issuer is not None
        return self.issuer.mint(audience=service, scopes=tuple(scopes), subject="e2e")

    local: ClassVar[bool] = True

    def ensure_healthy(self) -> None:
        assert self.postgres is not None
        self.postgres.start()  # no-op when running
        stopped = [p for p in self.processes.values() if not p.running]
        for process in stopped:
            process.start(wait=False)
        for process in stopped:
            process.wait_until_ready()
        super().ensure_healthy()

    def close(self) -> None:
        super().close()
        for process in self.processes.values():
            process.terminate(SHUTDOWN_GRACE_SECONDS + 5)


def service_environment(
    service: service_registry.ServiceManifest, ports: Mapping[str, int], issuer: DevIssuer
) -> dict[str, str]:
    """What a service's folder says it needs: its dependencies' URLs (with the scenarios'
    short breaker), the issuer's key, and the tokens its service.yml lists."""
    env = {"AUTH__PUBLIC_KEY": issuer.public_pem()}
    for dependency in service.dependencies:
        key = f"DEPENDENCIES__{dependency.upper().replace('-', '_')}"
        env[f"{key}__BASE_URL"] = f"http://127.0.0.1:{ports[dependency]}"
        env[f"{key}__BREAKER__OPEN_SECONDS"] = str(BREAKER_OPEN_SECONDS)
        if dependency in service.credentials:
            scopes = service.credentials[dependency]
            env[f"{key}__TOKEN"] = issuer.mint(
                audience=dependency, scopes=scopes, subject=service.name
            )
    return env


def start_local_stack(
    workdir: Path, postgres: PostgresServer, prometheus_binary: str | None
) -> Iterator[LocalStack]:
    """Generator for a session fixture: yields a ready LocalStack, stops it afterwards."""
    receiver = OtlpReceiver()
    receiver.start()
    token = secrets.token_urlsafe(18)
    ports = {name: free_port() for name in SERVICES}
    databases = {
        name: postgres.create_database(f"{name}_{uuid.uuid4().hex[:8]}") for name in SERVICES
    }
    common = clean_environment(
        PYTHONUNBUFFERED="1",
        LOGGING__FORMAT="json",
        FAULTS__ENABLED="true",
        FAULTS__TOKEN=token,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",
        SHUTDOWN__GRACE_SECONDS=str(SHUTDOWN_GRACE_SECONDS),
    )
    issuer = DevIssuer.generate()
    # What the scenarios tune beyond what every service gets from its folder.
    scenario: dict[str, dict[str, str]] = {
        "shop": {
            "ORDERS__PENDING_GRACE_SECONDS": str(PENDING_GRACE_SECONDS),
            "ORDERS__RECOVERY_INTERVAL_SECONDS": str(RECOVERY_INTERVAL_SECONDS),
        },
    }
    own = {
        name: service_environment(service, ports, issuer) | scenario.get(name, {})
        for name, service in REGISTRY.items()
    }
    processes = {
        name: ServiceProcess(
            name,
            port=ports[name],
            env=common | own[name] | {"DATABASE_URL": databases[name]},
            log_path=workdir / f"{name}.log",
            ready_timeout=READY_TIMEOUT,
            new_session=True,  # the terminal's Ctrl-C reaches pytest, which stops them
        )
        for name in SERVICES
    }
    prometheus_process: subprocess.Popen[bytes] | None = None
    stack = LocalStack(
        urls={name: process.url for name, process in processes.items()},
        token=token,
        prometheus=None,
        traces=receiver,
        breaker_open_seconds=BREAKER_OPEN_SECONDS,
        settle_seconds=PENDING_GRACE_SECONDS * 2 + RECOVERY_INTERVAL_SECONDS * 2 + 20,
        processes=processes,
        postgres=postgres,
        issuer=issuer,
    )
    try:
        # Through the services' own commands, as make dev does: migrate all, seed all (a
        # service with nothing to seed says so), start all.
        _run_commands(processes, {name: "migrate" for name in SERVICES})
        _run_commands(processes, {name: "seed" for name in SERVICES})
        for process in processes.values():
            process.start(wait=False)
        if prometheus_binary:
            prometheus_process, stack.prometheus = _start_prometheus(
                prometheus_binary, workdir, ports
            )
        for process in processes.values():
            process.wait_until_ready()
        stack.canary_book = stack.create_book(stock=900_000, title="e2e canary")
        yield stack
    finally:
        stack.close()
        if prometheus_process is not None:
            prometheus_process.terminate()
            try:
                prometheus_process.wait(10)
            except subprocess.TimeoutExpired:
                prometheus_process.kill()
        receiver.stop()


def _run_commands(processes: Mapping[str, ServiceProcess], commands: Mapping[str, str]) -> None:
    """``<service> <command>`` for each service named in ``commands``, side by side."""
    running = {
        name: subprocess.Popen(
            [console_script(name), command],
            env=processes[name].env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, command in commands.items()
    }
    for name, child in running.items():
        output, _ = child.communicate(timeout=180)
        assert child.returncode == 0, f"{name} {commands[name]} failed:\n{output.decode()}"


def _start_prometheus(
    binary: str, workdir: Path, ports: Mapping[str, int]
) -> tuple[subprocess.Popen[bytes], Prometheus]:
    config = workdir / "prometheus.yml"
    config.write_text(_renderer().render("local", interval=SCRAPE_INTERVAL, ports=dict(ports)))
    port = free_port()
    with (workdir / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200
        return False

    wait_until(ready, timeout=READY_TIMEOUT, message="Prometheus did not become ready")
    return process, prometheus


def _renderer() -> Any:
    return load_script(RENDERER, "bookshop_prometheus_render")


def unavailable(reason: str) -> NoReturn:
    """A part of the stack a scenario needs is missing: a skip here, a failure under CI, which
    always has it (its local stack has Prometheus and a trace sink; compose-check sets
    E2E_PROMETHEUS_URL and E2E_JAEGER_URL)."""
    if running_in_ci():
        pytest.fail(f"CI requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def remote_stack_from_environment() -> Stack | None:
    """A running stack described by E2E_* variables (compose), or None to start our own."""
    urls = {name: os.environ.get(f"E2E_{name.upper()}_URL", "") for name in SERVICES}
    if not any(urls.values()):
        return None
    missing = [f"E2E_{name.upper()}_URL" for name, url in urls.items() if not url]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} too, or none of the E2E_*_URL variables")
    prometheus = os.environ.get("E2E_PROMETHEUS_URL")
    jaeger = os.environ.get("E2E_JAEGER_URL")
    return Stack(
        urls={name: url.rstrip("/") for name, url in urls.items()},
        token=os.environ.get("E2E_FAULTS_TOKEN") or DEV_FAULTS_TOKEN,
        prometheus=Prometheus(prometheus) if prometheus else None,
        traces=JaegerTraces(jaeger) if jaeger else None,
        breaker_open_seconds=float(os.environ.get("E2E_BREAKER_OPEN_SECONDS", "10")),
    )
