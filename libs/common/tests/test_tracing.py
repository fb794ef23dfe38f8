from pathlib import Path

import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, use_span

from chassis import Settings, load_settings
from chassis.testing import SpanRecorder
from chassis.tracing import build_tracer_provider, current_trace_id


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "config.yml").write_text("service: {name: books, version: 2.0.0}\n")
    return load_settings(Settings, tmp_path, environ={})


def exporters(provider: TracerProvider) -> list[object]:
    processors = provider._active_span_processor._span_processors
    return [getattr(p, "span_exporter", p) for p in processors]


def test_the_resource_names_the_service(settings: Settings) -> None:
    provider = build_tracer_provider(settings, environ={"OTEL_TRACES_EXPORTER": "none"})

    attributes = provider.resource.attributes
    assert attributes["service.name"] == "books"
    assert attributes["service.version"] == "2.0.0"
    assert attributes["service.namespace"] == "bookshop"
    assert attributes["deployment.environment"] == "development"
    assert str(attributes["service.instance.id"])


def test_each_provider_is_its_own_instance(settings: Settings) -> None:
    environ = {"OTEL_TRACES_EXPORTER": "none"}
    first = build_tracer_provider(settings, environ=environ).resource.attributes
    second = build_tracer_provider(settings, environ=environ).resource.attributes

    assert first["service.instance.id"] != second["service.instance.id"]


def test_otel_service_name_and_resource_attributes_are_honoured(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=catalog,service.namespace=elsewhere")
    environ = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "books-canary"}

    attributes = build_tracer_provider(settings, environ=environ).resource.attributes

    assert attributes["service.name"] == "books-canary"
    assert attributes["team"] == "catalog"
    assert attributes["service.namespace"] == "bookshop"  # the chassis' own wins


def test_no_exporter_but_extra_processors_record(settings: Settings) -> None:
    recorder = SpanRecorder()
    provider = build_tracer_provider(
        settings, environ={"OTEL_TRACES_EXPORTER": "none"}, extra_processors=(recorder.processor,)
    )

    with provider.get_tracer("tests").start_as_current_span("work"):
        pass

    assert recorder.names() == ["work"]
    assert exporters(provider) == [recorder.exporter]


def test_the_console_exporter_can_be_chosen(settings: Settings) -> None:
    provider = build_tracer_provider(settings, environ={"OTEL_TRACES_EXPORTER": " Console "})

    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    assert isinstance(exporters(provider)[0], ConsoleSpanExporter)
    provider.shutdown()


def test_otlp_is_the_default_exporter(settings: Settings) -> None:
    from chassis.otlp import OTLPSpanExporter

    provider = build_tracer_provider(settings, environ={})

    assert [type(e) for e in exporters(provider)] == [OTLPSpanExporter]
    provider.shutdown()


def test_a_list_of_exporters_is_honoured(settings: Settings) -> None:
    from chassis.otlp import OTLPSpanExporter

    provider = build_tracer_provider(settings, environ={"OTEL_TRACES_EXPORTER": "otlp,console"})

    assert [type(e) for e in exporters(provider)] == [OTLPSpanExporter, ConsoleSpanExporter]
    provider.shutdown()


def test_an_unknown_exporter_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='jaeger'"):
        build_tracer_provider(settings, environ={"OTEL_TRACES_EXPORTER": "jaeger"})


def test_a_disabled_sdk_exports_and_records_nothing(settings: Settings) -> None:
    recorder = SpanRecorder()
    provider = build_tracer_provider(
        settings, environ={"OTEL_SDK_DISABLED": "TRUE"}, extra_processors=(recorder.processor,)
    )

    with provider.get_tracer("tests").start_as_current_span("work"):
        pass

    assert exporters(provider) == []
    assert recorder.spans() == []


def test_propagation_is_w3c_tracecontext_and_baggage(settings: Settings) -> None:
    provider = build_tracer_provider(settings, environ={"OTEL_TRACES_EXPORTER": "none"})
    carrier: dict[str, str] = {}

    token = context.attach(baggage.set_baggage("user", "ann"))
    try:
        with provider.get_tracer("tests").start_as_current_span("work") as span:
            propagate.inject(carrier)
    finally:
        context.detach(token)

    trace_id = format(span.get_span_context().trace_id, "032x")
    assert carrier["traceparent"].startswith(f"00-{trace_id}-")
    assert carrier["baggage"] == "user=ann"


def test_current_trace_id() -> None:
    tracer = TracerProvider().get_tracer("tests")
    assert current_trace_id() is None

    with tracer.start_as_current_span("work") as span:
        assert current_trace_id() == format(span.get_span_context().trace_id, "032x")

    remote = NonRecordingSpan(SpanContext(trace_id=0xABC, span_id=0x1, is_remote=True))
    with use_span(remote):
        assert current_trace_id() == format(0xABC, "032x")
