package server

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestHeaderHygiene(t *testing.T) {
	calls := make(chan seen, 1)
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls <- seen{Header: r.Header.Clone(), Host: r.Host}
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Trace-Id", "not-the-gateways")
		w.Header().Set("ETag", `"v1"`)
		_, _ = w.Write([]byte("ok"))
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL)
	response, _ := h.do(http.MethodPost, "/api/books/books", strings.NewReader("{}"), http.Header{
		"Authorization":       {"Bearer token-1"},
		"Idempotency-Key":     {"key-1"},
		"Last-Event-Id":       {"7"},
		"Connection":          {"X-Client-Hop"},
		"X-Client-Hop":        {"1"},
		"Proxy-Authorization": {"Basic secret"},
		"Te":                  {"trailers"},
		"X-Forwarded-For":     {"6.6.6.6"},
		"Forwarded":           {"for=6.6.6.6"},
		"X-Custom":            {"kept"},
	})
	got := <-calls
	for _, name := range []string{"X-Client-Hop", "Proxy-Authorization", "Te", "Forwarded", "Keep-Alive"} {
		if value := got.Header.Get(name); value != "" {
			t.Errorf("hop-by-hop or client claim %s reached the upstream: %q", name, value)
		}
	}
	want := map[string]string{
		"Authorization": "Bearer token-1", "Idempotency-Key": "key-1", "Last-Event-Id": "7",
		"X-Custom": "kept", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": strings.TrimPrefix(h.server.URL, "http://"), "X-Forwarded-Prefix": "/api/books",
	}
	for name, value := range want {
		if got.Header.Get(name) != value {
			t.Errorf("upstream got %s = %q, want %q", name, got.Header.Get(name), value)
		}
	}
	if got.Host != strings.TrimPrefix(books.URL, "http://") {
		t.Errorf("Host %q, want the upstream's", got.Host)
	}
	if response.Header.Get("X-Upstream-Hop") != "" || response.Header.Get("Keep-Alive") != "" {
		t.Errorf("the upstream's hop-by-hop headers reached the client: %v", response.Header)
	}
	if response.Header.Get("ETag") != `"v1"` {
		t.Errorf("end-to-end header lost: %v", response.Header)
	}
	if values := response.Header.Values(TraceHeader); len(values) != 1 || values[0] == "not-the-gateways" {
		t.Errorf("X-Trace-Id %v, want the gateway's alone", values)
	}
}

func TestTheUpstreamIsCalledInTheClientsTrace(t *testing.T) {
	calls := make(chan seen, 1)
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls <- seen{Header: r.Header.Clone()}
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL)
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	response, _ := h.do(http.MethodGet, "/api/books/books", nil, http.Header{
		"Traceparent": {"00-" + clientTrace + "-00f067aa0ba902b7-01"},
		"Baggage":     {"session=s-42"},
	})
	got := <-calls
	parts := strings.Split(got.Header.Get("Traceparent"), "-")
	if len(parts) != 4 || parts[1] != clientTrace {
		t.Fatalf("upstream traceparent %q, want trace %s", got.Header.Get("Traceparent"), clientTrace)
	}
	if parts[2] == "00f067aa0ba902b7" {
		t.Fatal("the client's traceparent was copied, not the gateway's client span")
	}
	if got.Header.Get("Baggage") != "session=s-42" {
		t.Fatalf("baggage %q", got.Header.Get("Baggage"))
	}
	if response.Header.Get(TraceHeader) != clientTrace {
		t.Fatalf("X-Trace-Id %q", response.Header.Get(TraceHeader))
	}
	// The upstream's parent is the gateway's client span, a child of its server span.
	var server, client trace.SpanContext
	var clientParent trace.SpanID
	for _, span := range h.spans.Ended() {
		switch span.SpanKind() {
		case trace.SpanKindServer:
			server = span.SpanContext()
			if span.Name() != "GET /api/books/{path}" {
				t.Errorf("server span named %q, want the route template", span.Name())
			}
		case trace.SpanKindClient:
			client, clientParent = span.SpanContext(), span.Parent().SpanID()
		}
	}
	if client.SpanID().String() != parts[2] || clientParent != server.SpanID() {
		t.Fatalf("span tree: upstream parent %s, client %s (parent %s), server %s",
			parts[2], client.SpanID(), clientParent, server.SpanID())
	}
}

func TestEveryAnswerCarriesNosniffAndItsTraceID(t *testing.T) {
	h := start(t)
	for _, path := range []string{LivePath, ReadyPath, MetricsPath, InfoPath, ConfigPath, "/", "/static/app.js",
		"/missing", "/api/books/books"} {
		response, _ := h.get(path)
		if response.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
		if len(response.Header.Get(TraceHeader)) != 32 {
			t.Errorf("%s: X-Trace-Id %q", path, response.Header.Get(TraceHeader))
		}
	}
}

func TestAClientsBrokenTraceContextIsNeverPassedOn(t *testing.T) {
	calls := make(chan seen, 1)
	books := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls <- seen{Header: r.Header.Clone()}
	})
	h := start(t, "DEPENDENCIES__BOOKS__BASE_URL="+books.URL)
	response, _ := h.do(http.MethodGet, "/api/books/books", nil, http.Header{
		"Traceparent": {"00-not-a-trace-01"},
		"Tracestate":  {"vendor=opaque"},
	})
	got := <-calls
	if got.Header.Get("Tracestate") != "" {
		t.Fatalf("the client's tracestate rode along with a new trace: %q", got.Header.Get("Tracestate"))
	}
	parts := strings.Split(got.Header.Get("Traceparent"), "-")
	if len(parts) != 4 || parts[1] != response.Header.Get(TraceHeader) {
		t.Fatalf("traceparent %q for trace %s", got.Header.Get("Traceparent"), response.Header.Get(TraceHeader))
	}
}
