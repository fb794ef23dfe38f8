"""observability/grafana: provisioning and dashboards.

Every PromQL expression of the dashboards (and of the Jaeger datasource's trace-to-metrics
queries) is sent, with its template variables filled in, to a real Prometheus: one that cannot
parse it answers 400. Whether each expression returns data from a stack under traffic is
tests/e2e/test_dashboards.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import GRAFANA_DIR, PrometheusServer

from chassis import metrics

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "bookshop.yml"
GENERATOR = GRAFANA_DIR / "dashboards.py"
# What Grafana puts in place of its variables when it sends a query.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$service": "books|shop|chat",
    "$route": ".*",
    "$peer": "books|chat",
    "$__tags": 'job="books"',
}
# The metrics the chassis registers (chassis/metrics.py, design §5) and the ones
# prometheus-client's default process, platform and GC collectors export.
CHASSIS_METRICS = set(metrics.NAMES)
COLLECTOR_METRICS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "python_gc_collections_total",
}
LABELS = {
    metrics.METHOD,
    metrics.ROUTE,
    metrics.STATUS,
    metrics.PEER,
    metrics.ERROR_TYPE,
    metrics.STATE,
    metrics.OUTCOME,
    "job",
    "instance",
    "le",
    "generation",
}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels += panel.get("panels", [])
        else:
            panels.append(panel)
    return panels


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query, variable query and datasource query."""
    found = []
    for path in DASHBOARDS:
        dashboard = load(path)
        for panel in data_panels(dashboard):
            for target in panel["targets"]:
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            query = variable["query"]["query"]
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert selector, f"{path.name}: ${variable['name']}: {query}"
            found.append((f"{path.name}: ${variable['name']}", selector.group(1)))
    for datasource in yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]:
        for query in datasource.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            found.append((f"datasource {datasource['name']}: {query['name']}", query["query"]))
    return found


def substitute(expression: str) -> str:
    for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda item: -len(item[0])):
        expression = expression.replace(variable, value)
        expression = expression.replace("${" + variable[1:] + "}", value)
    assert "$" not in expression, f"a variable the test does not know: {expression}"
    return expression


def test_there_are_the_three_dashboards() -> None:
    titles = {load(path)["title"] for path in DASHBOARDS}
    assert titles == {
        "Bookshop / Service overview",
        "Bookshop / Dependencies and circuit breakers",
        "Bookshop / Runtime",
    }


def test_dashboards_are_what_the_generator_renders() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_datasource_and_a_query(path: Path) -> None:
    dashboard = load(path)
    uids = {d["uid"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert dashboard["uid"]
    panels = data_panels(dashboard)
    assert panels
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] in uids, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] in uids


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_service_variable_lists_the_scrape_jobs(path: Path) -> None:
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    assert variables["service"]["query"]["query"] == f"label_values({metrics.SERVICE_INFO}, job)"


def test_queries_use_the_chassis_metric_and_label_names() -> None:
    for where, expression in expressions():
        for name in re.findall(r"\b([a-z_]+)\s*\{", expression):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in CHASSIS_METRICS | COLLECTOR_METRICS or name == "up", (where, name)
        for label in re.findall(r"[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)", expression):
            assert label in LABELS, (where, label)
        for group in re.findall(r"\b(?:by|on|without)\s*\(([^)]*)\)", expression):
            for label in filter(None, (part.strip() for part in group.split(","))):
                assert label in LABELS, (where, label)


def test_the_dashboards_cover_red_dependencies_and_runtime() -> None:
    text = " ".join(expression for _, expression in expressions())
    for name in [*CHASSIS_METRICS, *COLLECTOR_METRICS]:
        assert name in text, f"no panel shows {name}"


def test_latency_panels_show_exemplars() -> None:
    for path in DASHBOARDS:
        for panel in data_panels(load(path)):
            for target in panel["targets"]:
                if "_duration_seconds_bucket" in target["expr"] and "0.95" in target["expr"]:
                    assert target["exemplar"], f"{path.name}: {panel['title']}"


def test_every_expression_parses_in_prometheus(empty_prometheus: PrometheusServer) -> None:
    problems = []
    for where, expression in expressions():
        response = empty_prometheus.query(substitute(expression))
        if response.status_code != 200:
            problems.append(f"{where}: {response.json().get('error')}\n  {expression}")
    assert not problems, "\n".join(problems)


def test_the_prometheus_check_really_rejects_bad_promql(
    empty_prometheus: PrometheusServer,
) -> None:
    assert empty_prometheus.query("sum by (job (up)").status_code == 400


def test_datasources_link_exemplars_to_jaeger() -> None:
    datasources = {
        d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    }
    prometheus, jaeger = datasources["prometheus"], datasources["jaeger"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"]
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination == {"name": "trace_id", "datasourceUid": "jaeger"}
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "http://jaeger:16686"


def test_the_exemplar_label_is_the_one_the_chassis_writes() -> None:
    """The middleware and the client attach ``{"trace_id": ...}`` exemplars."""
    chassis = Path(metrics.__file__).parent
    for module in ("middleware/telemetry.py", "client.py"):
        assert '{"trace_id":' in (chassis / module).read_text(encoding="utf-8"), module


def test_dashboards_provider_reads_the_mounted_directory(compose: dict[str, Any]) -> None:
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    source = mounts[provider["options"]["path"]]
    compose_dir = GRAFANA_DIR.parents[1] / "deploy" / "compose"
    assert (compose_dir / source).resolve() == GRAFANA_DIR / "dashboards"
    assert (compose_dir / mounts["/etc/grafana/provisioning"]).resolve() == (
        GRAFANA_DIR / "provisioning"
    )
