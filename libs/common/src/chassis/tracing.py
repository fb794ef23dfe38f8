"""OpenTelemetry tracing: one tracer provider per service, configured by the OTEL_* variables.

The SDK itself reads OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers,
timeouts and the batch processor settings. The chassis adds the design §5 resource, honours
OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER (``otlp`` default, ``console``, ``none``) and sets
W3C tracecontext + baggage propagation.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import INVALID_SPAN
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chassis.config import Settings

TRACER_NAME = "chassis"
ZERO_TRACE_ID = "0" * 32
# W3C trace context and baggage, installed as the global propagator by build_tracer_provider.
CHASSIS_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def build_tracer_provider(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    extra_processors: tuple[SpanProcessor, ...] = (),
) -> TracerProvider:
    """A provider for this service; spans go to the exporter OTEL_TRACES_EXPORTER names."""
    environ = os.environ if environ is None else environ
    set_global_textmap(CHASSIS_PROPAGATOR)
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    provider = TracerProvider(resource=build_resource(settings, environ))
    if disabled:
        return provider
    names = environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")  # a list, per the spec
    for exporter in filter(None, (_exporter(name.strip()) for name in names)):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    return provider


def build_resource(settings: Settings, environ: Mapping[str, str]) -> Resource:
    attributes = {
        "service.name": environ.get("OTEL_SERVICE_NAME") or settings.service.name,
        "service.version": settings.service.version,
        "service.namespace": settings.service.namespace,
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "deployment.environment": settings.environment,
    }
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; ours win where both speak.
    return Resource.create().merge(Resource(attributes))


def _exporter(name: str) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: expected otlp, console or none")
    from chassis.otlp import OTLPSpanExporter  # the SDK's, with a leaner encoder

    return OTLPSpanExporter()


def current_trace_id() -> str | None:
    """The active trace id as 32 hex digits, or None outside a recorded span."""
    span = trace.get_current_span()
    if span is INVALID_SPAN:
        return None
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
