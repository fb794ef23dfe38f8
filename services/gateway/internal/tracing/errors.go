package tracing

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
)

// RouteDiagnostics sends the OpenTelemetry SDK's own complaints (an exporter that cannot reach
// its collector, say) through log as warning lines. Left alone, the SDK prints them to stderr
// as plain text, and every line the gateway writes must be a JSON log line (design §5).
// Process-wide: the SDK keeps one error handler and one logger.
func RouteDiagnostics(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Log(context.Background(), slog.LevelWarn, "opentelemetry error", "error", err)
	}))
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
}
