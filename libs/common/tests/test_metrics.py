import math
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chassis import Service
from chassis import metrics as metrics_module
from chassis.metrics import ServiceMetrics
from chassis.testing import MetricsSnapshot, service_client

BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0"]
BUCKETS += ["2.5", "5.0", "7.5", "10.0", "+Inf"]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"

# design §5: name -> (type, label names). Dashboards and alerts depend on every one of these.
CONTRACT = {
    "http_server_request_duration_seconds": (
        "histogram",
        {"http_request_method", "http_route", "http_response_status_code"},
    ),
    "http_server_active_requests": ("gauge", {"http_request_method"}),
    "http_client_request_duration_seconds": (
        "histogram",
        {"peer_service", "http_request_method", "http_response_status_code", "error_type"},
    ),
    "http_client_retries_total": ("counter", {"peer_service"}),
    "circuit_breaker_state": ("gauge", {"peer_service", "state"}),
    "circuit_breaker_calls_total": ("counter", {"peer_service", "outcome"}),
    "service_info": ("gauge", {"service", "version", "commit"}),
}


def populated() -> ServiceMetrics:
    metrics = ServiceMetrics()
    metrics.server_duration.labels("GET", "/books/{book_id}", "200").observe(
        0.02, exemplar={"trace_id": TRACE_ID}
    )
    metrics.server_active.labels("GET").inc()
    metrics.client_duration.labels("books", "GET", "200", "").observe(0.3)
    metrics.client_retries.labels("books").inc()
    metrics.breaker_state.labels("books", "closed").set(1)
    metrics.breaker_calls.labels("books", "success").inc()
    metrics.service_info.labels("books", "1.0.0", "abc").set(1)
    return metrics


def families(exposition: str) -> dict[str, tuple[str, set[str]]]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        labels = {name for sample in family.samples for name in sample.labels if name != "le"}
        found[family.name] = (family.type, labels)
    return found


def test_names_types_and_labels_match_the_design() -> None:
    body, _ = populated().exposition(None)

    found = families(body.decode())

    for name, (kind, labels) in CONTRACT.items():
        family = name.removesuffix("_total")  # the parser names counter families without it
        assert found[family] == (kind, labels), name


def test_names_lists_every_metric_the_chassis_registers() -> None:
    found = families(populated().exposition(None)[0].decode())
    default_collectors = ("process_", "python_")
    ours = {n for n in found if not n.startswith(default_collectors) and not n.endswith("_created")}
    assert ours == {name.removesuffix("_total") for name in metrics_module.NAMES}
    assert set(metrics_module.NAMES) == set(CONTRACT)


@pytest.mark.parametrize(
    "name", ["http_server_request_duration_seconds", "http_client_request_duration_seconds"]
)
def test_histograms_use_the_design_buckets(name: str) -> None:
    body, _ = populated().exposition(None)

    snapshot = MetricsSnapshot(body.decode())

    assert [labels["le"] for n, labels, _ in snapshot.samples if n == f"{name}_bucket"] == BUCKETS


def test_text_format_by_default_without_exemplars() -> None:
    metrics = populated()

    for accept in (None, "text/plain", "*/*"):
        body, content_type = metrics.exposition(accept)
        assert content_type.startswith("text/plain; version=0.0.4")
        assert TRACE_ID not in body.decode()
        assert not body.decode().rstrip().endswith("# EOF")


def test_openmetrics_with_a_trace_id_exemplar_when_asked_for() -> None:
    body, content_type = populated().exposition(OPENMETRICS)

    text = body.decode()
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    exemplars = [line for line in text.splitlines() if " # {" in line]
    assert len(exemplars) == 1
    assert exemplars[0].startswith(
        'http_server_request_duration_seconds_bucket{http_request_method="GET",'
    )
    assert f'# {{trace_id="{TRACE_ID}"}} 0.02' in exemplars[0]


def test_every_service_has_its_own_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.client_retries.labels("books").inc()

    snapshot = MetricsSnapshot(second.exposition(None)[0].decode())

    assert math.isnan(snapshot.value("http_client_retries_total", peer_service="books"))


def test_process_metrics_are_exposed() -> None:
    snapshot = MetricsSnapshot(ServiceMetrics().exposition(None)[0].decode())

    assert snapshot.value("process_cpu_seconds_total") >= 0
    assert snapshot.value("python_gc_collections_total") >= 0


def test_service_info_is_one_with_service_version_and_commit(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMIT", "0123abcd")
    service = make_service()

    with service_client(service) as client:
        snapshot = MetricsSnapshot(client.get("/metrics").text)

    assert [
        (labels, value) for name, labels, value in snapshot.samples if name == "service_info"
    ] == [({"service": "tiny", "version": "1.2.3", "commit": "0123abcd"}, 1.0)]
