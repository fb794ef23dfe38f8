from typing import Any

import pytest
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from chassis import DOWN, CheckResult, FunctionCheck
from chassis.endpoints import ChassisEndpoints
from chassis.health import HealthRegistry, ShutdownState
from chassis.info import collect_info
from chassis.metrics import ServiceMetrics


@pytest.fixture
def health() -> HealthRegistry:
    return HealthRegistry(timeout_seconds=1, shutdown=ShutdownState())


@pytest.fixture
def client(health: HealthRegistry, tmp_path: Any) -> TestClient:
    endpoints = ChassisEndpoints(
        PlainTextResponse("from the api", status_code=299),
        health=health,
        metrics=ServiceMetrics(),
        info=collect_info("books", "1.0.0", "test", tmp_path),
    )
    return TestClient(endpoints)


@pytest.mark.parametrize(
    "path", ["/health/live", "/health/ready", "/healthcheck", "/metrics", "/info"]
)
def test_the_chassis_answers_its_paths_uncached(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content) > 0


@pytest.mark.parametrize("path", ["/", "/books", "/health", "/health/live/", "/info/x"])
def test_other_paths_go_to_the_api(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert (response.status_code, response.text) == (299, "from the api")


def test_other_methods_go_to_the_api(client: TestClient) -> None:
    assert client.post("/health/live").status_code == 299


def test_head_has_headers_but_no_body(client: TestClient) -> None:
    response = client.head("/info")

    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def test_readiness_answers_the_registry(client: TestClient, health: HealthRegistry) -> None:
    health.add(FunctionCheck("database", lambda: CheckResult(DOWN), critical=True))

    response = client.get("/healthcheck")

    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == DOWN


def test_info_is_the_collected_info(client: TestClient) -> None:
    info = client.get("/info").json()

    assert (info["service"], info["version"], info["environment"]) == ("books", "1.0.0", "test")
