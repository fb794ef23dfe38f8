"""Helpers of the tests where books cannot answer (imported by path: tests are no package)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

# Two failed calls open the breaker (design §7 defaults need ten); no waiting between retries.
FAST_BREAKER = {
    "DEPENDENCIES__BOOKS__BREAKER__MINIMUM_CALLS": "2",
    "DEPENDENCIES__BOOKS__BREAKER__WINDOW_SIZE": "4",
    "DEPENDENCIES__BOOKS__RETRY__BASE_SECONDS": "0.01",
}


def post(client: TestClient, room: str, text: str = "hello") -> dict[str, Any]:
    """Posts as ann and expects 201."""
    response = client.post(f"/rooms/{room}/messages", json={"author": "ann", "text": text})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
