"""The Grafana dashboards of the bookshop, as code: writes dashboards/*.json.

    uv run python observability/grafana/dashboards.py           # rewrite the JSON files
    uv run python observability/grafana/dashboards.py --check   # exit 1 when they are stale

Grafana provisions the JSON files (provisioning/dashboards/bookshop.yml); this module is where
they are edited, so that every panel shares the datasource, the variables and the metric names
of design §5 (chassis/metrics.py) instead of repeating them by hand in three JSON documents.
A test checks that the committed JSON is what this module renders.

The dashboards are built with Grafana's typed builders (grafana-foundation-sdk, a dev
dependency pinned to its build for Grafana 11.6, the newest it targets: the stack runs 12.x,
which reads that schema and migrates it on load). The SDK lays the panels out left to right
and starts a new line once the 24 grid columns are filled (it never moves a panel that would
overflow, so the widths on each line below add up to 24); the helpers below only add what
every panel here shares, and the panel ids.

The Prometheus job of each service is named after it (observability/prometheus/render.py),
so ``job`` is the service label everywhere below.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import (
    common,
    dashboard,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TimelineValueAlignment,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).parent
OUTPUT = HERE / "dashboards"

PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
JAEGER_URL = "http://localhost:16686"

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

# -- building blocks ----------------------------------------------------------------------------


def promql(expr: str, legend: str = "__auto", *, exemplar: bool = False) -> prometheus.Dataquery:
    """A range query of the Prometheus datasource (``__auto``: Grafana names the series)."""
    return (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .expr(expr)
        .legend_format(legend)
        .exemplar(exemplar)
        .range()
        .format(PromQueryFormat.TIME_SERIES)
    )


def queries(*targets: prometheus.Dataquery) -> list[Builder[Dataquery]]:
    """A panel's queries, named A, B, C... as Grafana's editor would (the SDK leaves it blank)."""
    return [target.ref_id(chr(ord("A") + index)) for index, target in enumerate(targets)]


def graph(
    title: str,
    *targets: prometheus.Dataquery,
    description: str = "",
    unit: str = "short",
    stack: bool = False,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A time series panel: lines from zero, a legend table with mean, max and last value."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(queries(*targets))
        .span(width)
        .height(height)
        .unit(unit)
        .min(0)
        .draw_style(GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(20 if stack else 0)
        .show_points(VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common.StackingConfig()
            .mode(StackingMode.NORMAL if stack else StackingMode.NONE)
            .group("A")
        )
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )


def discrete(
    *states: tuple[str, str],
) -> tuple[list[model.ValueMapping], dashboard.ThresholdsConfig]:
    """Value ``i`` shown as ``states[i]`` (text, colour): a value mapping names it and a
    threshold step per value colours it."""
    mapping = model.ValueMap(
        options={
            str(value): model.ValueMappingResult(text=text, color=color, index=value)
            for value, (text, color) in enumerate(states)
        }
    )
    steps = [
        model.Threshold(value=None if value == 0 else value, color=color)
        for value, (_, color) in enumerate(states)
    ]
    thresholds = dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)
    return [mapping], thresholds


def query_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-value variable from ``label_values(...)``, "All" selected by default."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": query, "refId": f"{name}-values"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([])
        .hide(model.VariableHide.DONT_HIDE)
    )


def service_variable() -> dashboard.QueryVariable:
    return query_variable("service", "Service", f"label_values({SERVICE_INFO}, job)")


def bookshop(uid: str, title: str, description: str) -> dashboard.Dashboard:
    """What the three dashboards share: read-only, 30 minutes refreshed every 10 s, a shared
    crosshair, and links to the other dashboards and to Jaeger."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["bookshop"])
        .timezone("browser")
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-30m", "now")
        .version(1)
        .link(
            dashboard.DashboardLink("Bookshop")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["bookshop"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .link(
            dashboard.DashboardLink("Jaeger")
            .type(model.DashboardLinkType.LINK)
            .url(JAEGER_URL)
            .target_blank(True)
            .icon("external link")
        )
    )


def numbered(board: dashboard.Dashboard) -> model.Dashboard:
    """The built dashboard with its panels numbered 1, 2, 3...: the SDK leaves panel ids to
    Grafana, but provisioned JSON should carry stable ones (a row's would be ``null``)."""
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


# -- the dashboards -----------------------------------------------------------------------------


def service_overview() -> model.Dashboard:
    count = f"{SERVER}_count"
    bucket = f"{SERVER}_bucket"
    errors = f'{API}, http_response_status_code=~"5.."'
    up_mappings, up_colors = discrete(("DOWN", "red"), ("UP", "green"))
    hidden_columns = ("Time", "Value", "__name__", "service")
    return numbered(
        bookshop(
            "bookshop-overview",
            "Bookshop / Service overview",
            "Rate, errors and duration (RED) of every service and route. Click an exemplar "
            "(a dot on the latency panels) to open its trace in Jaeger.",
        )
        .with_variable(service_variable())
        .with_variable(
            query_variable(
                "route", "Route", f'label_values({SERVER}_count{{job=~"$service"}}, http_route)'
            )
        )
        .with_row(dashboard.Row("Services"))
        .with_panel(
            stat.Panel()
            .title("Up")
            .description("1 while Prometheus can scrape the service.")
            .datasource(PROMETHEUS)
            .targets(queries(promql('up{job=~"$service"}', "{{job}}").instant()))
            .span(6)
            .height(5)
            .unit("short")
            .min(0)
            .mappings(up_mappings)
            .thresholds(up_colors)
            .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
            .color_mode(BigValueColorMode.BACKGROUND)
            .graph_mode(BigValueGraphMode.NONE)
            .text_mode(BigValueTextMode.VALUE_AND_NAME)
            # Grafana's own default, spelled out: the SDK would write an empty list.
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
        .with_panel(
            table.Panel()
            .title("Version and commit")
            .description("service_info: what each service reports in /info.")
            .datasource(PROMETHEUS)
            .targets(
                queries(
                    promql(f'{SERVICE_INFO}{{job=~"$service"}}')
                    .instant()
                    .format(PromQueryFormat.TABLE)
                )
            )
            .span(18)
            .height(5)
            .unit("short")
            .show_header(True)
            .transformations(
                [
                    model.DataTransformerConfig(
                        id_val="organize",
                        options={
                            "excludeByName": dict.fromkeys(hidden_columns, True),
                            "indexByName": {"job": 0, "version": 1, "commit": 2, "instance": 3},
                            "renameByName": {"job": "service"},
                        },
                    )
                ]
            )
        )
        .with_row(dashboard.Row("Rate, errors, duration per service"))
        .with_panel(
            graph(
                "Request rate",
                promql(f"sum by (job) (rate({count}{{{API}}}{RATE}))", "{{job}}"),
                description="API requests per second (chassis endpoints and event streams "
                "left out).",
                unit="reqps",
                width=8,
            )
        )
        .with_panel(
            graph(
                "5xx ratio",
                promql(
                    f"(sum by (job) (rate({count}{{{errors}}}{RATE}))"
                    f" or 0 * sum by (job) (rate({count}{{{API}}}{RATE})))"
                    f" / sum by (job) (rate({count}{{{API}}}{RATE}))",
                    "{{job}}",
                ),
                description="Share of API requests answered with a 5xx (alert: above 5%); "
                "0 when there were none.",
                unit="percentunit",
                width=8,
            )
        )
        .with_panel(
            graph(
                "Duration p50 / p95 / p99",
                *(
                    promql(
                        f"histogram_quantile({q}, sum by (job, le) "
                        f"(rate({bucket}{{{API}}}{RATE})))",
                        f"{{{{job}}}} p{round(q * 100)}",
                        exemplar=q == 0.95,
                    )
                    for q in (0.5, 0.95, 0.99)
                ),
                description="Quantiles of the API request duration (alert: p95 above 500 ms). "
                "Exemplars link to the request's trace in Jaeger.",
                unit="s",
                width=8,
            )
        )
        .with_row(dashboard.Row("Per route"))
        .with_panel(
            graph(
                "Request rate by route",
                promql(
                    f"sum by (job, http_request_method, http_route) (rate({count}{{{API}}}{RATE}))",
                    "{{job}} {{http_request_method}} {{http_route}}",
                ),
                unit="reqps",
            )
        )
        .with_panel(
            graph(
                "Responses by status",
                promql(
                    f"sum by (job, http_response_status_code) (rate({count}{{{API}}}{RATE}))",
                    "{{job}} {{http_response_status_code}}",
                ),
                description="Every status code, 2xx to 5xx, per service.",
                unit="reqps",
                stack=True,
            )
        )
        .with_panel(
            graph(
                "5xx by route",
                promql(
                    f"sum by (job, http_request_method, http_route, "
                    f"http_response_status_code) (rate({count}{{{errors}}}{RATE}))",
                    "{{job}} {{http_request_method}} {{http_route}} {{http_response_status_code}}",
                ),
                unit="reqps",
            )
        )
        .with_panel(
            graph(
                "Duration p95 by route",
                promql(
                    f"histogram_quantile(0.95, sum by (job, http_request_method, http_route,"
                    f" le) (rate({bucket}{{{API}}}{RATE})))",
                    "{{job}} {{http_request_method}} {{http_route}}",
                    exemplar=True,
                ),
                description="Exemplars link to the trace of a request in that bucket.",
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Requests in flight",
                promql(
                    f'sum by (job, http_request_method) ({ACTIVE}{{job=~"$service"}})',
                    "{{job}} {{http_request_method}}",
                ),
                description="Includes open chat event streams.",
                width=24,
                height=6,
            )
        )
    )


def dependencies() -> model.Dashboard:
    peers = 'job=~"$service", peer_service=~"$peer"'
    count = f"{CLIENT}_count"
    state_mappings, state_colors = discrete(
        ("closed", "green"), ("half_open", "yellow"), ("open", "red")
    )
    return numbered(
        bookshop(
            "bookshop-dependencies",
            "Bookshop / Dependencies and circuit breakers",
            "Calls from each service to its neighbours through the chassis client: latency, "
            "failures, retries and the circuit breakers (design §7).",
        )
        .with_variable(service_variable())
        .with_variable(
            query_variable(
                "peer",
                "Dependency",
                f'label_values({BREAKER_STATE}{{job=~"$service"}}, peer_service)',
            )
        )
        .with_row(dashboard.Row("Circuit breakers"))
        .with_panel(
            statetimeline.Panel()
            .title("Breaker state")
            .description(
                "closed: calls flow; open: calls are rejected at once for 10 s; half_open: "
                "3 trial calls decide. `make break SERVICE=books` opens shop's and chat's "
                "breakers to books."
            )
            .datasource(PROMETHEUS)
            .targets(
                queries(
                    promql(
                        f'2 * max by (job, peer_service) ({BREAKER_STATE}{{{peers}, state="open"}})'
                        f" + max by (job, peer_service) "
                        f'({BREAKER_STATE}{{{peers}, state="half_open"}})',
                        "{{job}} → {{peer_service}}",
                    )
                )
            )
            .span(24)
            .height(6)
            .unit("short")
            .min(0)
            .mappings(state_mappings)
            .thresholds(state_colors)
            .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
            .merge_values(True)
            .show_value(VisibilityMode.AUTO)
            .align_value(TimelineValueAlignment.LEFT)
            .row_height(0.8)
            .legend(
                common.VizLegendOptions()
                .display_mode(LegendDisplayMode.LIST)
                .placement(LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common.VizTooltipOptions().mode(TooltipDisplayMode.SINGLE).sort(SortOrder.NONE)
            )
        )
        .with_panel(
            graph(
                "Breaker calls by outcome",
                promql(
                    f"sum by (job, peer_service, outcome) (rate({BREAKER_CALLS}{{{peers}}}{RATE}))",
                    "{{job}} → {{peer_service}} {{outcome}}",
                ),
                description="success, failure (5xx, timeout, connection error), slow, and "
                "rejected (not tried: the breaker was open).",
                unit="ops",
                stack=True,
            )
        )
        .with_panel(
            graph(
                "Retries",
                promql(
                    f"sum by (job, peer_service) (rate({RETRIES}{{{peers}}}{RATE}))",
                    "{{job}} → {{peer_service}}",
                ),
                description="Retried calls (idempotent requests on connection errors and "
                "502/503/504, at most 3 attempts).",
                unit="ops",
            )
        )
        .with_row(dashboard.Row("Outgoing requests"))
        .with_panel(
            graph(
                "Outgoing request rate",
                promql(
                    f"sum by (job, peer_service, http_response_status_code, error_type) "
                    f"(rate({count}{{{peers}}}{RATE}))",
                    "{{job}} → {{peer_service}} {{http_response_status_code}}{{error_type}}",
                ),
                description="By answer: a status code, or the error type when no answer came.",
                unit="reqps",
                stack=True,
            )
        )
        .with_panel(
            graph(
                "Outgoing duration p95",
                promql(
                    f"histogram_quantile(0.95, sum by (job, peer_service, le) "
                    f"(rate({CLIENT}_bucket{{{peers}}}{RATE})))",
                    "{{job}} → {{peer_service}}",
                    exemplar=True,
                ),
                description="Exemplars link to the trace of the call.",
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Outgoing failures",
                promql(
                    f"(sum by (job, peer_service) (rate({count}{{{peers}, "
                    f'http_response_status_code!~"[1-4].."}}{RATE}))'
                    f" or 0 * sum by (job, peer_service) (rate({count}{{{peers}}}{RATE})))"
                    f" / sum by (job, peer_service) (rate({count}{{{peers}}}{RATE}))",
                    "{{job}} → {{peer_service}}",
                ),
                description="Share of attempts that got a 5xx or no answer (timeouts, "
                "connection errors).",
                unit="percentunit",
                width=24,
            )
        )
    )


def runtime() -> model.Dashboard:
    service = 'job=~"$service"'
    return numbered(
        bookshop(
            "bookshop-runtime",
            "Bookshop / Runtime",
            "The Python processes of the services: prometheus-client's process and GC "
            "collectors, which the chassis registers.",
        )
        .with_variable(service_variable())
        .with_panel(
            graph(
                "CPU",
                promql(f"rate(process_cpu_seconds_total{{{service}}}{RATE})", "{{job}}"),
                description="CPU seconds per second (1 = one core).",
                unit="percentunit",
            )
        )
        .with_panel(
            graph(
                "Resident memory",
                promql(f"process_resident_memory_bytes{{{service}}}", "{{job}}"),
                description="RSS; compare with the service's mem_limit in "
                "deploy/compose/compose.yaml.",
                unit="bytes",
            )
        )
        .with_panel(
            graph(
                "GC collections",
                promql(
                    f"sum by (job, generation) "
                    f"(rate(python_gc_collections_total{{{service}}}{RATE}))",
                    "{{job}} gen {{generation}}",
                ),
                unit="ops",
            )
        )
        .with_panel(
            graph(
                "Open file descriptors",
                promql(f"process_open_fds{{{service}}}", "{{job}}"),
                promql(f"process_max_fds{{{service}}}", "{{job}} limit"),
                description="Sockets (clients, database pool, event streams) and files.",
            )
        )
        .with_panel(
            graph(
                "Uptime",
                promql(f"time() - process_start_time_seconds{{{service}}}", "{{job}}"),
                description="Drops to zero when a process restarts.",
                unit="s",
                width=24,
                height=6,
            )
        )
    )


DASHBOARDS = {
    "service-overview.json": service_overview,
    "dependencies.json": dependencies,
    "runtime.json": runtime,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
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
