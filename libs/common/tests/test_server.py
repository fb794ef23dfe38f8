"""The production server for real: the tiny service in a subprocess, stopped with SIGTERM."""

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from chassis.server import GracefulServer, serve
from chassis.testing import MetricsSnapshot, capture_logs, free_port

START_TIMEOUT = 20.0
DRAIN_SECONDS = 0.8
GRACE_SECONDS = 5.0
SLOW_SECONDS = 2.0  # outlasts the drain: the request is still in flight when the listener closes


class Running:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def log_lines(self) -> list[dict[str, Any]]:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_until_live(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited early:\n{self.log.read_text()}")
            try:
                if self.get("/health/live", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"server did not start:\n{self.log.read_text()}")

    def wait_until_active(self, requests: int) -> None:
        """Until ``requests`` GETs are in flight besides the /metrics one asking."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            page = MetricsSnapshot(self.get("/metrics").text)
            active = page.value("http_server_active_requests", http_request_method="GET")
            if not math.isnan(active) and active >= requests + 1:
                return
            time.sleep(0.02)
        pytest.fail("the slow request never arrived")


@pytest.fixture
def spawn(tiny: ModuleType, tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(**environ: str) -> Running:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
            "OTEL_TRACES_EXPORTER": "none",
            "SHUTDOWN__GRACE_SECONDS": str(GRACE_SECONDS),
            **environ,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(tiny.SERVICE_DIR / "service.py"), str(port)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = Running(process, port, log)
        started.append(running)
        running.wait_until_live()
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def in_background(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as exc:  # reported by the test's assertions
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_sigterm_drains_finishes_the_request_in_flight_and_exits_0(spawn: Any) -> None:
    server = spawn(SHUTDOWN__DRAIN_SECONDS=str(DRAIN_SECONDS))
    slow, answer = in_background(lambda: server.get(f"/slow?seconds={SLOW_SECONDS}", timeout=20))
    server.wait_until_active(1)

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    ready = readiness_while_listening(server, signalled)
    slow.join(20)
    code = server.process.wait(DRAIN_SECONDS + GRACE_SECONDS + 5)

    if ready is not None:  # None: the machine was too slow to ask before the drain ended
        assert ready.status_code == 503
        assert ready.json()["checks"]["shutdown"]["status"] == "DOWN"
    (response,) = answer
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 200
    assert response.json() == {"slept": SLOW_SECONDS}
    assert code == 0, server.log.read_text()
    messages = [line["message"] for line in server.log_lines()]
    assert "shutdown begun" in messages
    assert messages.index("shutdown begun") < messages.index("service stopped")


def readiness_while_listening(server: Running, signalled: float) -> httpx.Response | None:
    """Readiness until it says 503 or the listener closes (never before the drain ends)."""
    ready = None
    while ready is None or ready.status_code != 503:
        try:
            ready = server.get("/health/ready")
        except httpx.TransportError:
            assert time.monotonic() - signalled >= DRAIN_SECONDS, "closed before the drain ended"
            break
    return ready


def test_the_first_signal_begins_shutdown_and_stops_listening_after_the_drain(
    make_service: Any,
) -> None:
    service = make_service(SHUTDOWN__DRAIN_SECONDS="0.2")
    server = GracefulServer(uvicorn.Config(service), service)

    async def signalled() -> None:  # uvicorn's handler runs on the event loop's thread
        with capture_logs() as logs:
            server.handle_exit(signal.SIGTERM, None)
            # The handler itself neither logs nor waits: it may interrupt the log writer.
            assert logs == []
            assert service.shutdown.shutting_down
            assert not server.should_exit  # readiness says 503 while load balancers catch up
            deadline = time.monotonic() + 5
            while not server.should_exit and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        assert [event["event"] for event in logs] == ["shutdown begun"]

    asyncio.run(signalled())
    assert server.should_exit
    assert not server.force_exit
    service.close()


def test_a_second_signal_skips_the_drain_and_a_third_forces_the_exit(
    make_service: Any,
) -> None:
    service = make_service(SHUTDOWN__DRAIN_SECONDS="60")
    server = GracefulServer(uvicorn.Config(service), service)

    async def signalled() -> None:
        server.handle_exit(signal.SIGTERM, None)
        assert (server.should_exit, server.force_exit) == (False, False)
        server.handle_exit(signal.SIGINT, None)
        assert (server.should_exit, server.force_exit) == (True, False)
        server.handle_exit(signal.SIGTERM, None)
        assert server.force_exit

    asyncio.run(signalled())
    service.close()


def test_serve_configures_uvicorn_from_the_settings(
    make_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(SHUTDOWN__GRACE_SECONDS="7.5", HTTP__HOST="0.0.0.0")
    ran: list[GracefulServer] = []
    monkeypatch.setattr(GracefulServer, "run", lambda self, sockets=None: ran.append(self))

    serve(service, port=0)

    ((server,),) = [ran]
    config = server.config
    assert server.service is service
    assert (config.host, config.port) == ("0.0.0.0", 0)
    assert config.lifespan == "on"
    assert config.timeout_graceful_shutdown == 7
    assert config.access_log is False
    assert config.log_config is None
    service.close()


@pytest.fixture
def gc_state() -> Iterator[None]:
    import gc

    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_heap_is_settled_for_serving(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """After start-up: the start-up heap frozen out of collections, and the young generation
    raised from CPython's default; a threshold set by someone else is kept."""
    import gc

    from chassis import server

    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    thresholds: list[tuple[int, ...]] = []
    monkeypatch.setattr(gc, "set_threshold", lambda *values: thresholds.append(values))

    server.settle_heap()

    assert gc.get_freeze_count() > 1000
    assert thresholds == [(server.YOUNG_GENERATION, 10, 10)]
    monkeypatch.setattr(gc, "get_threshold", lambda: (5000, 20, 20))
    server.settle_heap()
    assert thresholds == [(server.YOUNG_GENERATION, 10, 10)]


def test_the_server_settles_the_heap_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from chassis import server

    order: list[str] = []

    async def started(self: Any, sockets: Any = None) -> None:
        order.append("startup")

    monkeypatch.setattr(uvicorn.Server, "startup", started)
    monkeypatch.setattr(server, "settle_heap", lambda: order.append("settled"))
    graceful = GracefulServer(uvicorn.Config(app=None), service=None)  # type: ignore[arg-type]

    asyncio.run(graceful.startup())

    assert order == ["startup", "settled"]


def test_sigterm_stops_the_server_even_when_nobody_reads_its_log_any_more(
    tiny: ModuleType, tmp_path: Path
) -> None:
    """A supervisor that dies (honcho killed, a closed terminal) leaves the service writing to a
    pipe nobody reads: its shutdown must not hang on the log line it writes."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "OTEL_TRACES_EXPORTER": "none",
        "SHUTDOWN__GRACE_SECONDS": str(GRACE_SECONDS),
    }
    process = subprocess.Popen(
        [sys.executable, str(tiny.SERVICE_DIR / "service.py"), str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        running = Running(process, port, tmp_path / "unused.log")
        running.wait_until_live()
        assert process.stdout is not None
        process.stdout.close()  # the reader is gone: every write now fails with EPIPE
        process.send_signal(signal.SIGTERM)
        assert process.wait(GRACE_SECONDS + 10) is not None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
