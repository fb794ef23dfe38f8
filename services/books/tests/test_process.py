"""books as a real process (`books serve`) on a real PostgreSQL: what operators rely on."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from books.settings import SERVICE_DIR
from chassis import migrations
from chassis.dev_issuer import DevIssuer
from chassis.testing import ServiceProcess, clean_environment, console_script
from chassis.testing.postgres import PostgresServer

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def books_process(
    postgres_url: str, tmp_path: Path, token_issuer: DevIssuer
) -> Iterator[ServiceProcess]:
    migrations.upgrade(SERVICE_DIR / "migrations", postgres_url)
    env = clean_environment(
        DATABASE_URL=postgres_url,
        AUTH__PUBLIC_KEY=token_issuer.public_pem(),
        HEALTH__CHECK_TIMEOUT_SECONDS="1.5",
        DATABASE__CONNECT_TIMEOUT_SECONDS="1",
        SHUTDOWN__DRAIN_SECONDS="1",
        SHUTDOWN__GRACE_SECONDS="5",
    )
    subprocess.run([console_script("books"), "seed"], env=env, check=True, capture_output=True)
    books = ServiceProcess("books", env=env, log_path=tmp_path / "books.log", ready_timeout=20)
    try:
        books.start()
        yield books
    finally:
        books.kill()


@pytest.mark.postgres
def test_serves_every_design_endpoint(books_process: ServiceProcess) -> None:
    base_url = books_process.url
    for path in ("/health/live", "/health/ready", "/healthcheck", "/info", "/openapi.json", "/ui/"):
        assert httpx.get(base_url + path, timeout=5).status_code == 200, path
    metrics = httpx.get(f"{base_url}/metrics", timeout=5)
    assert metrics.headers["content-type"].startswith("text/plain")
    openmetrics = httpx.get(
        f"{base_url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert 'service_info{commit="' in metrics.text


@pytest.mark.postgres
def test_trace_id_reaches_problem_body_and_metrics_use_templates(
    books_process: ServiceProcess,
) -> None:
    base_url = books_process.url
    missing = httpx.get(f"{base_url}/books/424242", headers={"traceparent": TRACEPARENT})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["trace_id"] == TRACEPARENT.split("-")[1]
    httpx.get(f"{base_url}/books/1")
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'http_route="/books/{book_id}"' in metrics
    assert 'http_route="/books/1"' not in metrics
    assert 'http_route="/books/424242"' not in metrics


@pytest.mark.postgres
def test_readiness_follows_the_database_while_liveness_stays_up(
    books_process: ServiceProcess, postgres_server: PostgresServer
) -> None:
    base_url = books_process.url
    postgres_server.stop()
    try:
        ready = httpx.get(f"{base_url}/health/ready", timeout=5)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "DOWN"
        assert body["checks"]["database"]["status"] == "DOWN"
        assert httpx.get(f"{base_url}/health/live", timeout=5).status_code == 200
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{base_url}/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "readiness did not recover after the database returned"
        time.sleep(0.2)
    assert httpx.get(f"{base_url}/books/1", timeout=5).status_code == 200


@pytest.mark.postgres
def test_sigterm_drains_then_exits_cleanly(
    books_process: ServiceProcess,
) -> None:
    books = books_process
    base_url = books.url
    results: list[int] = []

    def keep_requesting() -> None:
        # Requests accepted before and during the drain must all succeed.
        with httpx.Client(base_url=base_url, timeout=5) as client:
            deadline = time.monotonic() + 0.8
            while time.monotonic() < deadline:
                results.append(client.get("/books?limit=50").status_code)

    worker = threading.Thread(target=keep_requesting)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    books.signal(signal.SIGTERM)
    ready = httpx.get(f"{base_url}/health/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["checks"]["shutdown"]["status"] == "DOWN"
    worker.join()
    assert books.wait_exit(15) == 0, books.log_tail()
    assert time.monotonic() - started < 1 + 5 + 3  # drain + grace + flush headroom
    assert results
    assert set(results) == {200}
