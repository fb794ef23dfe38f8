"""OTLP/HTTP span export with a leaner protobuf encoder.

The SDK's exporter builds a tree of protobuf objects for every batch (an object per span, per
attribute and per value, and a JSON dump of the resource per span to group spans by resource):
about 25 us a span, the largest single cost of a traced request. :func:`encode_spans` writes the
same ``ExportTraceServiceRequest`` bytes directly, with the resource and scope encoded once and
attribute keys cached: a fifth of the work. Anything it does not expect sends the batch through
the SDK's own encoder instead, so the bytes on the wire never depend on which encoder ran.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext

from chassis.private_apis import exporter_internals, is_request_too_large, request_too_large_error

_logger = logging.getLogger(__name__)

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack

# opentelemetry.proto.trace.v1.SpanFlags
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
_LOCAL_FLAGS = _pack_fixed32(_FLAGS_HAS_IS_REMOTE)
_REMOTE_FLAGS = _pack_fixed32(_FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE)

_VARINTS = [bytes((n,)) for n in range(128)]


def _varint(value: int) -> bytes:
    if value < 128:
        return _VARINTS[value] if value >= 0 else _varint(value + (1 << 64))
    out = bytearray()
    while value > 127:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _string(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode("utf-8"))


# -- AnyValue / KeyValue (opentelemetry.proto.common.v1) -------------------------------------


def _any_value(value: Any) -> bytes:
    """An encoded AnyValue message, as the SDK's ``_encode_value`` builds it."""
    if value is None:
        return b""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", value.encode("utf-8"))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _pack_double(value)
    if kind is bytes:
        return _field(b"\x3a", value)
    return _any_value_slow(value)


def _any_value_slow(value: Any) -> bytes:
    # subclasses and containers, in the SDK's order of checks
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + _varint(int(value))
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", bytes(value))
    if isinstance(value, Sequence):
        values = b"".join(_field(b"\x0a", _any_value(item)) for item in value)
        return _field(b"\x2a", values)
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise TypeError(f"Invalid type {type(value)} of value {value}")


_keys: dict[str, bytes] = {}
_MAX_CACHED = 4096


def _key(key: str) -> bytes:
    encoded = _keys.get(key)
    if encoded is None:
        if len(_keys) >= _MAX_CACHED:
            _keys.clear()
        encoded = _keys[key] = _string(b"\x0a", key)
    return encoded


def _key_value(key: str, value: Any) -> bytes:
    return _key(key) + _field(b"\x12", _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join([_field(tag, _key_value(k, v)) for k, v in attributes.items()])


# A span's string attributes repeat (method, route, address, SQL text...): each pair's whole
# field is kept, up to a bound, emptied when full so that it follows a changing workload.
_span_strings: dict[tuple[str, str], bytes] = {}


def _span_attributes(attributes: Mapping[str, Any] | None) -> list[bytes]:
    fields: list[bytes] = []
    if not attributes:
        return fields
    for key, value in attributes.items():
        if type(value) is str:
            pair = (key, value)
            field = _span_strings.get(pair)
            if field is None:
                if len(_span_strings) >= _MAX_CACHED:
                    _span_strings.clear()
                field = _span_strings[pair] = _field(b"\x4a", _key_value(key, value))
        else:
            field = _field(b"\x4a", _key_value(key, value))
        fields.append(field)
    return fields


# -- spans (opentelemetry.proto.trace.v1) ----------------------------------------------------


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state:
        parts.append(_string(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items())))
    if parent:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_string(b"\x2a", span.name))
    parts += (b"\x30", _varint(span.kind.value + 1))  # the proto's kinds start at 1
    if span.start_time:
        parts += (b"\x39", _pack_fixed64(span.start_time))
    if span.end_time:
        parts += (b"\x41", _pack_fixed64(span.end_time))
    parts += _span_attributes(span.attributes)
    if span.dropped_attributes:
        parts += (b"\x50", _varint(span.dropped_attributes))
    for event in span.events:
        encoded = b""
        if event.timestamp:
            encoded += b"\x09" + _pack_fixed64(event.timestamp)
        if event.name:
            encoded += _string(b"\x12", event.name)
        encoded += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            encoded += b"\x20" + _varint(event.dropped_attributes)
        parts.append(_field(b"\x5a", encoded))
    if span.dropped_events:
        parts += (b"\x60", _varint(span.dropped_events))
    for link in span.links:
        link_context = link.context
        encoded = (
            b"\x0a\x10"
            + link_context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + link_context.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
        )
        if link.dropped_attributes:
            encoded += b"\x28" + _varint(link.dropped_attributes)
        encoded += b"\x35" + _flags(link_context)
        parts.append(_field(b"\x6a", encoded))
    if span.dropped_links:
        parts += (b"\x70", _varint(span.dropped_links))
    status = span.status
    if status is not None:
        encoded = b""
        if status.description:
            encoded += _string(b"\x12", status.description)
        if status.status_code.value:
            encoded += b"\x18" + _varint(status.status_code.value)
        parts.append(_field(b"\x7a", encoded))
    parts += (b"\x85\x01", _flags(parent))
    return b"".join(parts)


