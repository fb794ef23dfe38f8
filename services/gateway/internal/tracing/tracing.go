// Package tracing sets up OpenTelemetry for the gateway as libs/common/src/chassis/tracing.py
// does for the Python services: the design §5 resource, W3C trace context + baggage, and the
// standard OTEL_* variables. The SDK itself reads OTEL_TRACES_SAMPLER(_ARG) and the exporter's
// OTEL_EXPORTER_OTLP_* settings; this package honours OTEL_SDK_DISABLED and
// OTEL_TRACES_EXPORTER (otlp by default, console, none).
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TracerName is the instrumentation scope of the gateway's spans.
const TracerName = "github.com/bookshop/gateway"

// Propagator is W3C trace context and baggage, in and out.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// Identity is what the resource says about this process.
type Identity struct {
	Service, Version, Namespace, Environment string
}

// NewProvider is a tracer provider exporting where OTEL_TRACES_EXPORTER says. With
// OTEL_SDK_DISABLED=true it exports nothing but still makes real spans, so trace ids still
// reach the logs, the X-Trace-Id header and problem bodies, as in the Python services.
func NewProvider(ctx context.Context, id Identity, getenv func(string) string,
	extra ...sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	options := []sdktrace.TracerProviderOption{sdktrace.WithResource(newResource(ctx, id, getenv))}
	if !strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		exporters, err := exportersFromEnv(ctx, getenv("OTEL_TRACES_EXPORTER"))
		if err != nil {
			return nil, err
		}
		for _, exporter := range exporters {
			options = append(options, sdktrace.WithBatcher(exporter))
		}
		for _, processor := range extra {
			options = append(options, sdktrace.WithSpanProcessor(processor))
		}
	}
	return sdktrace.NewTracerProvider(options...), nil
}

func exportersFromEnv(ctx context.Context, names string) ([]sdktrace.SpanExporter, error) {
	if strings.TrimSpace(names) == "" {
		names = "otlp"
	}
	var exporters []sdktrace.SpanExporter
	for _, name := range strings.Split(strings.ToLower(names), ",") { // a list, per the spec
		switch strings.TrimSpace(name) {
		case "none":
		case "otlp": // http/protobuf, design §5; endpoint and headers from OTEL_EXPORTER_OTLP_*
			exporter, err := otlptracehttp.New(ctx)
			if err != nil {
				return nil, fmt.Errorf("OTLP exporter: %w", err)
			}
			exporters = append(exporters, exporter)
		case "console": // stderr: stdout holds only JSON log lines
			exporter, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
			if err != nil {
				return nil, err
			}
			exporters = append(exporters, exporter)
		default:
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: expected otlp, console or none", name)
		}
	}
	return exporters, nil
}

// newResource: the SDK's defaults < OTEL_RESOURCE_ATTRIBUTES < ours (OTEL_SERVICE_NAME wins
// for service.name, as the spec says).
func newResource(_ context.Context, id Identity, getenv func(string) string) *resource.Resource {
	name := id.Service
	if fromEnv := getenv("OTEL_SERVICE_NAME"); fromEnv != "" {
		name = fromEnv
	}
	ours := resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", id.Version),
		attribute.String("service.namespace", id.Namespace),
		attribute.String("service.instance.id", instanceID()),
		attribute.String("deployment.environment", id.Environment),
	)
	// A malformed OTEL_RESOURCE_ATTRIBUTES leaves a partial resource: tracing still works.
	environment, _ := resource.Merge(resource.Default(), resource.Environment())
	merged, err := resource.Merge(environment, ours)
	if err != nil {
		return ours
	}
	return merged
}

func instanceID() string {
	host, _ := os.Hostname()
	random := make([]byte, 4)
	_, _ = rand.Read(random)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(random))
}
