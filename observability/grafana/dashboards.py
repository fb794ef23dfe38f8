"""The Grafana dashboards of the bookshop, as code: writes dashboards/*.json.

    uv run python observability/grafana/dashboards.py           # rewrite the JSON files
    uv run python observability/grafana/dashboards.py --check   # exit 1 when they are stale

Grafana provisions the JSON files (provisioning/dashboards/bookshop.yml); this module is where
they are edited, so that every panel shares the datasource, the variables and the metric names
of design §5 (chassis/metrics.py) instead of repeating them by hand in three JSON documents.
A test checks that the committed JSON is what this module renders.

The Prometheus job of each service is named after it (observability/prometheus/render.py),
so ``job`` is the service label everywhere below.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUTPUT = HERE / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
JAEGER_URL = "http://localhost:16686"
SCHEMA_VERSION = 39

# Metric and label names: design §5, defined once in chassis/metrics.py.
SERVER = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
CLIENT = "http_client_request_duration_seconds"
RETRIES = "http_client_retries_total"
BREAKER_STATE = "circuit_breaker_state"
BREAKER_CALLS = "circuit_breaker_calls_total"
SERVICE_INFO = "service_info"

# The chassis' own endpoints and the chat event streams (open for minutes) are not API traffic;
# alert rules leave out the same routes (prometheus/rules/bookshop.yml).
NOT_API = r"/metrics|/health/.*|/healthcheck|/info|/rooms/\\{room\\}/events"
API = f'job=~"$service", http_route=~"$route", http_route!~"{NOT_API}"'
RATE = "[$__rate_interval]"

# -- panels -------------------------------------------------------------------------------------


@dataclass
class Target:
    expr: str
    legend: str = ""
    exemplar: bool = False
    instant: bool = False
    format: str = "time_series"

    def json(self, ref_id: str) -> dict[str, Any]:
        return {
            "refId": ref_id,
            "datasource": PROMETHEUS,
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "exemplar": self.exemplar,
            "range": not self.instant,
            "instant": self.instant,
            "format": self.format,
        }


@dataclass
class Panel:
    title: str
    targets: list[Target]
    description: str = ""
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    stack: bool = False
    min: float | None = 0
    extra_defaults: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)

    def json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {"unit": self.unit, **self.extra_defaults}
        if self.min is not None:
            defaults["min"] = self.min
        options: dict[str, Any] = {}
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 20 if self.stack else 0,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stack else "none", "group": "A"},
            }
            options = {
                "legend": {
                    "displayMode": "table",
                    "placement": "bottom",
                    "showLegend": True,
                    "calcs": ["mean", "max", "lastNotNull"],
                },
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        options.update(self.options)
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": PROMETHEUS,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [
                target.json(chr(ord("A") + index)) for index, target in enumerate(self.targets)
            ],
            "transformations": self.transformations,
        }


@dataclass
class Row:
    title: str


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[dict[str, Any]]
    items: list[Panel | Row]

    def json(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        x = y = 0
        row_height = 0
        for panel_id, item in enumerate(self.items, start=1):
            if isinstance(item, Row):
                y += row_height
                x = row_height = 0
                panels.append(
                    {
                        "id": panel_id,
                        "type": "row",
                        "title": item.title,
                        "collapsed": False,
                        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                        "panels": [],
                    }
                )
                y += 1
                continue
            if x + item.width > 24:
                y += row_height
                x = row_height = 0
            panels.append(item.json(panel_id, x, y))
            x += item.width
            row_height = max(row_height, item.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["bookshop"],
            "timezone": "browser",
            "editable": False,
            "graphTooltip": 1,
            "refresh": "10s",
            "time": {"from": "now-30m", "to": "now"},
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "links": [
                {
                    "type": "dashboards",
                    "title": "Bookshop",
                    "tags": ["bookshop"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                },
                {
                    "type": "link",
                    "title": "Jaeger",
                    "url": JAEGER_URL,
                    "targetBlank": True,
                    "icon": "external link",
                },
            ],
            "annotations": {"list": []},
            "templating": {"list": self.variables},
            "panels": panels,
        }


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value variable from ``label_values(...)``, "All" selected by default."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


SERVICE_VARIABLE = query_variable("service", "Service", f"label_values({SERVICE_INFO}, job)")
ROUTE_VARIABLE = query_variable(
    "route", "Route", f'label_values({SERVER}_count{{job=~"$service"}}, http_route)'
)
PEER_VARIABLE = query_variable(
    "peer", "Dependency", f'label_values({BREAKER_STATE}{{job=~"$service"}}, peer_service)'
)

# -- the dashboards -----------------------------------------------------------------------------


def service_overview() -> Dashboard:
    count = f"{SERVER}_count"
    bucket = f"{SERVER}_bucket"
    errors = f'{API}, http_response_status_code=~"5.."'
    return Dashboard(
        uid="bookshop-overview",
        title="Bookshop / Service overview",
        description="Rate, errors and duration (RED) of every service and route. Click an "
        "exemplar (a dot on the latency panels) to open its trace in Jaeger.",
        variables=[SERVICE_VARIABLE, ROUTE_VARIABLE],
        items=[
            Row("Services"),
            Panel(
                "Up",
                [Target('up{job=~"$service"}', "{{job}}", instant=True)],
                description="1 while Prometheus can scrape the service.",
                kind="stat",
                width=6,
                height=5,
                extra_defaults={
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "DOWN", "color": "red", "index": 0},
                                "1": {"text": "UP", "color": "green", "index": 1},
                            },
                        }
                    ],
                    "color": {"mode": "thresholds"},
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                    },
                },
                options={
                    "colorMode": "background",
                    "graphMode": "none",
                    "textMode": "value_and_name",
                },
            ),
            Panel(
                "Version and commit",
                [
                    Target(
                        f'{SERVICE_INFO}{{job=~"$service"}}',
                        instant=True,
                        format="table",
                    )
                ],
                description="service_info: what each service reports in /info.",
                kind="table",
                width=18,
                height=5,
                min=None,
                options={"showHeader": True},
                transformations=[
                    {
                        "id": "organize",
                        "options": {
                            "excludeByName": {
                                name: True for name in ("Time", "Value", "__name__", "service")
                            },
                            "indexByName": {"job": 0, "version": 1, "commit": 2, "instance": 3},
                            "renameByName": {"job": "service"},
                        },
                    }
                ],
            ),
            Row("Rate, errors, duration per service"),
            Panel(
                "Request rate",
                [Target(f"sum by (job) (rate({count}{{{API}}}{RATE}))", "{{job}}")],
                description="API requests per second (chassis endpoints and event streams "
                "left out).",
                unit="reqps",
                width=8,
            ),
            Panel(
                "5xx ratio",
                [
                    Target(
                        f"(sum by (job) (rate({count}{{{errors}}}{RATE}))"
                        f" or 0 * sum by (job) (rate({count}{{{API}}}{RATE})))"
                        f" / sum by (job) (rate({count}{{{API}}}{RATE}))",
                        "{{job}}",
                    )
                ],
                description="Share of API requests answered with a 5xx (alert: above 5%); "
                "0 when there were none.",
                unit="percentunit",
                width=8,
            ),
            Panel(
                "Duration p50 / p95 / p99",
                [
                    Target(
                        f"histogram_quantile({q}, sum by (job, le) "
                        f"(rate({bucket}{{{API}}}{RATE})))",
                        f"{{{{job}}}} p{round(q * 100)}",
                        exemplar=q == 0.95,
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                description="Quantiles of the API request duration (alert: p95 above 500 ms). "
                "Exemplars link to the request's trace in Jaeger.",
                unit="s",
                width=8,
            ),
            Row("Per route"),
            Panel(
                "Request rate by route",
                [
                    Target(
                        f"sum by (job, http_request_method, http_route) "
                        f"(rate({count}{{{API}}}{RATE}))",
                        "{{job}} {{http_request_method}} {{http_route}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Responses by status",
                [
                    Target(
                        f"sum by (job, http_response_status_code) (rate({count}{{{API}}}{RATE}))",
                        "{{job}} {{http_response_status_code}}",
                    )
                ],
                description="Every status code, 2xx to 5xx, per service.",
                unit="reqps",
                stack=True,
            ),
            Panel(
                "5xx by route",
                [
                    Target(
                        f"sum by (job, http_request_method, http_route, "
                        f"http_response_status_code) (rate({count}{{{errors}}}{RATE}))",
                        "{{job}} {{http_request_method}} {{http_route}} "
                        "{{http_response_status_code}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Duration p95 by route",
                [
                    Target(
                        f"histogram_quantile(0.95, sum by (job, http_request_method, http_route,"
                        f" le) (rate({bucket}{{{API}}}{RATE})))",
                        "{{job}} {{http_request_method}} {{http_route}}",
                        exemplar=True,
                    )
                ],
                description="Exemplars link to the trace of a request in that bucket.",
                unit="s",
            ),
            Panel(
                "Requests in flight",
                [
                    Target(
                        f'sum by (job, http_request_method) ({ACTIVE}{{job=~"$service"}})',
                        "{{job}} {{http_request_method}}",
                    )
                ],
                description="Includes open chat event streams.",
                width=24,
                height=6,
            ),
        ],
    )


def dependencies() -> Dashboard:
    peers = 'job=~"$service", peer_service=~"$peer"'
    count = f"{CLIENT}_count"
    return Dashboard(
        uid="bookshop-dependencies",
        title="Bookshop / Dependencies and circuit breakers",
        description="Calls from each service to its neighbours through the chassis client: "
        "latency, failures, retries and the circuit breakers (design §7).",
        variables=[SERVICE_VARIABLE, PEER_VARIABLE],
        items=[
            Row("Circuit breakers"),
            Panel(
                "Breaker state",
                [
                    Target(
                        f'2 * max by (job, peer_service) ({BREAKER_STATE}{{{peers}, state="open"}})'
                        f" + max by (job, peer_service) "
                        f'({BREAKER_STATE}{{{peers}, state="half_open"}})',
                        "{{job}} → {{peer_service}}",
                    )
                ],
                description="closed: calls flow; open: calls are rejected at once for 10 s; "
                "half_open: 3 trial calls decide. `make break SERVICE=books` opens shop's and "
                "chat's breakers to books.",
                kind="state-timeline",
                width=24,
                height=6,
                extra_defaults={
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "closed", "color": "green", "index": 0},
                                "1": {"text": "half_open", "color": "yellow", "index": 1},
                                "2": {"text": "open", "color": "red", "index": 2},
                            },
                        }
                    ],
                    "color": {"mode": "thresholds"},
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "green", "value": None},
                            {"color": "yellow", "value": 1},
                            {"color": "red", "value": 2},
                        ],
                    },
                },
                options={
                    "mergeValues": True,
                    "showValue": "auto",
                    "alignValue": "left",
                    "rowHeight": 0.8,
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "single", "sort": "none"},
                },
            ),
            Panel(
                "Breaker calls by outcome",
                [
                    Target(
                        f"sum by (job, peer_service, outcome) "
                        f"(rate({BREAKER_CALLS}{{{peers}}}{RATE}))",
                        "{{job}} → {{peer_service}} {{outcome}}",
                    )
                ],
                description="success, failure (5xx, timeout, connection error), slow, and "
                "rejected (not tried: the breaker was open).",
                unit="ops",
                stack=True,
            ),
            Panel(
                "Retries",
                [
                    Target(
                        f"sum by (job, peer_service) (rate({RETRIES}{{{peers}}}{RATE}))",
                        "{{job}} → {{peer_service}}",
                    )
                ],
                description="Retried calls (idempotent requests on connection errors and "
                "502/503/504, at most 3 attempts).",
                unit="ops",
            ),
            Row("Outgoing requests"),
            Panel(
                "Outgoing request rate",
                [
                    Target(
                        f"sum by (job, peer_service, http_response_status_code, error_type) "
                        f"(rate({count}{{{peers}}}{RATE}))",
                        "{{job}} → {{peer_service}} {{http_response_status_code}}{{error_type}}",
                    )
                ],
                description="By answer: a status code, or the error type when no answer came.",
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Outgoing duration p95",
                [
                    Target(
                        f"histogram_quantile(0.95, sum by (job, peer_service, le) "
                        f"(rate({CLIENT}_bucket{{{peers}}}{RATE})))",
                        "{{job}} → {{peer_service}}",
                        exemplar=True,
                    )
                ],
                description="Exemplars link to the trace of the call.",
                unit="s",
            ),
            Panel(
                "Outgoing failures",
                [
                    Target(
                        f"(sum by (job, peer_service) (rate({count}{{{peers}, "
                        f'http_response_status_code!~"[1-4].."}}{RATE}))'
                        f" or 0 * sum by (job, peer_service) (rate({count}{{{peers}}}{RATE})))"
                        f" / sum by (job, peer_service) (rate({count}{{{peers}}}{RATE}))",
                        "{{job}} → {{peer_service}}",
                    )
                ],
                description="Share of attempts that got a 5xx or no answer (timeouts, "
                "connection errors).",
                unit="percentunit",
                width=24,
            ),
        ],
    )


def runtime() -> Dashboard:
    service = 'job=~"$service"'
    return Dashboard(
        uid="bookshop-runtime",
        title="Bookshop / Runtime",
        description="The Python processes of the services: prometheus-client's process and "
        "GC collectors, which the chassis registers.",
        variables=[SERVICE_VARIABLE],
        items=[
            Panel(
                "CPU",
                [Target(f"rate(process_cpu_seconds_total{{{service}}}{RATE})", "{{job}}")],
                description="CPU seconds per second (1 = one core).",
                unit="percentunit",
            ),
            Panel(
                "Resident memory",
                [Target(f"process_resident_memory_bytes{{{service}}}", "{{job}}")],
                description="RSS; compare with the service's mem_limit in "
                "deploy/compose/compose.yaml.",
                unit="bytes",
            ),
            Panel(
                "GC collections",
                [
                    Target(
                        f"sum by (job, generation) "
                        f"(rate(python_gc_collections_total{{{service}}}{RATE}))",
                        "{{job}} gen {{generation}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Open file descriptors",
                [
                    Target(f"process_open_fds{{{service}}}", "{{job}}"),
                    Target(f"process_max_fds{{{service}}}", "{{job}} limit"),
                ],
                description="Sockets (clients, database pool, event streams) and files.",
            ),
            Panel(
                "Uptime",
                [Target(f"time() - process_start_time_seconds{{{service}}}", "{{job}}")],
                description="Drops to zero when a process restarts.",
                unit="s",
                width=24,
                height=6,
            ),
        ],
    )


DASHBOARDS = {
    "service-overview.json": service_overview,
    "dependencies.json": dependencies,
    "runtime.json": runtime,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build().json(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    arguments = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUTPUT / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if arguments.check:
            stale.append(name)
        else:
            OUTPUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
