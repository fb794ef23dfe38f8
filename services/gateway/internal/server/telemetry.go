package server

import (
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/bookshop/gateway/internal/logging"
	"github.com/bookshop/gateway/internal/metrics"
	"github.com/bookshop/gateway/internal/problem"
	"github.com/bookshop/gateway/internal/tracing"
)

// TraceHeader names the request's trace on every response, so a person (or the storefront)
// can look the request up in Jaeger.
const TraceHeader = "X-Trace-Id"

// telemetry is the outermost layer, as chassis/middleware/telemetry.py is: a server span named
// by the route template, the RED metrics, and one access-log line for every request,
// whatever answers it (a route, a 404, a panic).
func (g *Gateway) telemetry(rt *routes, next http.Handler) http.Handler {
	access := logging.Named(g.Log, logging.AccessLogger)
	accessLog := g.Settings.Logging.AccessLog
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		method := metrics.NormaliseMethod(r.Method)
		route := rt.match(r)
		parent := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.Tracer.Start(parent, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(requestAttributes(r, method, route)...))
		spanContext := span.SpanContext()
		if spanContext.IsValid() {
			w.Header().Set(TraceHeader, spanContext.TraceID().String())
		}
		// Here as well as in securityHeaders: it also covers the answer to a panic.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		active := g.Metrics.ServerActive.WithLabelValues(method)
		active.Inc()
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(ctx)
		defer func() {
			failure := recover()
			if failure != nil {
				if failure == http.ErrAbortHandler { // net/http's way to drop a connection
					defer panic(failure)
				} else {
					g.answerPanic(recorder, r, failure)
				}
			}
			duration := time.Since(started)
			active.Dec()
			finishSpan(span, recorder.status, failure)
			traceID := ""
			if spanContext.IsSampled() {
				traceID = spanContext.TraceID().String()
			}
			observer := g.Metrics.ServerDuration.WithLabelValues(method, route, strconv.Itoa(recorder.status))
			metrics.Observe(observer, duration.Seconds(), traceID)
			if accessLog {
				level := slog.LevelInfo
				if ProbeRoutes[route] && recorder.status < 500 {
					level = slog.LevelDebug
				}
				access.LogAttrs(ctx, level, "request",
					slog.String("method", method),
					slog.String("route", route),
					slog.String("path", r.URL.Path),
					slog.Int("status", recorder.status),
					slog.Float64("duration_ms", math.Round(duration.Seconds()*100000)/100))
			}
			span.End()
		}()
		next.ServeHTTP(recorder, r)
	})
}

// answerPanic logs an unexpected failure and answers 500 if nothing was answered yet; the
// body never holds the panic's text.
func (g *Gateway) answerPanic(w *statusRecorder, r *http.Request, failure any) {
	g.Log.ErrorContext(r.Context(), "unhandled error", "error", failure)
	if w.wrote {
		w.status = http.StatusInternalServerError
		return
	}
	problem.Write(w, r, problem.Problem{Status: http.StatusInternalServerError,
		Detail: "The server failed to handle this request; the trace id identifies it."})
}

func requestAttributes(r *http.Request, method, route string) []attribute.KeyValue {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attributes := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("http.route", route),
		attribute.String("url.path", r.URL.Path),
		attribute.String("url.scheme", scheme),
	}
	if client, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attributes = append(attributes, attribute.String("client.address", client))
	}
	if agent := r.UserAgent(); agent != "" {
		attributes = append(attributes, attribute.String("user_agent.original", agent))
	}
	return attributes
}

func finishSpan(span trace.Span, status int, failure any) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	switch {
	case failure != nil:
		span.SetAttributes(attribute.String("error.type", "panic"))
		span.SetStatus(codes.Error, "")
	case status >= 500:
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(status int) {
	if !s.wrote && status >= 200 {
		s.status, s.wrote = status, true
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(data []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(data)
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
