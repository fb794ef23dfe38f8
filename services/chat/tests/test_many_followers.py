"""200 live followers on one ``chat serve``: they cost the other requests nothing noticeable,
and one message reaches all of them within seconds."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from chassis.testing import MetricsSnapshot

FOLLOWERS = 200
REQUESTS = 100
# Measured on a 2-CPU machine shared with other test runs (load average 10-15): p50 3-9 ms,
# p95 8-24 ms, all 200 followers served in ~250 ms. The bounds leave CI generous headroom and
# still catch a blocked event loop or followers holding worker threads (requests would then
# queue behind them for seconds, or never be served).
P95_BOUND_SECONDS = 0.25
DELIVERY_BOUND_SECONDS = 5.0
CONNECT_SECONDS = 30.0


async def follow(
    client: httpx.AsyncClient,
    room: str,
    connected: list[int],
    all_connected: asyncio.Event,
) -> tuple[float, dict[str, Any]]:
    """Follows ``room`` until the first message; returns when it arrived and the message."""
    async with client.stream("GET", f"/rooms/{room}/events") as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        async for line in lines:
            if line == ": following":
                connected.append(1)
                if len(connected) == FOLLOWERS:
                    all_connected.set()
                break
        async for line in lines:
            if line.startswith("data:"):
                return time.perf_counter(), json.loads(line.removeprefix("data:"))
    raise AssertionError("the stream ended before a message arrived")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def scenario(base_url: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=FOLLOWERS + 20, max_keepalive_connections=FOLLOWERS + 20)
    timeout = httpx.Timeout(30.0, connect=10.0)
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as streams,
        httpx.AsyncClient(base_url=base_url, timeout=10.0) as client,
    ):
        first = await client.post("/rooms/book-1/messages", json={"author": "a", "text": "warm"})
        assert first.status_code == 201

        connected: list[int] = []
        all_connected = asyncio.Event()
        followers = [
            asyncio.create_task(follow(streams, "book-1", connected, all_connected))
            for _ in range(FOLLOWERS)
        ]
        try:
            await asyncio.wait_for(all_connected.wait(), CONNECT_SECONDS)
        except TimeoutError:
            raise AssertionError(
                f"only {len(connected)} of {FOLLOWERS} followers connected"
            ) from None
        refused = await client.get("/rooms/book-1/events")  # one more than the replica allows
        metrics = MetricsSnapshot((await client.get("/metrics")).text)
        active = metrics.value("http_server_active_requests", http_request_method="GET")

        latencies: list[float] = []
        for n in range(REQUESTS):
            path = "/rooms/book-1/messages?limit=20" if n % 2 else "/health/live"
            started = time.perf_counter()
            response = await client.get(path)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
        still_connected = sum(not task.done() for task in followers)

        posted_at = time.perf_counter()
        posted = await client.post("/rooms/book-1/messages", json={"author": "a", "text": "all"})
        assert posted.status_code == 201
        done, pending = await asyncio.wait(followers, timeout=DELIVERY_BOUND_SECONDS)
        for task in pending:
            task.cancel()
        arrivals = [task.result() for task in done]
    return {
        "refused_status": refused.status_code,
        "refused_retry_after": refused.headers.get("retry-after"),
        "followers_connected": len(connected),
        "followers_connected_during_requests": still_connected,
        "server_active_get_requests": active,
        "requests": REQUESTS,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "followers_received": sum(1 for _, m in arrivals if m == posted.json()),
        "fan_out_all_received_ms": round((max(t for t, _ in arrivals) - posted_at) * 1000, 1)
        if arrivals
        else None,
    }


def test_two_hundred_followers_leave_other_requests_fast(
    chat_processes: Any, database_url: str, fake_books: Any, tmp_path: Path
) -> None:
    chat = chat_processes.start(
        database_url, fake_books.base_url, LIVE__MAX_FOLLOWERS=str(FOLLOWERS)
    )

    figures = asyncio.run(scenario(chat.url))

    report = tmp_path / "followers.json"
    report.write_text(json.dumps(figures, indent=2))
    print(f"\n200 followers: {json.dumps(figures)}\n  (written to {report})")
    assert figures["followers_connected"] == FOLLOWERS
    assert figures["followers_connected_during_requests"] == FOLLOWERS
    assert figures["server_active_get_requests"] >= FOLLOWERS  # the server holds them all
    assert figures["refused_status"] == 503  # beyond live.max_followers: try another replica
    assert figures["refused_retry_after"] == "5"
    assert figures["p95_ms"] < P95_BOUND_SECONDS * 1000, figures
    assert figures["followers_received"] == FOLLOWERS, figures
    assert figures["fan_out_all_received_ms"] < DELIVERY_BOUND_SECONDS * 1000
