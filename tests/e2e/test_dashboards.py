"""Every Grafana dashboard query returns data from a Prometheus that scraped the stack under
traffic (tests/deploy/test_grafana.py only checks that each one parses).

The scenario makes the traffic every panel shows: orders (shop -> books, shop -> chat), chat
messages (chat -> books), catalogue reads, then an outage of books long enough for 5xx answers,
retries and shop's breaker to open and reject calls; twice, with a scrape in between. Then each
query runs with Grafana's variables filled in as "All" would fill them, until every one has a
value (or a minute has passed).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from pathlib import Path

import yaml
from e2e_stack import Stack, unavailable, wait_until

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "observability" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "15s",
    "$__range": "1h",
    "$service": ".*",
    "$route": ".*",
    "$peer": ".*",
    "$__tags": 'job="shop"',
}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL with the variables filled in) of every dashboard and datasource query."""
    queries = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        for panel in panels:
            for target in panel["targets"]:
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert selector is not None
            queries.append((f"{path.name}: ${variable['name']}", selector.group(1)))
    for datasource in yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]:
        for query in datasource.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            queries.append((f"{datasource['name']}: {query['name']}", query["query"]))
    filled = []
    for where, expression in queries:
        for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda item: -len(item[0])):
            expression = expression.replace(variable, value)
        assert "$" not in expression, expression
        filled.append((where, expression))
    return filled


def drive_traffic(stack: Stack) -> None:
    book = stack.create_book(stock=100_000, title="dashboards")
    for _ in range(10):
        placed = stack.order([(book, 1)])
        assert placed.status_code == 201, placed.text
        stack.http.post(f"{stack.url('shop')}/orders/{placed.json()['id']}/cancel")
        stack.http.get(f"{stack.url('books')}/books/{book}")
        stack.http.post(
            f"{stack.url('chat')}/rooms/book-{book}/messages",
            json={"author": "dashboards", "text": "hello"},
        )
    # books down: its own 503s, shop's retries and failures, then shop's breaker opens
    stack.inject("books", outage=True)
    try:

        def breaker_open() -> bool:
            stack.order([(book, 1)])
            stack.http.post(  # a book chat never saw: chat must ask books
                f"{stack.url('chat')}/rooms/book-{secrets.randbelow(10**9) + 10**9}/messages",
                json={"author": "dashboards", "text": "is books there?"},
            )
            return stack.breaker("shop", "books") == "open"

        wait_until(breaker_open, timeout=60, interval=0.2, message="shop's breaker stayed closed")
        for _ in range(3):  # rejected without trying
            assert stack.order([(book, 1)]).status_code == 503
    finally:
        stack.heal("books")


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    if stack.prometheus is None:
        unavailable("no Prometheus in this stack (E2E_PROMETHEUS_URL)")
    prometheus = stack.prometheus
    # Twice, with a scrape in between: a rate needs two samples of a series, and a series
    # born and finished between two scrapes shows no increase.
    drive_traffic(stack)
    wait_until(
        lambda: prometheus.query('circuit_breaker_calls_total{outcome="rejected"}'),
        timeout=60,
        interval=0.5,
        message="Prometheus has not scraped the calls shop's breaker rejected",
    )
    stack.ensure_healthy()
    drive_traffic(stack)
    queries = dashboard_queries()

    def empty() -> list[str]:
        """The queries without a finite value yet: a rate needs two scrapes of a series."""
        missing = []
        for where, expression in queries:
            result = prometheus.query(expression)
            if not any(math.isfinite(item["value"]) for item in result):
                missing.append(f"{where}: {len(result)} series, none finite\n  {expression}")
        return missing

    last: list[str] = []

    def all_answer() -> bool:
        last[:] = empty()
        return not last

    wait_until(all_answer, timeout=60, interval=1, message=lambda: "\n".join(last))


def test_latency_exemplars_carry_the_trace_id_grafana_links_to_jaeger(stack: Stack) -> None:
    if stack.prometheus is None:
        unavailable("no Prometheus in this stack (E2E_PROMETHEUS_URL)")
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    (prometheus,) = [d for d in datasources if d["type"] == "prometheus"]
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    book = stack.create_book(stock=100, title="exemplars")
    assert stack.order([(book, 1)]).status_code == 201

    def exemplars() -> list[dict[str, str]]:
        found = stack.prometheus.exemplars(  # type: ignore[union-attr]
            'http_server_request_duration_seconds_bucket{job="shop", http_route="/orders"}'
        )
        return [e["labels"] for series in found for e in series["exemplars"]]

    labels = wait_until(exemplars, timeout=30, interval=0.5, message="no exemplar scraped")
    assert all(re.fullmatch(r"[0-9a-f]{32}", label[destination["name"]]) for label in labels)
