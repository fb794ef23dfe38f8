"""Fault injection: off by default, token-protected, and traced like real failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from chassis import ConfigError, Service
from chassis.middleware.faults import FaultError, Faults, describe, effect, parse_faults
from chassis.testing import MetricsSnapshot, SpanRecorder, capture_logs, service_client

TOKEN = "test-faults-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENABLED = {"FAULTS__ENABLED": "true", "FAULTS__TOKEN": TOKEN}


def test_disabled_by_default_the_endpoint_does_not_exist(service: Service) -> None:
    with service_client(service) as client:
        assert client.get("/admin/faults", headers=AUTH).status_code == 404
        assert client.put("/admin/faults", json={"outage": True}, headers=AUTH).status_code in (
            404,
            405,
        )
        assert client.get("/items/count").status_code == 200


def test_enabling_requires_a_real_token(make_service: Callable[..., Service]) -> None:
    with pytest.raises(ConfigError, match=r"faults.*token"):
        make_service(FAULTS__ENABLED="true")
    with pytest.raises(ConfigError, match=r"faults.*token"):
        make_service(FAULTS__ENABLED="true", FAULTS__TOKEN="short")


def test_without_or_with_a_wrong_token_401(make_service: Callable[..., Service]) -> None:
    with service_client(make_service(**ENABLED)) as client:
        missing = client.put("/admin/faults", json={"outage": True})
        wrong = client.put(
            "/admin/faults", json={"outage": True}, headers={"Authorization": "Bearer nope"}
        )
        assert missing.status_code == wrong.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert client.get("/items/count").status_code == 200  # nothing was injected


def test_outage_then_heal(make_service: Callable[..., Service], recorder: SpanRecorder) -> None:
    service = make_service(**ENABLED)
    with service_client(service) as client:
        set_faults = client.put("/admin/faults", json={"outage": True}, headers=AUTH)
        assert set_faults.status_code == 200
        assert set_faults.json()["active"] is True
        broken = client.get("/items/count")
        assert broken.status_code == 503
        assert broken.json()["trace_id"]
        # The chassis' own endpoints stay reachable so the service can be watched and healed.
        assert client.get("/health/live").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.delete("/admin/faults", headers=AUTH).json()["active"] is False
        assert client.get("/items/count").status_code == 200
        metrics = MetricsSnapshot(client.get("/metrics").text)
    count = "http_server_request_duration_seconds_count"
    assert metrics.value(count, http_route="/items/count", http_response_status_code="503") == 1
    assert "GET /items/count" in recorder.names()


def test_error_rate_and_status(make_service: Callable[..., Service]) -> None:
    with service_client(make_service(**ENABLED)) as client:
        client.put("/admin/faults", json={"error_rate": 0.5, "status": 502}, headers=AUTH)
        statuses = [client.get("/items/count").status_code for _ in range(200)]
    failures = statuses.count(502)
    assert set(statuses) == {200, 502}
    assert 60 < failures < 140  # 50% of 200, with a wide margin for chance


def test_latency_and_route_filter(make_service: Callable[..., Service]) -> None:
    with service_client(make_service(**ENABLED)) as client:
        client.put(
            "/admin/faults",
            json={"latency_ms": 300, "routes": ["/items/{item_id}"]},
            headers=AUTH,
        )
        started = time.perf_counter()
        client.get("/items/count")
        unaffected = time.perf_counter() - started
        started = time.perf_counter()
        client.get("/items/1")
        delayed = time.perf_counter() - started
        current = client.get("/admin/faults", headers=AUTH).json()
    assert unaffected < 0.25
    assert delayed >= 0.3
    assert current["routes"] == ["/items/{item_id}"]


def test_bad_admin_bodies_name_the_field(make_service: Callable[..., Service]) -> None:
    with service_client(make_service(**ENABLED)) as client:
        answer = client.put("/admin/faults", json={"error_rate": 2}, headers=AUTH)
        assert answer.status_code == 400
        assert answer.json()["detail"].startswith("error_rate:")
        assert client.get("/items/count").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"error_rate": "half"}, "error_rate"),
        ({"error_rate": True}, "error_rate"),
        ({"status": 404}, "status"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 1.5}, "latency_ms"),
        ({"outage": "yes"}, "outage"),
        ({"routes": "/x"}, "routes"),
        ({"surprise": 1}, "surprise"),
        ([], "body"),
    ],
)
def test_parse_faults_refuses(body: object, field: str) -> None:
    with pytest.raises(FaultError, match=rf"^{field}:"):
        parse_faults(body)


# -- the admin answer says what the service will do -------------------------------------------


def test_an_outage_answers_503_and_says_so(make_service: Callable[..., Service]) -> None:
    """`make break` prints this answer: it used to say "status": 500 for a 503 outage."""
    with service_client(make_service(**ENABLED)) as client, capture_logs() as events:
        put = client.put("/admin/faults", json={"outage": True}, headers=AUTH).json()
        got = client.get("/admin/faults", headers=AUTH).json()
        broken = client.get("/items/count")

    assert broken.status_code == 503
    assert put == got
    assert put == {
        "active": True,
        "outage": True,
        "error_rate": 0.0,
        "status": broken.status_code,
        "latency_ms": 0,
        "routes": [],
        "effect": "every request to any API route answers 503",
    }
    (injected,) = [e for e in events if e["event"] == "faults injected"]
    assert (injected["status"], injected["outage"]) == (503, True)


def test_an_outage_wins_over_an_error_rate_and_its_status(
    make_service: Callable[..., Service],
) -> None:
    fault = {"outage": True, "error_rate": 0.5, "status": 502}
    with service_client(make_service(**ENABLED)) as client:
        answer = client.put("/admin/faults", json=fault, headers=AUTH).json()
        statuses = {client.get("/items/count").status_code for _ in range(20)}

    assert statuses == {503}
    assert answer["status"] == 503
    assert answer["effect"] == "every request to any API route answers 503"


def test_an_error_rate_answers_its_status(make_service: Callable[..., Service]) -> None:
    fault = {"error_rate": 1.0, "status": 502, "routes": ["/items/count"]}
    with service_client(make_service(**ENABLED)) as client:
        answer = client.put("/admin/faults", json=fault, headers=AUTH).json()
        got = client.get("/admin/faults", headers=AUTH).json()
        failed = client.get("/items/count")

    assert answer == got
    assert (answer["status"], failed.status_code) == (502, 502)
    assert answer["effect"] == "100% of requests to /items/count answer 502"


def test_without_failures_there_is_no_status(make_service: Callable[..., Service]) -> None:
    with service_client(make_service(**ENABLED)) as client, capture_logs() as events:
        slow = client.put("/admin/faults", json={"latency_ms": 10, "status": 502}, headers=AUTH)
        assert client.get("/items/count").status_code == 200
        healed = client.delete("/admin/faults", headers=AUTH).json()
        after = client.get("/admin/faults", headers=AUTH).json()

    assert (slow.json()["status"], slow.json()["active"]) == (None, True)
    assert slow.json()["effect"] == "every request to any API route is delayed 10 ms"
    assert healed == after
    assert (healed["status"], healed["active"]) == (None, False)
    (injected,) = [e for e in events if e["event"] == "faults injected"]
    assert "status" not in injected  # a log line never says status=None


@pytest.mark.parametrize(
    ("fault", "status", "said"),
    [
        ({}, None, "none: every request is served normally"),
        ({"outage": True}, 503, "every request to any API route answers 503"),
        (
            {"outage": True, "latency_ms": 200, "routes": ["/a", "/b/{id}"]},
            503,
            "every request to /a, /b/{id} answers 503 after a 200 ms delay",
        ),
        ({"error_rate": 0.5}, 500, "50% of requests to any API route answer 500"),
        (
            {"error_rate": 0.125, "status": 504, "latency_ms": 5},
            504,
            "12.5% of requests to any API route answer 504; every one is delayed 5 ms",
        ),
        ({"latency_ms": 300}, None, "every request to any API route is delayed 300 ms"),
        ({"status": 502}, None, "none: every request is served normally"),
    ],
)
def test_describe(fault: dict[str, Any], status: int | None, said: str) -> None:
    faults = parse_faults(fault)

    answer = describe(faults)

    assert answer["status"] == faults.failure_status == status
    assert answer["effect"] == effect(faults) == said
    assert answer["active"] is faults.active
    assert answer["routes"] == list(faults.routes)


def test_the_healthy_answer() -> None:
    assert describe(Faults()) == {
        "active": False,
        "outage": False,
        "error_rate": 0.0,
        "status": None,
        "latency_ms": 0,
        "routes": [],
        "effect": "none: every request is served normally",
    }