def _flags(parent: SpanContext | None) -> bytes:
    return _REMOTE_FLAGS if parent and parent.is_remote else _LOCAL_FLAGS


_resources: dict[int, tuple[Resource, bytes]] = {}
_scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}


def _resource(resource: Resource) -> bytes:
    """Resource message field and schema_url of a ResourceSpans, encoded once per resource."""
    entry = _resources.get(id(resource))
    if entry is None or entry[0] is not resource:
        encoded = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        entry = (resource, encoded)
        _resources[id(resource)] = entry
    return entry[1]


def _scope(scope: InstrumentationScope | None) -> bytes:
    entry = _scopes.get(id(scope))
    if entry is None or entry[0] is not scope:
        encoded = b""
        if scope is not None:
            if scope.name:
                encoded += _string(b"\x0a", scope.name)
            if scope.version:
                encoded += _string(b"\x12", scope.version)
            encoded += _attributes(b"\x1a", scope.attributes)
        entry = (scope, _field(b"\x0a", encoded))
        _scopes[id(scope)] = entry
    return entry[1]


def _grouped(objects: list[Any]) -> list[list[int]]:
    """Indexes of equal objects, in order of first appearance (the SDK groups with a dict)."""
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(objects):
        groups.setdefault(id(item), []).append(index)
    if len(groups) == 1:
        return list(groups.values())
    merged: list[tuple[Any, list[int]]] = []
    for indexes in groups.values():
        first = objects[indexes[0]]
        for item, found in merged:
            if item == first:
                found.extend(indexes)
                break
        else:
            merged.append((first, list(indexes)))
    return [sorted(indexes) for _, indexes in merged]


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` the SDK's encoder would produce."""
    if not spans:
        return b""
    resources = [span.resource for span in spans]
    request = []
    for resource_group in _grouped(resources):
        resource: Resource = resources[resource_group[0]]
        scopes = [spans[i].instrumentation_scope or None for i in resource_group]
        scope_spans = []
        for scope_group in _grouped(scopes):
            scope = scopes[scope_group[0]]
            body = _scope(scope) + b"".join(
                [_field(b"\x12", _span(spans[resource_group[i]])) for i in scope_group]
            )
            if scope is not None and scope.schema_url:
                body += _string(b"\x1a", scope.schema_url)
            scope_spans.append(_field(b"\x12", body))
        body = _resource(resource) + b"".join(scope_spans)
        if resource.schema_url:
            body += _string(b"\x1a", resource.schema_url)
        request.append(_field(b"\x0a", body))
    return b"".join(request)


class OTLPSpanExporter(trace_exporter.OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter (same settings, retries, metrics) with
    :func:`encode_spans` for the request body."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        internals = exporter_internals(self)
        if internals is None or internals.shut_down:
            return super().export(spans)  # an SDK this class was not written for, or shut down
        client, limit = internals.client, internals.max_request_size
        with internals.metrics.export_operation(len(spans)) as result:
            try:
                data = _encode(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if is_request_too_large(data, limit):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(data),
                    limit,
                )
                result.error = request_too_large_error(
                    f"Serialized span request size {len(data)} bytes exceeds max_request_size "
                    f"{limit} bytes."
                )
                return SpanExportResult.FAILURE
            outcome = client.export(data)
            if not outcome.success:
                result.error = outcome.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: outcome.status_code}
                    if outcome.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _encode(spans: Sequence[ReadableSpan]) -> bytes:
    try:
        return encode_spans(spans)
    except Exception:  # something unexpected: let the SDK's encoder handle (or report) it
        _logger.debug("chassis span encoder fell back to the SDK's", exc_info=True)
        data: bytes = sdk_encode_spans(spans).SerializePartialToString()
        return data
